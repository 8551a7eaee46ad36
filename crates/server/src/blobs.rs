//! Inputs and results on disk by content hash: `<data>/blobs/<first two hex>/<sha256>`.
//! A name from a request is used only after it has been checked to be 64 hex digits, so
//! no request can reach a path outside the data directory.
//!
//! Durability: a blob is written to `tmp/`, synced, renamed into place and its directory
//! synced, so a blob `put` returned survives a power loss; a failed write (a full disk)
//! removes its temporary file. Leftovers of a crash in `tmp/` are removed at open.
//!
//! Deletion (retention, refused uploads, results of a cancelled job) is safe against
//! writers through pins: whoever writes a blob that no job row references yet (an
//! upload between its job's acceptance and the write, a result before its job is
//! recorded) pins it first, and a blob is only deleted while unpinned and unreferenced,
//! checked under the pins lock. A writer that pins after a deletion simply writes again.
//!
//! Shared store (several processes on one directory, a shared queue): pins are per
//! process, so a blob is only deleted once it is older than a grace period (a blob
//! written or found again refreshes its time), and only old files in `tmp/` are
//! leftovers.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub struct Blobs {
    root: PathBuf,
    /// Shared store: blobs and temporary files younger than this are never deleted.
    grace: Option<Duration>,
    /// How many holders pin each blob id (see the module comment).
    pins: Mutex<HashMap<String, usize>>,
    unpinned: Condvar,
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
    if is_storage_full(error) {
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
    /// Opens (creating) the store at `root` and removes what a crash left in `tmp/`.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        Self::open_with(root, None)
    }

    /// With `grace`: a store other processes write too (see the module comment).
    pub fn open_with(root: &Path, grace: Option<Duration>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("tmp"))?;
        let blobs = Self {
            root: root.to_path_buf(),
            grace,
            pins: Mutex::new(HashMap::new()),
            unpinned: Condvar::new(),
        };
        let leftovers = blobs.clean_tmp()?;
        if leftovers > 0 {
            tracing::info!("removed {leftovers} unfinished blob writes left by an earlier run");
        }
        Ok(blobs)
    }

    /// Removes every file in `tmp/`: only `put` writes there, and only one server uses
    /// a data directory (its lock file), so at open they are all leftovers. A shared
    /// store removes only those older than its grace period.
    fn clean_tmp(&self) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(self.root.join("tmp"))? {
            let entry = entry?;
            if entry.file_type()?.is_file() && !self.is_recent(&entry.path()) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn lock_pins(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // The map is updated in single statements; a panic cannot leave it half-changed.
        self.pins
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a shared store must keep `path` still: modified within the grace period.
    fn is_recent(&self, path: &Path) -> bool {
        let Some(grace) = self.grace else {
            return false;
        };
        std::fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .map_or(true, |modified| {
                modified.elapsed().map_or(true, |age| age < grace)
            })
    }

    /// Where blob `id` lives (None for a malformed id).
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        is_blob_id(id).then(|| self.root.join(&id[..2]).join(id))
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
        self.put_as(&id, bytes)?;
        Ok((id, pins))
    }

    /// Stores `bytes` (written to a temporary file, synced, renamed, directory synced)
    /// and returns its id.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let id = content_hash(bytes);
        self.put_as(&id, bytes)?;
        Ok(id)
    }

    fn put_as(&self, id: &str, bytes: &[u8]) -> std::io::Result<()> {
        let Some(path) = self.path(id) else {
            return Err(std::io::Error::other("content hash is not hex"));
        };
        if path.is_file() {
            if self.grace.is_some() {
                // Another process may be deleting it as old: refresh its time.
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|file| file.set_modified(std::time::SystemTime::now()))?;
                if path.is_file() {
                    return Ok(());
                }
            } else {
                return Ok(());
            }
        }
        let shard = self.root.join(&id[..2]);
        let new_shard = !shard.is_dir();
        if new_shard {
            std::fs::create_dir_all(&shard)?;
        }
        let temporary = self
            .root
            .join("tmp")
            .join(format!("{id}.{}", rand::random::<u32>()));
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        })();
        if let Err(error) = written {
            // A partial file would hold space a full disk needs back (and is garbage).
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
        // The rename is durable only once the directory holding the new name is synced.
        sync_directory(&shard)?;
        if new_shard {
            sync_directory(&self.root)?;
        }
        Ok(())
    }

    /// The stored bytes, or None for an id that is malformed or unknown.
    pub fn get(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Some(path) = self.path(id) else {
            return Ok(None);
        };
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Whether blob `id` is on disk; while it is missing but pinned (its upload is being
    /// written), waits for it up to `timeout`.
    pub fn wait_until_present(&self, id: &str, timeout: Duration) -> bool {
        let Some(path) = self.path(id) else {
            return false;
        };
        let deadline = Instant::now() + timeout;
        let mut pins = self.lock_pins();
        loop {
            if path.is_file() {
                return true;
            }
            let now = Instant::now();
            if !pins.contains_key(id) || now >= deadline {
                return false;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            pins = match self.unpinned.wait_timeout(pins, wait) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Deletes those of `ids` that nobody pins and `is_referenced` says no job uses.
    pub fn remove_unreferenced<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        mut is_referenced: impl FnMut(&str) -> bool,
    ) -> std::io::Result<Removed> {
        let pins = self.lock_pins();
        let mut removed = Removed::default();
        for id in ids {
            let Some(path) = self.path(id) else { continue };
            if pins.contains_key(id) || self.is_recent(&path) || is_referenced(id) {
                continue;
            }
            let bytes = match std::fs::metadata(&path) {
                Ok(metadata) => metadata.len(),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    removed.files += 1;
                    removed.bytes += bytes;
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }

    /// Every stored blob with its size in bytes (files of other names are skipped).
    pub fn list(&self) -> std::io::Result<Vec<(String, u64)>> {
        let mut blobs = Vec::new();
        for shard in std::fs::read_dir(&self.root)? {
            let shard = shard?;
            let shard_name = shard.file_name();
            let Some(shard_name) = shard_name.to_str() else {
                continue;
            };
            let is_shard = shard_name.len() == 2 && is_blob_id(&format!("{shard_name:0<64}"));
            if !is_shard || !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(shard.path())? {
                let entry = entry?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if !is_blob_id(name) || !name.starts_with(shard_name) {
                    continue;
                }
                let metadata = entry.metadata()?;
                if metadata.is_file() {
                    blobs.push((name.to_string(), metadata.len()));
                }
            }
        }
        Ok(blobs)
    }
}

#[cfg(unix)]
fn sync_directory(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// Windows cannot open a directory as a file; NTFS journals the rename itself.
#[cfg(not(unix))]
fn sync_directory(_path: &Path) -> std::io::Result<()> {
    Ok(())
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
