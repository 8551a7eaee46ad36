//! Inputs and results on disk by content hash: `<data>/blobs/<first two hex>/<sha256>`.
//! A name from a request is used only after it has been checked to be 64 hex digits, so
//! no request can reach a path outside the data directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub struct Blobs {
    root: PathBuf,
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

impl Blobs {
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Where blob `id` lives (None for a malformed id).
    pub fn path(&self, id: &str) -> Option<PathBuf> {
        is_blob_id(id).then(|| self.root.join(&id[..2]).join(id))
    }

    /// Stores `bytes` (written to a temporary file, synced, renamed) and returns its id.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let id = content_hash(bytes);
        let Some(path) = self.path(&id) else {
            return Err(std::io::Error::other("content hash is not hex"));
        };
        if path.exists() {
            return Ok(id);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temporary = self
            .root
            .join("tmp")
            .join(format!("{id}.{}", rand::random::<u32>()));
        {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &path)?;
        Ok(id)
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
        Ok(())
    }
}
