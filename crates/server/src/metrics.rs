//! Counters for `/metrics` in the Prometheus text format (version 0.0.4): plain atomics,
//! no registry crate.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::job_queue::Counts;

/// Upper bounds (seconds) of the request-latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
pub struct Metrics {
    requests_2xx: AtomicU64,
    requests_4xx: AtomicU64,
    requests_5xx: AtomicU64,
    requests_other: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    pub jobs_submitted: AtomicU64,
    pub jobs_rejected_full: AtomicU64,
    pub jobs_succeeded: AtomicU64,
    pub jobs_failed: AtomicU64,
    pub jobs_cancelled: AtomicU64,
    pub job_run_micros: AtomicU64,
    pub steps: AtomicU64,
    pub images: AtomicU64,
    /// Finished jobs deleted by retention (`--keep-results`, `--max-store-gib`).
    pub jobs_evicted: AtomicU64,
    /// Blobs deleted: evicted jobs' inputs and results, results of jobs that did not succeed.
    pub blobs_removed: AtomicU64,
    /// Bytes in the blob store at the last retention sweep.
    pub store_bytes: AtomicU64,
    /// Expired leases this node re-queued or failed (shared queue).
    pub lease_expiries: AtomicU64,
    /// Outcomes of this node's workers discarded because their lease was lost.
    pub stale_results_discarded: AtomicU64,
}

impl Metrics {
    pub fn record_blobs_removed(&self, files: u64) {
        self.blobs_removed.fetch_add(files, Ordering::Relaxed);
    }

    pub fn record_request(&self, status: u16, seconds: f64) {
        let counter = match status {
            200..=299 => &self.requests_2xx,
            400..=499 => &self.requests_4xx,
            500..=599 => &self.requests_5xx,
            _ => &self.requests_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The exposition text; `counts` are the queue's jobs by status now.
    pub fn render(&self, counts: Counts, model_loaded: bool) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# HELP huatu_http_requests_total HTTP requests answered, by status class."
        );
        let _ = writeln!(text, "# TYPE huatu_http_requests_total counter");
        for (class, counter) in [
            ("2xx", &self.requests_2xx),
            ("4xx", &self.requests_4xx),
            ("5xx", &self.requests_5xx),
            ("other", &self.requests_other),
        ] {
            let _ = writeln!(
                text,
                "huatu_http_requests_total{{class=\"{class}\"}} {}",
                load(counter)
            );
        }
        let _ = writeln!(text, "# HELP huatu_http_request_duration_seconds Time to answer a request (streams: to the first byte).");
        let _ = writeln!(text, "# TYPE huatu_http_request_duration_seconds histogram");
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                text,
                "huatu_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                load(bucket)
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(
            text,
            "huatu_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            text,
            "huatu_http_request_duration_seconds_sum {}",
            load(&self.latency_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(text, "huatu_http_request_duration_seconds_count {count}");

        let _ = writeln!(
            text,
            "# HELP huatu_jobs Jobs in the queue database, by status."
        );
        let _ = writeln!(text, "# TYPE huatu_jobs gauge");
        for (status, value) in [
            ("queued", counts.queued),
            ("running", counts.running),
            ("succeeded", counts.succeeded),
            ("failed", counts.failed),
            ("cancelled", counts.cancelled),
        ] {
            let _ = writeln!(text, "huatu_jobs{{status=\"{status}\"}} {value}");
        }
        let counters = [
            (
                "huatu_jobs_submitted_total",
                "Jobs accepted since start.",
                load(&self.jobs_submitted),
            ),
            (
                "huatu_jobs_rejected_total",
                "Jobs refused with 429 (queue full) since start.",
                load(&self.jobs_rejected_full),
            ),
            (
                "huatu_jobs_succeeded_total",
                "Jobs finished since start.",
                load(&self.jobs_succeeded),
            ),
            (
                "huatu_jobs_failed_total",
                "Jobs failed since start.",
                load(&self.jobs_failed),
            ),
            (
                "huatu_jobs_cancelled_total",
                "Jobs cancelled since start.",
                load(&self.jobs_cancelled),
            ),
            (
                "huatu_denoising_steps_total",
                "Denoising steps run since start.",
                load(&self.steps),
            ),
            (
                "huatu_images_total",
                "Images made since start.",
                load(&self.images),
            ),
            (
                "huatu_jobs_evicted_total",
                "Finished jobs deleted by retention since start.",
                load(&self.jobs_evicted),
            ),
            (
                "huatu_blobs_removed_total",
                "Stored inputs and results deleted since start.",
                load(&self.blobs_removed),
            ),
            (
                "huatu_node_lease_expiries_total",
                "Expired leases this node re-queued or failed since start (shared queue).",
                load(&self.lease_expiries),
            ),
            (
                "huatu_stale_results_discarded_total",
                "Outcomes of this node's workers discarded since start: their lease was lost.",
                load(&self.stale_results_discarded),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(text, "# HELP {name} {help}");
            let _ = writeln!(text, "# TYPE {name} counter");
            let _ = writeln!(text, "{name} {value}");
        }
        let _ = writeln!(
            text,
            "# HELP huatu_job_run_seconds_total Time workers spent running jobs."
        );
        let _ = writeln!(text, "# TYPE huatu_job_run_seconds_total counter");
        let _ = writeln!(
            text,
            "huatu_job_run_seconds_total {}",
            load(&self.job_run_micros) as f64 / 1e6
        );
        let _ = writeln!(
            text,
            "# HELP huatu_blob_store_bytes Bytes of stored inputs and results at the last retention sweep."
        );
        let _ = writeln!(text, "# TYPE huatu_blob_store_bytes gauge");
        let _ = writeln!(text, "huatu_blob_store_bytes {}", load(&self.store_bytes));
        let _ = writeln!(
            text,
            "# HELP huatu_model_loaded Whether a model is loaded (1) or not (0)."
        );
        let _ = writeln!(text, "# TYPE huatu_model_loaded gauge");
        let _ = writeln!(text, "huatu_model_loaded {}", u8::from(model_loaded));
        text
    }

    /// Mean seconds per finished job so far (for Retry-After), if any finished.
    pub fn mean_job_seconds(&self) -> Option<f64> {
        let finished =
            self.jobs_succeeded.load(Ordering::Relaxed) + self.jobs_failed.load(Ordering::Relaxed);
        (finished > 0)
            .then(|| self.job_run_micros.load(Ordering::Relaxed) as f64 / 1e6 / finished as f64)
    }
}

/// A shared queue's view over all nodes: lease expiries, and per worker its liveness and
/// throughput (jobs finished in the last minute, and in all by outcome).
pub fn render_cluster(
    text: &mut String,
    lease_expiries: u64,
    workers: &[crate::job_queue::WorkerRecord],
) {
    let _ = writeln!(
        text,
        "# HELP huatu_lease_expiries_total Leases that expired, over all nodes (jobs re-queued or failed because their worker stopped answering)."
    );
    let _ = writeln!(text, "# TYPE huatu_lease_expiries_total counter");
    let _ = writeln!(text, "huatu_lease_expiries_total {lease_expiries}");
    let _ = writeln!(
        text,
        "# HELP huatu_worker_last_seen_seconds Seconds since each worker's last heartbeat."
    );
    let _ = writeln!(text, "# TYPE huatu_worker_last_seen_seconds gauge");
    for worker in workers {
        let _ = writeln!(
            text,
            "huatu_worker_last_seen_seconds{{worker=\"{}\"}} {:.3}",
            worker.name, worker.silent_seconds
        );
    }
    let _ = writeln!(
        text,
        "# HELP huatu_worker_jobs_last_minute Jobs each worker finished in the last minute (throughput)."
    );
    let _ = writeln!(text, "# TYPE huatu_worker_jobs_last_minute gauge");
    for worker in workers {
        let _ = writeln!(
            text,
            "huatu_worker_jobs_last_minute{{worker=\"{}\"}} {}",
            worker.name, worker.finished_last_minute
        );
    }
    let _ = writeln!(
        text,
        "# HELP huatu_worker_jobs Jobs each worker ended, by outcome (kept jobs)."
    );
    let _ = writeln!(text, "# TYPE huatu_worker_jobs gauge");
    for worker in workers {
        for (outcome, value) in [("succeeded", worker.succeeded), ("failed", worker.failed)] {
            let _ = writeln!(
                text,
                "huatu_worker_jobs{{worker=\"{}\",outcome=\"{outcome}\"}} {value}",
                worker.name
            );
        }
    }
}
