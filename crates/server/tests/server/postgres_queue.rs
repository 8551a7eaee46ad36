//! The PostgreSQL queue against a real server (scripts/with_postgres.sh): exclusive
//! claims under concurrency (each job once, counted by id), leases that expire into one
//! retry and then a failure with the reason, a stale worker's result discarded,
//! capabilities, cancels through the row, versioned migrations, and the queue's own
//! throughput beside SQLite (no-op jobs: claim + record).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use huatu_server::job_queue::postgres::POSTGRES_VERSION;
use huatu_server::job_queue::{
    JobQueue, Lease, LeaseState, SqliteQueue, WorkerIdentity, LEASE_EXPIRED_TWICE,
};
use huatu_server::jobs::JobStatus;

use crate::common::postgres::{fresh_database, generation, queue, sql};

fn worker(name: &str, capabilities: &[&str]) -> WorkerIdentity {
    WorkerIdentity {
        name: name.into(),
        capabilities: capabilities.iter().map(|label| label.to_string()).collect(),
    }
}

fn lease_of(job: &huatu_server::jobs::Job, worker: &WorkerIdentity) -> Lease {
    Lease {
        job: job.id.clone(),
        attempt: job.attempts,
        worker: worker.name.clone(),
    }
}

fn submit(queue: &dyn JobQueue, id: &str, loras: &[&str]) {
    queue
        .submit(id, &generation(0, loras), 100_000)
        .unwrap_or_else(|error| panic!("{error:?}"));
}

fn job_id(index: usize) -> String {
    format!("job_{index:024x}")
}

/// `workers` threads, each with its own queue handle, claim and record no-op jobs until
/// none is left; returns (jobs/s, claim latencies) and checks each job ran once.
fn drain(
    queues: Vec<Arc<dyn JobQueue>>,
    jobs: usize,
) -> (f64, Vec<Duration>, HashMap<String, usize>) {
    let started = Instant::now();
    let threads: Vec<_> = queues
        .into_iter()
        .enumerate()
        .map(|(index, queue)| {
            std::thread::spawn(move || {
                let me = worker(&format!("bench-{index}"), &[]);
                let mut claims = Vec::new();
                let mut ran = Vec::new();
                loop {
                    let asked = Instant::now();
                    let Some(job) = queue.claim(&me).unwrap() else {
                        break;
                    };
                    claims.push(asked.elapsed());
                    let recorded = queue.succeed(&lease_of(&job, &me), &[]).unwrap();
                    assert_eq!(recorded, Some(JobStatus::Succeeded));
                    ran.push(job.id);
                }
                (claims, ran)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut runs: HashMap<String, usize> = HashMap::new();
    for thread in threads {
        let (claims, ran) = thread.join().unwrap();
        latencies.extend(claims);
        for id in ran {
            *runs.entry(id).or_default() += 1;
        }
    }
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies, runs)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

#[test]
fn concurrent_workers_claim_each_job_exactly_once_and_the_queue_rate_is_measured() {
    let Some(url) = fresh_database("claims") else {
        return;
    };
    const JOBS: usize = 400;
    let mut figures = Vec::new();
    for workers in [1, 2, 4] {
        let first = Arc::new(queue(&url, Duration::from_secs(30)));
        for index in 0..JOBS {
            submit(first.as_ref(), &job_id(workers * 100_000 + index), &[]);
        }
        let mut queues: Vec<Arc<dyn JobQueue>> = vec![first];
        for _ in 1..workers {
            queues.push(Arc::new(queue(&url, Duration::from_secs(30))));
        }
        let (rate, latencies, runs) = drain(queues, JOBS);
        assert_eq!(runs.len(), JOBS, "every job ran");
        assert!(runs.values().all(|&count| count == 1), "no job ran twice");
        figures.push(format!(
            "postgres {workers} workers: {rate:.0} jobs/s, claim p50 {:?} p99 {:?}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn JobQueue> =
        Arc::new(SqliteQueue::open(&dir.path().join("jobs.sqlite3")).unwrap());
    for workers in [1, 2, 4] {
        for index in 0..JOBS {
            submit(sqlite.as_ref(), &job_id(workers * 100_000 + index), &[]);
        }
        let (rate, latencies, runs) = drain(vec![sqlite.clone(); workers], JOBS);
        assert_eq!(runs.len(), JOBS);
        assert!(runs.values().all(|&count| count == 1));
        figures.push(format!(
            "sqlite   {workers} workers: {rate:.0} jobs/s, claim p50 {:?} p99 {:?}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        ));
    }
    eprintln!("queue throughput (no-op jobs):\n  {}", figures.join("\n  "));
}

#[test]
fn an_expired_lease_is_retried_once_then_failed_and_the_stale_result_is_discarded() {
    let Some(url) = fresh_database("leases") else {
        return;
    };
    let lease = Duration::from_millis(600);
    let queue = queue(&url, lease);
    let (first, second) = (worker("first", &[]), worker("second", &[]));
    submit(&queue, &job_id(1), &[]);
    let job = queue.claim(&first).unwrap().unwrap();
    assert_eq!(job.attempts, 1);
    let stale = lease_of(&job, &first);
    // Renewed: not expired while heartbeats come.
    for _ in 0..4 {
        std::thread::sleep(lease / 3);
        let states = queue
            .heartbeat(&first, std::slice::from_ref(&stale))
            .unwrap();
        assert_eq!(
            states,
            vec![LeaseState::Held {
                cancel_requested: false
            }]
        );
        assert!(queue.expire_leases().unwrap().is_empty());
    }
    // The first worker goes silent: after the lease the job is queued again.
    std::thread::sleep(lease + Duration::from_millis(200));
    let expired = queue.expire_leases().unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].status, JobStatus::Queued);
    let again = queue.claim(&second).unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (job.id.as_str(), 2));
    // The first worker comes back with a result: discarded, and its lease is lost.
    assert_eq!(queue.succeed(&stale, &["a".repeat(64)]).unwrap(), None);
    assert_eq!(queue.fail(&stale, "late").unwrap(), None);
    assert_eq!(
        queue
            .heartbeat(&first, std::slice::from_ref(&stale))
            .unwrap(),
        vec![LeaseState::Lost]
    );
    assert_eq!(
        queue.get(&job.id).unwrap().unwrap().status,
        JobStatus::Running
    );
    // The second attempt's worker goes silent too: failed with the reason.
    std::thread::sleep(lease + Duration::from_millis(200));
    let expired = queue.expire_leases().unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].status, JobStatus::Failed);
    let failed = queue.get(&job.id).unwrap().unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some(LEASE_EXPIRED_TWICE));
    assert_eq!(
        queue.succeed(&lease_of(&again, &second), &[]).unwrap(),
        None
    );
    assert_eq!(queue.lease_expiries().unwrap(), 2);
    assert!(queue.claim(&second).unwrap().is_none());
}

#[test]
fn a_worker_claims_only_jobs_it_can_run() {
    let Some(url) = fresh_database("needs") else {
        return;
    };
    let queue = queue(&url, Duration::from_secs(30));
    submit(&queue, &job_id(1), &["poster"]);
    submit(&queue, &job_id(2), &[]);
    let plain = worker("plain", &["controlnet"]);
    let with_lora = worker("with-lora", &["lora:poster"]);
    // The plain worker skips the older job it cannot run.
    assert_eq!(queue.claim(&plain).unwrap().unwrap().id, job_id(2));
    assert!(queue.claim(&plain).unwrap().is_none());
    assert_eq!(queue.claim(&with_lora).unwrap().unwrap().id, job_id(1));
}

#[test]
fn a_cancel_from_any_node_reaches_the_worker_and_wins_over_its_result() {
    let Some(url) = fresh_database("cancel") else {
        return;
    };
    let worker_side = queue(&url, Duration::from_secs(30));
    let api_side = queue(&url, Duration::from_secs(30));
    let me = worker("w", &[]);
    submit(&api_side, &job_id(1), &[]);
    submit(&api_side, &job_id(2), &[]);
    assert!(api_side.cancel_queued(&job_id(2)).unwrap());
    assert!(!api_side.request_cancel(&job_id(2)).unwrap(), "not running");
    let job = worker_side.claim(&me).unwrap().unwrap();
    let lease = lease_of(&job, &me);
    assert!(api_side.request_cancel(&job.id).unwrap());
    assert_eq!(
        worker_side
            .heartbeat(&me, std::slice::from_ref(&lease))
            .unwrap(),
        vec![LeaseState::Held {
            cancel_requested: true
        }]
    );
    // The worker finished anyway: the accepted cancel wins, no result is kept.
    let recorded = worker_side.succeed(&lease, &["b".repeat(64)]).unwrap();
    assert_eq!(recorded, Some(JobStatus::Cancelled));
    let job = api_side.get(&job.id).unwrap().unwrap();
    assert!(job.images.is_empty());
    assert!(!api_side.is_referenced(&"b".repeat(64)).unwrap());
    assert!(!api_side.request_cancel(&job.id).unwrap(), "already ended");
}

#[test]
fn an_older_layout_is_upgraded_and_a_newer_one_refused() {
    let Some(url) = fresh_database("layout") else {
        return;
    };
    // A database a layout-1 huatu made, with a finished job in it.
    sql(
        &url,
        &format!(
            "CREATE TABLE huatu_schema (version INTEGER NOT NULL); INSERT INTO huatu_schema VALUES (1); {}
             INSERT INTO jobs (id, kind, spec, spec_version, status, created_at) VALUES ('{}', 'generation', '{}', 1, 'succeeded', 1.0);",
            huatu_server::job_queue::postgres::MIGRATIONS[0],
            job_id(7),
            serde_json::to_string(&generation(3, &[])).unwrap()
        ),
    );
    let queue = queue(&url, Duration::from_secs(30));
    assert_eq!(
        queue.get(&job_id(7)).unwrap().unwrap().status,
        JobStatus::Succeeded
    );
    assert_eq!(
        queue.lease_expiries().unwrap(),
        0,
        "layout 2's counters exist"
    );
    queue.heartbeat(&worker("w", &["instruct"]), &[]).unwrap();
    assert_eq!(queue.workers().unwrap().len(), 1);
    drop(queue);
    // Opening again changes nothing; a newer layout is refused with what to do.
    drop(crate::common::postgres::queue(
        &url,
        Duration::from_secs(30),
    ));
    sql(&url, "UPDATE huatu_schema SET version = 99");
    let error = huatu_server::job_queue::postgres::PgQueue::connect(&url)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        error.contains(&format!(
            "layout version 99, newer than this huatu reads ({POSTGRES_VERSION})"
        )),
        "{error}"
    );
}

#[test]
fn connections_use_tls_when_the_server_offers_it() {
    let Some(url) = fresh_database("tls") else {
        return;
    };
    let offered = sql(&url, "SHOW ssl");
    let offered = offered.iter().any(|message| {
        matches!(message, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("on"))
    });
    if !offered {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "scripts/with_postgres.sh offers TLS under CI (is openssl installed?)"
        );
        eprintln!("SKIPPED the TLS check: this PostgreSQL does not offer TLS");
        return;
    }
    // `require` refuses plain text; the certificate is checked against $PGSSLROOTCERT.
    let queue = huatu_server::job_queue::postgres::PgQueue::connect_with(
        &format!("{url}?sslmode=require"),
        Duration::from_secs(30),
        "huatu-tls-test",
    )
    .unwrap();
    queue.counts().unwrap();
    let encrypted = sql(
        &url,
        "SELECT COUNT(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
         WHERE application_name = 'huatu-tls-test' AND ssl",
    );
    let count = encrypted.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(String::from),
        _ => None,
    });
    assert_ne!(
        count.as_deref(),
        Some("0"),
        "the queue's connections are encrypted"
    );
    assert!(count.is_some());
}
