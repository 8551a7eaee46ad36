//! Inputs and results by content hash (sha256 hex ids), behind one `Blobs` over a
//! backend: a directory (`directory.rs`, the default `<data>/blobs/<first two hex>/<sha256>`,
//! possibly on a filesystem shared by several machines) or an S3-compatible bucket
//! (`s3.rs`, keys `<prefix>/<first two hex>/<sha256>`). A name from a request is used only
//! after it has been checked to be 64 hex digits, so no request can reach a path or key
//! outside the store.
//!
//! Deletion (retention, refused uploads, results of a cancelled job) is safe against
//! writers through pins: whoever writes a blob that no job row references yet (an
//! upload between its job's acceptance and the write, a result before its job is
//! recorded) pins it first, and a blob is only deleted while unpinned and unreferenced,
//! checked under the pins lock. A writer that pins after a deletion simply writes again.
//!
//! Shared store (several processes on one directory or bucket, a shared queue): pins are
//! per process, so a blob is only deleted once it is older than a grace period (a blob
//! written or found again refreshes its time); the backends check the age.

mod directory;
mod error;
mod s3;
mod s3_location;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub use directory::DirectoryStore;
pub use error::BlobStoreError;
pub use s3::S3Store;
pub use s3_location::S3Location;

/// What a blob store backend does; ids reaching it are checked blob ids.
pub trait BlobBackend: Send + Sync {
    /// Where the store is, for logs and start-up errors (a path, or bucket and endpoint).
    fn describe(&self) -> String;
    /// A local path for blob `id`: its file (directory), or where a local copy would be
    /// made (S3). None for a malformed id.
    fn path(&self, id: &str) -> Option<PathBuf>;
    /// Stores `bytes` as blob `id` (their hash); storing an existing blob again refreshes
    /// its time in a shared store.
    fn put(&self, id: &str, bytes: &[u8]) -> std::io::Result<()>;
    /// The stored bytes, or None for an unknown id.
    fn get(&self, id: &str) -> std::io::Result<Option<Vec<u8>>>;
    fn contains(&self, id: &str) -> std::io::Result<bool>;
    /// The size of blob `id` when it may be deleted: present, and older than the grace
    /// period of a shared store. None otherwise.
    fn deletable_size(&self, id: &str) -> std::io::Result<Option<u64>>;
    /// Deletes blob `id`; false when it was gone already.
    fn delete(&self, id: &str) -> std::io::Result<bool>;
    /// Every stored blob with its size in bytes (other names are skipped).
    fn list(&self) -> std::io::Result<Vec<(String, u64)>>;
    /// Blob `id` as a local file (for code that reads paths), or None when it is missing.
    fn local_file(&self, id: &str) -> std::io::Result<Option<LocalFile>>;
}

pub struct Blobs {
    backend: Box<dyn BlobBackend>,
    /// How many holders pin each blob id (see the module comment).
    pins: Mutex<HashMap<String, usize>>,
    unpinned: Condvar,
}

/// A blob as a local file; a copy made for the purpose is removed on drop.
pub struct LocalFile {
    path: PathBuf,
    remove_on_drop: bool,
}

impl LocalFile {
    /// The store's own file, left in place.
    pub fn borrowed(path: PathBuf) -> Self {
        Self {
            path,
            remove_on_drop: false,
        }
    }

    /// A copy that goes when this is dropped.
    pub fn temporary(path: PathBuf) -> Self {
        Self {
            path,
            remove_on_drop: true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `text` is shaped like a blob id (lowercase sha256 hex).
pub fn is_blob_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether a failed write failed because the disk (or the user's quota) is full.
pub fn is_storage_full(error: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    error.kind() == std::io::ErrorKind::StorageFull
        || error.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// A failed write as a client may read it: what happened, never where.
pub fn describe_write_error(error: &std::io::Error) -> String {
    if BlobStoreError::is_in(error) {
        "the blob store cannot be written (see the server log)".into()
    } else if is_storage_full(error) {
        "the data directory is full (no space left on the device)".into()
    } else {
        // io::Error texts carry no path; the kind and OS code say what happened.
        format!("the data directory cannot be written ({error})")
    }
}

/// Blob ids held back from deletion until dropped.
pub struct Pins {
    blobs: Arc<Blobs>,
    ids: Vec<String>,
}

impl Pins {
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Adds pins of `other` to these.
    pub fn absorb(&mut self, mut other: Pins) {
        self.ids.append(&mut other.ids);
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let mut pins = self.blobs.lock_pins();
        for id in &self.ids {
            if let Some(count) = pins.get_mut(id) {
                *count -= 1;
                if *count == 0 {
                    pins.remove(id);
                }
            }
        }
        drop(pins);
        self.blobs.unpinned.notify_all();
    }
}

/// What a deletion removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub files: u64,
    pub bytes: u64,
}

impl Blobs {
    /// Opens (creating) the directory store at `root` and removes what a crash left in
    /// its `tmp/`.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        Self::open_with(root, None)
    }

    /// With `grace`: a store other processes write too (see the module comment).
    pub fn open_with(root: &Path, grace: Option<Duration>) -> std::io::Result<Self> {
        Ok(Self::over(Box::new(DirectoryStore::open(root, grace)?)))
    }

    /// The S3-compatible bucket at `location`, checked reachable (one listing) before
    /// this returns. Local copies (`local_file`) go to `cache_dir`. A bucket is always
    /// treated as shared: nothing younger than `grace` is deleted.
    pub fn open_s3(
        location: &S3Location,
        cache_dir: &Path,
        grace: Duration,
    ) -> Result<Self, BlobStoreError> {
        Ok(Self::over(Box::new(S3Store::open(
            location, cache_dir, grace,
        )?)))
    }

    /// A store over any backend.
    pub fn over(backend: Box<dyn BlobBackend>) -> Self {
        Self {
            backend,
            pins: Mutex::new(HashMap::new()),
            unpinned: Condvar::new(),
        }
    }

    /// Where the store is (a path, or bucket and endpoint).
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    fn lock_pins(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // The map is updated in single statements; a panic cannot leave it half-changed.
        self.pins
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where blob `id` lives, or (S3) where a local copy of it would go; None for a
    /// malformed id.
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        self.backend.path(id)
    }

    /// Holds `ids` back from deletion until the returned pins drop.
    pub fn pin(self: &Arc<Self>, ids: impl IntoIterator<Item = String>) -> Pins {
        let ids: Vec<String> = ids.into_iter().collect();
        let mut pins = self.lock_pins();
        for id in &ids {
            *pins.entry(id.clone()).or_insert(0) += 1;
        }
        Pins {
            blobs: self.clone(),
            ids,
        }
    }

    /// Stores `bytes` pinned: nothing deletes the blob before the pins drop (by then a
    /// job row is to reference it).
    pub fn put_pinned(self: &Arc<Self>, bytes: &[u8]) -> std::io::Result<(String, Pins)> {
        let id = content_hash(bytes);
        let pins = self.pin([id.clone()]);
        self.backend.put(&id, bytes)?;
        Ok((id, pins))
    }

    /// Stores `bytes` (durably: a directory store syncs before it returns) and returns
    /// its id.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let id = content_hash(bytes);
        self.backend.put(&id, bytes)?;
        Ok(id)
    }

    /// The stored bytes, or None for an id that is malformed or unknown.
    pub fn get(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_blob_id(id) {
            return Ok(None);
        }
        self.backend.get(id)
    }

    /// Whether blob `id` is stored; while it is missing but pinned (its upload is being
    /// written), waits for it up to `timeout`. A store that cannot be read counts as
    /// missing (the caller's read then reports the error).
    pub fn wait_until_present(&self, id: &str, timeout: Duration) -> bool {
        if !is_blob_id(id) {
            return false;
        }
        let present = || self.backend.contains(id).unwrap_or(false);
        let deadline = Instant::now() + timeout;
        loop {
            if present() {
                return true;
            }
            // Looked at outside the lock (an S3 request must not hold it): a writer may
            // have finished and unpinned since, so an unpinned blob is looked at again.
            let pins = self.lock_pins();
            if !pins.contains_key(id) {
                drop(pins);
                return present();
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            let _pins = match self.unpinned.wait_timeout(pins, wait) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Blob `id` as a local file (waiting as `wait_until_present` does): the directory
    /// store's own file, or a copy of the S3 object removed when the `LocalFile` drops.
    pub fn local_file(&self, id: &str, timeout: Duration) -> std::io::Result<Option<LocalFile>> {
        if !self.wait_until_present(id, timeout) {
            return Ok(None);
        }
        self.backend.local_file(id)
    }

    /// Deletes those of `ids` that nobody pins, `is_referenced` says no job uses and (a
    /// shared store) are past the grace period. Each blob is checked and deleted under
    /// the pins lock, so a writer that pins it meanwhile waits and then writes again.
    pub fn remove_unreferenced<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        mut is_referenced: impl FnMut(&str) -> bool,
    ) -> std::io::Result<Removed> {
        let mut removed = Removed::default();
        for id in ids {
            if !is_blob_id(id) {
                continue;
            }
            let pins = self.lock_pins();
            if pins.contains_key(id) {
                continue;
            }
            let Some(bytes) = self.backend.deletable_size(id)? else {
                continue;
            };
            if is_referenced(id) {
                continue;
            }
            if self.backend.delete(id)? {
                removed.files += 1;
                removed.bytes += bytes;
            }
            drop(pins);
        }
        Ok(removed)
    }

    /// Every stored blob with its size in bytes (files of other names are skipped).
    pub fn list(&self) -> std::io::Result<Vec<(String, u64)>> {
        self.backend.list()
    }
}

/// The MIME type of an image from its first bytes.
pub fn sniff_image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_by_hash_and_rejects_paths() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Blobs::open(dir.path())?;
        let id = blobs.put(b"hello")?;
        assert_eq!(
            id,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(blobs.get(&id)?, Some(b"hello".to_vec()));
        assert_eq!(blobs.get("../../etc/passwd")?, None);
        assert_eq!(blobs.get(&"0".repeat(64))?, None);
        assert_eq!(blobs.list()?, vec![(id, 5)]);
        Ok(())
    }

    #[test]
    fn tmp_leftovers_are_removed_at_open() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        drop(Blobs::open(dir.path())?);
        std::fs::write(dir.path().join("tmp").join("abc.123"), b"half a blob")?;
        let blobs = Blobs::open(dir.path())?;
        assert_eq!(std::fs::read_dir(dir.path().join("tmp"))?.count(), 0);
        assert!(blobs.list()?.is_empty());
        Ok(())
    }

    #[test]
    fn pinned_and_referenced_blobs_are_not_removed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Arc::new(Blobs::open(dir.path())?);
        let kept = blobs.put(b"referenced")?;
        let (pinned, pins) = blobs.put_pinned(b"pinned")?;
        let loose = blobs.put(b"loose")?;
        let all = [kept.as_str(), pinned.as_str(), loose.as_str()];
        let removed = blobs.remove_unreferenced(all, |id| id == kept)?;
        assert_eq!(removed, Removed { files: 1, bytes: 5 });
        assert!(blobs.get(&loose)?.is_none());
        assert!(blobs.get(&pinned)?.is_some());
        drop(pins);
        let removed = blobs.remove_unreferenced(all, |id| id == kept)?;
        assert_eq!(removed.files, 1);
        assert!(blobs.get(&pinned)?.is_none());
        assert!(blobs.get(&kept)?.is_some());
        Ok(())
    }

    #[test]
    fn a_reader_waits_for_a_pinned_upload() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Arc::new(Blobs::open(dir.path())?);
        let id = content_hash(b"late upload");
        assert!(!blobs.wait_until_present(&id, Duration::from_secs(5)));
        let pins = blobs.pin([id.clone()]);
        let writer = {
            let blobs = blobs.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                let stored = blobs.put(b"late upload");
                drop(pins);
                stored
            })
        };
        assert!(blobs.wait_until_present(&id, Duration::from_secs(5)));
        assert_eq!(writer.join().map_err(|_| anyhow::anyhow!("panicked"))??, id);
        Ok(())
    }

    #[test]
    fn a_shared_store_keeps_recent_blobs_and_temporary_files() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        drop(Blobs::open(dir.path())?);
        let in_flight = dir.path().join("tmp").join("abc.123");
        std::fs::write(&in_flight, b"another process writes this")?;
        let blobs = Blobs::open_with(dir.path(), Some(Duration::from_secs(3600)))?;
        assert!(
            in_flight.is_file(),
            "a recent temporary file is not a leftover"
        );
        let loose = blobs.put(b"loose")?;
        let removed = blobs.remove_unreferenced([loose.as_str()], |_| false)?;
        assert_eq!(removed.files, 0);
        // Once past the grace period it goes.
        let old = std::time::SystemTime::now() - Duration::from_secs(7200);
        let path = blobs
            .path(&loose)
            .ok_or_else(|| anyhow::anyhow!("no path"))?;
        std::fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(old)?;
        // Stored again (another job made the same bytes): young again.
        blobs.put(b"loose")?;
        assert_eq!(
            blobs
                .remove_unreferenced([loose.as_str()], |_| false)?
                .files,
            0
        );
        std::fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(old)?;
        assert_eq!(
            blobs
                .remove_unreferenced([loose.as_str()], |_| false)?
                .files,
            1
        );
        Ok(())
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = Blobs::open(dir.path())?;
        // The blob's path taken by a directory: the rename fails after the data was written.
        let id = content_hash(b"blocked");
        std::fs::create_dir_all(dir.path().join(&id[..2]).join(&id).join("in-the-way"))?;
        let error = blobs.put(b"blocked").err();
        assert!(error.is_some());
        assert_eq!(std::fs::read_dir(dir.path().join("tmp"))?.count(), 0);
        Ok(())
    }
}
