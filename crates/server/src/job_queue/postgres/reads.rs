//! What the API and retention read from the PostgreSQL queue (jobs, queue positions,
//! counts, workers, blob references) and retention's eviction, as `PgQueue` methods the
//! `JobQueue` impl in `mod.rs` calls.

use super::rows::{job_from_row, COLUMNS};
use super::{PgQueue, NOW};
use crate::job_queue::store::{Counts, QueueError, WorkerRecord};
use crate::jobs::{Job, JobStatus};

impl PgQueue {
    pub fn get(&self, id: &str) -> Result<Option<Job>, QueueError> {
        let id = id.to_string();
        self.run(move |mut connection| async move {
            let row = connection
                .client()
                .query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"), &[&id])
                .await?;
            row.map(|row| job_from_row(&row).map(|(job, _)| job))
                .transpose()
        })
    }

    pub fn list(&self, limit: usize) -> Result<Vec<Job>, QueueError> {
        let limit = limit as i64;
        self.run(move |mut connection| async move {
            let rows = connection
                .client()
                .query(
                    &format!("SELECT {COLUMNS} FROM jobs ORDER BY seq DESC LIMIT $1"),
                    &[&limit],
                )
                .await?;
            rows.iter()
                .map(|row| job_from_row(row).map(|(job, _)| job))
                .collect()
        })
    }

    pub fn queue_position(&self, id: &str) -> Result<Option<usize>, QueueError> {
        let id = id.to_string();
        self.run(move |mut connection| async move {
            let row = connection
                .client()
                .query_opt(
                    "SELECT (SELECT COUNT(*) FROM jobs AS ahead WHERE ahead.status = 'queued' AND ahead.seq < job.seq)
                     FROM jobs AS job WHERE job.id = $1 AND job.status = 'queued'",
                    &[&id],
                )
                .await?;
            Ok(row.map(|row| row.get::<_, i64>(0) as usize))
        })
    }

    pub fn is_referenced(&self, blob: &str) -> Result<bool, QueueError> {
        let blob = blob.to_string();
        self.run(move |mut connection| async move {
            Ok(connection
                .client()
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM job_blobs WHERE blob = $1)",
                    &[&blob],
                )
                .await?
                .get(0))
        })
    }

    pub fn oldest_finished(
        &self,
        before: Option<f64>,
        limit: usize,
    ) -> Result<Vec<String>, QueueError> {
        let before = before.unwrap_or(f64::INFINITY);
        let limit = limit as i64;
        self.run(move |mut connection| async move {
            let rows = connection
                .client()
                .query(
                    "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < $1
                     AND status IN ('succeeded', 'failed', 'cancelled')
                     ORDER BY finished_at, seq LIMIT $2",
                    &[&before, &limit],
                )
                .await?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    pub fn evict(&self, id: &str) -> Result<Option<Vec<String>>, QueueError> {
        let id = id.to_string();
        self.run(move |mut connection| async move {
            let row = connection
                .client()
                .query_one(
                    "WITH gone AS (
                         DELETE FROM jobs WHERE id = $1 AND status IN ('succeeded', 'failed', 'cancelled')
                         RETURNING id),
                     refs AS (
                         DELETE FROM job_blobs WHERE job IN (SELECT id FROM gone) RETURNING blob)
                     SELECT EXISTS (SELECT 1 FROM gone), ARRAY(SELECT blob FROM refs ORDER BY blob)",
                    &[&id],
                )
                .await?;
            let deleted: bool = row.get(0);
            Ok(deleted.then(|| row.get(1)))
        })
    }

    pub fn counts(&self) -> Result<Counts, QueueError> {
        self.run(move |mut connection| async move {
            let rows = connection
                .client()
                .query("SELECT status, COUNT(*) FROM jobs GROUP BY status", &[])
                .await?;
            let mut counts = Counts::default();
            for row in rows {
                let count = row.get::<_, i64>(1) as u64;
                match JobStatus::parse(row.get(0)) {
                    Some(JobStatus::Queued) => counts.queued = count,
                    Some(JobStatus::Running) => counts.running = count,
                    Some(JobStatus::Succeeded) => counts.succeeded = count,
                    Some(JobStatus::Failed) => counts.failed = count,
                    Some(JobStatus::Cancelled) => counts.cancelled = count,
                    None => {}
                }
            }
            Ok(counts)
        })
    }

    pub fn lease_expiries(&self) -> Result<u64, QueueError> {
        self.run(move |mut connection| async move {
            let row = connection
                .client()
                .query_one(
                    "SELECT value FROM counters WHERE name = 'lease_expiries'",
                    &[],
                )
                .await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    pub fn workers(&self) -> Result<Vec<WorkerRecord>, QueueError> {
        self.run(move |mut connection| async move {
            let rows = connection
                .client()
                .query(
                    &format!(
                        "SELECT w.name, w.capabilities, {NOW} - w.last_seen,
                             (SELECT COUNT(*) FROM jobs j WHERE j.worker = w.name AND j.status = 'succeeded'),
                             (SELECT COUNT(*) FROM jobs j WHERE j.worker = w.name AND j.status = 'failed'),
                             (SELECT COUNT(*) FROM jobs j WHERE j.worker = w.name
                                  AND j.finished_at > {NOW} - 60)
                         FROM workers w ORDER BY w.name"
                    ),
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| WorkerRecord {
                    name: row.get(0),
                    capabilities: row.get(1),
                    silent_seconds: row.get(2),
                    succeeded: row.get::<_, i64>(3) as u64,
                    failed: row.get::<_, i64>(4) as u64,
                    finished_last_minute: row.get::<_, i64>(5) as u64,
                })
                .collect())
        })
    }
}
