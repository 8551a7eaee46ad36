//! The directory backend of the blob store: `<data>/blobs/<first two hex>/<sha256>`.
//!
//! Durability: a blob is written to `tmp/`, synced, renamed into place and its directory
//! synced, so a blob `put` returned survives a power loss; a failed write (a full disk)
//! removes its temporary file. Leftovers of a crash in `tmp/` are removed at open.
//!
//! Shared store (several processes on one directory, a shared queue): a blob is only
//! deleted once it is older than a grace period (a blob written or found again refreshes
//! its time), and only old files in `tmp/` are leftovers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{is_blob_id, BlobBackend, LocalFile};

pub struct DirectoryStore {
    root: PathBuf,
    /// Shared store: blobs and temporary files younger than this are never deleted.
    grace: Option<Duration>,
}

impl DirectoryStore {
    /// Opens (creating) the store at `root` and removes what a crash left in `tmp/`.
    pub fn open(root: &Path, grace: Option<Duration>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("tmp"))?;
        let store = Self {
            root: root.to_path_buf(),
            grace,
        };
        let leftovers = store.clean_tmp()?;
        if leftovers > 0 {
            tracing::info!("removed {leftovers} unfinished blob writes left by an earlier run");
        }
        Ok(store)
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
}

impl BlobBackend for DirectoryStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn path(&self, id: &str) -> Option<PathBuf> {
        is_blob_id(id).then(|| self.root.join(&id[..2]).join(id))
    }

    fn put(&self, id: &str, bytes: &[u8]) -> std::io::Result<()> {
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

    fn get(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Some(path) = self.path(id) else {
            return Ok(None);
        };
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn contains(&self, id: &str) -> std::io::Result<bool> {
        Ok(self.path(id).is_some_and(|path| path.is_file()))
    }

    fn deletable_size(&self, id: &str) -> std::io::Result<Option<u64>> {
        let Some(path) = self.path(id) else {
            return Ok(None);
        };
        if self.is_recent(&path) {
            return Ok(None);
        }
        match std::fs::metadata(&path) {
            Ok(metadata) => Ok(Some(metadata.len())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn delete(&self, id: &str) -> std::io::Result<bool> {
        let Some(path) = self.path(id) else {
            return Ok(false);
        };
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn list(&self) -> std::io::Result<Vec<(String, u64)>> {
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

    fn local_file(&self, id: &str) -> std::io::Result<Option<LocalFile>> {
        // The blob's own file: nothing to copy, nothing to remove after.
        Ok(self
            .path(id)
            .filter(|path| path.is_file())
            .map(LocalFile::borrowed))
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
