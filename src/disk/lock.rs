//! The exclusive lock on a data directory: one open `DiskDb` per directory, across processes
//! and within one.
//!
//! The lock is an OS file lock (`flock` on Unix, `LockFileEx` on Windows) on `<dir>/LOCK`. The OS
//! drops it when the process dies, so a crash never leaves a stale lock behind; a second open in
//! the same process uses a second file handle and is refused too. Dropping the guard releases it.
//!
//! A lock that is busy is retried for up to [`BUSY_WAIT`] before the open fails with
//! `DirLocked`: a process that is exiting, or a child process between `fork` and `exec` (which
//! briefly shares the parent's open files), holds the lock for a moment after its owner let go.

use std::{
    fs::{File, TryLockError},
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::error::{Error, Result};

/// How long a busy lock is retried before the open fails with `DirLocked`.
pub(crate) const BUSY_WAIT: Duration = Duration::from_millis(500);

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Creates `dir` if missing (not its parents, owner-only) and locks it.
pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
    let data_dir = |source| Error::DataDir {
        path: dir.to_owned(),
        source,
    };
    super::perms::create_dir(dir).map_err(data_dir)?;
    let mut file = super::marker::owner_only()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(data_dir)?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if started.elapsed() < BUSY_WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => return Err(locked(dir)),
            Err(TryLockError::Error(e)) => return Err(data_dir(e)),
        }
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
