//! A fresh bucket per test on the S3-compatible server `HUATU_TEST_S3_ENDPOINT` names
//! (scripts/with_s3.sh starts moto and sets it, with AWS_* test credentials). Without
//! it a test is skipped with a note, except under CI=true, where it fails: CI must run
//! the S3 tests.

use std::net::SocketAddr;

use huatu_server::blobs::S3Location;

use super::request;

/// The test server's endpoint URL, or None (skipped, outside CI).
pub fn endpoint(test: &str) -> Option<String> {
    let Ok(endpoint) = std::env::var("HUATU_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: HUATU_TEST_S3_ENDPOINT is not set under CI=true; run the tests through scripts/with_s3.sh"
        );
        eprintln!(
            "SKIPPED {test}: no S3 server (run through scripts/with_s3.sh, or set HUATU_TEST_S3_ENDPOINT)"
        );
        return None;
    };
    Some(endpoint)
}

/// The address of an `http://HOST:PORT` endpoint.
pub fn address(endpoint: &str) -> SocketAddr {
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|error| panic!("{endpoint} is not http://IP:PORT: {error}"))
}

/// A new empty bucket (moto accepts an unsigned create) and a location in it under
/// `prefix`, or None (skipped) without a server.
pub fn fresh_bucket(test: &str, prefix: &str) -> Option<S3Location> {
    let endpoint = endpoint(test)?;
    let bucket = format!(
        "huatu-{}-{:08x}",
        test.replace('_', "-"),
        rand::random::<u32>()
    );
    let created = request(address(&endpoint), "PUT", &format!("/{bucket}"), &[], b"");
    assert_eq!(
        created.status,
        200,
        "creating bucket {bucket}: {}",
        created.text()
    );
    Some(S3Location::at(&endpoint, &bucket, prefix))
}

/// Runs `operation` on a plain object_store client of `location`'s bucket (signed with
/// the test credentials), to look at keys as another S3 client sees them.
fn with_raw_client<T>(
    location: &S3Location,
    operation: impl AsyncFnOnce(&object_store::aws::AmazonS3) -> T,
) -> T {
    let client = object_store::aws::AmazonS3Builder::from_env()
        .with_endpoint(location.endpoint.as_deref().unwrap_or_default())
        .with_allow_http(true)
        .with_bucket_name(&location.bucket)
        .build()
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(operation(&client))
}

/// Whether the bucket holds `key`.
pub fn object_exists(location: &S3Location, key: &str) -> bool {
    use object_store::ObjectStore;
    with_raw_client(location, async |client| {
        match client.head(&key.into()).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(error) => panic!("cannot look up {key}: {error}"),
        }
    })
}

/// Stores `bytes` at `key`, beside huatu's blobs.
pub fn put_object(location: &S3Location, key: &str, bytes: &[u8]) {
    use object_store::ObjectStore;
    let payload = object_store::PutPayload::from(bytes.to_vec());
    with_raw_client(location, async |client| {
        client.put(&key.into(), payload).await.unwrap();
    })
}
