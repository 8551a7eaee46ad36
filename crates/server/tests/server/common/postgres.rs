//! A fresh PostgreSQL database per test on the server `HUATU_TEST_DATABASE_URL` names
//! (scripts/with_postgres.sh starts one and sets it). Without it a test is skipped with a
//! note, except under CI=true, where it fails: CI must run the PostgreSQL tests.

use std::time::Duration;

use huatu_server::job_queue::postgres::PgQueue;
use huatu_server::jobs::JobSpec;

/// A new empty database's URL, or None (skipped, outside CI) without a server.
pub fn fresh_database(test: &str) -> Option<String> {
    let Ok(url) = std::env::var("HUATU_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: HUATU_TEST_DATABASE_URL is not set under CI=true; run the tests through scripts/with_postgres.sh"
        );
        eprintln!(
            "SKIPPED {test}: no PostgreSQL (run through scripts/with_postgres.sh, or set HUATU_TEST_DATABASE_URL)"
        );
        return None;
    };
    let name = format!("huatu_{test}_{:08x}", rand::random::<u32>());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|error| panic!("cannot reach {url}: {error}"));
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    });
    let base = url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base);
    Some(format!("{base}/{name}"))
}

/// Runs SQL on `url` (to look at or change what the queue wrote).
pub fn sql(url: &str, statements: &str) -> Vec<tokio_postgres::SimpleQueryMessage> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client.simple_query(statements).await.unwrap()
    })
}

/// A queue handle of its own (its own connections, as another process has).
pub fn queue(url: &str, lease: Duration) -> PgQueue {
    PgQueue::connect_with(url, lease, "huatu-test").unwrap()
}

/// A one-step 64×64 generation spec as the API stores it (the stored JSON).
pub fn generation(seed: u64, loras: &[&str]) -> JobSpec {
    let loras: Vec<serde_json::Value> = loras
        .iter()
        .map(|name| serde_json::json!({"name": name, "scale": 1.0}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "kind": "generation", "prompt": "a red square", "negative_prompt": null,
        "width": 64, "height": 64, "steps": 1, "guidance": 5.0, "scheduler": null,
        "seed": seed, "n": 1, "loras": loras,
    }))
    .unwrap()
}
