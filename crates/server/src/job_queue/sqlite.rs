//! The embedded queue backend (the default): a SQLite database `<data>/jobs.sqlite3` (WAL, synchronous
//! FULL, so an accepted job is on disk before the client hears its id) with the jobs and
//! the blobs each references (so retention deletes a blob only when no kept job uses it).
//! The layout has a version (`user_version`) and each stored request its own
//! (`spec_version`): older files are upgraded at open, newer ones refused, and a request
//! this version cannot read fails its job instead of blocking the queue. Every method
//! takes the connection lock only for its own statements and never across an `.await`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};

use super::schema::migrate;
pub use super::schema::DATABASE_VERSION;
use super::store::{
    read_spec, Counts, Expired, JobQueue, Lease, LeaseState, QueueError, Recovery, SubmitError,
    WorkerIdentity, WorkerRecord,
};
use crate::error::ServerError;
use crate::jobs::{now_seconds, Job, JobSpec, JobStatus, SPEC_VERSION};

const COLUMNS: &str =
    "id, kind, spec, spec_version, status, attempts, error, images, created_at, started_at, finished_at";

/// Why a crash-interrupted job is not run a third time.
pub const INTERRUPTED_TWICE: &str =
    "the server stopped unexpectedly while this job was running, twice (it was retried once); not retried again";

pub struct SqliteQueue {
    connection: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteQueue {
    /// Opens (creating or upgrading) the queue at `path`. A file that is not a SQLite
    /// database, a damaged one, or one of a newer layout is refused with what to do.
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let wrap = |source: rusqlite::Error| classify_open_error(path, source);
        let mut connection = Connection::open(path).map_err(wrap)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(wrap)?;
        let check: String = connection
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(wrap)?;
        if check != "ok" {
            return Err(ServerError::CorruptDatabase {
                path: path.to_path_buf(),
                detail: check,
            });
        }
        let found: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(wrap)?;
        if found > DATABASE_VERSION {
            return Err(ServerError::NewerDatabase {
                path: path.to_path_buf(),
                found,
                known: DATABASE_VERSION,
            });
        }
        if found < DATABASE_VERSION {
            migrate(&mut connection, found).map_err(wrap)?;
        }
        Ok(Self {
            connection: Mutex::new(connection),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (statements are
        // atomic), so a poisoned lock is still safe to use.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// At start-up: jobs still `running` were interrupted by a crash or kill. Each is
    /// retried once; one interrupted on its retry fails with the reason.
    pub fn recover(&self) -> rusqlite::Result<Recovery> {
        let connection = self.lock();
        let failed = connection.execute(
            "UPDATE jobs SET status = 'failed', error = ?1, finished_at = ?2 WHERE status = 'running' AND attempts >= 2",
            params![INTERRUPTED_TWICE, now_seconds()],
        )?;
        let requeued = connection.execute(
            "UPDATE jobs SET status = 'queued' WHERE status = 'running'",
            [],
        )?;
        Ok(Recovery { requeued, failed })
    }

    /// Adds a job unless `capacity` jobs are already waiting or running.
    pub fn submit(&self, id: &str, spec: &JobSpec, capacity: usize) -> Result<Job, SubmitError> {
        let spec_json = serde_json::to_string(spec).map_err(|error| {
            SubmitError::Database(rusqlite::Error::ToSqlConversionFailure(Box::new(error)).into())
        })?;
        let mut connection = self.lock();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let active: i64 = transaction.query_row(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')",
            [],
            |row| row.get(0),
        )?;
        if active as usize >= capacity {
            return Err(SubmitError::Full {
                active: active as usize,
            });
        }
        let created_at = now_seconds();
        transaction.execute(
            "INSERT INTO jobs (id, kind, spec, spec_version, status, created_at) VALUES (?1, ?2, ?3, ?4, 'queued', ?5)",
            params![id, spec.kind(), spec_json, SPEC_VERSION, created_at],
        )?;
        for blob in spec.input_blobs() {
            transaction.execute(
                "INSERT OR IGNORE INTO job_blobs (job, blob) VALUES (?1, ?2)",
                params![id, blob],
            )?;
        }
        transaction.commit()?;
        Ok(Job {
            id: id.to_string(),
            spec: spec.clone(),
            status: JobStatus::Queued,
            attempts: 0,
            error: None,
            images: Vec::new(),
            created_at,
            started_at: None,
            finished_at: None,
        })
    }

    /// Takes the oldest queued job and marks it running (one more attempt). A row whose
    /// stored request cannot be read (another spec version, damaged JSON) is failed with
    /// the reason on the way, so it never blocks the queue.
    pub fn claim(&self) -> rusqlite::Result<Option<Job>> {
        let connection = self.lock();
        loop {
            let claimed = connection
                .query_row(
                    &format!(
                        "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?1
                         WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1)
                         RETURNING {COLUMNS}"
                    ),
                    params![now_seconds()],
                    job_from_row,
                )
                .optional()?;
            let (job, problem) = match claimed {
                None => return Ok(None),
                Some((job, None)) => return Ok(Some(job)),
                Some((job, Some(problem))) => (job, problem),
            };
            tracing::warn!(job = %job.id, "failing a job whose stored request cannot be read: {problem}");
            connection.execute(
                "UPDATE jobs SET status = 'failed', error = ?2, finished_at = ?3 WHERE id = ?1",
                params![job.id, problem, now_seconds()],
            )?;
        }
    }

    /// Records the results of the running job `id` (false when it is not running).
    pub fn succeed(&self, id: &str, images: &[String]) -> rusqlite::Result<bool> {
        let images_json = serde_json::to_string(images).unwrap_or_else(|_| "[]".into());
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let changed = transaction.execute(
            "UPDATE jobs SET status = 'succeeded', images = ?2, finished_at = ?3, error = NULL WHERE id = ?1 AND status = 'running'",
            params![id, images_json, now_seconds()],
        )?;
        for image in images {
            transaction.execute(
                "INSERT OR IGNORE INTO job_blobs (job, blob) VALUES (?1, ?2)",
                params![id, image],
            )?;
        }
        transaction.commit()?;
        Ok(changed == 1)
    }

    /// Fails the running job `id`; false when it is not running (its end is recorded).
    pub fn fail(&self, id: &str, reason: &str) -> rusqlite::Result<bool> {
        let changed = self.lock().execute(
            "UPDATE jobs SET status = 'failed', error = ?2, finished_at = ?3 WHERE id = ?1 AND status = 'running'",
            params![id, reason, now_seconds()],
        )?;
        Ok(changed == 1)
    }

    /// Fails a job that has not ended, queued or running: one whose uploads could not
    /// be stored (a worker that has it waits for them and then finds its end recorded).
    pub fn fail_unfinished(&self, id: &str, reason: &str) -> rusqlite::Result<bool> {
        let changed = self.lock().execute(
            "UPDATE jobs SET status = 'failed', error = ?2, finished_at = ?3 WHERE id = ?1 AND status IN ('queued', 'running')",
            params![id, reason, now_seconds()],
        )?;
        Ok(changed == 1)
    }

    pub fn mark_cancelled(&self, id: &str) -> rusqlite::Result<()> {
        self.lock().execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?2 WHERE id = ?1 AND status IN ('queued', 'running')",
            params![id, now_seconds()],
        )?;
        Ok(())
    }

    /// Cancels a job that no worker has started; false when it is not queued.
    pub fn cancel_queued(&self, id: &str) -> rusqlite::Result<bool> {
        let changed = self.lock().execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?2 WHERE id = ?1 AND status = 'queued'",
            params![id, now_seconds()],
        )?;
        Ok(changed == 1)
    }

    /// A running job stopped by a graceful shutdown goes back to the queue; the attempt
    /// does not count, since nothing crashed.
    pub fn requeue_after_shutdown(&self, id: &str) -> rusqlite::Result<()> {
        self.lock().execute(
            "UPDATE jobs SET status = 'queued', attempts = MAX(attempts - 1, 0) WHERE id = ?1 AND status = 'running'",
            params![id],
        )?;
        Ok(())
    }

    /// The job `id` (a row whose request cannot be read has `JobSpec::Unreadable`).
    pub fn get(&self, id: &str) -> rusqlite::Result<Option<Job>> {
        let read = self
            .lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )
            .optional()?;
        Ok(read.map(|(job, _)| job))
    }

    /// The newest jobs first.
    pub fn list(&self, limit: usize) -> rusqlite::Result<Vec<Job>> {
        let connection = self.lock();
        let mut statement = connection.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs ORDER BY seq DESC LIMIT ?1"
        ))?;
        let rows = statement.query_map(params![limit as i64], job_from_row)?;
        rows.map(|row| row.map(|(job, _)| job)).collect()
    }

    /// How many queued jobs are ahead of `id` (None when it is not queued).
    pub fn queue_position(&self, id: &str) -> rusqlite::Result<Option<usize>> {
        self.lock()
            .query_row(
                "SELECT (SELECT COUNT(*) FROM jobs AS ahead WHERE ahead.status = 'queued' AND ahead.seq < job.seq)
                 FROM jobs AS job WHERE job.id = ?1 AND job.status = 'queued'",
                params![id],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|count| count.map(|count| count as usize))
    }

    /// Whether any kept job references blob `id` (as an input or a result).
    pub fn is_referenced(&self, blob: &str) -> rusqlite::Result<bool> {
        self.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM job_blobs WHERE blob = ?1)",
            params![blob],
            |row| row.get(0),
        )
    }

    /// Up to `limit` finished jobs (succeeded, failed, cancelled), the earliest finished
    /// first; with `before`, only those finished before that time (seconds since 1970).
    pub fn oldest_finished(
        &self,
        before: Option<f64>,
        limit: usize,
    ) -> rusqlite::Result<Vec<String>> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?1
             AND status IN ('succeeded', 'failed', 'cancelled')
             ORDER BY finished_at, seq LIMIT ?2",
        )?;
        let rows = statement.query_map(
            params![before.unwrap_or(f64::INFINITY), limit as i64],
            |row| row.get(0),
        )?;
        rows.collect()
    }

    /// Deletes the finished job `id` and returns the blobs it referenced (None when it
    /// is not finished: queued and running jobs are never evicted).
    pub fn evict(&self, id: &str) -> rusqlite::Result<Option<Vec<String>>> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let deleted = transaction.execute(
            "DELETE FROM jobs WHERE id = ?1 AND status IN ('succeeded', 'failed', 'cancelled')",
            params![id],
        )?;
        if deleted == 0 {
            return Ok(None);
        }
        let blobs: Vec<String> = {
            let mut statement = transaction.prepare("SELECT blob FROM job_blobs WHERE job = ?1")?;
            let rows = statement.query_map(params![id], |row| row.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        transaction.execute("DELETE FROM job_blobs WHERE job = ?1", params![id])?;
        transaction.commit()?;
        Ok(Some(blobs))
    }

    pub fn counts(&self) -> rusqlite::Result<Counts> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let mut counts = Counts::default();
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (status, count) = row?;
            let count = count as u64;
            match JobStatus::parse(&status) {
                Some(JobStatus::Queued) => counts.queued = count,
                Some(JobStatus::Running) => counts.running = count,
                Some(JobStatus::Succeeded) => counts.succeeded = count,
                Some(JobStatus::Failed) => counts.failed = count,
                Some(JobStatus::Cancelled) => counts.cancelled = count,
                None => {}
            }
        }
        Ok(counts)
    }
}

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

/// A row as read: the job and, when its request cannot be read, why (the job's spec is
/// then `Unreadable`, so it is still listed; the store fails it when it is claimed).
fn job_from_row(row: &Row<'_>) -> rusqlite::Result<(Job, Option<String>)> {
    let conversion = |index: usize, error: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, error)
    };
    let stored_kind: String = row.get(1)?;
    let spec: String = row.get(2)?;
    let version: i64 = row.get(3)?;
    let status: String = row.get(4)?;
    let images: String = row.get(7)?;
    let (spec, problem) = match read_spec(&spec, version) {
        Ok(spec) => (spec, None),
        Err(problem) => (JobSpec::Unreadable { stored_kind }, Some(problem)),
    };
    let job = Job {
        id: row.get(0)?,
        spec,
        status: JobStatus::parse(&status)
            .ok_or_else(|| conversion(4, format!("unknown status {status}").into()))?,
        attempts: row.get(5)?,
        error: row.get(6)?,
        images: serde_json::from_str(&images).map_err(|error| conversion(7, Box::new(error)))?,
        created_at: row.get(8)?,
        started_at: row.get(9)?,
        finished_at: row.get(10)?,
    };
    Ok((job, problem))
}

/// A clear start-up error for a database SQLite cannot use.
fn classify_open_error(path: &Path, source: rusqlite::Error) -> ServerError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            ServerError::CorruptDatabase {
                path: path.to_path_buf(),
                detail: source.to_string(),
            }
        }
        _ => ServerError::Database {
            path: path.to_path_buf(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_queue::schema::SCHEMA_V1;
    use crate::jobs::{GenerationSpec, SamplingSpec};

    fn spec() -> JobSpec {
        JobSpec::Generation(GenerationSpec {
            sampling: SamplingSpec {
                prompt: "a cat".into(),
                negative_prompt: None,
                steps: 1,
                guidance: 5.0,
                scheduler: None,
                seed: 0,
                n: 1,
                loras: Vec::new(),
            },
            width: 64,
            height: 64,
        })
    }

    #[test]
    fn queue_runs_in_order_and_retries_an_interrupted_job_once() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("jobs.sqlite3");
        {
            let store = SqliteQueue::open(&path)?;
            store
                .submit("job_a", &spec(), 10)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            store
                .submit("job_b", &spec(), 10)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            assert!(matches!(
                store.submit("job_c", &spec(), 2),
                Err(SubmitError::Full { active: 2 })
            ));
            assert_eq!(store.queue_position("job_b")?, Some(1));
            let claimed = store.claim()?.map(|job| job.id);
            assert_eq!(claimed.as_deref(), Some("job_a"));
            // "crash": the store is dropped with job_a running.
        }
        let store = SqliteQueue::open(&path)?;
        assert_eq!(
            store.recover()?,
            Recovery {
                requeued: 1,
                failed: 0
            }
        );
        let again = store
            .claim()?
            .ok_or_else(|| anyhow::anyhow!("job_a not requeued"))?;
        assert_eq!((again.id.as_str(), again.attempts), ("job_a", 2));
        drop(store);
        let store = SqliteQueue::open(&path)?;
        assert_eq!(
            store.recover()?,
            Recovery {
                requeued: 0,
                failed: 1
            }
        );
        let failed = store
            .get("job_a")?
            .ok_or_else(|| anyhow::anyhow!("job_a vanished"))?;
        assert_eq!(failed.status, JobStatus::Failed);
        assert_eq!(failed.error.as_deref(), Some(INTERRUPTED_TWICE));
        assert_eq!(store.claim()?.map(|job| job.id).as_deref(), Some("job_b"));
        Ok(())
    }

    fn user_version(path: &Path) -> anyhow::Result<i64> {
        let connection = Connection::open(path)?;
        Ok(connection.query_row("PRAGMA user_version", [], |row| row.get(0))?)
    }

    #[test]
    fn a_first_release_database_is_upgraded_with_its_blob_references() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("jobs.sqlite3");
        let input = "a".repeat(64);
        let result = "b".repeat(64);
        {
            let connection = Connection::open(&path)?;
            connection.execute_batch(SCHEMA_V1)?;
            let spec = format!(
                r#"{{"kind":"edit","prompt":"p","negative_prompt":null,"image":"{input}","mask":null,"width":64,"height":64,"steps":1,"guidance":5.0,"scheduler":null,"seed":0,"n":1,"strength":0.5,"loras":[]}}"#
            );
            connection.execute(
                "INSERT INTO jobs (id, kind, spec, status, images, created_at, finished_at) VALUES ('job_old', 'edit', ?1, 'succeeded', ?2, 1.0, 2.0)",
                params![spec, format!("[\"{result}\"]")],
            )?;
        }
        assert_eq!(user_version(&path)?, 0);
        let store = SqliteQueue::open(&path)?;
        assert_eq!(user_version(&path)?, DATABASE_VERSION);
        let job = store
            .get("job_old")?
            .ok_or_else(|| anyhow::anyhow!("job_old vanished"))?;
        assert_eq!(job.spec.input_blobs(), vec![input.as_str()]);
        assert_eq!(job.images, vec![result.clone()]);
        assert!(store.is_referenced(&input)?);
        assert!(store.is_referenced(&result)?);
        assert!(!store.is_referenced(&"c".repeat(64))?);
        // Opening again changes nothing.
        drop(store);
        let store = SqliteQueue::open(&path)?;
        assert_eq!(
            store.evict("job_old")?,
            Some(vec![input.clone(), result.clone()])
        );
        assert!(!store.is_referenced(&input)?);
        Ok(())
    }

    #[test]
    fn rows_that_cannot_be_read_fail_at_claim_instead_of_blocking_the_queue() -> anyhow::Result<()>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("jobs.sqlite3");
        let store = SqliteQueue::open(&path)?;
        {
            let connection = store.lock();
            let good = serde_json::to_string(&spec())?;
            for (id, spec, version) in [
                ("job_newer", good.as_str(), 99),
                ("job_broken", "{\"kind\":\"generation\",\"prompt\":", 1),
                ("job_good", good.as_str(), 1),
            ] {
                connection.execute(
                    "INSERT INTO jobs (id, kind, spec, spec_version, status, created_at) VALUES (?1, 'generation', ?2, ?3, 'queued', 1.0)",
                    params![id, spec, version],
                )?;
            }
        }
        // Listed (as unreadable) before any claim.
        assert_eq!(store.list(10)?.len(), 3);
        let newer = store
            .get("job_newer")?
            .ok_or_else(|| anyhow::anyhow!("job_newer vanished"))?;
        assert_eq!(newer.spec.kind(), "generation");
        assert!(matches!(newer.spec, JobSpec::Unreadable { .. }));

        let claimed = store.claim()?.map(|job| job.id);
        assert_eq!(claimed.as_deref(), Some("job_good"));
        let reason = |id: &str| -> anyhow::Result<(JobStatus, String)> {
            let job = store
                .get(id)?
                .ok_or_else(|| anyhow::anyhow!("{id} vanished"))?;
            Ok((job.status, job.error.unwrap_or_default()))
        };
        let (status, error) = reason("job_newer")?;
        assert_eq!(status, JobStatus::Failed);
        assert!(error.contains("schema version 99"), "{error}");
        let (status, error) = reason("job_broken")?;
        assert_eq!(status, JobStatus::Failed);
        assert!(error.contains("cannot be read"), "{error}");
        assert!(store.claim()?.is_none());
        Ok(())
    }

    #[test]
    fn a_newer_or_corrupt_database_is_refused_with_what_to_do() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("jobs.sqlite3");
        drop(SqliteQueue::open(&path)?);
        Connection::open(&path)?.execute_batch("PRAGMA user_version = 7")?;
        let error = SqliteQueue::open(&path)
            .err()
            .map(|error| error.to_string());
        let error = error.unwrap_or_default();
        assert!(
            error.contains("layout version 7, newer than this huatu reads (2)"),
            "{error}"
        );

        let garbage = dir.path().join("garbage.sqlite3");
        std::fs::write(&garbage, vec![0x5a; 8192])?;
        let error = SqliteQueue::open(&garbage)
            .err()
            .map(|error| error.to_string());
        let error = error.unwrap_or_default();
        assert!(
            error.contains("is damaged or is not a SQLite database"),
            "{error}"
        );
        assert!(error.contains("move it aside"), "{error}");
        Ok(())
    }
}
