//! Errors of the S3 blob store: each names the bucket, the endpoint and (for one object)
//! the key, so a log line or a start-up failure says where to look. The directory store
//! keeps plain `std::io::Error`s (they name no path; its callers add it); an S3 error
//! reaches the same callers wrapped in one (`into_io`), its whole chain on one line since
//! they log `{error}`. object_store's errors are boxed: they are large, and these travel
//! in every `Result` of the store.

/// What went wrong talking to an S3-compatible store.
#[derive(Debug, thiserror::Error)]
pub enum BlobStoreError {
    #[error("--blob-store must look like s3://BUCKET or s3://BUCKET/PREFIX, got `{given}`")]
    BadLocation { given: String },
    #[error("cannot set up the S3 client for bucket {bucket} at {endpoint}")]
    Client {
        bucket: String,
        endpoint: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("the S3 bucket {bucket} does not exist at {endpoint} (create it first; huatu does not create buckets)")]
    NoBucket { bucket: String, endpoint: String },
    #[error("cannot {operation} {key} in S3 bucket {bucket} at {endpoint}")]
    Request {
        operation: &'static str,
        bucket: String,
        endpoint: String,
        key: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("no answer from the S3 endpoint {endpoint} (bucket {bucket}) to {operation} {key} within {seconds} s")]
    TimedOut {
        operation: &'static str,
        bucket: String,
        endpoint: String,
        key: String,
        seconds: u64,
    },
    #[error("the S3 client for bucket {bucket} stopped before it answered")]
    ClientStopped { bucket: String },
    #[error("cannot start the S3 client's threads")]
    Runtime(#[source] std::io::Error),
    #[error("cannot write the S3 blob store's local copies at {path}")]
    Cache {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BlobStoreError {
    /// As the `std::io::Error` the blob store's callers handle.
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(InIo(self))
    }

    /// Whether `error` wraps an S3 store error.
    pub fn is_in(error: &std::io::Error) -> bool {
        error
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<InIo>().is_some())
    }
}

/// A `BlobStoreError` inside a `std::io::Error`: its text is the whole chain.
#[derive(Debug)]
struct InIo(BlobStoreError);

impl std::fmt::Display for InIo {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&crate::error::one_line_chain(&self.0))
    }
}

impl std::error::Error for InIo {}
