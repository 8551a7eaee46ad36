//! Leases on the PostgreSQL queue: a worker's heartbeat (it records the worker and
//! renews its jobs' leases, learning of cancels and lost leases) and the expiry any node
//! runs (a job whose lease ran out is re-queued once, failed the second time, or
//! cancelled when a cancel was asked), both on the database's clock.

use super::{PgQueue, NOW};
use crate::job_queue::store::{
    Expired, Lease, LeaseState, QueueError, WorkerIdentity, LEASE_EXPIRED_TWICE,
};
use crate::jobs::JobStatus;

impl PgQueue {
    pub fn heartbeat(
        &self,
        worker: &WorkerIdentity,
        leases: &[Lease],
    ) -> Result<Vec<LeaseState>, QueueError> {
        let name = worker.name.clone();
        let capabilities = worker.capabilities.clone();
        let leases = leases.to_vec();
        let lease = self.lease_seconds();
        self.run(move |mut connection| async move {
            let client = connection.client();
            client
                .execute(
                    &format!(
                        "INSERT INTO workers (name, capabilities, started_at, last_seen)
                         VALUES ($1, $2, {NOW}, {NOW})
                         ON CONFLICT (name) DO UPDATE SET capabilities = $2, last_seen = {NOW}"
                    ),
                    &[&name, &capabilities],
                )
                .await?;
            let mut states = Vec::with_capacity(leases.len());
            for held in &leases {
                let row = client
                    .query_opt(
                        &format!(
                            "UPDATE jobs SET lease_expires_at = {NOW} + $4
                             WHERE id = $1 AND attempts = $2 AND worker = $3 AND status = 'running'
                             RETURNING cancel_requested"
                        ),
                        &[&held.job, &(held.attempt as i32), &held.worker, &lease],
                    )
                    .await?;
                states.push(match row {
                    Some(row) => LeaseState::Held {
                        cancel_requested: row.get(0),
                    },
                    None => LeaseState::Lost,
                });
            }
            Ok(states)
        })
    }

    pub fn expire_leases(&self) -> Result<Vec<Expired>, QueueError> {
        self.run(move |mut connection| async move {
            let rows = connection
                .client()
                .query(
                    &format!(
                        "WITH expired AS (
                             UPDATE jobs SET
                                 status = CASE WHEN cancel_requested THEN 'cancelled'
                                               WHEN attempts >= 2 THEN 'failed'
                                               ELSE 'queued' END,
                                 error = CASE WHEN NOT cancel_requested AND attempts >= 2 THEN $1
                                              ELSE error END,
                                 finished_at = CASE WHEN cancel_requested OR attempts >= 2
                                                    THEN {NOW} END,
                                 worker = NULL, lease_expires_at = NULL
                             WHERE status = 'running' AND lease_expires_at < {NOW}
                             RETURNING id, status, error),
                         counted AS (
                             UPDATE counters SET value = value + (SELECT COUNT(*) FROM expired)
                             WHERE name = 'lease_expiries')
                         SELECT id, status, error FROM expired"
                    ),
                    &[&LEASE_EXPIRED_TWICE],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|row| Expired {
                    job: row.get(0),
                    status: JobStatus::parse(row.get(1)).unwrap_or(JobStatus::Queued),
                    error: row.get(2),
                })
                .collect())
        })
    }
}
