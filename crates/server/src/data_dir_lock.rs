//! The data directory's lock: `<data>/.lock`, held with an OS advisory lock (std's
//! `File::try_lock`: `flock` on Unix, `LockFileEx` on Windows) for as long as the server
//! runs, so a second server on the same directory is refused at start instead of
//! re-queueing the first one's running jobs. The OS lets go when the process ends, even
//! when it is killed, so a crash never leaves a stale lock. The file holds the holder's
//! process id, for the error message only.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::ServerError;

const LOCK_FILE: &str = ".lock";

/// Held while the server runs; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    // Closing the file releases the OS lock.
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn is_read_only(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
    )
}

/// Creates the data directory if needed, checks that it can be written and locks it.
pub fn acquire(data: &Path) -> Result<DataDirLock, ServerError> {
    let fail = |source: std::io::Error| {
        if is_read_only(&source) {
            ServerError::DataDirReadOnly {
                path: data.to_path_buf(),
                source,
            }
        } else {
            ServerError::DataDir {
                path: data.to_path_buf(),
                source,
            }
        }
    };
    std::fs::create_dir_all(data).map_err(fail)?;
    // An existing lock file opens for writing in a directory that is itself read-only:
    // a file created and removed tells the truth.
    let probe = data.join(format!(
        ".write-probe.{}.{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::write(&probe, b"huatu").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;

    let path = data.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(fail)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if !holder.is_empty() && holder.bytes().all(|b| b.is_ascii_digit()) {
                format!(" (process {holder})")
            } else {
                String::new()
            };
            return Err(ServerError::DataDirLocked {
                path: data.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(fail(source)),
    }
    let noted = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    if let Err(error) = noted {
        tracing::warn!(
            "cannot write the process id into {}: {error}",
            path.display()
        );
    }
    Ok(DataDirLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = acquire(dir.path())?;
        let refused = acquire(dir.path());
        match refused {
            Err(ServerError::DataDirLocked { holder, .. }) => {
                assert_eq!(holder, format!(" (process {})", std::process::id()));
            }
            other => panic!("expected DataDirLocked, got {other:?}"),
        }
        drop(first);
        let again = acquire(dir.path())?;
        assert!(again.path().ends_with(".lock"));
        // The probe file does not stay behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())?
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, vec![std::ffi::OsString::from(".lock")]);
        Ok(())
    }
}
