//! The S3-compatible backend of the blob store: blob `id` is the object
//! `<prefix>/<first two hex>/<id>` in one bucket, through Apache Arrow's `object_store`
//! (AWS S3, MinIO, Ceph, R2, moto; see `s3_location.rs` for the settings).
//!
//! The store's callers are synchronous (worker threads, blocking tasks, a few async
//! handlers): each request runs on this store's own small tokio runtime and the caller
//! waits on a channel, which works from any thread without nesting runtimes. Every
//! request is bounded (connect and request timeouts, two retries, then a hard limit), so
//! an unreachable endpoint is an error, never a hang.
//!
//! A bucket is shared by nature (several machines, or a server restarted elsewhere), so
//! deletion always respects the grace period: an object is deleted only once its
//! Last-Modified is older than it. `put` always uploads, even when the object exists:
//! the upload is what refreshes Last-Modified for a blob another process may be about
//! to delete as old (content addressing makes the overwrite harmless).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

use super::{is_blob_id, BlobBackend, BlobStoreError, LocalFile, S3Location};

/// The longest a whole listing (retention's) may take: a page of a thousand keys per
/// request, so about a million blobs at a few hundred milliseconds a page.
const LISTING_LIMIT: Duration = Duration::from_secs(15 * 60);
/// Local copies older than this in the cache directory are leftovers of a crash.
const STALE_COPY: Duration = Duration::from_secs(24 * 3600);

pub struct S3Store {
    location: S3Location,
    endpoint: String,
    store: Arc<dyn ObjectStore>,
    /// Requests run here; shut down in the background on drop (dropping a runtime inside
    /// an async context would panic).
    runtime: Option<tokio::runtime::Runtime>,
    /// Where `local_file` writes its copies.
    cache_dir: PathBuf,
    grace: Duration,
}

impl Drop for S3Store {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl S3Store {
    /// A client for `location` (settings from the AWS variables), checked by listing the
    /// bucket once: a missing bucket or an unreachable endpoint fails here, at start.
    pub fn open(
        location: &S3Location,
        cache_dir: &Path,
        grace: Duration,
    ) -> Result<Self, BlobStoreError> {
        let (builder, endpoint) = location.builder();
        let store = builder.build().map_err(|source| BlobStoreError::Client {
            bucket: location.bucket.clone(),
            endpoint: endpoint.clone(),
            source: Box::new(source),
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("huatu-s3")
            .enable_all()
            .build()
            .map_err(BlobStoreError::Runtime)?;
        let cache_error = |source| BlobStoreError::Cache {
            path: cache_dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(cache_dir).map_err(cache_error)?;
        remove_stale_copies(cache_dir).map_err(cache_error)?;
        let opened = Self {
            location: location.clone(),
            endpoint,
            store: Arc::new(store),
            runtime: Some(runtime),
            cache_dir: cache_dir.to_path_buf(),
            grace,
        };
        opened.probe()?;
        Ok(opened)
    }

    /// Lists (at most one page of) the prefix: proves the endpoint answers, the
    /// credentials are accepted and the bucket exists.
    fn probe(&self) -> Result<(), BlobStoreError> {
        let prefix = self.location.list_prefix().map(ObjectPath::from);
        let store = self.store.clone();
        let listed = self.run("list", self.listing(), async move {
            store.list_with_delimiter(prefix.as_ref()).await.map(drop)
        });
        match listed {
            Err(BlobStoreError::Request { source, .. }) if is_missing_bucket(&source) => {
                Err(BlobStoreError::NoBucket {
                    bucket: self.location.bucket.clone(),
                    endpoint: self.endpoint.clone(),
                })
            }
            other => other,
        }
    }

    /// What a listing covers, for messages.
    fn listing(&self) -> String {
        self.location.list_prefix().map_or_else(
            || "all keys".into(),
            |prefix| format!("the keys under {prefix}/"),
        )
    }

    /// Runs `request` on this store's runtime and waits for it, at most
    /// `S3Location::operation_limit()` (one request with its retries).
    fn run<T: Send + 'static>(
        &self,
        operation: &'static str,
        key: String,
        request: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T, BlobStoreError> {
        self.run_within(S3Location::operation_limit(), operation, key, request)
    }

    /// `run` with another limit (a whole listing is a request per thousand keys).
    fn run_within<T: Send + 'static>(
        &self,
        limit: Duration,
        operation: &'static str,
        key: String,
        request: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T, BlobStoreError> {
        let stopped = || BlobStoreError::ClientStopped {
            bucket: self.location.bucket.clone(),
        };
        let runtime = self.runtime.as_ref().ok_or_else(stopped)?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let answer = tokio::time::timeout(limit, request).await;
            let _ = sender.send(answer);
        });
        match receiver.recv() {
            Err(_) => Err(stopped()),
            Ok(Err(_elapsed)) => Err(BlobStoreError::TimedOut {
                operation,
                bucket: self.location.bucket.clone(),
                endpoint: self.endpoint.clone(),
                key,
                seconds: limit.as_secs(),
            }),
            Ok(Ok(answer)) => answer.map_err(|source| BlobStoreError::Request {
                operation,
                bucket: self.location.bucket.clone(),
                endpoint: self.endpoint.clone(),
                key,
                source: Box::new(source),
            }),
        }
    }

    /// Metadata of blob `id`'s object, None when there is none.
    fn head(&self, id: &str) -> std::io::Result<Option<object_store::ObjectMeta>> {
        let key = self.location.key(id);
        let store = self.store.clone();
        let path = ObjectPath::from(key.as_str());
        match self.run("look up", key, async move { store.head(&path).await }) {
            Ok(meta) => Ok(Some(meta)),
            Err(BlobStoreError::Request { source, .. })
                if matches!(*source, object_store::Error::NotFound { .. }) =>
            {
                Ok(None)
            }
            Err(error) => Err(error.into_io()),
        }
    }
}

impl BlobBackend for S3Store {
    fn describe(&self) -> String {
        format!("{} at {}", self.location, self.endpoint)
    }

    fn path(&self, id: &str) -> Option<PathBuf> {
        is_blob_id(id).then(|| self.cache_dir.join(id))
    }

    fn put(&self, id: &str, bytes: &[u8]) -> std::io::Result<()> {
        let key = self.location.key(id);
        let store = self.store.clone();
        let path = ObjectPath::from(key.as_str());
        let payload = PutPayload::from(bytes.to_vec());
        self.run(
            "upload",
            key,
            async move { store.put(&path, payload).await },
        )
        .map(drop)
        .map_err(BlobStoreError::into_io)
    }

    fn get(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        let key = self.location.key(id);
        let store = self.store.clone();
        let path = ObjectPath::from(key.as_str());
        let fetched = self.run("download", key, async move {
            store.get(&path).await?.bytes().await
        });
        match fetched {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(BlobStoreError::Request { source, .. })
                if matches!(*source, object_store::Error::NotFound { .. }) =>
            {
                Ok(None)
            }
            Err(error) => Err(error.into_io()),
        }
    }

    fn contains(&self, id: &str) -> std::io::Result<bool> {
        Ok(self.head(id)?.is_some())
    }

    fn deletable_size(&self, id: &str) -> std::io::Result<Option<u64>> {
        let Some(meta) = self.head(id)? else {
            return Ok(None);
        };
        // Last-Modified comes from the server's clock; an object "from the future" (a
        // skewed clock) counts as young.
        let modified = SystemTime::UNIX_EPOCH
            + Duration::from_millis(meta.last_modified.timestamp_millis().max(0) as u64);
        let old = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age >= self.grace);
        Ok(old.then_some(meta.size))
    }

    fn delete(&self, id: &str) -> std::io::Result<bool> {
        let key = self.location.key(id);
        let store = self.store.clone();
        let path = ObjectPath::from(key.as_str());
        // S3 answers a delete of a missing key with success; huatu only deletes what it
        // just looked up, so "deleted" is the honest answer either way.
        match self.run("delete", key, async move { store.delete(&path).await }) {
            Ok(()) => Ok(true),
            Err(BlobStoreError::Request { source, .. })
                if matches!(*source, object_store::Error::NotFound { .. }) =>
            {
                Ok(false)
            }
            Err(error) => Err(error.into_io()),
        }
    }

    fn list(&self) -> std::io::Result<Vec<(String, u64)>> {
        let prefix = self.location.list_prefix().map(ObjectPath::from);
        let store = self.store.clone();
        let objects = self
            .run_within(LISTING_LIMIT, "list", self.listing(), async move {
                store.list(prefix.as_ref()).try_collect::<Vec<_>>().await
            })
            .map_err(BlobStoreError::into_io)?;
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let id = meta.location.filename()?;
                // Only `<prefix>/<shard>/<id>` of a blob id: other objects are not ours.
                (is_blob_id(id) && self.location.key(id) == meta.location.as_ref())
                    .then(|| (id.to_string(), meta.size))
            })
            .collect())
    }

    fn local_file(&self, id: &str) -> std::io::Result<Option<LocalFile>> {
        let Some(bytes) = self.get(id)? else {
            return Ok(None);
        };
        // One copy per use (several workers may read the same input at once).
        let path = self.cache_dir.join(format!(
            "{id}.{}.{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let copy = LocalFile::temporary(path);
        std::fs::write(copy.path(), bytes).map_err(|source| {
            BlobStoreError::Cache {
                path: copy.path().to_path_buf(),
                source,
            }
            .into_io()
        })?;
        Ok(Some(copy))
    }
}

/// Whether a listing failed because the bucket is not there (S3's NoSuchBucket, a 404).
fn is_missing_bucket(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::NotFound { .. })
        || crate::error::one_line_chain(error).contains("NoSuchBucket")
}

/// Removes copies a crashed process left (several processes may share the directory:
/// only old ones).
fn remove_stale_copies(cache_dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(cache_dir)? {
        let entry = entry?;
        let stale = entry
            .metadata()?
            .modified()
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_COPY);
        if stale && entry.file_type()?.is_file() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}
