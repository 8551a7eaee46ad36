//! The scale-out contract end to end on loopback: 2 API nodes (`huatu serve --database
//! … --no-worker`) and 3 workers (`huatu worker`) on one PostgreSQL queue and one shared
//! --data directory, the tiny model, many 1-step 64×64 jobs from 16 clients. Mid-run an
//! API node is killed (-9) while SSE clients stream from it (they reconnect to the other
//! node and see the end) and a worker is killed (-9) mid-job (its job is re-run after
//! its lease expires). Then a worker is partitioned (stopped, its connections killed)
//! mid-job: the job is re-run elsewhere and the stale worker's late outcome discarded.
//! Every accepted job ends exactly once: one recorded outcome over all worker logs, its
//! result stored, and the same seed gives the same image on any worker.
//!
//! Needs PostgreSQL: HUATU_TEST_DATABASE_URL (scripts/with_postgres.sh); skipped with a
//! note without it, failing under CI=true. HUATU_CLUSTER_JOBS sets the job count.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{follow, psql, request, signal, spawn};
use crate::{fixture, temp_dir};

const CLIENTS: usize = 16;
const SEEDS: u64 = 8;
const LEASE_SECS: &str = "3";

fn database() -> Option<String> {
    let Ok(url) = std::env::var("HUATU_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "HUATU_TEST_DATABASE_URL is not set under CI=true; run the tests through scripts/with_postgres.sh"
        );
        eprintln!("SKIPPED the cluster test: no PostgreSQL (run through scripts/with_postgres.sh)");
        return None;
    };
    let name = format!("huatu_cluster_{}", std::process::id());
    psql(&url, &format!("DROP DATABASE IF EXISTS {name}"));
    psql(&url, &format!("CREATE DATABASE {name}"));
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    Some(format!("{base}/{name}"))
}

/// Submits jobs `range` from `CLIENTS` threads, each to `nodes[index % 2]` and to the
/// other node when that one does not answer; returns (job id, seed) of those accepted.
fn submit_all(nodes: [SocketAddr; 2], range: std::ops::Range<usize>) -> Vec<(String, u64)> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, accepted) = (next.clone(), accepted.clone());
            let end = range.end;
            std::thread::spawn(move || loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= end {
                    break;
                }
                let seed = index as u64 % SEEDS;
                let body = format!(
                    r#"{{"prompt": "cluster", "size": "64x64", "steps": 1, "seed": {seed}, "async": true}}"#
                );
                let first = nodes[index % 2];
                let other = nodes[(index + 1) % 2];
                let answer = request(first, "POST", "/v1/images/generations", &body)
                    .or_else(|| request(other, "POST", "/v1/images/generations", &body));
                let (status, text) = answer.expect("neither API node answered");
                assert_eq!(status, 202, "{text}");
                let job: serde_json::Value = serde_json::from_str(&text).unwrap();
                let id = job["id"].as_str().unwrap().to_string();
                accepted.lock().unwrap().push((id, seed));
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    accepted
}

/// Polls until `check` holds (or panics after `limit`).
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `job finished` lines per job id over the worker logs: one per recorded outcome.
fn recorded_outcomes(logs: &[std::path::PathBuf]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for log in logs {
        for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
            if let Some(rest) = line.split("job finished job=").nth(1) {
                let id = rest.split_whitespace().next().unwrap_or_default();
                *counts.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    counts
}

#[test]
fn api_nodes_and_workers_on_postgres_survive_kills_and_partitions() {
    let Some(url) = database() else { return };
    let jobs: usize = std::env::var("HUATU_CLUSTER_JOBS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(500);
    let dir = temp_dir("cluster");
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let model = fixture("sdxl_tiny");
    let model = model.to_str().unwrap();
    let started = Instant::now();

    let mut workers = Vec::new();
    let mut worker_logs = Vec::new();
    for index in 0..3 {
        let log = dir.join(format!("w{index}.log"));
        let name = format!("w{index}");
        let (child, line) = spawn(
            &[
                "worker",
                "--model",
                model,
                "--database",
                &url,
                "--data",
                data,
                "--name",
                &name,
                "--lease-secs",
                LEASE_SECS,
                "--device",
                "cpu",
            ],
            &log,
        );
        assert_eq!(line, "worker ready");
        workers.push(child);
        worker_logs.push(log);
    }
    let mut api = Vec::new();
    let mut nodes = Vec::new();
    for index in 0..2 {
        let (child, line) = spawn(
            &[
                "serve",
                "--model",
                model,
                "--database",
                &url,
                "--data",
                data,
                "--listen",
                "127.0.0.1:0",
                "--no-worker",
                "--lease-secs",
                LEASE_SECS,
                "--queue-capacity",
                "100000",
            ],
            &dir.join(format!("api{index}.log")),
        );
        let address: SocketAddr = line
            .strip_prefix("listening on http://")
            .unwrap()
            .parse()
            .unwrap();
        api.push(child);
        nodes.push(address);
    }
    let nodes = [nodes[0], nodes[1]];

    // Half the jobs, then SSE clients on node 0 for the newest (still queued) ones.
    let submitted_first = Instant::now();
    let mut accepted = submit_all(nodes, 0..jobs / 2);
    let streaming = Arc::new(AtomicUsize::new(0));
    let followers: Vec<_> = accepted[accepted.len() - 8..]
        .iter()
        .map(|(id, _)| {
            let (id, streaming) = (id.clone(), streaming.clone());
            std::thread::spawn(move || {
                let first = follow(nodes[0], &id, || {
                    streaming.fetch_add(1, Ordering::SeqCst);
                })
                .expect("node 0 answered the stream");
                if first.terminal.is_some() {
                    return (false, first.terminal);
                }
                // Node 0 died mid-stream: the other node has the job too.
                let second = follow(nodes[1], &id, || {}).expect("node 1 answered the stream");
                (true, second.terminal)
            })
        })
        .collect();
    wait_until(Duration::from_secs(30), "the SSE clients", || {
        streaming.load(Ordering::SeqCst) == 8
    });
    signal(&api[0], "KILL");
    let _ = api[0].wait();

    // Worker 0 killed in the middle of a job.
    let mut killed_job = String::new();
    wait_until(Duration::from_secs(60), "a job running on w0", || {
        let running = psql(
            &url,
            "SELECT id FROM jobs WHERE worker = 'w0' AND status = 'running'",
        );
        match running.first() {
            Some(id) => {
                signal(&workers[0], "KILL");
                killed_job = id.clone();
                true
            }
            None => false,
        }
    });
    let _ = workers[0].wait();

    accepted.extend(submit_all(nodes, jobs / 2..jobs));
    let mut reconnected = 0;
    for follower in followers {
        let (broke, terminal) = follower.join().unwrap();
        reconnected += usize::from(broke);
        assert_eq!(
            terminal.as_deref(),
            Some("done"),
            "an SSE client saw the end"
        );
    }
    assert!(reconnected > 0, "no SSE stream was cut by the kill");

    wait_until(Duration::from_secs(600), "every job to end", || {
        psql(
            &url,
            "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')",
        ) == ["0"]
    });
    let bulk_seconds = submitted_first.elapsed().as_secs_f64();

    // Partition: w2 paused so that w1 takes the long job, then w1 paused and cut off.
    signal(&workers[2], "STOP");
    let (status, text) = request(
        nodes[1],
        "POST",
        "/v1/images/generations",
        r#"{"prompt": "partition", "size": "256x256", "steps": 150, "seed": 99, "async": true}"#,
    )
    .unwrap();
    assert_eq!(status, 202, "{text}");
    let long: serde_json::Value = serde_json::from_str(&text).unwrap();
    let long = long["id"].as_str().unwrap().to_string();
    wait_until(Duration::from_secs(30), "w1 to run the long job", || {
        psql(
            &url,
            &format!("SELECT worker FROM jobs WHERE id = '{long}' AND status = 'running'"),
        ) == ["w1"]
    });
    signal(&workers[2], "CONT");
    std::thread::sleep(Duration::from_millis(500));
    signal(&workers[1], "STOP");
    let partitioned = Instant::now();
    psql(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'huatu w1'",
    );
    wait_until(
        Duration::from_secs(60),
        "the long job to run again on w2",
        || {
            psql(
                &url,
                &format!(
                    "SELECT worker, attempts FROM jobs WHERE id = '{long}' AND status = 'running'"
                ),
            ) == ["w2|2"]
        },
    );
    let recovery = partitioned.elapsed().as_secs_f64();
    signal(&workers[1], "CONT");
    wait_until(
        Duration::from_secs(60),
        "w1 to discard its stale outcome",
        || {
            std::fs::read_to_string(&worker_logs[1])
                .unwrap_or_default()
                .contains(&format!("outcome is discarded job={long}"))
                || std::fs::read_to_string(&worker_logs[1])
                    .unwrap_or_default()
                    .lines()
                    .any(|line| line.contains("outcome is discarded") && line.contains(&long))
        },
    );
    wait_until(Duration::from_secs(300), "the long job to end", || {
        psql(
            &url,
            &format!("SELECT status FROM jobs WHERE id = '{long}'"),
        ) == ["succeeded"]
    });

    // Every accepted job: one recorded outcome, succeeded, result stored, and the same
    // seed the same image wherever it ran.
    let rows: HashMap<String, (String, u32, String)> =
        psql(&url, "SELECT id, status, attempts, images FROM jobs")
            .into_iter()
            .map(|line| {
                let fields: Vec<&str> = line.splitn(4, '|').collect();
                let attempts = fields[2].parse().unwrap();
                (
                    fields[0].to_string(),
                    (fields[1].to_string(), attempts, fields[3].to_string()),
                )
            })
            .collect();
    let outcomes = recorded_outcomes(&worker_logs);
    let mut image_of_seed: HashMap<u64, String> = HashMap::new();
    let ids: HashSet<&str> = accepted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), jobs, "every submission was accepted once");
    for (id, seed) in &accepted {
        let (status, attempts, images) = &rows[id];
        assert_eq!(status, "succeeded", "{id}");
        let recorded = outcomes.get(id).copied().unwrap_or(0);
        if id == &killed_job {
            // Its outcome may have been committed in the instant before the kill took
            // the worker's log line with it; the row (succeeded, below) is the record.
            assert!(recorded <= 1, "{id} recorded {recorded} times");
        } else {
            assert_eq!(recorded, 1, "{id} recorded once: {outcomes:?}");
        }
        let images: Vec<String> = serde_json::from_str(images).unwrap();
        assert_eq!(images.len(), 1, "{id}");
        let blob = std::path::Path::new(data)
            .join("blobs")
            .join(&images[0][..2])
            .join(&images[0]);
        let bytes = std::fs::read(&blob).unwrap_or_else(|error| panic!("{id}: {error}"));
        assert!(bytes.starts_with(b"\x89PNG"), "{id}");
        let first = image_of_seed
            .entry(*seed)
            .or_insert_with(|| images[0].clone());
        assert_eq!(
            first, &images[0],
            "seed {seed} gave another image on another worker"
        );
        if id == &killed_job {
            // Run again after its lease expired — unless it ended in the instant between
            // the look and the kill (one attempt, no second run).
            let finished_before = recorded_outcomes(&worker_logs[..1]).contains_key(id)
                || (*attempts == 1 && recorded == 0);
            assert!(
                *attempts == 2 || finished_before,
                "the killed worker's job ran again"
            );
        }
    }
    assert_eq!(
        outcomes.get(&long),
        Some(&1),
        "the partitioned job recorded once"
    );
    assert_eq!(rows[&long].1, 2);
    let metrics = request(nodes[1], "GET", "/metrics", "").unwrap().1;
    let expiries = metrics
        .lines()
        .find_map(|line| line.strip_prefix("huatu_lease_expiries_total "))
        .unwrap_or_default();
    assert!(expiries.parse::<u64>().unwrap_or(0) >= 2, "{metrics}");
    eprintln!(
        "cluster: {jobs} jobs from {CLIENTS} clients in {bulk_seconds:.1}s ({:.1} jobs/s with 3 then 2 workers); lease {LEASE_SECS}s, partition → re-run elsewhere in {recovery:.1}s; whole test {:.1}s",
        jobs as f64 / bulk_seconds,
        started.elapsed().as_secs_f64()
    );
    for mut child in workers.into_iter().chain(api) {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
