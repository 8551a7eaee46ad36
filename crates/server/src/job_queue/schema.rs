//! The queue database's layout and its upgrades: the version kept in SQLite's
//! `user_version`, the tables of each version, and the migration that brings an older
//! file up to date in one transaction (recording the blobs existing rows reference).

use rusqlite::{params, Connection};

/// The database layout this server reads and writes, kept in SQLite's `user_version`.
/// 1: the `jobs` table alone (the first release; its files say 0). 2: `spec_version` per
/// row and `job_blobs`, the blobs each job references (retention counts them).
pub const DATABASE_VERSION: i64 = 2;

/// Version 1, as the first release created it.
pub(super) const SCHEMA_V1: &str = "
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

/// From version 1 to 2 (the `spec_version` column is added separately: SQLite has no
/// `ADD COLUMN IF NOT EXISTS`).
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS job_blobs (
    job  TEXT NOT NULL,
    blob TEXT NOT NULL,
    PRIMARY KEY (job, blob)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_blobs_by_blob ON job_blobs (blob);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs (finished_at, seq) WHERE finished_at IS NOT NULL;
";

/// Brings a database of layout `from` to `DATABASE_VERSION` in one transaction.
pub fn migrate(connection: &mut Connection, from: i64) -> rusqlite::Result<()> {
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    transaction.execute_batch(SCHEMA_V1)?;
    if from < 2 {
        let has_spec_version: bool = transaction.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'spec_version')",
            [],
            |row| row.get(0),
        )?;
        if !has_spec_version {
            // Rows of the first release are spec version 1.
            transaction.execute_batch(
                "ALTER TABLE jobs ADD COLUMN spec_version INTEGER NOT NULL DEFAULT 1",
            )?;
        }
        transaction.execute_batch(SCHEMA_V2)?;
        // References of existing rows: every blob id their request or results name.
        let rows: Vec<(String, String, String)> = {
            let mut statement = transaction.prepare("SELECT id, spec, images FROM jobs")?;
            let rows =
                statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (id, spec, images) in rows {
            for blob in blob_ids_in(&spec).chain(blob_ids_in(&images)) {
                transaction.execute(
                    "INSERT OR IGNORE INTO job_blobs (job, blob) VALUES (?1, ?2)",
                    params![id, blob],
                )?;
            }
        }
    }
    transaction.execute_batch(&format!("PRAGMA user_version = {DATABASE_VERSION}"))?;
    transaction.commit()
}

/// Every run of exactly 64 lowercase hex digits in `text`: the blob ids a stored request
/// or result list names (a prompt that happens to hold one only keeps a blob longer).
fn blob_ids_in(text: &str) -> impl Iterator<Item = &str> {
    let is_hex = |byte: u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
    let bytes = text.as_bytes();
    let mut ids = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        if !is_hex(bytes[start]) {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < bytes.len() && is_hex(bytes[end]) {
            end += 1;
        }
        if end - start == 64 {
            ids.push(&text[start..end]);
        }
        start = end;
    }
    ids.into_iter()
}
