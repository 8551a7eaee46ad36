//! Cancel, a full queue (429), and a graceful restart over the same data.

use std::time::Duration;

use serde_json::json;

use crate::api::small;
use crate::common::*;

#[test]
fn cancels_queued_and_running_jobs() {
    let server = TestServer::start(|_| {});
    let long = json!({ "prompt": "slow", "size": "64x64", "steps": 150, "async": true });
    let first = server.post_json("/v1/images/generations", &long).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = server.post_json("/v1/images/generations", &long).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let address = server.address;
    let first_events = {
        let id = first.clone();
        std::thread::spawn(move || sse_events(address, &id, &[]))
    };
    // The second waits behind the first: cancelled at once.
    let cancelled = server.delete(&format!("/v1/jobs/{second}"));
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    assert_eq!(cancelled.json()["status"], "cancelled");
    server
        .delete(&format!("/v1/jobs/{second}"))
        .expect_error(409, "conflict");
    // The first is stopped at its next step.
    wait_for(address, &first, Duration::from_secs(30), |job| {
        job["progress"]["step"].as_u64().unwrap_or(0) >= 1
    });
    let stopping = server.delete(&format!("/v1/jobs/{first}"));
    assert_eq!(stopping.status, 202, "{}", stopping.text());
    assert_eq!(stopping.json()["cancel_requested"], true);
    let job = wait_for(address, &first, Duration::from_secs(30), is_terminal);
    assert_eq!(job["status"], "cancelled");
    let events = first_events.join().unwrap();
    assert_eq!(
        events.last().map(|(name, _)| name.as_str()),
        Some("cancelled"),
        "{events:?}"
    );
    assert!(events.iter().any(|(name, _)| name == "step"));
    // Cancelling a synchronous request's job answers that request with 409.
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("huatu_jobs_cancelled_total 2"),
        "{metrics}"
    );
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let server = TestServer::start(|config| config.queue_capacity = 2);
    let long = json!({ "prompt": "slow", "size": "64x64", "steps": 150, "async": true });
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let response = server.post_json("/v1/images/generations", &long);
            assert_eq!(response.status, 202, "{}", response.text());
            response.json()["id"].as_str().unwrap().to_string()
        })
        .collect();
    let full = server.post_json("/v1/images/generations", &long);
    assert!(full.expect_error(429, "queue_full").contains("2 jobs"));
    let retry: u64 = full
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .expect("Retry-After");
    assert!(retry >= 1);
    assert!(server
        .get("/metrics")
        .text()
        .contains("huatu_jobs_rejected_total 1"));
    for id in &ids {
        let status = server.delete(&format!("/v1/jobs/{id}")).status;
        assert!(status == 200 || status == 202, "{status}");
    }
    for id in &ids {
        wait_for(server.address, id, Duration::from_secs(30), is_terminal);
    }
    // Room again.
    let response = server.post_json("/v1/images/generations", &small("again"));
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn a_graceful_restart_keeps_queued_jobs_and_runs_them() {
    let server = TestServer::start(|_| {});
    let long = json!({ "prompt": "slow", "size": "64x64", "steps": 60, "async": true });
    let ids: Vec<String> = (0..3)
        .map(|_| {
            server.post_json("/v1/images/generations", &long).json()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    wait_for(server.address, &ids[0], Duration::from_secs(30), |job| {
        job["status"] == "running"
    });
    let data = server.stop();
    let server = TestServer::start_in(data, |_| {});
    for id in &ids {
        let job = wait_for(server.address, id, Duration::from_secs(60), is_terminal);
        assert_eq!(job["status"], "succeeded", "{job}");
        // A graceful stop is not a crash: the interrupted run does not count.
        assert_eq!(job["attempts"], 1, "{job}");
    }
}
