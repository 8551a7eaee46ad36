//! The PostgreSQL queue backend, shared by any number of API nodes and workers. Claiming
//! takes the oldest queued job the worker can run with `FOR UPDATE SKIP LOCKED`, so
//! workers never wait on each other's rows; the claim sets a lease (`worker`, the
//! attempt, `lease_expires_at` on the database's clock) that the worker's heartbeat
//! renews. Any node re-queues a job whose lease expired (once; the second expiry fails
//! it with the reason), and an outcome is recorded only under the lease it was claimed
//! with, so a worker that lost its lease (partitioned, paused) has its result discarded.
//! A cancel is a flag on the row: the worker learns it from its next heartbeat, and the
//! statement that records the outcome turns it into `cancelled` atomically.
//!
//! Here: connecting, and the statements that move a job through its life (submit,
//! claim, outcomes, cancels); `leases.rs` has heartbeats and lease expiry, `reads.rs`
//! what the API and retention read.

mod leases;
mod notify;
mod pool;
mod reads;
mod rows;
pub mod schema;
mod tls;

use std::sync::Arc;
use std::time::Duration;

pub use self::notify::{EventBus, EVENTS_CHANNEL};
use self::pool::{Driver, Pool};
use self::rows::{job_from_row, COLUMNS};
use self::schema::{migrate, MigrationOutcome};
pub use self::schema::{MIGRATIONS, POSTGRES_VERSION};
use crate::error::ServerError;
use crate::job_queue::needs::job_needs;
use crate::job_queue::store::{
    Counts, Expired, JobQueue, Lease, LeaseState, QueueError, Recovery, SubmitError,
    WorkerIdentity, WorkerRecord,
};
use crate::job_queue::url::redact_url;
use crate::jobs::{Job, JobSpec, JobStatus, SPEC_VERSION};

/// Now, on the database's clock (every node compares leases on the same clock).
const NOW: &str = "EXTRACT(EPOCH FROM clock_timestamp())::float8";

/// The advisory lock submits hold while they count the active jobs (so concurrent
/// submits on several API nodes cannot overfill the queue).
const SUBMIT_LOCK: i64 = 0x68_75_61_74_76;

/// How long a lease lasts without a heartbeat.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

pub struct PgQueue {
    driver: Driver,
    pool: Arc<Pool>,
    described: String,
    lease: Duration,
    bus: Arc<EventBus>,
}

impl PgQueue {
    /// Connects, brings the layout up to date (refusing a newer one) and starts the
    /// event relay's sender.
    pub fn connect(url: &str) -> Result<Self, ServerError> {
        Self::connect_with(url, DEFAULT_LEASE, "huatu")
    }

    /// With a lease length of its own and an `application_name` (seen in
    /// `pg_stat_activity`).
    pub fn connect_with(
        url: &str,
        lease: Duration,
        application: &str,
    ) -> Result<Self, ServerError> {
        let described = redact_url(url);
        let wrap = |source: QueueError| ServerError::Queue {
            database: described.clone(),
            source,
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|source| wrap(QueueError::Postgres(source)))?;
        config.application_name(application);
        config.connect_timeout(Duration::from_secs(10));
        let tls = tls::connector().map_err(ServerError::Config)?;
        let driver = Driver::new().map_err(ServerError::Runtime)?;
        let pool = Arc::new(Pool::new(config, tls));
        let migrating = pool.clone();
        let outcome = driver
            .run(async move {
                let mut connection = migrating.get().await?;
                migrate(connection.client(), POSTGRES_VERSION).await
            })
            .map_err(wrap)?;
        match outcome {
            MigrationOutcome::Newer { found } => {
                return Err(ServerError::NewerQueue {
                    database: described,
                    found,
                    known: POSTGRES_VERSION,
                })
            }
            MigrationOutcome::Ready { from } if from < POSTGRES_VERSION => {
                tracing::info!(
                    "job queue {described}: layout upgraded from {from} to {POSTGRES_VERSION}"
                );
            }
            MigrationOutcome::Ready { .. } => {}
        }
        let bus = Arc::new(EventBus::start(
            &driver.handle(),
            pool.config().clone(),
            pool.tls().clone(),
        ));
        Ok(Self {
            driver,
            pool,
            described,
            lease,
            bus,
        })
    }

    /// Publishes job events to every node (NOTIFY) and feeds the events of all nodes
    /// into local hubs (LISTEN).
    pub fn bus(&self) -> Arc<EventBus> {
        self.bus.clone()
    }

    /// Runs `query` with a pooled connection on the driver's runtime.
    fn run<T, F, Fut>(&self, query: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(pool::Connection) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, QueueError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.driver.run(async move {
            let connection = pool.get().await?;
            query(connection).await
        })
    }

    fn lease_seconds(&self) -> f64 {
        self.lease.as_secs_f64()
    }
}

impl JobQueue for PgQueue {
    fn describe(&self) -> String {
        self.described.clone()
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn recover(&self) -> Result<Recovery, QueueError> {
        // Other nodes may be running jobs right now: only expired leases say a job's
        // worker is gone (`expire_leases`).
        Ok(Recovery::default())
    }

    fn submit(&self, id: &str, spec: &JobSpec, capacity: usize) -> Result<Job, SubmitError> {
        let spec_json = serde_json::to_string(spec).unwrap_or_else(|_| "{}".into());
        let needs = job_needs(spec);
        let kind = spec.kind().to_string();
        let blobs: Vec<String> = spec.input_blobs().into_iter().map(String::from).collect();
        let job_id = id.to_string();
        let capacity = capacity as i64;
        let submitted = self.run(move |mut connection| async move {
            let transaction = connection.client().transaction().await?;
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&SUBMIT_LOCK])
                .await?;
            let active: i64 = transaction
                .query_one(
                    "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')",
                    &[],
                )
                .await?
                .get(0);
            if active >= capacity {
                return Ok(Err(active as usize));
            }
            let created_at: f64 = transaction
                .query_one(
                    &format!(
                        "INSERT INTO jobs (id, kind, spec, spec_version, needs, status, created_at)
                         VALUES ($1, $2, $3, $4, $5, 'queued', {NOW}) RETURNING created_at"
                    ),
                    &[&job_id, &kind, &spec_json, &(SPEC_VERSION as i32), &needs],
                )
                .await?
                .get(0);
            transaction
                .execute(
                    "INSERT INTO job_blobs (job, blob) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
                    &[&job_id, &blobs],
                )
                .await?;
            transaction.commit().await?;
            Ok(Ok(created_at))
        })?;
        match submitted {
            Err(active) => Err(SubmitError::Full { active }),
            Ok(created_at) => Ok(Job {
                id: id.to_string(),
                spec: spec.clone(),
                status: JobStatus::Queued,
                attempts: 0,
                error: None,
                images: Vec::new(),
                created_at,
                started_at: None,
                finished_at: None,
            }),
        }
    }

    fn claim(&self, worker: &WorkerIdentity) -> Result<Option<Job>, QueueError> {
        let name = worker.name.clone();
        let capabilities = worker.capabilities.clone();
        let lease = self.lease_seconds();
        self.run(move |mut connection| async move {
            let client = connection.client();
            loop {
                let row = client
                    .query_opt(
                        &format!(
                            "UPDATE jobs SET status = 'running', attempts = attempts + 1,
                                 started_at = {NOW}, worker = $1, lease_expires_at = {NOW} + $2,
                                 cancel_requested = FALSE
                             WHERE seq = (SELECT seq FROM jobs
                                          WHERE status = 'queued' AND needs <@ $3::text[]
                                          ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
                             RETURNING {COLUMNS}"
                        ),
                        &[&name, &lease, &capabilities],
                    )
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let (job, problem) = job_from_row(&row)?;
                let Some(problem) = problem else {
                    return Ok(Some(job));
                };
                tracing::warn!(job = %job.id, "failing a job whose stored request cannot be read: {problem}");
                client
                    .execute(
                        &format!(
                            "UPDATE jobs SET status = 'failed', error = $2, finished_at = {NOW},
                                 lease_expires_at = NULL WHERE id = $1"
                        ),
                        &[&job.id, &problem],
                    )
                    .await?;
            }
        })
    }

    fn heartbeat(
        &self,
        worker: &WorkerIdentity,
        leases: &[Lease],
    ) -> Result<Vec<LeaseState>, QueueError> {
        PgQueue::heartbeat(self, worker, leases)
    }

    fn expire_leases(&self) -> Result<Vec<Expired>, QueueError> {
        PgQueue::expire_leases(self)
    }

    fn succeed(&self, lease: &Lease, images: &[String]) -> Result<Option<JobStatus>, QueueError> {
        let lease = lease.clone();
        let images = images.to_vec();
        let images_json = serde_json::to_string(&images).unwrap_or_else(|_| "[]".into());
        self.run(move |mut connection| async move {
            let row = connection
                .client()
                .query_opt(
                    &format!(
                        "WITH done AS (
                             UPDATE jobs SET
                                 status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'succeeded' END,
                                 images = CASE WHEN cancel_requested THEN '[]' ELSE $4 END,
                                 error = NULL, finished_at = {NOW}, lease_expires_at = NULL
                             WHERE id = $1 AND attempts = $2 AND worker = $3 AND status = 'running'
                             RETURNING id, status),
                         refs AS (
                             INSERT INTO job_blobs (job, blob)
                             SELECT done.id, unnest($5::text[]) FROM done WHERE done.status = 'succeeded'
                             ON CONFLICT DO NOTHING)
                         SELECT status FROM done"
                    ),
                    &[
                        &lease.job,
                        &(lease.attempt as i32),
                        &lease.worker,
                        &images_json,
                        &images,
                    ],
                )
                .await?;
            Ok(row.and_then(|row| JobStatus::parse(row.get(0))))
        })
    }

    fn fail(&self, lease: &Lease, reason: &str) -> Result<Option<JobStatus>, QueueError> {
        let lease = lease.clone();
        let reason = reason.to_string();
        self.run(move |mut connection| async move {
            let row = connection
                .client()
                .query_opt(
                    &format!(
                        "UPDATE jobs SET
                             status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
                             error = CASE WHEN cancel_requested THEN NULL ELSE $4 END,
                             finished_at = {NOW}, lease_expires_at = NULL
                         WHERE id = $1 AND attempts = $2 AND worker = $3 AND status = 'running'
                         RETURNING status"
                    ),
                    &[&lease.job, &(lease.attempt as i32), &lease.worker, &reason],
                )
                .await?;
            Ok(row.and_then(|row| JobStatus::parse(row.get(0))))
        })
    }

    fn fail_unfinished(&self, id: &str, reason: &str) -> Result<bool, QueueError> {
        let id = id.to_string();
        let reason = reason.to_string();
        self.run(move |mut connection| async move {
            let changed = connection
                .client()
                .execute(
                    &format!(
                        "UPDATE jobs SET status = 'failed', error = $2, finished_at = {NOW},
                             lease_expires_at = NULL
                         WHERE id = $1 AND status IN ('queued', 'running')"
                    ),
                    &[&id, &reason],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn mark_cancelled(&self, lease: &Lease) -> Result<bool, QueueError> {
        let lease = lease.clone();
        self.run(move |mut connection| async move {
            let changed = connection
                .client()
                .execute(
                    &format!(
                        "UPDATE jobs SET status = 'cancelled', finished_at = {NOW}, lease_expires_at = NULL
                         WHERE id = $1 AND attempts = $2 AND worker = $3 AND status = 'running'"
                    ),
                    &[&lease.job, &(lease.attempt as i32), &lease.worker],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn cancel_queued(&self, id: &str) -> Result<bool, QueueError> {
        let id = id.to_string();
        self.run(move |mut connection| async move {
            let changed = connection
                .client()
                .execute(
                    &format!(
                        "UPDATE jobs SET status = 'cancelled', finished_at = {NOW}
                         WHERE id = $1 AND status = 'queued'"
                    ),
                    &[&id],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn request_cancel(&self, id: &str) -> Result<bool, QueueError> {
        let id = id.to_string();
        self.run(move |mut connection| async move {
            let changed = connection
                .client()
                .execute(
                    "UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 AND status = 'running'",
                    &[&id],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    fn requeue_after_shutdown(&self, lease: &Lease) -> Result<(), QueueError> {
        let lease = lease.clone();
        self.run(move |mut connection| async move {
            connection
                .client()
                .execute(
                    &format!(
                        "UPDATE jobs SET
                             status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
                             finished_at = CASE WHEN cancel_requested THEN {NOW} END,
                             attempts = GREATEST(attempts - 1, 0), worker = NULL, lease_expires_at = NULL
                         WHERE id = $1 AND attempts = $2 AND worker = $3 AND status = 'running'"
                    ),
                    &[&lease.job, &(lease.attempt as i32), &lease.worker],
                )
                .await?;
            Ok(())
        })
    }

    fn get(&self, id: &str) -> Result<Option<Job>, QueueError> {
        PgQueue::get(self, id)
    }

    fn list(&self, limit: usize) -> Result<Vec<Job>, QueueError> {
        PgQueue::list(self, limit)
    }

    fn queue_position(&self, id: &str) -> Result<Option<usize>, QueueError> {
        PgQueue::queue_position(self, id)
    }

    fn is_referenced(&self, blob: &str) -> Result<bool, QueueError> {
        PgQueue::is_referenced(self, blob)
    }

    fn oldest_finished(
        &self,
        before: Option<f64>,
        limit: usize,
    ) -> Result<Vec<String>, QueueError> {
        PgQueue::oldest_finished(self, before, limit)
    }

    fn evict(&self, id: &str) -> Result<Option<Vec<String>>, QueueError> {
        PgQueue::evict(self, id)
    }

    fn counts(&self) -> Result<Counts, QueueError> {
        PgQueue::counts(self)
    }

    fn lease_expiries(&self) -> Result<u64, QueueError> {
        PgQueue::lease_expiries(self)
    }

    fn workers(&self) -> Result<Vec<WorkerRecord>, QueueError> {
        PgQueue::workers(self)
    }
}
