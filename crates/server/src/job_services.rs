//! What the workers and the HTTP side share to run jobs (`JobServices`), with the two
//! signals between them: `Wakeup` (a job arrived, or the server stops) and
//! `CancelRequests` (how a cancel and a job's outcome are settled one way).

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::blobs::Blobs;
use crate::events::EventHub;
use crate::job_queue::postgres::EventBus;
use crate::job_queue::{JobQueue, Lease, QueueError};
use crate::jobs::{Job, JobEvent};
use crate::leases::LeaseBook;
use crate::metrics::Metrics;

/// Wakes sleeping workers when a job arrives or the server stops.
#[derive(Default)]
pub struct Wakeup {
    pending: Mutex<bool>,
    condvar: Condvar,
}

impl Wakeup {
    pub fn notify(&self) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *pending = true;
        self.condvar.notify_all();
    }

    pub fn wait(&self, timeout: Duration) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !*pending {
            pending = match self.condvar.wait_timeout(pending, timeout) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        *pending = false;
    }
}

/// Cancellation of running jobs, settled one way: **a cancel that `request` accepted
/// (the API's 202) always ends the job `cancelled`** — even when the job had already
/// made all its images (they are deleted, never reported done), and even when the
/// server is shutting down (the job is not put back in the queue). A cancel that comes
/// after the worker recorded the outcome is refused (`request` is false; the API answers
/// 409 with the job's final status). Both hold because claiming a job, accepting a
/// cancel and recording the outcome all happen under one lock, so "running" in the
/// database and "a worker runs it" here never disagree.
#[derive(Default)]
pub struct CancelRequests {
    state: Mutex<CancelState>,
}

#[derive(Default)]
struct CancelState {
    /// Jobs a worker of this server runs now.
    running: HashSet<String>,
    /// Those of them whose cancellation was accepted.
    requested: HashSet<String>,
}

impl CancelRequests {
    fn lock(&self) -> MutexGuard<'_, CancelState> {
        // Each update is a single set operation; a panic cannot leave them half-changed.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks the running job `id` to stop. True: a worker runs it and it will end
    /// `cancelled`. False: no worker runs it (any more): its outcome is recorded.
    pub fn request(&self, id: &str) -> bool {
        let mut state = self.lock();
        if state.running.contains(id) {
            state.requested.insert(id.to_string());
            true
        } else {
            false
        }
    }

    /// Claims a job with `claim` and notes it as running, atomically for `request`.
    pub fn claim<E>(
        &self,
        claim: impl FnOnce() -> Result<Option<Job>, E>,
    ) -> Result<Option<Job>, E> {
        let mut state = self.lock();
        let job = claim()?;
        if let Some(job) = &job {
            state.running.insert(job.id.clone());
        }
        Ok(job)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.lock().requested.contains(id)
    }

    /// Ends the run of `id`: `record` gets whether a cancel was accepted and writes the
    /// outcome, under the lock so that no cancel is accepted in between.
    pub fn settle<T>(&self, id: &str, record: impl FnOnce(bool) -> T) -> T {
        let mut state = self.lock();
        let cancelled = state.requested.remove(id);
        let result = record(cancelled);
        state.running.remove(id);
        result
    }
}

/// What the workers and the HTTP side share to run jobs: the durable queue, the blob
/// store, live events, metrics, and the signals that wake and stop workers.
pub struct JobServices {
    pub queue: Arc<dyn JobQueue>,
    /// Events between nodes (a shared queue); None: this process's hub is the only one.
    pub bus: Option<Arc<EventBus>>,
    /// The leases this process's workers hold (renewed by the lease keeper).
    pub leases: Arc<LeaseBook>,
    pub blobs: Arc<Blobs>,
    pub events: Arc<EventHub>,
    pub metrics: Arc<Metrics>,
    pub wakeup: Arc<Wakeup>,
    pub cancels: Arc<CancelRequests>,
    pub shutdown: Arc<AtomicBool>,
}

impl JobServices {
    /// Services over `queue` with fresh signals and an empty hub.
    pub fn new(queue: Arc<dyn JobQueue>, blobs: Arc<Blobs>, bus: Option<Arc<EventBus>>) -> Self {
        Self {
            queue,
            bus,
            leases: Arc::new(LeaseBook::default()),
            blobs,
            events: Arc::new(EventHub::default()),
            metrics: Arc::new(Metrics::default()),
            wakeup: Arc::new(Wakeup::default()),
            cancels: Arc::new(CancelRequests::default()),
            shutdown: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Tells every listener of job `id`, on every node when the queue is shared (this
    /// node's hub then hears it back from the database, once).
    pub fn publish(&self, id: &str, event: JobEvent) {
        match &self.bus {
            Some(bus) => bus.send(id, &event),
            None => self.events.publish(id, event),
        }
    }

    /// Asks the worker of the running job `id` to cancel it: true when it will end
    /// `cancelled`. A shared queue keeps the request in the job's row (the worker, on
    /// any machine, settles it); a single server's workers settle it in memory.
    pub fn request_cancel(&self, id: &str) -> Result<bool, QueueError> {
        if self.queue.is_shared() {
            self.queue.request_cancel(id)
        } else {
            Ok(self.cancels.request(id))
        }
    }

    /// The lease a worker of this process holds on job `id`.
    pub fn lease_of(&self, id: &str) -> Option<Lease> {
        self.leases.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobSpec, JobStatus};

    fn job(id: &str) -> Job {
        Job {
            id: id.into(),
            spec: JobSpec::Unreadable {
                stored_kind: "generation".into(),
            },
            status: JobStatus::Running,
            attempts: 1,
            error: None,
            images: Vec::new(),
            created_at: 0.0,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn an_accepted_cancel_wins_and_a_late_one_is_refused() {
        let cancels = CancelRequests::default();
        // Not running (queued, unknown): refused.
        assert!(!cancels.request("job_a"));
        let claimed = cancels.claim(|| Ok::<_, ()>(Some(job("job_a"))));
        assert!(matches!(claimed, Ok(Some(_))));
        assert!(cancels.request("job_a"));
        assert!(cancels.contains("job_a"));
        // The worker finished its images anyway: settle still sees the cancel.
        assert!(cancels.settle("job_a", |cancelled| cancelled));
        // After the outcome is recorded: refused, and nothing is left behind.
        assert!(!cancels.request("job_a"));
        assert!(!cancels.contains("job_a"));

        // A run nobody cancelled settles as it came.
        let claimed = cancels.claim(|| Ok::<_, ()>(Some(job("job_b"))));
        assert!(matches!(claimed, Ok(Some(_))));
        assert!(!cancels.settle("job_b", |cancelled| cancelled));
    }
}
