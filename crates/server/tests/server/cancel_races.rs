//! Cancel races settle one way (see `CancelRequests`): a cancel answered 202 always ends
//! `cancelled` — never `succeeded`, even when the job had made its images, and never back
//! in the queue when the server is stopping; a cancel that comes after the job ended is
//! a 409 naming how it ended.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(120);

fn submit(server: &TestServer, size: &str, steps: u64, seed: u64) -> String {
    let response = server.post_json(
        "/v1/images/generations",
        &json!({ "prompt": "race", "size": size, "steps": steps, "seed": seed, "async": true }),
    );
    assert_eq!(response.status, 202, "{}", response.text());
    response.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn a_cancel_answered_202_always_ends_cancelled() {
    let server = TestServer::start(|_| {});
    // How long a 3-step job runs here, to aim cancels around its end.
    let started = std::time::Instant::now();
    let probe = submit(&server, "64x64", 3, 0);
    wait_for(server.address, &probe, LIMIT, is_terminal);
    let run = started.elapsed();

    let (mut accepted, mut refused) = (0, 0);
    for round in 0..24u64 {
        let id = submit(&server, "64x64", 3, round);
        wait_for(server.address, &id, LIMIT, |job| job["status"] != "queued");
        // From at once to well past the end of the run.
        std::thread::sleep(run.mul_f64(round as f64 / 8.0));
        let response = server.delete(&format!("/v1/jobs/{id}"));
        let job = wait_for(server.address, &id, LIMIT, is_terminal);
        match response.status {
            202 => {
                accepted += 1;
                assert_eq!(job["status"], "cancelled", "a 202 cancel ended {job}");
                assert!(job["images"].as_array().is_some_and(Vec::is_empty), "{job}");
                let events = sse_events(server.address, &id, &[]);
                assert_eq!(
                    events.last().map(|(name, _)| name.as_str()),
                    Some("cancelled")
                );
            }
            409 => {
                refused += 1;
                let message = response.expect_error(409, "conflict");
                assert!(
                    message.contains(job["status"].as_str().unwrap()),
                    "{message}"
                );
                assert_ne!(job["status"], "cancelled", "{job}");
            }
            // Cancelled while still queued.
            200 => assert_eq!(job["status"], "cancelled", "{job}"),
            other => panic!("cancel answered {other}: {}", response.text()),
        }
    }
    eprintln!("run {run:?}: {accepted} cancels accepted, {refused} refused after the end");
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
    // Results of cancelled jobs are not kept: only succeeded jobs' images are stored.
    let jobs = server.get("/v1/jobs?limit=200").json();
    let kept: usize = jobs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["images"].as_array().map_or(0, Vec::len))
        .sum();
    let stored = std::fs::read_dir(server.data.path().join("blobs"))
        .unwrap()
        .flatten()
        .filter(|shard| shard.file_name() != "tmp")
        .map(|shard| std::fs::read_dir(shard.path()).unwrap().count())
        .sum::<usize>();
    assert_eq!(stored, kept);
}

#[test]
fn a_cancel_during_shutdown_does_not_put_the_job_back_in_the_queue() {
    let server = TestServer::start(|_| {});
    let id = submit(&server, "256x256", 150, 1);
    let waiting = submit(&server, "64x64", 2, 2);
    wait_for(server.address, &id, LIMIT, |job| {
        job["status"] == "running" && job["progress"]["step"].as_u64().unwrap_or(0) >= 1
    });
    // The cancel and the stop reach the worker at its next step together.
    let response = server.delete(&format!("/v1/jobs/{id}"));
    assert_eq!(response.status, 202, "{}", response.text());
    let data = server.stop();

    let server = TestServer::start_in(data, |_| {});
    let job = server.get(&format!("/v1/jobs/{id}")).json();
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
    // The job that was only waiting was put back and runs; the cancelled one never again.
    let other = wait_for(server.address, &waiting, LIMIT, is_terminal);
    assert_eq!(other["status"], "succeeded", "{other}");
    let job = server.get(&format!("/v1/jobs/{id}")).json();
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(job["attempts"], 1, "{job}");
}
