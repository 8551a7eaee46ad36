//! How a `jobs` row of the PostgreSQL queue becomes a `Job`: the columns every job
//! query selects, in the order `job_from_row` reads them.

use tokio_postgres::Row;

use crate::job_queue::store::{read_spec, QueueError};
use crate::jobs::{Job, JobSpec, JobStatus};

pub(super) const COLUMNS: &str =
    "id, kind, spec, spec_version, status, attempts, error, images, created_at, started_at, finished_at";

/// A row as read: the job and, when its request cannot be read, why.
pub(super) fn job_from_row(row: &Row) -> Result<(Job, Option<String>), QueueError> {
    let stored_kind: String = row.try_get(1)?;
    let spec: String = row.try_get(2)?;
    let version: i32 = row.try_get(3)?;
    let status: String = row.try_get(4)?;
    let images: String = row.try_get(7)?;
    let (spec, problem) = match read_spec(&spec, i64::from(version)) {
        Ok(spec) => (spec, None),
        Err(problem) => (JobSpec::Unreadable { stored_kind }, Some(problem)),
    };
    let attempts: i32 = row.try_get(5)?;
    let job = Job {
        id: row.try_get(0)?,
        spec,
        // Only this code writes the status column.
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
        attempts: attempts.max(0) as u32,
        error: row.try_get(6)?,
        images: serde_json::from_str(&images).unwrap_or_default(),
        created_at: row.try_get(8)?,
        started_at: row.try_get(9)?,
        finished_at: row.try_get(10)?,
    };
    Ok((job, problem))
}
