//! Retention: what keeps the data directory from growing forever. A sweep, once at start
//! and then every `retention_interval`:
//! 1. deletes blobs no job references (uploads of refused requests or of an older
//!    version, results of jobs that did not succeed, leftovers of a crash);
//! 2. evicts finished jobs (succeeded, failed, cancelled) older than `--keep-results`;
//! 3. while the blob store is over `--max-store-gib`, evicts the earliest finished jobs.
//!
//! An evicted job's row is deleted (`GET /v1/jobs/{id}` answers 404) and so are its
//! inputs and results unless another kept job references the same blob (blobs are
//! content-addressed; the store counts references in `job_blobs`). Queued and running
//! jobs are never evicted, and blobs being written are pinned (see `blobs.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::blobs::Removed;
use crate::config::ServerConfig;
use crate::job_services::JobServices;
use crate::jobs::now_seconds;

/// Jobs evicted per database round trip.
const BATCH: usize = 64;

/// How long finished jobs and their blobs are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Policy {
    /// Finished jobs older than this are evicted; None: no age limit.
    pub keep: Option<Duration>,
    /// The blob store is kept under this many bytes; None: no size limit.
    pub max_bytes: Option<u64>,
}

impl Policy {
    pub fn of(config: &ServerConfig) -> Self {
        Self {
            keep: config.keep_results,
            max_bytes: config.max_store_bytes,
        }
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    pub jobs_evicted: u64,
    pub blobs_removed: u64,
    pub bytes_removed: u64,
    /// Bytes left in the blob store.
    pub store_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("cannot list or delete stored blobs")]
    Blobs(#[from] std::io::Error),
    #[error("job database")]
    Database(#[from] crate::job_queue::QueueError),
}

impl Sweep {
    fn count(&mut self, removed: Removed) {
        self.blobs_removed += removed.files;
        self.bytes_removed += removed.bytes;
        self.store_bytes = self.store_bytes.saturating_sub(removed.bytes);
    }
}

/// One sweep (see the module comment).
pub fn sweep(services: &JobServices, policy: &Policy) -> Result<Sweep, SweepError> {
    let store = &services.queue;
    let blobs = &services.blobs;
    let referenced = |id: &str| store.is_referenced(id).unwrap_or(true);
    let mut sweep = Sweep::default();

    let listed = blobs.list()?;
    sweep.store_bytes = listed.iter().map(|(_, bytes)| bytes).sum();
    // In chunks: the pins lock is held while a chunk is checked.
    for chunk in listed.chunks(256) {
        let removed =
            blobs.remove_unreferenced(chunk.iter().map(|(id, _)| id.as_str()), referenced)?;
        sweep.count(removed);
    }

    let evict = |id: &str, sweep: &mut Sweep| -> Result<(), SweepError> {
        if let Some(ids) = store.evict(id)? {
            sweep.jobs_evicted += 1;
            let removed = blobs.remove_unreferenced(ids.iter().map(String::as_str), referenced)?;
            sweep.count(removed);
        }
        Ok(())
    };
    if let Some(keep) = policy.keep {
        let cutoff = now_seconds() - keep.as_secs_f64();
        loop {
            let ids = store.oldest_finished(Some(cutoff), BATCH)?;
            if ids.is_empty() {
                break;
            }
            for id in &ids {
                evict(id, &mut sweep)?;
            }
        }
    }
    if let Some(max_bytes) = policy.max_bytes {
        'evicting: while sweep.store_bytes > max_bytes {
            let ids = store.oldest_finished(None, BATCH)?;
            if ids.is_empty() {
                tracing::warn!(
                    "the blob store holds {} bytes, over --max-store-gib ({max_bytes} bytes), in queued and running jobs alone",
                    sweep.store_bytes
                );
                break;
            }
            for id in &ids {
                if sweep.store_bytes <= max_bytes {
                    break 'evicting;
                }
                evict(id, &mut sweep)?;
            }
        }
    }

    let metrics = &services.metrics;
    metrics
        .jobs_evicted
        .fetch_add(sweep.jobs_evicted, Ordering::Relaxed);
    metrics.record_blobs_removed(sweep.blobs_removed);
    metrics
        .store_bytes
        .store(sweep.store_bytes, Ordering::Relaxed);
    if sweep.jobs_evicted + sweep.blobs_removed > 0 {
        tracing::info!(
            jobs = sweep.jobs_evicted,
            blobs = sweep.blobs_removed,
            bytes = sweep.bytes_removed,
            left = sweep.store_bytes,
            "retention sweep"
        );
    }
    Ok(sweep)
}

/// Runs `sweep` off the async runtime, logging a failure (the next sweep tries again).
pub async fn sweep_now(services: Arc<JobServices>, policy: Policy) {
    match tokio::task::spawn_blocking(move || sweep(&services, &policy)).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            let cause = std::error::Error::source(&error)
                .map(|cause| format!(": {cause}"))
                .unwrap_or_default();
            tracing::error!("retention sweep failed: {error}{cause}");
        }
        Err(error) => tracing::error!("retention sweep panicked: {error}"),
    }
}

/// Sweeps every `interval` until `stop` turns true.
pub fn spawn_sweeper(
    services: Arc<JobServices>,
    policy: Policy,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            sweep_now(services.clone(), policy).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::Blobs;
    use crate::job_queue::{default_worker_name, Lease, SqliteQueue, WorkerIdentity};
    use crate::jobs::{EditSpec, JobSpec, JobStatus, SamplingSpec};

    fn edit(image: &str) -> JobSpec {
        JobSpec::Edit(EditSpec {
            sampling: SamplingSpec {
                prompt: "p".into(),
                negative_prompt: None,
                steps: 1,
                guidance: 5.0,
                scheduler: None,
                seed: 0,
                n: 1,
                loras: Vec::new(),
            },
            image: image.into(),
            mask: None,
            width: 64,
            height: 64,
            strength: 0.5,
        })
    }

    fn services(dir: &std::path::Path) -> anyhow::Result<JobServices> {
        Ok(JobServices::new(
            Arc::new(SqliteQueue::open(&dir.join("jobs.sqlite3"))?),
            Arc::new(Blobs::open(&dir.join("blobs"))?),
            None,
        ))
    }

    /// Runs `id` to success with `result` as its one image.
    fn finish(services: &JobServices, id: &str, input: &str, result: &str) -> anyhow::Result<()> {
        services
            .queue
            .submit(id, &edit(input), 100)
            .map_err(|error| anyhow::anyhow!("{error:?}"))?;
        let worker = WorkerIdentity {
            name: default_worker_name(0),
            capabilities: Vec::new(),
        };
        let claimed = services.queue.claim(&worker)?.map(|job| job.id);
        assert_eq!(claimed.as_deref(), Some(id));
        let lease = Lease {
            job: id.into(),
            attempt: 1,
            worker: worker.name,
        };
        let recorded = services.queue.succeed(&lease, &[result.to_string()])?;
        assert_eq!(recorded, Some(JobStatus::Succeeded));
        Ok(())
    }

    #[test]
    fn evicts_oldest_first_and_keeps_shared_blobs() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let services = services(dir.path())?;
        let blobs = &services.blobs;
        let shared_input = blobs.put(&[1u8; 1000])?;
        let result_a = blobs.put(&[2u8; 1000])?;
        let result_b = blobs.put(&[3u8; 1000])?;
        let orphan = blobs.put(&[4u8; 1000])?;
        finish(&services, "job_a", &shared_input, &result_a)?;
        std::thread::sleep(Duration::from_millis(20));
        finish(&services, "job_b", &shared_input, &result_b)?;

        // No limits: only the orphan goes.
        let swept = sweep(&services, &Policy::default())?;
        assert_eq!((swept.jobs_evicted, swept.blobs_removed), (0, 1));
        assert_eq!(swept.store_bytes, 3000);
        assert!(blobs.get(&orphan)?.is_none());

        // Over 2500 bytes: job_a (finished first) goes with its result, not the input
        // job_b shares.
        let policy = Policy {
            keep: None,
            max_bytes: Some(2500),
        };
        let swept = sweep(&services, &policy)?;
        assert_eq!((swept.jobs_evicted, swept.blobs_removed), (1, 1));
        assert_eq!(swept.store_bytes, 2000);
        assert!(services.queue.get("job_a")?.is_none());
        assert!(blobs.get(&result_a)?.is_none());
        assert!(blobs.get(&shared_input)?.is_some());

        // Older than a moment: job_b goes, and the input with it.
        std::thread::sleep(Duration::from_millis(20));
        let policy = Policy {
            keep: Some(Duration::from_millis(10)),
            max_bytes: None,
        };
        let swept = sweep(&services, &policy)?;
        assert_eq!((swept.jobs_evicted, swept.blobs_removed), (1, 2));
        assert_eq!(swept.store_bytes, 0);
        assert!(blobs.list()?.is_empty());
        Ok(())
    }

    #[test]
    fn queued_and_running_jobs_are_never_evicted() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let services = services(dir.path())?;
        let input = services.blobs.put(&[5u8; 100])?;
        services
            .queue
            .submit("job_q", &edit(&input), 100)
            .map_err(|error| anyhow::anyhow!("{error:?}"))?;
        let policy = Policy {
            keep: Some(Duration::from_millis(1)),
            max_bytes: Some(1),
        };
        std::thread::sleep(Duration::from_millis(5));
        let swept = sweep(&services, &policy)?;
        assert_eq!((swept.jobs_evicted, swept.blobs_removed), (0, 0));
        assert!(services.blobs.get(&input)?.is_some());
        Ok(())
    }
}
