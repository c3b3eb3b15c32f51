//! The writer thread: group commit of everything queued while the previous commit ran.
//!
//! Stores queue [`Job`]s in a bounded channel (FIFO, so the engine sees writes in the order the
//! memory tier applied them). The thread takes one job, then everything else already waiting
//! (up to [`MAX_BATCH`] ops), commits it all as one engine batch, and answers every job that
//! asked for an acknowledgement with the batch's result: concurrent sync writers share one
//! commit. With an `fsync_interval` it also fsyncs at that pace while there is unsynced data.
//! When the last handle drops, the thread drains the queue, flushes, fsyncs and exits; `close`
//! joins it, so the directory can be reopened as soon as the `DiskDb` is gone.

use std::{
    sync::{
        mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use super::engine::{Engine, Op};
use crate::error::{Error, Result};

/// Most ops committed in one batch.
const MAX_BATCH: usize = 4096;

/// The answer to a job: `Err` carries the engine's message.
pub(crate) type Ack = oneshot::Receiver<std::result::Result<(), String>>;

/// Ops to apply, and where to report that they are committed.
pub(crate) struct Job {
    ops: Vec<Op>,
    ack: Option<oneshot::Sender<std::result::Result<(), String>>>,
}

/// The queue into the writer thread and the thread itself.
pub(crate) struct Writer {
    tx: RwLock<Option<SyncSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread over `engine`.
    pub(crate) fn start(
        engine: Arc<dyn Engine>,
        capacity: usize,
        fsync_interval: Option<Duration>,
    ) -> Result<Self> {
        let (tx, rx) = sync_channel(capacity);
        let thread = std::thread::Builder::new()
            .name("strata-disk-writer".into())
            .spawn(move || run(engine.as_ref(), &rx, fsync_interval))
            .map_err(|e| Error::Io {
                context: "starting the disk writer thread".into(),
                source: e,
            })?;
        Ok(Writer {
            tx: RwLock::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `ops`; with `ack`, returns a receiver answered once they are committed.
    /// Blocks while the queue is full (back-pressure on async writers).
    pub(crate) fn send(&self, ops: Vec<Op>, ack: bool) -> Result<Option<Ack>> {
        let (tx, rx) = if ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let sender = self.tx.read();
        let sent = sender.as_ref().map(|s| s.send(Job { ops, ack: tx }));
        match sent {
            Some(Ok(())) => Ok(rx),
            _ => Err(closed()),
        }
    }

    /// Stops taking jobs, lets the thread drain the queue and waits for it.
    pub(crate) fn close(&self) {
        drop(self.tx.write().take());
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                tracing::error!("the strata disk writer thread panicked");
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

fn closed() -> Error {
    Error::Closed {
        reason: "the disk store's writer has stopped".into(),
    }
}

/// Waits for an acknowledgement and turns a failed commit into an error.
pub(crate) async fn wait(ack: Ack) -> Result<()> {
    match ack.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(Error::backend("committing to the disk store", reason)),
        Err(_) => Err(closed()),
    }
}

fn run(engine: &dyn Engine, rx: &Receiver<Job>, fsync_interval: Option<Duration>) {
    let mut batch = Batch::default();
    let mut unsynced_since: Option<Instant> = None;
    loop {
        let wait = match (fsync_interval, unsynced_since) {
            (Some(every), Some(since)) => every.saturating_sub(since.elapsed()),
            _ => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(job) => {
                batch.push(job);
                while batch.ops.len() < MAX_BATCH {
                    let Ok(job) = rx.try_recv() else { break };
                    batch.push(job);
                }
                batch.commit(engine);
                unsynced_since.get_or_insert_with(Instant::now);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if fsync_interval.is_some_and(|every| unsynced_since.is_some_and(|s| s.elapsed() >= every))
        {
            sync(engine);
            unsynced_since = None;
        }
    }
    engine.close();
}

fn sync(engine: &dyn Engine) {
    if let Err(e) = engine.sync() {
        tracing::error!(error = %e, "fsync of the strata disk store failed");
    }
}

#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    acks: Vec<oneshot::Sender<std::result::Result<(), String>>>,
}

impl Batch {
    fn push(&mut self, job: Job) {
        self.ops.extend(job.ops);
        self.acks.extend(job.ack);
    }

    fn commit(&mut self, engine: &dyn Engine) {
        let result = engine.commit(&self.ops);
        if let Err(e) = &result {
            tracing::error!(error = %e, ops = self.ops.len(), "a strata disk store commit failed; the writes stay in memory but are not on disk");
        }
        self.ops.clear();
        for ack in self.acks.drain(..) {
            let _ = ack.send(result.clone());
        }
    }
}
