//! The embedded queue backend (the default): a SQLite database `<data>/jobs.sqlite3` (WAL, synchronous
//! FULL, so an accepted job is on disk before the client hears its id) with the jobs and
//! the blobs each references (so retention deletes a blob only when no kept job uses it).
//! The layout has a version (`user_version`) and each stored request its own
//! (`spec_version`): older files are upgraded at open, newer ones refused, and a request
//! this version cannot read fails its job instead of blocking the queue. Every method
//! takes the connection lock only for its own statements and never across an `.await`.
//!
//! Here: opening and the statements; `queue_impl.rs` answers the `JobQueue` trait for a
//! queue one process owns; `tests.rs` has the tests.

mod queue_impl;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};

use super::schema::migrate;
pub use super::schema::DATABASE_VERSION;
use super::store::{read_spec, Counts, Recovery, SubmitError};
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
