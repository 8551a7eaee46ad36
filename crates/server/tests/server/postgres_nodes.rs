//! Two nodes on one PostgreSQL queue, in this process: an API node without workers and
//! a node with a worker, sharing one data directory. A job submitted to the API node
//! runs on the worker, streams its events through the API node (LISTEN/NOTIFY), and its
//! image is read back there; a cancel sent to the API node stops it on the worker; the
//! API node's /healthz and /metrics see the worker; a worker node stopped gracefully
//! puts its running job back in the queue.

use std::time::Duration;

use serde_json::json;

use crate::common::postgres::fresh_database;
use crate::common::*;

const LIMIT: Duration = Duration::from_secs(120);

fn submit(server: &TestServer, steps: u64, seed: u64) -> String {
    let response = server.post_json(
        "/v1/images/generations",
        &json!({ "prompt": "two nodes", "size": "64x64", "steps": steps, "seed": seed, "async": true }),
    );
    assert_eq!(response.status, 202, "{}", response.text());
    response.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn an_api_node_streams_cancels_and_serves_jobs_that_a_worker_node_runs() {
    let Some(url) = fresh_database("nodes") else {
        return;
    };
    let worker_url = url.clone();
    let worker = TestServer::start(move |config| {
        config.database = Some(worker_url);
        config.lease = Duration::from_secs(3);
        config.worker_name = Some("node-b".into());
    });
    let shared_data = worker.data.path().to_path_buf();
    let api = TestServer::start(move |config| {
        config.database = Some(url);
        config.run_workers = false;
        config.data_dir = shared_data;
    });

    let id = submit(&api, 2, 1);
    let events = sse_events(api.address, &id, &[]);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    assert!(
        names.contains(&"step"),
        "steps reach the API node: {names:?}"
    );
    let job = wait_for(api.address, &id, LIMIT, is_terminal);
    assert_eq!(job["status"], "succeeded", "{job}");
    let image = job["images"][0]["id"]
        .as_str()
        .or_else(|| job["images"][0].as_str())
        .map(String::from)
        .unwrap_or_else(|| panic!("no image in {job}"));
    let png = api.get(&format!("/v1/images/{image}"));
    assert_eq!(png.status, 200, "the API node reads the worker's result");
    assert_eq!(png_size(&png.body), (64, 64));
    // The same row through the worker's own API.
    let same = wait_for(worker.address, &id, LIMIT, is_terminal);
    assert_eq!(same["status"], "succeeded");

    // A cancel sent to the API node stops the job on the worker.
    let long = submit(&api, 150, 2);
    wait_for(api.address, &long, LIMIT, |job| job["status"] == "running");
    let response = api.delete(&format!("/v1/jobs/{long}"));
    assert_eq!(response.status, 202, "{}", response.text());
    let job = wait_for(api.address, &long, LIMIT, is_terminal);
    assert_eq!(job["status"], "cancelled", "{job}");
    let events = sse_events(api.address, &long, &[]);
    assert_eq!(
        events.last().map(|(name, _)| name.as_str()),
        Some("cancelled")
    );

    let health = api.get("/healthz").json();
    assert_eq!(health["cluster"]["workers_alive"], 1, "{health}");
    assert_eq!(health["cluster"]["events_connected"], true, "{health}");
    assert_eq!(
        health["workers"]["started"], 0,
        "the API node runs no worker"
    );
    let metrics = api.get("/metrics").text();
    assert!(
        metrics.contains("huatu_worker_jobs{worker=\"node-b\",outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("huatu_lease_expiries_total 0"),
        "{metrics}"
    );
    assert!(metrics.contains("huatu_worker_jobs_last_minute{worker=\"node-b\"}"));

    // A worker node stopped gracefully puts its running job back, the attempt uncounted.
    let interrupted = submit(&api, 150, 3);
    wait_for(api.address, &interrupted, LIMIT, |job| {
        job["status"] == "running"
    });
    let _shared_data = worker.stop();
    let job = wait_for(api.address, &interrupted, LIMIT, |job| {
        job["status"] == "queued"
    });
    assert_eq!(job["attempts"], 0, "{job}");
}

#[test]
fn no_worker_needs_a_shared_queue() {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: huatu_server::ServeArgs,
    }
    let args = Wrapper::try_parse_from(["serve", "--no-worker"])
        .unwrap()
        .args;
    let error = huatu_server::ServerConfig::from_args(&args)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(error.contains("--no-worker needs --database"), "{error}");
    let args = Wrapper::try_parse_from(["serve", "--database", "mysql://x@y/z"])
        .unwrap()
        .args;
    let error = huatu_server::ServerConfig::from_args(&args)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(error.contains("must be a PostgreSQL URL"), "{error}");
}
