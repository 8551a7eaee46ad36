//! The real binary, killed (SIGKILL) mid-queue and started again over the same data.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

/// The real binary, killed (SIGKILL) mid-queue and started again over the same data.
struct Process {
    child: std::process::Child,
    address: std::net::SocketAddr,
}

impl Process {
    fn start(data: &std::path::Path) -> Self {
        let (child, address) = spawn_server_binary(data, &[], "warn");
        Self { child, address }
    }

    fn submit(&self, steps: u64) -> String {
        let body = json!({ "prompt": "durable", "size": "64x64", "steps": steps, "async": true })
            .to_string();
        let response = request(
            self.address,
            "POST",
            "/v1/images/generations",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(response.status, 202, "{}", response.text());
        response.json()["id"].as_str().unwrap().to_string()
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn running_with_steps(job: &serde_json::Value) -> bool {
    job["status"] == "running" && job["progress"]["step"].as_u64().unwrap_or(0) >= 1
}

#[test]
fn a_killed_server_loses_no_job_and_retries_an_interrupted_one_once() {
    let data = tempfile::tempdir().unwrap();
    let limit = Duration::from_secs(90);

    // Killed mid-queue: every accepted job completes after the restart.
    let server = Process::start(data.path());
    // The first job is long enough that the kill lands while it runs (a 40-step job on
    // the tiny model could finish between the poll and the kill).
    let ids: Vec<String> = (0..4)
        .map(|index| server.submit(if index == 0 { 150 } else { 40 }))
        .collect();
    wait_for(server.address, &ids[0], limit, running_with_steps);
    server.kill();
    let server = Process::start(data.path());
    for (index, id) in ids.iter().enumerate() {
        let job = wait_for(server.address, id, limit, is_terminal);
        assert_eq!(job["status"], "succeeded", "{job}");
        let expected_attempts = if index == 0 { 2 } else { 1 };
        assert_eq!(job["attempts"], expected_attempts, "{job}");
    }

    // Killed twice while the same job runs: it fails with the reason, the rest run.
    let doomed = server.submit(150);
    let after = server.submit(2);
    wait_for(server.address, &doomed, limit, running_with_steps);
    server.kill();
    let server = Process::start(data.path());
    wait_for(server.address, &doomed, limit, |job| {
        running_with_steps(job) && job["attempts"] == 2
    });
    server.kill();
    let server = Process::start(data.path());
    let job = wait_for(server.address, &doomed, limit, is_terminal);
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap_or_default().contains("twice"),
        "{job}"
    );
    let events = sse_events(server.address, &doomed, &[]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "failed");
    let job = wait_for(server.address, &after, limit, is_terminal);
    assert_eq!(job["status"], "succeeded", "{job}");
    let all = request(server.address, "GET", "/v1/jobs?limit=200", &[], b"").json();
    assert_eq!(
        all["data"].as_array().map(Vec::len),
        Some(6),
        "no job vanished"
    );
    server.kill();
}
