//! The exclusive lock on a data directory: one open `DiskDb` per directory, across processes
//! and within one.
//!
//! The lock is an OS file lock (`flock` on Unix, `LockFileEx` on Windows) on `<dir>/LOCK`. The OS
//! drops it when the process dies, so a crash never leaves a stale lock behind; a second open in
//! the same process uses a second file handle and is refused too. Dropping the guard releases it.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::Write,
    path::{Path, PathBuf},
};

use crate::error::{Error, Result};

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Creates `dir` if missing (not its parents) and locks it.
pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
    let data_dir = |source| Error::DataDir {
        path: dir.to_owned(),
        source,
    };
    ensure_dir(dir).map_err(data_dir)?;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(data_dir)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(locked(dir)),
        Err(TryLockError::Error(e)) => return Err(data_dir(e)),
    }
    // For humans looking at the directory; the lock itself is what counts.
    let _ = file
        .set_len(0)
        .and_then(|_| writeln!(file, "{}", std::process::id()));
    Ok(DirLock { _file: file })
}

fn locked(dir: &Path) -> Error {
    Error::DirLocked {
        path: std::fs::canonicalize(dir).unwrap_or_else(|_| PathBuf::from(dir)),
    }
}

fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "the path exists and is not a directory",
        )),
        Err(e) => Err(e),
    }
}
