//! Soak: many mixed requests — valid (sync and async), invalid, cancelled, SSE followers,
//! unknown ids — from 32 loopback clients against the real binary on the tiny model.
//! Nothing accepted is lost (every accepted job ends), and the server's resident memory,
//! open file descriptors and event channels are flat afterwards.
//!
//! CI runs 400 requests; `HUATU_SOAK_REQUESTS=2000 cargo test --release -p huatu-server
//! --test server soak -- --nocapture` is the full run (figures on stderr).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

const CLIENTS: usize = 32;

struct ServerProcess {
    child: std::process::Child,
    address: SocketAddr,
    _data: tempfile::TempDir,
}

impl ServerProcess {
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let (child, address) =
            spawn_server_binary(data.path(), &["--queue-capacity", "48"], "error");
        Self {
            child,
            address,
            _data: data,
        }
    }

    /// (resident KiB, open descriptors) of the server process.
    fn footprint(&self) -> (u64, usize) {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let rss = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        (rss, fds)
    }

    fn gauge(&self, name: &str) -> f64 {
        let text = request(self.address, "GET", "/metrics", &[], b"").text();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no gauge {name} in /metrics"))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the clients saw: accepted job ids and answers by kind and status.
#[derive(Default)]
struct Tally {
    accepted: Vec<String>,
    answers: BTreeMap<String, usize>,
    /// 429s answered and retried.
    retries: AtomicUsize,
}

/// Posts a generation; a 429 (queue full) is retried after a pause, as a well-behaved
/// client honouring Retry-After does (shortened here), so every valid request ends up
/// accepted. Retries are counted.
fn post_generation(
    address: SocketAddr,
    body: &serde_json::Value,
    retries: &AtomicUsize,
) -> Response {
    for attempt in 1.. {
        let response = request(
            address,
            "POST",
            "/v1/images/generations",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        if response.status != 429 || attempt == 2000 {
            return response;
        }
        assert!(
            response.header("retry-after").is_some(),
            "429 without Retry-After"
        );
        retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
    }
    unreachable!("the loop returns")
}

/// The job id of a 202 answer.
fn accepted_id(response: &Response) -> Option<String> {
    (response.status == 202)
        .then(|| response.json()["id"].as_str().map(String::from))
        .flatten()
}

/// One request of kind `index % 10`.
fn one_request(
    address: SocketAddr,
    index: usize,
    tally: &Mutex<Tally>,
    tally_retries: &AtomicUsize,
) {
    let small_async = json!({
        "prompt": format!("soak {index}"), "size": "64x64", "steps": 2,
        "seed": index, "async": true
    });
    let (kind, status, id) = match index % 10 {
        0..=3 => {
            let response = post_generation(address, &small_async, tally_retries);
            ("async", response.status, accepted_id(&response))
        }
        4 => {
            let body = json!({ "prompt": "sync", "size": "64x64", "steps": 2, "seed": index });
            // A synchronous answer carries the images, not the job.
            (
                "sync",
                post_generation(address, &body, tally_retries).status,
                None,
            )
        }
        5 => {
            let body = json!({ "prompt": "bad size", "size": "65x64", "steps": 2 });
            (
                "invalid-size",
                post_generation(address, &body, tally_retries).status,
                None,
            )
        }
        6 => {
            let response = request(
                address,
                "POST",
                "/v1/images/generations",
                &[("Content-Type", "application/json")],
                b"{\"prompt\": ",
            );
            ("invalid-json", response.status, None)
        }
        7 => {
            let response = post_generation(address, &small_async, tally_retries);
            let id = accepted_id(&response);
            if let Some(job) = &id {
                let cancel = request(address, "DELETE", &format!("/v1/jobs/{job}"), &[], b"");
                assert!(
                    matches!(cancel.status, 200 | 202 | 409),
                    "cancel answered {}: {}",
                    cancel.status,
                    cancel.text()
                );
            }
            ("cancelled", response.status, id)
        }
        8 => {
            let response = post_generation(address, &small_async, tally_retries);
            let id = accepted_id(&response);
            if let Some(job) = &id {
                let events = sse_events(address, job, &[]);
                let (last, _) = events
                    .last()
                    .unwrap_or_else(|| panic!("no events for {job}"));
                assert!(
                    matches!(last.as_str(), "done" | "failed" | "cancelled"),
                    "SSE for {job} ended with `{last}`"
                );
            }
            ("sse", response.status, id)
        }
        _ => {
            let unknown = format!("/v1/jobs/job_{index:024x}/events");
            let response = request(address, "GET", &unknown, &[], b"");
            ("unknown-sse", response.status, None)
        }
    };
    let mut tally = tally.lock().unwrap();
    *tally.answers.entry(format!("{kind} {status}")).or_default() += 1;
    tally.accepted.extend(id);
}

/// Sends `total` requests from `CLIENTS` threads; returns what they saw.
fn run_mix(address: SocketAddr, total: usize) -> Tally {
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let retries = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, tally, retries) = (next.clone(), tally.clone(), retries.clone());
            std::thread::spawn(move || loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= total {
                    break;
                }
                one_request(address, index, &tally, &retries);
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let tally = Arc::try_unwrap(tally)
        .ok()
        .map(|tally| tally.into_inner().unwrap())
        .unwrap();
    tally
        .retries
        .store(retries.load(Ordering::SeqCst), Ordering::SeqCst);
    tally
}

fn settle(address: SocketAddr, ids: &[String]) -> BTreeMap<String, usize> {
    let mut ends = BTreeMap::new();
    for id in ids {
        let job = wait_for(address, id, Duration::from_secs(300), is_terminal);
        *ends
            .entry(job["status"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    ends
}

#[test]
fn mixed_load_loses_nothing_and_leaves_memory_and_descriptors_flat() {
    let total: usize = std::env::var("HUATU_SOAK_REQUESTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(400);
    let server = ServerProcess::start();
    // A warm-up of every kind first, so pools, caches and the model's buffers exist.
    let warm = run_mix(server.address, 100);
    settle(server.address, &warm.accepted);
    std::thread::sleep(Duration::from_millis(300));
    let (rss_before, fds_before) = server.footprint();

    let started = Instant::now();
    let tally = run_mix(server.address, total);
    let sent_in = started.elapsed();
    let ends = settle(server.address, &tally.accepted);
    std::thread::sleep(Duration::from_millis(300));
    let (rss_after, fds_after) = server.footprint();
    let channels = server.gauge("huatu_event_channels");

    eprintln!(
        "soak: {total} requests from {CLIENTS} clients in {:.1}s; answers {:?} \
         ({} queue-full answers retried); \
         {} accepted jobs ended {:?}; RSS {} → {} KiB; descriptors {} → {}; \
         event channels {}",
        sent_in.as_secs_f64(),
        tally.answers,
        tally.retries.load(Ordering::SeqCst),
        tally.accepted.len(),
        ends,
        rss_before,
        rss_after,
        fds_before,
        fds_after,
        channels
    );
    // Nothing lost: every accepted job ended, each in a state that fits how it was used.
    assert_eq!(ends.values().sum::<usize>(), tally.accepted.len());
    assert_eq!(ends.get("failed"), None, "jobs failed: {ends:?}");
    // Every answer is one the API documents for that kind of request.
    for (answer, count) in &tally.answers {
        let (kind, status) = answer.split_once(' ').unwrap();
        let fine = match kind {
            "async" | "cancelled" | "sse" => status == "202",
            "sync" => status == "200",
            "invalid-size" | "invalid-json" => status == "400",
            _ => status == "404",
        };
        assert!(fine, "{count} × {answer}");
    }
    // Flat: no descriptor, channel or unbounded memory left behind by the run.
    assert_eq!(channels, 0.0, "event channels left open");
    assert!(
        fds_after <= fds_before + 2,
        "descriptors {fds_before} → {fds_after}"
    );
    assert!(
        rss_after <= rss_before + 64 * 1024,
        "resident memory grew {rss_before} → {rss_after} KiB"
    );
}
