//! The PostgreSQL queue's layout and its upgrades. The version lives in
//! `huatu_schema(version)`; each migration runs in one transaction under an advisory
//! lock, so nodes starting together apply it once. A database of a newer layout is
//! refused (the node is older than the cluster).

use tokio_postgres::Client;

use crate::job_queue::store::QueueError;

/// The layout this huatu reads and writes.
/// 1: `jobs` (with needs, lease and cancel columns) and `job_blobs`.
/// 2: `workers` (capabilities, liveness) and `counters` (lease expiries).
pub const POSTGRES_VERSION: i32 = 2;

/// The advisory lock key migrations hold ("huatu" in ASCII).
const MIGRATION_LOCK: i64 = 0x68_75_61_74_75;

/// Migration `n` brings layout `n - 1` to `n`.
pub const MIGRATIONS: [&str; 2] = [
    "
CREATE TABLE jobs (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    kind             TEXT NOT NULL,
    spec             TEXT NOT NULL,
    spec_version     INTEGER NOT NULL,
    needs            TEXT[] NOT NULL DEFAULT '{}',
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    images           TEXT NOT NULL DEFAULT '[]',
    created_at       DOUBLE PRECISION NOT NULL,
    started_at       DOUBLE PRECISION,
    finished_at      DOUBLE PRECISION,
    worker           TEXT,
    lease_expires_at DOUBLE PRECISION,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX jobs_queued ON jobs (seq) WHERE status = 'queued';
CREATE INDEX jobs_active ON jobs (status) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_by_finish ON jobs (finished_at, seq) WHERE finished_at IS NOT NULL;
CREATE TABLE job_blobs (
    job  TEXT NOT NULL,
    blob TEXT NOT NULL,
    PRIMARY KEY (job, blob)
);
CREATE INDEX job_blobs_by_blob ON job_blobs (blob);
",
    "
CREATE TABLE workers (
    name         TEXT PRIMARY KEY,
    capabilities TEXT[] NOT NULL,
    started_at   DOUBLE PRECISION NOT NULL,
    last_seen    DOUBLE PRECISION NOT NULL
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('lease_expiries', 0);
CREATE INDEX jobs_by_worker ON jobs (worker, finished_at) WHERE finished_at IS NOT NULL;
",
];

/// Brings the database to `POSTGRES_VERSION` (or to `target`, for tests of the upgrade).
pub async fn migrate(client: &mut Client, target: i32) -> Result<MigrationOutcome, QueueError> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    transaction
        .batch_execute("CREATE TABLE IF NOT EXISTS huatu_schema (version INTEGER NOT NULL)")
        .await?;
    let found: Option<i32> = transaction
        .query_opt("SELECT version FROM huatu_schema", &[])
        .await?
        .map(|row| row.get(0));
    let found = found.unwrap_or(0);
    if found > POSTGRES_VERSION {
        return Ok(MigrationOutcome::Newer { found });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().take(target as usize) {
        let version = index as i32 + 1;
        if version > found {
            transaction.batch_execute(migration).await?;
        }
    }
    transaction.execute("DELETE FROM huatu_schema", &[]).await?;
    transaction
        .execute(
            "INSERT INTO huatu_schema (version) VALUES ($1)",
            &[&found.max(target)],
        )
        .await?;
    transaction.commit().await?;
    Ok(MigrationOutcome::Ready { from: found })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationOutcome {
    /// Up to date, upgraded from layout `from`.
    Ready { from: i32 },
    /// A newer huatu made this database.
    Newer { found: i32 },
}
