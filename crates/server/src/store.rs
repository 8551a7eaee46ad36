//! The durable job queue: one SQLite table under `<data>/jobs.sqlite3` (WAL, synchronous
//! FULL, so an accepted job is on disk before the client hears its id). Every method
//! takes the connection lock only for its own statements and never across an `.await`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::ServerError;
use crate::jobs::{now_seconds, Job, JobSpec, JobStatus};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    images      TEXT NOT NULL DEFAULT '[]',
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
";

const COLUMNS: &str =
    "id, spec, status, attempts, error, images, created_at, started_at, finished_at";

/// Why a crash-interrupted job is not run a third time.
pub const INTERRUPTED_TWICE: &str =
    "the server stopped unexpectedly while this job was running, twice (it was retried once); not retried again";

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
    Database(rusqlite::Error),
}

impl From<rusqlite::Error> for SubmitError {
    fn from(error: rusqlite::Error) -> Self {
        SubmitError::Database(error)
    }
}

pub struct Store {
    connection: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, ServerError> {
        let wrap = |source| ServerError::Database {
            path: path.to_path_buf(),
            source,
        };
        let connection = Connection::open(path).map_err(wrap)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(wrap)?;
        connection.execute_batch(SCHEMA).map_err(wrap)?;
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
            SubmitError::Database(rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
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
            "INSERT INTO jobs (id, kind, spec, status, created_at) VALUES (?1, ?2, ?3, 'queued', ?4)",
            params![id, spec.kind(), spec_json, created_at],
        )?;
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

    /// Takes the oldest queued job and marks it running (one more attempt).
    pub fn claim(&self) -> rusqlite::Result<Option<Job>> {
        let connection = self.lock();
        connection
            .query_row(
                &format!(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?1
                     WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1)
                     RETURNING {COLUMNS}"
                ),
                params![now_seconds()],
                job_from_row,
            )
            .optional()
    }

    pub fn succeed(&self, id: &str, images: &[String]) -> rusqlite::Result<()> {
        let images = serde_json::to_string(images).unwrap_or_else(|_| "[]".into());
        self.lock().execute(
            "UPDATE jobs SET status = 'succeeded', images = ?2, finished_at = ?3, error = NULL WHERE id = ?1",
            params![id, images, now_seconds()],
        )?;
        Ok(())
    }

    pub fn fail(&self, id: &str, reason: &str) -> rusqlite::Result<()> {
        self.lock().execute(
            "UPDATE jobs SET status = 'failed', error = ?2, finished_at = ?3 WHERE id = ?1",
            params![id, reason, now_seconds()],
        )?;
        Ok(())
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

    pub fn get(&self, id: &str) -> rusqlite::Result<Option<Job>> {
        self.lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                params![id],
                job_from_row,
            )
            .optional()
    }

    /// The newest jobs first.
    pub fn list(&self, limit: usize) -> rusqlite::Result<Vec<Job>> {
        let connection = self.lock();
        let mut statement = connection.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs ORDER BY seq DESC LIMIT ?1"
        ))?;
        let rows = statement.query_map(params![limit as i64], job_from_row)?;
        rows.collect()
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

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let conversion = |index: usize, error: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, error)
    };
    let spec: String = row.get(1)?;
    let status: String = row.get(2)?;
    let images: String = row.get(5)?;
    Ok(Job {
        id: row.get(0)?,
        spec: serde_json::from_str(&spec).map_err(|error| conversion(1, Box::new(error)))?,
        status: JobStatus::parse(&status)
            .ok_or_else(|| conversion(2, format!("unknown status {status}").into()))?,
        attempts: row.get(3)?,
        error: row.get(4)?,
        images: serde_json::from_str(&images).map_err(|error| conversion(5, Box::new(error)))?,
        created_at: row.get(6)?,
        started_at: row.get(7)?,
        finished_at: row.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::GenerationSpec;

    fn spec() -> JobSpec {
        JobSpec::Generation(GenerationSpec {
            prompt: "a cat".into(),
            negative_prompt: None,
            width: 64,
            height: 64,
            steps: 1,
            guidance: 5.0,
            scheduler: None,
            seed: 0,
            n: 1,
            loras: Vec::new(),
        })
    }

    #[test]
    fn queue_runs_in_order_and_retries_an_interrupted_job_once() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("jobs.sqlite3");
        {
            let store = Store::open(&path)?;
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
        let store = Store::open(&path)?;
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
        let store = Store::open(&path)?;
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
}
