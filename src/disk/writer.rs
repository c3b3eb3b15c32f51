//! The writer thread: group commit of everything queued while the previous commit ran.
//!
//! Stores queue [`Job`]s in an [`Inbox`] (FIFO, so the engine sees writes in the order the
//! memory tier applied them), bounded by a count of queued ops ([`Gate`]): a sender only blocks
//! when the queue is over capacity, so an async write costs one push under a mutex. The thread
//! takes everything queued at once (swapping the queue's `Vec` with its own, emptied one: both
//! keep their capacity, so a steady stream of writes allocates nothing for the queue), commits
//! it as engine batches of up to [`MAX_BATCH`] ops (a job is never split), and answers every job
//! that asked for an acknowledgement with its batch's result: concurrent sync writers share one
//! commit. With an `fsync_interval` it also fsyncs at that pace while there is unsynced data.
//! A job may carry an `on_commit` action (a sync write's memory-tier update, holding the key's
//! stripe lock): the thread runs it after the commit succeeded and before answering, and drops
//! it unrun when the commit failed, so memory never shows what the caller was told failed.
//! A failure that later calls would repeat (a fatal engine error) or that nobody is waiting for
//! (an async write) marks the writer failed ([`Health`]): every later call is
//! [`Error::Unavailable`].
//! When the last handle drops, the thread drains the queue, flushes, fsyncs and exits. Off an
//! async runtime the drop joins it, so the directory can be reopened as soon as the `DiskDb`
//! is gone; on a runtime thread the wait moves to a thread of its own (see `db.rs`).

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use super::engine::{CommitError, Engine, Op};
use crate::error::{Error, Result};

/// Most ops committed in one batch.
const MAX_BATCH: usize = 1 << 16;

/// Jobs' worth of capacity the writer keeps in its emptied queue buffer (the rest of a burst's
/// is returned to the allocator).
const KEEP_CAPACITY: usize = MAX_BATCH;

/// The result of a commit.
type Outcome = std::result::Result<(), CommitError>;

/// The answer to a job: whether its commit succeeded.
pub(crate) type Ack = oneshot::Receiver<Outcome>;

/// What to do once a job's commit succeeded (dropped unrun if it failed).
pub(crate) type OnCommit = Box<dyn FnOnce() + Send>;

/// Ops to apply, and where to report that they are committed.
pub(crate) struct Job {
    ops: Ops,
    ack: Option<oneshot::Sender<Outcome>>,
    on_commit: Option<OnCommit>,
}

/// Whether the store still takes work: set once, by the first failure it cannot recover from.
pub(crate) struct Health {
    dir: PathBuf,
    failed: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Health {
    fn new(dir: PathBuf) -> Self {
        Health {
            dir,
            failed: AtomicBool::new(false),
            reason: Mutex::new(None),
        }
    }

    /// `Ok` while the store takes work, else [`Error::Unavailable`].
    pub(crate) fn check(&self) -> Result<()> {
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(self.unavailable())
    }

    fn unavailable(&self) -> Error {
        let reason = self.reason.lock().clone().unwrap_or_default();
        Error::from(crate::UnavailableError {
            path: self.dir.clone(),
            reason,
        })
    }

    /// Marks the store failed (the first reason is kept).
    fn fail(&self, reason: String) {
        let mut slot = self.reason.lock();
        if slot.is_none() {
            tracing::error!(dir = %self.dir.display(), %reason, "the strata disk store is now unavailable: every later call fails until it is reopened");
            *slot = Some(reason);
        }
        self.failed.store(true, Ordering::Release);
    }
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
    /// Senders blocked in [`Gate::wait`] right now (for tests that pin back-pressure).
    waiting: AtomicUsize,
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
        self.waiting.fetch_add(1, Ordering::AcqRel);
        while self.queued.load(Ordering::Acquire) > self.capacity
            && !self.stopped.load(Ordering::Acquire)
        {
            self.room.wait_for(&mut guard, Duration::from_millis(50));
        }
        self.waiting.fetch_sub(1, Ordering::AcqRel);
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

/// What a sender over capacity waits for after queueing: [`Room::wait`] blocks until the writer
/// has brought the queue back under capacity (nothing to wait for if it was not over).
#[must_use = "a sender over capacity must wait for room"]
pub(crate) struct Room(Option<Arc<Gate>>);

impl Room {
    /// Blocks while the queue is over capacity (back-pressure on async writers).
    pub(crate) fn wait(self) {
        if let Some(gate) = self.0 {
            gate.wait();
        }
    }
}

/// The queue into the writer thread.
struct Inbox {
    queue: Mutex<Queue>,
    /// Signalled when a job arrives while the writer waits, and on close.
    ready: Condvar,
}

struct Queue {
    jobs: Vec<Job>,
    /// Set by [`Writer::stop`] (or the thread's end): no job is taken any more; the thread
    /// commits what is queued and exits.
    closed: bool,
    /// The writer is waiting for a job: the next sender wakes it (and clears this).
    idle: bool,
}

impl Inbox {
    fn close(&self) {
        self.queue.lock().closed = true;
        self.ready.notify_one();
    }
}

/// When the writer thread ends, even by a panic: marks the gate stopped and the queue closed,
/// and drops whatever is still queued (their acknowledgements then report the close).
struct StopOnDrop(Arc<Gate>, Arc<Inbox>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let left = {
            let mut queue = self.1.queue.lock();
            queue.closed = true;
            std::mem::take(&mut queue.jobs)
        };
        drop(left);
        self.0.stop();
    }
}

/// The queue into the writer thread and the thread itself.
pub(crate) struct Writer {
    pub(crate) health: Arc<Health>,
    inbox: Arc<Inbox>,
    gate: Arc<Gate>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread over `engine`.
    pub(crate) fn start(
        dir: PathBuf,
        engine: Arc<dyn Engine>,
        capacity: usize,
        fsync_interval: Option<Duration>,
    ) -> Result<Self> {
        let inbox = Arc::new(Inbox {
            queue: Mutex::new(Queue {
                jobs: Vec::new(),
                closed: false,
                idle: false,
            }),
            ready: Condvar::new(),
        });
        let gate = Arc::new(Gate {
            queued: AtomicUsize::new(0),
            capacity,
            stopped: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            room: Condvar::new(),
        });
        let stop = StopOnDrop(gate.clone(), inbox.clone());
        let health = Arc::new(Health::new(dir));
        let thread_health = health.clone();
        let thread = std::thread::Builder::new()
            .name("strata-disk-writer".into())
            .spawn(move || {
                let stop = stop;
                run(
                    engine.as_ref(),
                    &stop.1,
                    &stop.0,
                    &thread_health,
                    fsync_interval,
                );
            })
            .map_err(|e| {
                Error::from(crate::IoError {
                    context: "starting the disk writer thread".into(),
                    source: e,
                })
            })?;
        Ok(Writer {
            health,
            inbox,
            gate,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `ops`; with `ack`, returns a receiver answered once they are committed.
    /// Blocks while the queue is over capacity (back-pressure on async writers).
    pub(crate) fn send(&self, ops: Vec<Op>, ack: bool) -> Result<Option<Ack>> {
        self.submit(Ops::Many(ops), ack, None)
    }

    /// Queues `ops` (as one commit: a job is never split across engine batches); with `ack`,
    /// returns a receiver answered once they are committed and `on_commit` has run.
    /// [`Error::Unavailable`] once the store has failed.
    pub(crate) fn submit(
        &self,
        ops: Ops,
        ack: bool,
        on_commit: Option<OnCommit>,
    ) -> Result<Option<Ack>> {
        let (ack, room) = self.enqueue(ops, ack, on_commit)?;
        room.wait();
        Ok(ack)
    }

    /// [`Writer::send`] without the wait for room: the caller waits on the returned [`Room`]
    /// once it has released its locks (`put_raw` queues under the lock `DiskDb::store` needs).
    pub(crate) fn send_then_wait(&self, ops: Vec<Op>, ack: bool) -> Result<(Option<Ack>, Room)> {
        self.enqueue(Ops::Many(ops), ack, None)
    }

    /// Queues the job; the returned [`Room`] blocks its caller while the queue is over
    /// capacity.
    fn enqueue(
        &self,
        ops: Ops,
        ack: bool,
        on_commit: Option<OnCommit>,
    ) -> Result<(Option<Ack>, Room)> {
        self.health.check()?;
        let (tx, rx) = if ack {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let weight = ops.weight();
        let over = self.gate.reserve(weight);
        let job = Job {
            ops,
            ack: tx,
            on_commit,
        };
        let mut queue = self.inbox.queue.lock();
        if queue.closed {
            drop(queue);
            // Unrun: its stripe locks drop with it.
            drop(job);
            self.gate.release(weight);
            return Err(closed());
        }
        queue.jobs.push(job);
        let wake = std::mem::take(&mut queue.idle);
        drop(queue);
        if wake {
            self.inbox.ready.notify_one();
        }
        let room = Room(over.then(|| self.gate.clone()));
        Ok((rx, room))
    }

    /// Ops queued and not yet committed.
    pub(crate) fn queued(&self) -> usize {
        self.gate.queued.load(Ordering::Acquire)
    }

    /// Senders blocked right now until the queue is back under capacity.
    pub(crate) fn waiting_for_room(&self) -> usize {
        self.gate.waiting.load(Ordering::Acquire)
    }

    /// Stops taking jobs, lets the thread drain the queue and waits for it.
    pub(crate) fn close(&self) {
        join(self.stop());
    }

    /// Stops taking jobs and returns the thread (once), which drains the queue, closes the
    /// engine and exits; the caller decides where to wait for it (see `DbInner`'s drop).
    pub(crate) fn stop(&self) -> Option<JoinHandle<()>> {
        self.inbox.close();
        self.thread.lock().take()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits for the writer thread to end.
pub(crate) fn join(thread: Option<JoinHandle<()>>) {
    if let Some(thread) = thread {
        if thread.join().is_err() {
            tracing::error!("the strata disk writer thread panicked");
        }
    }
}

fn closed() -> Error {
    Error::Closed {
        reason: "the disk store's writer has stopped".into(),
    }
}

impl Writer {
    /// Waits for an acknowledgement and turns a failed commit into an error:
    /// [`Error::Unavailable`] if the store cannot take work any more, else [`Error::Backend`].
    pub(crate) async fn wait(&self, ack: Ack) -> Result<()> {
        match ack.await {
            Ok(Ok(())) => Ok(()),
            // Fatal, or the batch also held async writes nobody else will hear about.
            Ok(Err(e)) if e.fatal || self.health.check().is_err() => Err(self.health.unavailable()),
            Ok(Err(e)) => Err(Error::backend("committing to the disk store", e.reason)),
            Err(_) => Err(closed()),
        }
    }
}

fn run(
    engine: &dyn Engine,
    inbox: &Inbox,
    gate: &Gate,
    health: &Health,
    fsync_interval: Option<Duration>,
) {
    let mut batch = Batch::default();
    let mut taken: Vec<Job> = Vec::new();
    let mut unsynced_since: Option<Instant> = None;
    loop {
        let wait = match (fsync_interval, unsynced_since) {
            (Some(every), Some(since)) => every.saturating_sub(since.elapsed()),
            _ => Duration::from_secs(3600),
        };
        let closed = {
            let mut queue = inbox.queue.lock();
            if queue.jobs.is_empty() && !queue.closed {
                queue.idle = true;
                inbox.ready.wait_for(&mut queue, wait);
                queue.idle = false;
            }
            std::mem::swap(&mut queue.jobs, &mut taken);
            queue.closed
        };
        if taken.is_empty() && closed {
            break;
        }
        let mut jobs = taken.drain(..).peekable();
        while jobs.peek().is_some() {
            // One job, then more until the batch is full.
            for job in jobs.by_ref() {
                batch.push(job);
                if batch.ops.len() >= MAX_BATCH {
                    break;
                }
            }
            batch.commit(engine, health);
            gate.release(std::mem::take(&mut batch.weight));
            unsynced_since.get_or_insert_with(Instant::now);
        }
        drop(jobs);
        taken.shrink_to(KEEP_CAPACITY);
        if fsync_interval.is_some_and(|every| unsynced_since.is_some_and(|s| s.elapsed() >= every))
        {
            sync(engine, health);
            unsynced_since = None;
        }
    }
    engine.close();
}

/// An fsync failure is fatal: what the OS dropped cannot be known (fjall poisons itself too).
fn sync(engine: &dyn Engine, health: &Health) {
    if let Err(e) = engine.sync() {
        health.fail(format!("fsync failed: {e}"));
    }
}

#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    acks: Vec<oneshot::Sender<Outcome>>,
    on_commit: Vec<OnCommit>,
    /// Jobs nobody waits for (async writes): a failure of theirs is reported through [`Health`].
    unacked: usize,
    /// Queue capacity the batch's jobs took.
    weight: usize,
}

impl Batch {
    fn push(&mut self, job: Job) {
        self.weight += job.ops.weight();
        self.unacked += usize::from(job.ack.is_none() && job.weight_counts());
        match job.ops {
            Ops::One(op) => self.ops.push(op),
            Ops::Many(ops) => self.ops.extend(ops),
        }
        self.acks.extend(job.ack);
        self.on_commit.extend(job.on_commit);
    }

    /// Commits, then (in queue order) applies every job's memory update and answers them.
    fn commit(&mut self, engine: &dyn Engine, health: &Health) {
        let result = if self.ops.is_empty() {
            Ok(())
        } else {
            engine.commit(&self.ops)
        };
        match &result {
            Ok(()) => self.on_commit.drain(..).for_each(|apply| apply()),
            Err(e) => {
                // Unrun: memory keeps the state before these writes; their stripe locks drop.
                self.on_commit.clear();
                self.report(e, health);
            }
        }
        self.ops.clear();
        self.unacked = 0;
        for ack in self.acks.drain(..) {
            let _ = ack.send(result.clone());
        }
    }

    fn report(&self, e: &CommitError, health: &Health) {
        tracing::error!(error = %e.reason, ops = self.ops.len(), "a strata disk store commit failed; none of its writes were applied");
        if e.fatal {
            health.fail(e.reason.clone());
        } else if self.unacked > 0 {
            health.fail(format!(
                "{} queued async write(s) could not be committed: {}",
                self.unacked, e.reason
            ));
        }
    }
}

impl Job {
    /// True unless the job is an empty flush marker.
    fn weight_counts(&self) -> bool {
        !matches!(&self.ops, Ops::Many(ops) if ops.is_empty())
    }
}
