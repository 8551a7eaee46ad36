//! What a queue is, whatever keeps it: the [`JobQueue`] trait, its errors, and the
//! values that pass through it (counts, leases, expired jobs, worker records).

use crate::jobs::{Job, JobSpec, JobStatus, SPEC_VERSION};

/// Why a job whose worker stopped answering twice is not run a third time.
pub const LEASE_EXPIRED_TWICE: &str =
    "the worker running this job stopped answering (its lease expired), twice (it was retried once); not retried again";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQLite")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("the PostgreSQL connection pool has stopped")]
    Stopped,
}

impl QueueError {
    /// Whether the database could not write because its disk is full.
    pub fn is_storage_full(&self) -> bool {
        match self {
            QueueError::Sqlite(error) => {
                error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
            }
            QueueError::Postgres(error) => {
                error.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL)
            }
            QueueError::Stopped => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Jobs found running after an unclean stop, queued again for their one retry.
    pub requeued: usize,
    /// Jobs found running for the second time, now failed.
    pub failed: usize,
}

/// Counts of jobs by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
}

#[derive(Debug)]
pub enum SubmitError {
    /// The queue holds `active` jobs already.
    Full {
        active: usize,
    },
    Database(QueueError),
}

impl From<rusqlite::Error> for SubmitError {
    fn from(error: rusqlite::Error) -> Self {
        SubmitError::Database(error.into())
    }
}

impl From<QueueError> for SubmitError {
    fn from(error: QueueError) -> Self {
        SubmitError::Database(error)
    }
}

/// A worker as the queue knows it: a name unique across machines and what it can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerIdentity {
    pub name: String,
    /// Sorted labels (see the module comment).
    pub capabilities: Vec<String>,
}

impl WorkerIdentity {
    /// Whether this worker can run a job that needs `needs`.
    pub fn covers(&self, needs: &[String]) -> bool {
        needs.iter().all(|need| self.capabilities.contains(need))
    }
}

/// A worker's hold on the job it runs: the job, which attempt, by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub job: String,
    pub attempt: u32,
    pub worker: String,
}

/// What a heartbeat learnt about one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed; `cancel_requested`: some API node accepted a cancel of the job.
    Held { cancel_requested: bool },
    /// The job is no longer this worker's (expired and re-queued, or ended).
    Lost,
}

/// A job whose lease expired, and where it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub job: String,
    /// Queued (its one retry), failed (the second expiry) or cancelled (a cancel was
    /// accepted while its worker was gone).
    pub status: JobStatus,
    pub error: Option<String>,
}

/// One worker as the queue saw it (PostgreSQL: the `workers` table).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRecord {
    pub name: String,
    pub capabilities: Vec<String>,
    /// Seconds since its last heartbeat.
    pub silent_seconds: f64,
    pub succeeded: u64,
    pub failed: u64,
    /// Jobs it finished in the last minute.
    pub finished_last_minute: u64,
}

/// The queue, as workers, handlers and retention use it.
pub trait JobQueue: Send + Sync {
    /// Where the queue lives, for logs (a path, or the URL without its password).
    fn describe(&self) -> String;

    /// Whether several processes share this queue (PostgreSQL): leases, heartbeats and
    /// events over the database are then needed.
    fn is_shared(&self) -> bool;

    /// At start-up of a single server: jobs still `running` were interrupted by a crash;
    /// each is retried once. A shared queue recovers through lease expiry instead.
    fn recover(&self) -> Result<Recovery, QueueError>;

    /// Adds a job unless `capacity` jobs are already waiting or running.
    fn submit(&self, id: &str, spec: &JobSpec, capacity: usize) -> Result<Job, SubmitError>;

    /// Takes the oldest queued job `worker` can run and marks it running (one more
    /// attempt) under a new lease. Rows whose request cannot be read are failed on the way.
    fn claim(&self, worker: &WorkerIdentity) -> Result<Option<Job>, QueueError>;

    /// Renews `leases` (and the worker's liveness); says which are still held.
    fn heartbeat(
        &self,
        worker: &WorkerIdentity,
        leases: &[Lease],
    ) -> Result<Vec<LeaseState>, QueueError>;

    /// Re-queues (once) or fails jobs whose lease has expired; returns them.
    fn expire_leases(&self) -> Result<Vec<Expired>, QueueError>;

    /// Records the results under `lease`. The status it ended with (`Cancelled` when a
    /// cancel was accepted meanwhile), or None when the lease is lost: discarded.
    fn succeed(&self, lease: &Lease, images: &[String]) -> Result<Option<JobStatus>, QueueError>;

    /// Fails the job under `lease`; like `succeed`.
    fn fail(&self, lease: &Lease, reason: &str) -> Result<Option<JobStatus>, QueueError>;

    /// Fails a job that has not ended, queued or running (its uploads could not be stored).
    fn fail_unfinished(&self, id: &str, reason: &str) -> Result<bool, QueueError>;

    /// Ends the job under `lease` cancelled; false when the lease is lost.
    fn mark_cancelled(&self, lease: &Lease) -> Result<bool, QueueError>;

    /// Cancels a job that no worker has started; false when it is not queued.
    fn cancel_queued(&self, id: &str) -> Result<bool, QueueError>;

    /// Asks the worker of the running job `id`, wherever it is, to cancel it (a shared
    /// queue keeps the request in the row); false when it is not running.
    fn request_cancel(&self, id: &str) -> Result<bool, QueueError>;

    /// A job stopped by a graceful shutdown goes back to the queue; the attempt does
    /// not count.
    fn requeue_after_shutdown(&self, lease: &Lease) -> Result<(), QueueError>;

    /// The job `id` (a row whose request cannot be read has `JobSpec::Unreadable`).
    fn get(&self, id: &str) -> Result<Option<Job>, QueueError>;

    /// The newest jobs first.
    fn list(&self, limit: usize) -> Result<Vec<Job>, QueueError>;

    /// How many queued jobs are ahead of `id` (None when it is not queued).
    fn queue_position(&self, id: &str) -> Result<Option<usize>, QueueError>;

    /// Whether any kept job references blob `id` (as an input or a result).
    fn is_referenced(&self, blob: &str) -> Result<bool, QueueError>;

    /// Up to `limit` finished jobs, the earliest finished first; with `before`, only
    /// those finished before that time (seconds since 1970).
    fn oldest_finished(&self, before: Option<f64>, limit: usize)
        -> Result<Vec<String>, QueueError>;

    /// Deletes the finished job `id` and returns the blobs it referenced (None when it
    /// is not finished).
    fn evict(&self, id: &str) -> Result<Option<Vec<String>>, QueueError>;

    fn counts(&self) -> Result<Counts, QueueError>;

    /// Leases that expired since the queue was created (all nodes together).
    fn lease_expiries(&self) -> Result<u64, QueueError>;

    /// The workers the queue knows (a single server: none, its workers are threads).
    fn workers(&self) -> Result<Vec<WorkerRecord>, QueueError>;
}

/// Reads a stored request; the error says why it cannot be run.
pub(crate) fn read_spec(text: &str, version: i64) -> Result<JobSpec, String> {
    if version != i64::from(SPEC_VERSION) {
        return Err(format!(
            "this job was stored by a huatu whose requests have schema version {version}; this server reads version {SPEC_VERSION}; submit the job again"
        ));
    }
    serde_json::from_str(text).map_err(|error| {
        format!("this job's stored request cannot be read ({error}); submit the job again")
    })
}
