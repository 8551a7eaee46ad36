//! The durable job queue behind one trait, [`JobQueue`], with two backends: SQLite (the
//! embedded default, one server per data directory, `sqlite.rs`) and PostgreSQL
//! (`--database postgres://…`, shared by API nodes and workers on several machines,
//! `postgres/`). The trait is synchronous, as the workers are OS threads and SQLite is
//! a blocking library; the PostgreSQL backend runs its async driver on a runtime of its
//! own, so calling it from a handler blocks that handler only as long as a SQLite
//! statement would.
//!
//! A worker holds a [`Lease`] on the job it runs: the outcome is recorded only while the
//! lease is still the job's current one, so a worker that lost it (its heartbeats
//! stopped, the job was re-queued and run elsewhere) has its late result discarded.

pub mod needs;
pub mod postgres;
mod schema;
pub mod sqlite;
pub mod store;
pub mod url;

use std::sync::Arc;

pub use self::needs::{default_worker_name, job_needs, worker_identity};
pub use self::schema::DATABASE_VERSION;
pub use self::sqlite::{SqliteQueue, INTERRUPTED_TWICE};
pub use self::store::{
    Counts, Expired, JobQueue, Lease, LeaseState, QueueError, Recovery, SubmitError,
    WorkerIdentity, WorkerRecord, LEASE_EXPIRED_TWICE,
};
use crate::error::ServerError;

/// A queue and, when it is shared, its event bus between nodes.
pub type OpenedQueue = (Arc<dyn JobQueue>, Option<Arc<postgres::EventBus>>);

/// Opens the queue: PostgreSQL for a `postgres://` URL (with its event bus; `lease` is
/// how long a claim lasts without a heartbeat; `application` names the connections in
/// `pg_stat_activity`), else SQLite at `<data>/jobs.sqlite3`.
pub fn open(
    database: Option<&str>,
    data_dir: &std::path::Path,
    lease: std::time::Duration,
    application: &str,
) -> Result<OpenedQueue, ServerError> {
    match database {
        Some(url) => {
            let queue = postgres::PgQueue::connect_with(url, lease, application)?;
            let bus = queue.bus();
            Ok((Arc::new(queue), Some(bus)))
        }
        None => Ok((
            Arc::new(SqliteQueue::open(&data_dir.join("jobs.sqlite3"))?),
            None,
        )),
    }
}
