//! The exclusive lock on a data directory: one open `DiskDb` per directory, across processes
//! and within one.
//!
//! The lock is an OS file lock (`flock` on Unix, `LockFileEx` on Windows) on `<dir>/LOCK`. The OS
//! drops it when the process dies, so a crash never leaves a stale lock behind; a second open in
//! the same process uses a second file handle and is refused too. Dropping the guard releases it.
//!
//! An open first waits for a close of the same directory still running in this process (see
//! `closing`). A lock that is busy is retried for up to [`BUSY_WAIT`] (a minute if the lock file
//! says its holder is closing) before the open fails with
//! `DirLocked`: a process that is exiting, or a child process between `fork` and `exec` (which
//! briefly shares the parent's open files), holds the lock for a moment after its owner let go.

use std::{
    fs::{File, TryLockError},
    io::{Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::error::{Error, Result};

/// How long a busy lock is retried before the open fails with `DirLocked`.
pub(crate) const BUSY_WAIT: Duration = Duration::from_millis(500);

/// How long a busy lock is retried while its holder says it is closing.
const CLOSING_WAIT: Duration = Duration::from_secs(60);
/// What a holder that is closing writes into the lock file after its pid.
const CLOSING: &str = " closing";

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    file: File,
}

impl DirLock {
    /// Tells opens in other processes that the holder is closing (a close finishing in the
    /// background, see `closing`), so they wait for it rather than fail after [`BUSY_WAIT`].
    pub(crate) fn mark_closing(&mut self) {
        let note = format!("{}{CLOSING}\n", std::process::id());
        let _ = self
            .file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)))
            .and_then(|_| self.file.write_all(note.as_bytes()));
    }
}

/// How long to wait for a busy lock: longer if its holder is closing. The lock file is only a
/// hint (a holder that dies mid-close releases the lock anyway).
fn patience(dir: &Path) -> Duration {
    let note = std::fs::read_to_string(dir.join("LOCK")).unwrap_or_default();
    if note.trim_end().ends_with(CLOSING) {
        CLOSING_WAIT
    } else {
        BUSY_WAIT
    }
}

/// Creates `dir` if missing (not its parents, owner-only) and locks it.
pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
    let data_dir = |source| {
        Error::from(crate::DataDirError {
            path: dir.to_owned(),
            source,
        })
    };
    super::perms::create_dir(dir).map_err(data_dir)?;
    super::closing::wait_for(dir);
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
            Err(TryLockError::WouldBlock) if started.elapsed() < patience(dir) => {
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
    Ok(DirLock { file })
}

fn locked(dir: &Path) -> Error {
    Error::DirLocked {
        path: std::fs::canonicalize(dir)
            .unwrap_or_else(|_| PathBuf::from(dir))
            .into(),
    }
}
