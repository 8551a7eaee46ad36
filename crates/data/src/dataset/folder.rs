//! The output folder, written whole or not at all: everything goes into a hidden staging
//! folder beside `--out` and is renamed into place at the end, so an interrupted build
//! leaves no half-written dataset (and a failed one removes its staging folder).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A dataset folder being written.
pub struct StagedFolder {
    staging: PathBuf,
    out: PathBuf,
    metadata: BufWriter<File>,
    finished: bool,
}

impl StagedFolder {
    /// Refuses an `out` that exists and is not an empty folder; creates the staging folder.
    pub fn create(out: &Path) -> Result<Self> {
        if out.exists() {
            let empty = out.is_dir()
                && std::fs::read_dir(out)
                    .map_err(io_error(out))?
                    .next()
                    .is_none();
            if !empty {
                return Err(DataError::InvalidRequest(format!(
                    "{} already exists and is not an empty folder; choose another --out or remove it",
                    out.display()
                )));
            }
        }
        let name = out
            .file_name()
            .ok_or_else(|| {
                DataError::InvalidRequest(format!("--out {} names no folder", out.display()))
            })?
            .to_string_lossy();
        let parent = match out.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io_error(&parent))?;
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(io_error(&staging))?;
        }
        std::fs::create_dir(&staging).map_err(io_error(&staging))?;
        let metadata_path = staging.join("metadata.jsonl");
        let metadata = File::create(&metadata_path).map_err(io_error(&metadata_path))?;
        Ok(Self {
            staging,
            out: out.to_path_buf(),
            metadata: BufWriter::new(metadata),
            finished: false,
        })
    }

    /// Where a file named `name` is being written.
    pub fn path(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// Writes a small text file.
    pub fn write_text(&self, name: &str, text: &str) -> Result<()> {
        let path = self.path(name);
        std::fs::write(&path, text).map_err(io_error(&path))
    }

    /// Appends one line to `metadata.jsonl`.
    pub fn append_metadata(&mut self, line: &serde_json::Value) -> Result<()> {
        let path = self.staging.join("metadata.jsonl");
        writeln!(self.metadata, "{line}").map_err(io_error(&path))
    }

    /// Puts the folder in place as `out`.
    pub fn finish(mut self) -> Result<PathBuf> {
        let metadata_path = self.staging.join("metadata.jsonl");
        self.metadata.flush().map_err(io_error(&metadata_path))?;
        if self.out.is_dir() {
            // checked empty at the start
            std::fs::remove_dir(&self.out).map_err(io_error(&self.out))?;
        }
        std::fs::rename(&self.staging, &self.out).map_err(io_error(&self.out))?;
        self.finished = true;
        Ok(self.out.clone())
    }
}

impl Drop for StagedFolder {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("set");
        {
            let mut folder = StagedFolder::create(&out).unwrap();
            folder.write_text("a.txt", "a").unwrap();
            folder
                .append_metadata(&serde_json::json!({"file_name": "a.png"}))
                .unwrap();
            // dropped without finish: nothing stays
        }
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut folder = StagedFolder::create(&out).unwrap();
        folder.write_text("a.txt", "a").unwrap();
        folder
            .append_metadata(&serde_json::json!({"file_name": "a.png"}))
            .unwrap();
        folder.finish().unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "a");
        assert_eq!(
            std::fs::read_to_string(out.join("metadata.jsonl")).unwrap(),
            "{\"file_name\":\"a.png\"}\n"
        );
        let error = StagedFolder::create(&out).err().unwrap().to_string();
        assert!(error.contains("already exists"), "{error}");
    }
}
