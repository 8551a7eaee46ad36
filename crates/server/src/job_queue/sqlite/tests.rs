//! Tests of the SQLite queue: order and one retry of an interrupted job, upgrades of
//! older files with their blob references, unreadable rows, newer or corrupt files.

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
fn rows_that_cannot_be_read_fail_at_claim_instead_of_blocking_the_queue() -> anyhow::Result<()> {
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
