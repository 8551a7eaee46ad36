//! The SQLite queue as a `JobQueue`: one process owns it, so leases, heartbeats and
//! cancels reduce to what that process already knows.

use super::SqliteQueue;
use crate::job_queue::store::{
    Counts, Expired, JobQueue, Lease, LeaseState, QueueError, Recovery, SubmitError,
    WorkerIdentity, WorkerRecord,
};
use crate::jobs::{Job, JobSpec, JobStatus};

/// One server owns a SQLite queue (the data directory's lock), so its workers are
/// threads of this process: a lease is only ever this process's, crash recovery happens
/// at start (`recover`) and cancels are settled in memory (`CancelRequests`).
impl JobQueue for SqliteQueue {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn recover(&self) -> Result<Recovery, QueueError> {
        Ok(SqliteQueue::recover(self)?)
    }

    fn submit(&self, id: &str, spec: &JobSpec, capacity: usize) -> Result<Job, SubmitError> {
        SqliteQueue::submit(self, id, spec, capacity)
    }

    fn claim(&self, _worker: &WorkerIdentity) -> Result<Option<Job>, QueueError> {
        Ok(SqliteQueue::claim(self)?)
    }

    fn heartbeat(
        &self,
        _worker: &WorkerIdentity,
        leases: &[Lease],
    ) -> Result<Vec<LeaseState>, QueueError> {
        Ok(vec![
            LeaseState::Held {
                cancel_requested: false
            };
            leases.len()
        ])
    }

    fn expire_leases(&self) -> Result<Vec<Expired>, QueueError> {
        Ok(Vec::new())
    }

    fn succeed(&self, lease: &Lease, images: &[String]) -> Result<Option<JobStatus>, QueueError> {
        let recorded = SqliteQueue::succeed(self, &lease.job, images)?;
        Ok(recorded.then_some(JobStatus::Succeeded))
    }

    fn fail(&self, lease: &Lease, reason: &str) -> Result<Option<JobStatus>, QueueError> {
        let recorded = SqliteQueue::fail(self, &lease.job, reason)?;
        Ok(recorded.then_some(JobStatus::Failed))
    }

    fn fail_unfinished(&self, id: &str, reason: &str) -> Result<bool, QueueError> {
        Ok(SqliteQueue::fail_unfinished(self, id, reason)?)
    }

    fn mark_cancelled(&self, lease: &Lease) -> Result<bool, QueueError> {
        SqliteQueue::mark_cancelled(self, &lease.job)?;
        Ok(true)
    }

    fn cancel_queued(&self, id: &str) -> Result<bool, QueueError> {
        Ok(SqliteQueue::cancel_queued(self, id)?)
    }

    fn request_cancel(&self, _id: &str) -> Result<bool, QueueError> {
        // Running jobs are this process's: `CancelRequests` settles their cancels.
        Ok(false)
    }

    fn requeue_after_shutdown(&self, lease: &Lease) -> Result<(), QueueError> {
        Ok(SqliteQueue::requeue_after_shutdown(self, &lease.job)?)
    }

    fn get(&self, id: &str) -> Result<Option<Job>, QueueError> {
        Ok(SqliteQueue::get(self, id)?)
    }

    fn list(&self, limit: usize) -> Result<Vec<Job>, QueueError> {
        Ok(SqliteQueue::list(self, limit)?)
    }

    fn queue_position(&self, id: &str) -> Result<Option<usize>, QueueError> {
        Ok(SqliteQueue::queue_position(self, id)?)
    }

    fn is_referenced(&self, blob: &str) -> Result<bool, QueueError> {
        Ok(SqliteQueue::is_referenced(self, blob)?)
    }

    fn oldest_finished(
        &self,
        before: Option<f64>,
        limit: usize,
    ) -> Result<Vec<String>, QueueError> {
        Ok(SqliteQueue::oldest_finished(self, before, limit)?)
    }

    fn evict(&self, id: &str) -> Result<Option<Vec<String>>, QueueError> {
        Ok(SqliteQueue::evict(self, id)?)
    }

    fn counts(&self) -> Result<Counts, QueueError> {
        Ok(SqliteQueue::counts(self)?)
    }

    fn lease_expiries(&self) -> Result<u64, QueueError> {
        Ok(0)
    }

    fn workers(&self) -> Result<Vec<WorkerRecord>, QueueError> {
        Ok(Vec::new())
    }
}
