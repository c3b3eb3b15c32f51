//! Closing a directory off the async runtime.
//!
//! Closing drains the writer's queue, flushes the engine's write buffer and fsyncs: up to a
//! few seconds under load. Dropping the last handle on an async runtime's thread must not
//! stall that thread, so there the close finishes on a thread of its own ([`Closing`]); the
//! directory stays locked until it has. So that dropping a `DiskDb` and opening the same
//! directory again in this process still just works, the directory is registered as closing
//! and an open of it waits for the close ([`wait_for`]) before it takes the lock.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};

use super::{engine::Engine, lock::DirLock, writer};

/// Directories of this process whose close is still running on its own thread.
static CLOSING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Signalled whenever a directory leaves [`CLOSING`].
static CLOSED: Condvar = Condvar::new();

/// How long an open waits for a close of the same directory in this process.
const CLOSE_WAIT: Duration = Duration::from_secs(60);
/// How long `Closing` waits for the dropped `DbInner` to let go of its engine handle.
const ENGINE_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// What is left to do when a `DbInner` is dropped on a runtime thread, in this order: wait
/// for the writer thread (which closes the engine), release the engine, unlock the directory,
/// tell waiting opens.
pub(crate) struct Closing {
    dir: PathBuf,
    writer: Option<JoinHandle<()>>,
    engine: Option<Arc<dyn Engine>>,
    lock: Option<DirLock>,
}

impl Closing {
    /// Registers `dir` as closing; the close runs when this is dropped.
    pub(crate) fn new(
        dir: &Path,
        writer: Option<JoinHandle<()>>,
        engine: Arc<dyn Engine>,
        lock: Option<DirLock>,
    ) -> Self {
        let dir = key(dir);
        CLOSING.lock().push(dir.clone());
        Closing {
            dir,
            writer,
            engine: Some(engine),
            lock,
        }
    }

    /// Finishes the close on a thread of its own. If no thread can be started, the closure
    /// (and so `self`) is dropped right here: the close then blocks, which is still correct.
    pub(crate) fn in_background(self) {
        let _ = std::thread::Builder::new()
            .name("strata-disk-close".into())
            .spawn(move || drop(self));
    }
}

impl Drop for Closing {
    fn drop(&mut self) {
        writer::join(self.writer.take());
        if let Some(engine) = self.engine.take() {
            // The `DbInner` being dropped releases its handle right after its `drop` returns;
            // waiting for it makes this the engine's last handle, so the engine is closed
            // here, off the runtime, and before the directory is unlocked.
            let started = Instant::now();
            while Arc::strong_count(&engine) > 1 && started.elapsed() < ENGINE_RELEASE_WAIT {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(self.lock.take());
        let mut closing = CLOSING.lock();
        if let Some(at) = closing.iter().position(|d| *d == self.dir) {
            closing.swap_remove(at);
        }
        CLOSED.notify_all();
    }
}

/// Waits (up to a minute) while a close of `dir` in this process is still running.
pub(crate) fn wait_for(dir: &Path) {
    let dir = key(dir);
    let deadline = Instant::now() + CLOSE_WAIT;
    let mut closing = CLOSING.lock();
    while closing.contains(&dir) {
        if CLOSED.wait_until(&mut closing, deadline).timed_out() {
            return;
        }
    }
}

/// One name per directory, however it was spelled.
fn key(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned())
}
