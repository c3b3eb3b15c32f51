//! The writer thread: group commit of everything queued while the previous commit ran.
//!
//! Stores queue [`Job`]s in a channel (FIFO, so the engine sees writes in the order the memory
//! tier applied them), bounded by a count of queued ops ([`Gate`]): a sender only blocks when
//! the queue is over capacity, so an async write costs one channel push and no allocation for
//! the queue itself. The thread takes one job, then everything else already waiting
//! (up to [`MAX_BATCH`] ops), commits it all as one engine batch, and answers every job that
//! asked for an acknowledgement with the batch's result: concurrent sync writers share one
//! commit. With an `fsync_interval` it also fsyncs at that pace while there is unsynced data.
//! When the last handle drops, the thread drains the queue, flushes, fsyncs and exits; `close`
//! joins it, so the directory can be reopened as soon as the `DiskDb` is gone.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc::{channel, Receiver, RecvTimeoutError, Sender},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::oneshot;

use super::engine::{Engine, Op};
use crate::error::{Error, Result};

/// Most ops committed in one batch.
const MAX_BATCH: usize = 1 << 16;

/// The answer to a job: `Err` carries the engine's message.
pub(crate) type Ack = oneshot::Receiver<std::result::Result<(), String>>;

/// Ops to apply, and where to report that they are committed.
pub(crate) struct Job {
    ops: Ops,
    ack: Option<oneshot::Sender<std::result::Result<(), String>>>,
}

/// A job's ops: most jobs carry one, which then needs no allocation of its own.
pub(crate) enum Ops {
    /// A single op.
    One(Op),
    /// Any number of ops (none: a flush marker).
    Many(Vec<Op>),
}

impl Ops {
    /// How much of the queue's capacity the job takes (at least 1).
    fn weight(&self) -> usize {
        match self {
            Ops::One(_) => 1,
            Ops::Many(ops) => ops.len().max(1),
        }
    }
}

/// Counts queued ops and blocks senders while there are more than `capacity`.
struct Gate {
    queued: AtomicUsize,
    capacity: usize,
    /// Set when the writer thread has stopped (or panicked): nobody will make room.
    stopped: AtomicBool,
    lock: Mutex<()>,
    room: Condvar,
}

impl Gate {
    /// Counts `weight` more queued ops, before they are sent (so the writer can never release
    /// them first); true if that is over capacity and the sender should [`Gate::wait`] once
    /// they are sent.
    fn reserve(&self, weight: usize) -> bool {
        self.queued.fetch_add(weight, Ordering::AcqRel) + weight > self.capacity
    }

    /// Waits until the writer brings the queue back under capacity (everything counted is
    /// sent or about to be, so it always will) or stops.
    fn wait(&self) {
        let mut guard = self.lock.lock();
        while self.queued.load(Ordering::Acquire) > self.capacity
            && !self.stopped.load(Ordering::Acquire)
        {
            self.room.wait_for(&mut guard, Duration::from_millis(50));
        }
    }

    /// Called by the writer once `weight` queued ops are committed.
    fn release(&self, weight: usize) {
        let before = self.queued.fetch_sub(weight, Ordering::AcqRel);
        if before > self.capacity {
            let _guard = self.lock.lock();
            self.room.notify_all();
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let _guard = self.lock.lock();
        self.room.notify_all();
    }
}

/// Marks the gate stopped when the writer thread ends, even by a panic.
struct StopOnDrop(Arc<Gate>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The queue into the writer thread and the thread itself.
pub(crate) struct Writer {
    tx: RwLock<Option<Sender<Job>>>,
    gate: Arc<Gate>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread over `engine`.
    pub(crate) fn start(
        engine: Arc<dyn Engine>,
        capacity: usize,
        fsync_interval: Option<Duration>,
    ) -> Result<Self> {
        let (tx, rx) = channel();
        let gate = Arc::new(Gate {
            queued: AtomicUsize::new(0),
            capacity,
            stopped: AtomicBool::new(false),
            lock: Mutex::new(()),
            room: Condvar::new(),
        });
        let stop = StopOnDrop(gate.clone());
        let thread = std::thread::Builder::new()
            .name("strata-disk-writer".into())
            .spawn(move || {
                let stop = stop;
                run(engine.as_ref(), &rx, &stop.0, fsync_interval);
            })
            .map_err(|e| Error::Io {
                context: "starting the disk writer thread".into(),
                source: e,
            })?;
        Ok(Writer {
            tx: RwLock::new(Some(tx)),
            gate,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `ops`; with `ack`, returns a receiver answered once they are committed.
    /// Blocks while the queue is over capacity (back-pressure on async writers).
    pub(crate) fn send(&self, ops: Vec<Op>, ack: bool) -> Result<Option<Ack>> {
        self.send_job(Ops::Many(ops), ack)
    }

    /// Queues one op, like [`Writer::send`].
    pub(crate) fn send_one(&self, op: Op, ack: bool) -> Result<Option<Ack>> {
        self.send_job(Ops::One(op), ack)
    }

    fn send_job(&self, ops: Ops, ack: bool) -> Result<Option<Ack>> {
        let (tx, rx) = if ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let weight = ops.weight();
        let over = self.gate.reserve(weight);
        let sent = {
            let sender = self.tx.read();
            sender.as_ref().map(|s| s.send(Job { ops, ack: tx }))
        };
        match sent {
            Some(Ok(())) => {
                if over {
                    self.gate.wait();
                }
                Ok(rx)
            }
            _ => {
                self.gate.release(weight);
                Err(closed())
            }
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

fn run(engine: &dyn Engine, rx: &Receiver<Job>, gate: &Gate, fsync_interval: Option<Duration>) {
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
                gate.release(std::mem::take(&mut batch.weight));
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
    /// Queue capacity the batch's jobs took.
    weight: usize,
}

impl Batch {
    fn push(&mut self, job: Job) {
        self.weight += job.ops.weight();
        match job.ops {
            Ops::One(op) => self.ops.push(op),
            Ops::Many(ops) => self.ops.extend(ops),
        }
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
