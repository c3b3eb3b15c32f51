//! Group commit: a node's concurrent puts and deletes reach Redis together.
//!
//! One writer task per store (per namespace) sends one batch at a time: whatever queued while
//! the previous batch was in flight, so a lone write goes alone and at once. A batch is one
//! remote call ([`Store::write_many_and_notify`]; on Redis one pipeline of the `SET`s and
//! `UNLINK`s and ONE `PUBLISH` that lists every key, one pipeline per slot on a cluster), so the
//! server fans out one message per batch instead of one per key and each node parses one.
//!
//! After Redis acknowledged the batch, the writer does each write's local part (the fill-guard
//! claim, then the local put or drop, as a single write did) and only then answers the callers. Callers wait on a oneshot, so a caller that goes away (its future
//! dropped) changes nothing for the others; a write that was queued is still sent, as a request
//! already on the wire would be.
//!
//! **Runtimes.** The writer runs on the runtime of the write that started it. If that runtime
//! shuts down (the writer is dropped, see [`Orphaned`]) the writes still queued go back to their
//! callers, who queue them again and start a writer on their own runtime; the callers of the
//! batch it had taken are told their writes may have been applied. If the runtime is kept alive
//! but not driven (a current-thread runtime outside `block_on`), the writer is neither run nor
//! dropped. It records each batch it takes and beats every [`WRITER_BEAT`] while it sends one.
//! Callers wait on their answer alone (no timer each): the invalidation watchdog's thread
//! looks at every store's writer every 200 ms ([`Writers::check_starved`]) and relieves one
//! that has not run for [`BATCH_STARVED`] with a batch in flight, or taken none for
//! [`WRITER_STARVED`] since it first saw writes queued: the callers of its batch are told their
//! writes may have been applied, the queued writes go back to their callers, and the first to
//! queue again starts a writer on its own runtime. A writer that was relieved and runs again
//! takes nothing more from the queue (only the writer in charge does, under the lock); the
//! batch it had sent it finishes, dropping its keys' copies here instead of caching them.
//!
//! **The last check.** A batch the writer took but had not yet sent when it was replaced (its
//! remote call waited, say for a connection being replaced, while its runtime stopped) is not
//! sent late over a write its callers made again after the error: the remote call asks "still
//! the writer in charge?" once the connection is ready, right before the batch is handed to it
//! ([`Store::write_many_and_notify_fenced`]), and sends nothing if not
//! (`a_retry_after_maybe_applied_is_not_overwritten_by_the_replaced_writer`; Redis ended at the
//! older value before). The check is made under the lock a takeover takes and counts as a beat,
//! so a takeover comes at least [`BATCH_STARVED`] after a check that passed. What is left
//! (review3 finding 1): on Redis the check and the hand-over to redis-rs's request queue for
//! the connection happen in one poll, but (a) if that queue is full (50 requests waiting for
//! the connection's driver task) the hand-over waits, and a writer whose runtime stops in that
//! wait for [`BATCH_STARVED`] hands its batch over late; (b) a batch handed over goes out ahead
//! of every later request on that connection, but if the connection's driver task starves (it
//! runs on the runtime that connected it), a later request on it times out, the connection is
//! replaced, and the batch is written when that runtime runs again, like any request that timed
//! out; (c) on a cluster the client routes a pipeline after the hand-over and may first wait
//! for a node's connection. Closing these needs a fence in Redis itself: each batch a script
//! that runs its writes only if a per-store generation key still holds the writer's number
//! (and, on a cluster, one such key per slot). Measured on Redis 7.0 (server time per batch
//! from `INFO commandstats`, redis-benchmark, 16 clients, two subscribers, 3 rounds at load
//! 19-21 on 2 cores): a batch of one put 1.3-1.5 µs as today's `SET PX` + `PUBLISH` against
//! 6.3-11.2 µs as one `EVALSHA` (4.6-8.2x); of 16 puts 13.1-15.4 against 36.9-42.7 µs
//! (2.7-3.1x). Every batch would pay that for a case that needs a starved runtime, so the
//! fence stays in the client.

use std::{
    collections::VecDeque,
    fmt,
    future::{poll_fn, Future},
    pin::pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Weak,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use tokio::{
    runtime::Handle,
    sync::{mpsc, oneshot},
};

use super::{link::Guard, message::Op, store::Inner};
use crate::{
    codec::Key,
    error::{Error, Result},
    store::{BatchWrite, Expiry, Notice, Store},
    time::UnixMillis,
};

/// The most writes in one batch: bounds one pipeline (and its replies) well under the command
/// timeout; a longer queue goes in the next batches.
const MAX_BATCH: usize = 1024;

/// How often a writer sending a batch records that its runtime runs it.
const WRITER_BEAT: Duration = Duration::from_millis(100);
/// A writer with writes queued and no batch in flight that takes none for this long is relieved
/// (the writes go back to their callers, who start a writer on their own runtime). That costs
/// a task and nothing else.
const WRITER_STARVED: Duration = Duration::from_secs(1);
/// A writer with a batch in flight that its runtime has not run (beat) for this long is
/// relieved, and the batch's callers are told their writes may have been applied. As long as
/// the default command timeout: a false alarm fails writes, so it waits as long as a slow
/// Redis would be waited for.
const BATCH_STARVED: Duration = Duration::from_secs(5);

/// What a write's caller says when its writer stopped running with the write taken.
const MAYBE_APPLIED: &str = "the task sending this store's writes stopped running (its runtime \
     shut down, or is not driven) after it took this write: it may have been applied, if it was \
     already on its way to Redis (a task replaced before it sent the write sends nothing, even if \
     its runtime runs again). This node's copy of the key was dropped and the other nodes were \
     told; read the key back, or write it again";

/// The part of a write that its writer keeps while it sends it.
struct Job<K, V> {
    write: BatchWrite<K, V>,
    /// The key's fill guard, taken before the write was queued ([`super::Stripes::claim`]).
    guard: Guard,
    /// When the caller began (clock ms): the local copy never outlives the remote TTL.
    started: UnixMillis,
}

/// The writes a writer took, in order, as the remote call borrows them, and beside them each
/// write's fill guard and start (so no write is cloned for the remote call).
struct Batch<K, V> {
    writes: Vec<BatchWrite<K, V>>,
    parts: Vec<(Guard, UnixMillis)>,
}

impl<K, V> Batch<K, V> {
    fn with_capacity(n: usize) -> Self {
        Batch {
            writes: Vec::with_capacity(n),
            parts: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, job: Job<K, V>) {
        self.writes.push(job.write);
        self.parts.push((job.guard, job.started));
    }

    fn len(&self) -> usize {
        self.writes.len()
    }
}

/// A write waiting for its batch.
struct Queued<K, V> {
    job: Job<K, V>,
    /// The key as the invalidation message carries it.
    bytes: Vec<u8>,
    reply: oneshot::Sender<Answer<K, V>>,
}

/// The part of a write in the batch being sent that stays where the watchdog relieving a starved
/// writer can reach it: its key and its caller.
struct InFlight<K, V> {
    bytes: Vec<u8>,
    /// `None` once answered.
    reply: Option<oneshot::Sender<Answer<K, V>>>,
}

/// What a waiting caller hears.
enum Answer<K, V> {
    /// The outcome of its write.
    Done(Result<bool>),
    /// Its write was never sent: the writer's runtime shut down before the writer took it (the
    /// writer that said so is named), or the writer was relieved because its runtime does not
    /// run it (`None`: see [`Writers::check_starved`]). The caller queues the write again.
    Requeue(Job<K, V>, Vec<u8>, Option<u64>),
    /// Its write was in the batch of a writer that stopped running before it answered (its
    /// runtime shut down, or starves it): it may have been applied. The key is given back.
    Abandoned(Vec<u8>),
}

/// The queue in front of one store's writer, and which writer is in charge.
pub(super) struct Committer<K, V> {
    queue: mpsc::UnboundedSender<Queued<K, V>>,
    writers: Arc<Writers<K, V>>,
}

impl<K, V> Default for Committer<K, V> {
    fn default() -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        Committer {
            queue,
            writers: Arc::new(Writers {
                running: AtomicBool::new(false),
                slot: Mutex::new(Slot {
                    rx,
                    leftover: VecDeque::new(),
                    id: 0,
                    running: false,
                    beat: Instant::now(),
                    stalled: None,
                    in_flight: Vec::new(),
                }),
            }),
        }
    }
}

/// Shared by a store and its writers: the receiving end of the queue, which only the writer in
/// charge takes from, and the batch it is sending.
struct Writers<K, V> {
    /// `slot.running`, read without the lock after every write queued.
    running: AtomicBool,
    slot: Mutex<Slot<K, V>>,
}

struct Slot<K, V> {
    rx: mpsc::UnboundedReceiver<Queued<K, V>>,
    /// Writes whose callers went away, left by a writer that was relieved: the next writer
    /// takes them first (a cancelled caller's queued write is still made).
    leftover: VecDeque<Queued<K, V>>,
    /// The writer in charge (numbered from 1).
    id: u64,
    /// False before the first writer, and once the one in charge was dropped (its runtime shut
    /// down): the next write starts one.
    running: bool,
    /// When the writer in charge last ran: took a batch, or beat while sending one.
    beat: Instant,
    /// When the watchdog first saw writes queued for a writer with no batch in flight that has
    /// not taken one since (see [`Writers::check_starved`]).
    stalled: Option<Instant>,
    /// The callers of the batch the writer in charge is sending.
    in_flight: Vec<InFlight<K, V>>,
}

/// A writer just put in charge (to spawn), and the batch callers of the one it replaced (to
/// tell that their writes may have been applied).
type Succession<K, V> = (Orphaned<K, V>, Vec<InFlight<K, V>>);

impl<K, V> Writers<K, V> {
    /// Makes a new writer the one in charge; the old one's batch is handed back, unanswered.
    fn take_charge(self: &Arc<Self>, slot: &mut Slot<K, V>) -> Succession<K, V> {
        slot.id += 1;
        slot.running = true;
        self.running.store(true, Ordering::SeqCst);
        slot.beat = Instant::now();
        let abandoned = std::mem::take(&mut slot.in_flight)
            .into_iter()
            .filter(|f| f.reply.is_some())
            .collect();
        let guard = Orphaned {
            writers: self.clone(),
            id: slot.id,
        };
        (guard, abandoned)
    }

    /// Starts a writer if none is in charge.
    fn start(self: &Arc<Self>) -> Option<Succession<K, V>> {
        let mut slot = self.slot.lock();
        (!slot.running).then(|| self.take_charge(&mut slot))
    }

    /// Called every 200 ms by the invalidation watchdog's thread (`now`: its clock): relieves the
    /// writer in charge if its runtime has not run it, so that its callers, who wait with no
    /// timer of their own, send their writes from their own runtimes. Starved means: a batch
    /// in flight and no beat for [`BATCH_STARVED`], or writes queued, no batch in flight, and
    /// none taken for [`WRITER_STARVED`] since the watchdog first saw them waiting. The callers
    /// of its batch are told their writes may have been applied; the queued writes go back to
    /// their callers (those gone stay for the next writer); no writer is in charge until one of
    /// them queues again. Returns how many callers were told each, if it was relieved.
    fn check_starved(&self, now: Instant) -> Option<(usize, usize)> {
        let (abandoned, requeued) = {
            let mut slot = self.slot.lock();
            if !slot.running {
                return None;
            }
            // The last batch stays in the slot until the next is taken; once its callers were
            // answered it is no longer in flight.
            if slot.in_flight.iter().any(|f| f.reply.is_some()) {
                slot.stalled = None;
                if now < slot.beat + BATCH_STARVED {
                    return None;
                }
            } else {
                if slot.rx.is_empty() && slot.leftover.is_empty() {
                    slot.stalled = None;
                    return None;
                }
                match slot.stalled {
                    Some(since) if slot.beat <= since => {
                        if now < since + WRITER_STARVED {
                            return None;
                        }
                    }
                    _ => {
                        slot.stalled = Some(now);
                        return None;
                    }
                }
            }
            slot.stalled = None;
            slot.running = false;
            self.running.store(false, Ordering::SeqCst);
            let abandoned: Vec<_> = std::mem::take(&mut slot.in_flight);
            let mut requeued = Vec::new();
            while let Ok(q) = slot.rx.try_recv() {
                match q.reply.is_closed() {
                    true => slot.leftover.push_back(q),
                    false => requeued.push(q),
                }
            }
            (abandoned, requeued)
        };
        let counts = (
            abandoned.iter().filter(|f| f.reply.is_some()).count(),
            requeued.len(),
        );
        abandon(abandoned);
        for q in requeued {
            let _ = q.reply.send(Answer::Requeue(q.job, q.bytes, None));
        }
        Some(counts)
    }

    fn in_charge(slot: &Slot<K, V>, id: u64) -> bool {
        slot.id == id && slot.running
    }

    /// Writer `id` takes the next batch (up to [`MAX_BATCH`] writes, waiting for the first);
    /// `None` once it is no longer in charge or the store is gone. Its callers stay in the slot
    /// until answered.
    fn take(&self, id: u64, cx: &mut Context<'_>) -> Poll<Option<Batch<K, V>>> {
        let mut slot = self.slot.lock();
        if !Self::in_charge(&slot, id) {
            return Poll::Ready(None);
        }
        let first = match slot.leftover.pop_front() {
            Some(first) => first,
            None => match slot.rx.poll_recv(cx) {
                Poll::Ready(Some(first)) => first,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            },
        };
        slot.in_flight.clear();
        // Sized for the writes queued now, so a batch is not regrown write by write.
        let queued = slot.rx.len() + slot.leftover.len();
        let mut jobs = Batch::with_capacity((queued + 1).min(MAX_BATCH));
        let mut next = Some(first);
        while let Some(queued) = next.take() {
            jobs.push(queued.job);
            slot.in_flight.push(InFlight {
                bytes: queued.bytes,
                reply: Some(queued.reply),
            });
            if jobs.len() < MAX_BATCH {
                next = (slot.leftover.pop_front()).or_else(|| slot.rx.try_recv().ok());
            }
        }
        slot.beat = Instant::now();
        Poll::Ready(Some(jobs))
    }

    /// Records that writer `id` runs now; false once it is no longer in charge.
    fn beat(&self, id: u64) -> bool {
        let mut slot = self.slot.lock();
        if !Self::in_charge(&slot, id) {
            return false;
        }
        slot.beat = Instant::now();
        true
    }

    fn still_in_charge(&self, id: u64) -> bool {
        Self::in_charge(&self.slot.lock(), id)
    }

    /// The invalidation message for the writes `range` of writer `id`'s batch; `None` if it is
    /// no longer in charge (its callers were answered when it was relieved).
    fn payload(
        &self,
        id: u64,
        first: usize,
        count: usize,
        message: impl FnOnce(&[&[u8]]) -> Vec<u8>,
    ) -> Option<Vec<u8>> {
        let slot = self.slot.lock();
        if !Self::in_charge(&slot, id) {
            return None;
        }
        let keys: Vec<&[u8]> = slot
            .in_flight
            .get(first..first + count)?
            .iter()
            .map(|f| f.bytes.as_slice())
            .collect();
        Some(message(&keys))
    }

    /// Answers the callers of the writes from `first` of writer `id`'s batch, if it is still in
    /// charge (otherwise they were told their writes may be applied when it was relieved).
    fn answer(&self, id: u64, first: usize, outcomes: Vec<Result<bool>>) {
        let replies: Vec<_> = {
            let mut slot = self.slot.lock();
            if !Self::in_charge(&slot, id) {
                return;
            }
            let Some(batch) = slot.in_flight.get_mut(first..first + outcomes.len()) else {
                return;
            };
            batch.iter_mut().map(|f| f.reply.take()).collect()
        };
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            if let Some(reply) = reply {
                let _ = reply.send(Answer::Done(outcome));
            }
        }
    }
}

/// Tells the callers of a batch whose writer stopped running that their writes may be applied.
fn abandon<K, V>(batch: Vec<InFlight<K, V>>) {
    for f in batch {
        if let Some(reply) = f.reply {
            let _ = reply.send(Answer::Abandoned(f.bytes));
        }
    }
}

/// Held by a writer for its whole life. If it is dropped while still in charge (its runtime shut
/// down while the store lives on), no writer is in charge any more: the callers of its batch
/// are told their writes may have been applied, and the writes still queued go back to their
/// callers, who queue them again (the first starts a writer on its own runtime). A writer that
/// was replaced, or whose store is gone, leaves nothing to do.
struct Orphaned<K, V> {
    writers: Arc<Writers<K, V>>,
    id: u64,
}

impl<K, V> Drop for Orphaned<K, V> {
    fn drop(&mut self) {
        let (abandoned, queued) = {
            let mut slot = self.writers.slot.lock();
            if !Writers::in_charge(&slot, self.id) {
                return;
            }
            slot.running = false;
            self.writers.running.store(false, Ordering::SeqCst);
            let abandoned = std::mem::take(&mut slot.in_flight);
            let mut queued = Vec::new();
            while let Ok(q) = slot.rx.try_recv() {
                queued.push(q);
            }
            (abandoned, queued)
        };
        abandon(abandoned);
        for q in queued {
            let _ = q.reply.send(Answer::Requeue(q.job, q.bytes, Some(self.id)));
        }
    }
}

/// What a batch write is called in errors.
fn verb<K, V>(write: &BatchWrite<K, V>) -> &'static str {
    match write {
        BatchWrite::Put { .. } => "PUT",
        BatchWrite::Delete(_) => "DELETE",
    }
}

impl<K, V, L, R> Inner<K, V, L, R>
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    /// Queues `write` for the next batch and waits for its outcome: a put's `true`, or whether
    /// a delete removed a live entry.
    pub(super) async fn commit(
        self: &Arc<Self>,
        write: BatchWrite<K, V>,
        bytes: Vec<u8>,
        guard: Guard,
        started: UnixMillis,
    ) -> Result<bool> {
        // Formatted only for an error (as `Inner::context`: not the key, it can be a session
        // id); formatting it for every put cost 1,406 of its 14,091 instructions (callgrind).
        let verb = verb(&write);
        let context = || format!("{verb} in {}", self.namespace);
        let Ok(runtime) = Handle::try_current() else {
            let why = "a ReplicatedStore writes from inside a Tokio runtime";
            return Err(Error::backend(context(), why));
        };
        let (mut job, mut bytes) = (
            Job {
                write,
                guard,
                started,
            },
            bytes,
        );
        // The writer this call started, if any: one that hands its write back unsent was
        // dropped with the caller's own runtime, so starting another would be in vain.
        let mut mine = None;
        loop {
            let (reply, outcome) = oneshot::channel();
            let queued = Queued { job, bytes, reply };
            match self.enqueue(queued, &runtime) {
                Ok(Some(started)) => mine = Some(started),
                Ok(None) => {}
                Err(why) => return Err(Error::backend(context(), why)),
            }
            // No timer: a writer that its runtime stops running is relieved by the watchdog
            // thread (`Writers::check_starved`), which answers this write (a timer per caller
            // cost ~670 of a put's ~11,000 instructions, callgrind).
            match outcome.await.ok() {
                Some(Answer::Done(outcome)) => return outcome,
                Some(Answer::Requeue(again, key, by)) => {
                    self.hub.counters.waiting.fetch_sub(1, Ordering::Relaxed);
                    if by.is_some() && mine == by {
                        let why = "the task sending this store's writes, started on this call's \
                             runtime, was dropped before it took the write (the runtime is \
                             shutting down); nothing was written";
                        return Err(Error::backend(context(), why));
                    }
                    (job, bytes) = (again, key);
                }
                Some(Answer::Abandoned(key)) => {
                    self.settle_abandoned(&key).await;
                    return Err(Error::backend(context(), MAYBE_APPLIED));
                }
                None => {
                    let why = "the task sending this store's writes dropped this write without \
                         answering; it may have been applied";
                    return Err(Error::backend(context(), why));
                }
            }
        }
    }

    /// Queues `queued`, starting a writer on `runtime` if none is in charge (then its id).
    fn enqueue(
        self: &Arc<Self>,
        queued: Queued<K, V>,
        runtime: &Handle,
    ) -> std::result::Result<Option<u64>, &'static str> {
        let counters = &self.hub.counters;
        counters.waiting.fetch_add(1, Ordering::Relaxed);
        if self.commits.queue.send(queued).is_err() {
            counters.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err("the store's write queue is closed");
        }
        // Pairs with the writer's guard, which marks itself not running and then hands back
        // what it finds queued: either it finds this write, or this sees it stopped. A race
        // missed here is still caught by the watchdog (`Writers::check_starved`).
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.commits.writers.running.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let Some((guard, abandoned)) = self.commits.writers.start() else {
            return Ok(None);
        };
        let id = guard.id;
        self.spawn_writer(guard, abandoned, runtime);
        Ok(Some(id))
    }

    /// Spawns the writer that `guard` makes the one in charge (outside the slot's lock: a
    /// runtime that is shutting down drops the task inside `spawn`, and the guard's drop takes
    /// the lock), after telling the callers of the batch of the writer it replaced that their
    /// writes may have been applied.
    fn spawn_writer(
        self: &Arc<Self>,
        guard: Orphaned<K, V>,
        abandoned: Vec<InFlight<K, V>>,
        runtime: &Handle,
    ) {
        abandon(abandoned);
        runtime.spawn(writer(Arc::downgrade(self), guard));
    }

    /// Called by the watchdog thread: relieves this store's writer if its runtime starves it
    /// (see [`Writers::check_starved`]), and says so.
    pub(super) fn relieve_writer_if_starved(&self) {
        let Some((abandoned, requeued)) = self.commits.writers.check_starved(Instant::now()) else {
            return;
        };
        tracing::warn!(
            namespace = %self.namespace,
            abandoned,
            requeued,
            "the task sending this store's writes has not run for a while (its runtime is idle, \
             blocked or gone); its callers send them from their own runtimes"
        );
    }

    /// A write that may have been applied by a writer that stopped running: drop this node's
    /// copy (and keep a fill under way from caching it) and tell the other nodes, best effort.
    async fn settle_abandoned(&self, bytes: &[u8]) {
        self.stripes.bump(bytes);
        match K::decode_key(bytes) {
            Ok(key) => self.drop_local(&key).await,
            Err(_) => self.flush_local().await,
        }
        let _ = self.hub.publish(&self.channel, Op::Invalidate, bytes).await;
    }

    /// Sends one batch of writer `id` and answers each of its callers. A batch that could not
    /// be sent because a value did not encode goes again write by write, so only the bad one
    /// fails.
    async fn send_batch(&self, id: u64, jobs: Batch<K, V>) {
        if let Some(alone) = self.try_batch(id, jobs, 0).await {
            let writes = alone.writes.into_iter().zip(alone.parts);
            for (i, (write, part)) in writes.enumerate() {
                let one = Batch {
                    writes: vec![write],
                    parts: vec![part],
                };
                let _ = self.try_batch(id, one, i).await;
            }
        }
    }

    /// Sends `jobs`, the writes from `first` of writer `id`'s batch, and answers their callers,
    /// or hands them back to be sent write by write.
    async fn try_batch(&self, id: u64, jobs: Batch<K, V>, first: usize) -> Option<Batch<K, V>> {
        let counters = &self.hub.counters;
        counters.batches.fetch_add(1, Ordering::Relaxed);
        (counters.batched_writes).fetch_add(jobs.len() as u64, Ordering::Relaxed);
        let writers = &self.commits.writers;
        // Replaced (its callers were answered): nothing is sent.
        let payload = writers.payload(id, first, jobs.len(), |keys| self.hub.message_many(keys))?;
        if !self.hub.link.is_up() {
            self.refuse(id, first, &jobs.writes);
            return None;
        }
        let notice = Notice {
            channel: &self.channel,
            payload: &payload,
        };
        // The last check, once the connection is ready and right before the batch is handed to
        // it: a writer replaced while its call waited (for a connection, its runtime starved)
        // sends nothing, so its batch never lands over a write its callers made again after
        // being told it may have been applied. Passing it counts as a beat: a takeover comes no
        // sooner than BATCH_STARVED after it.
        let fence = || writers.beat(id);
        let outcome = (self.remote)
            .write_many_and_notify_fenced(&jobs.writes, notice, &fence)
            .await;
        let outcome = match outcome {
            Ok(Some(outcome)) if writers.still_in_charge(id) => Ok(outcome),
            Err(e) if writers.still_in_charge(id) => Err(e),
            // Replaced, before the send (refused by the fence: nothing was sent) or while Redis
            // had the batch: its callers were told it may be applied, and nothing of it is
            // cached here.
            _ => {
                for write in &jobs.writes {
                    self.changed_here(write.key()).await;
                }
                return None;
            }
        };
        match outcome {
            Ok((done, sent)) if done.len() == jobs.len() => {
                self.committed(id, first, jobs, done, sent, payload).await
            }
            Ok((done, _)) => {
                let why = format!("{} outcomes for {} writes", done.len(), jobs.len());
                let e = Error::backend(format!("a batch of writes in {}", self.namespace), why);
                self.failed(id, first, jobs, e, payload).await
            }
            // Nothing was sent: a value did not encode.
            Err(Error::Encode { .. }) if jobs.len() > 1 => return Some(jobs),
            Err(e) => self.failed(id, first, jobs, e, payload).await,
        }
        None
    }

    fn context(&self, write: &BatchWrite<K, V>) -> String {
        // Not the key: it can be a session id (errors reach callers' logs).
        format!("{} in {}", verb(write), self.namespace)
    }

    /// The link dropped while the batch waited: nothing is sent, every caller is refused.
    fn refuse(&self, id: u64, first: usize, writes: &[BatchWrite<K, V>]) {
        let outcomes = writes
            .iter()
            .map(|w| Err(super::store::link_down(self.context(w))))
            .collect();
        self.commits.writers.answer(id, first, outcomes);
    }

    /// Redis acknowledged every write (and the message, if it carried it): the local parts,
    /// then the message if it still has to go, then the answers. The local parts run
    /// concurrently (a disk tier group-commits them); two writes of one key in a batch share a
    /// fill-guard stripe, so at most one of them can claim it and the key ends uncached rather
    /// than with either value.
    async fn committed(
        &self,
        id: u64,
        first: usize,
        jobs: Batch<K, V>,
        done: Vec<bool>,
        sent: bool,
        payload: Vec<u8>,
    ) {
        let count = jobs.len();
        let contexts: Vec<String> = match sent {
            true => Vec::new(),
            false => jobs.writes.iter().map(|w| self.context(w)).collect(),
        };
        let each = jobs.writes.into_iter().zip(jobs.parts);
        join_each(each, |(write, (guard, started))| {
            self.apply_here(write, guard, started)
        })
        .await;
        let published = match sent {
            true => Ok(()),
            false => self.hub.publish_payload(&self.channel, payload).await,
        };
        let outcomes = match published {
            Ok(()) => done.into_iter().map(Ok).collect(),
            Err(e) => shared_error(e, count, |i| {
                format!("{} (PUBLISH after a batch of writes)", contexts[i])
            }),
        };
        self.commits.writers.answer(id, first, outcomes);
    }

    /// One write's local part after Redis acknowledged it: a put claims its fill guard (so a
    /// fill that began earlier can never cache the value it replaced) and then caches its
    /// value; a delete drops the copy.
    async fn apply_here(&self, write: BatchWrite<K, V>, guard: Guard, started: UnixMillis) {
        match write {
            BatchWrite::Put { key, value, ttl } => {
                let expiry = ttl.map_or(Expiry::Never, Expiry::In);
                match (self.stripes.claim(guard), self.local_ttl(expiry, started)) {
                    (Some(mine), Some(local)) => self.cache(mine, &key, value, local).await,
                    _ => self.drop_local(&key).await,
                }
            }
            BatchWrite::Delete(key) => self.changed_here(&key).await,
        }
    }

    /// The batch failed, so any of its writes may or may not be in Redis: nothing of theirs is
    /// cached here, their keys' local copies are dropped and the other nodes told so (best
    /// effort), and every caller of the batch gets the error.
    async fn failed(
        &self,
        id: u64,
        first: usize,
        jobs: Batch<K, V>,
        error: Error,
        payload: Vec<u8>,
    ) {
        for write in &jobs.writes {
            self.changed_here(write.key()).await;
        }
        let _ = self.hub.publish_payload(&self.channel, payload).await;
        let contexts: Vec<String> = jobs.writes.iter().map(|w| self.context(w)).collect();
        let outcomes = shared_error(error, jobs.len(), |i| contexts[i].clone());
        self.commits.writers.answer(id, first, outcomes);
    }
}

/// How many futures `futures_util`'s `join_all` keeps in one boxed slice; beyond that it
/// allocates a task per future (a `FuturesOrdered`).
const JOIN_SMALL: usize = 30;

/// Runs `f` on every item concurrently, to the end. `join_all` of up to [`JOIN_SMALL`]
/// futures at a time, joined by one more `join_all`: a batch of 64 puts costs a few
/// allocations instead of one per put. A memory tier's local parts finish at their first poll;
/// a disk tier's still wait together for its group commit.
async fn join_each<T, F: Future<Output = ()>>(
    mut items: impl ExactSizeIterator<Item = T>,
    f: impl Fn(T) -> F,
) {
    let mut chunks = Vec::with_capacity(items.len().div_ceil(JOIN_SMALL));
    while items.len() > 0 {
        chunks.push(items.by_ref().take(JOIN_SMALL).collect::<Vec<T>>());
    }
    let joined = chunks
        .into_iter()
        .map(|chunk| futures_util::future::join_all(chunk.into_iter().map(&f)));
    futures_util::future::join_all(joined).await;
}

/// One outcome per caller of a batch that failed with `error`: a lone caller the error itself,
/// each caller of a larger batch a [`Error::Backend`] naming its own write, with the batch's
/// error as source.
fn shared_error(
    error: Error,
    count: usize,
    context: impl Fn(usize) -> String,
) -> Vec<Result<bool>> {
    if count == 1 {
        return vec![Err(error)];
    }
    let shared = Arc::new(error);
    (0..count)
        .map(|i| {
            let context = format!("{} (one of a batch of {count} writes)", context(i));
            Err(Error::backend(context, SharedError(shared.clone())))
        })
        .collect()
}

/// One error shared by the callers of a batch, as the source of each one's own error.
#[derive(Debug)]
struct SharedError(Arc<Error>);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

/// A writer of one store: one batch in flight at a time, while it is in charge (see
/// [`Orphaned`], [`Writers::check_starved`]). It ends when the store is dropped (the queue closes) or
/// once it finds itself replaced; it beats while it sends a batch.
async fn writer<K, V, L, R>(inner: Weak<Inner<K, V, L, R>>, guard: Orphaned<K, V>)
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    let (writers, id) = (guard.writers.clone(), guard.id);
    let mut ticker = tokio::time::interval(WRITER_BEAT);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = 0;
    loop {
        if last > 1 {
            // Under load, the callers the last batch answered are queueing their next writes
            // right now: let them, so they go as one batch instead of a batch of the first
            // one and a batch of the rest. After a lone write (or idle) nothing waits.
            tokio::task::yield_now().await;
        }
        let Some(jobs) = poll_fn(|cx| writers.take(id, cx)).await else {
            return;
        };
        let Some(inner) = inner.upgrade() else { return };
        let waiting = &inner.hub.counters.waiting;
        waiting.fetch_sub(jobs.len() as u64, Ordering::Relaxed);
        last = jobs.len();
        let mut sending = pin!(inner.send_batch(id, jobs));
        loop {
            tokio::select! {
                biased;
                () = &mut sending => break,
                _ = ticker.tick() => {
                    // A writer replaced meanwhile still finishes what it sent.
                    writers.beat(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(
        committer: &Committer<String, String>,
        key: &str,
    ) -> oneshot::Receiver<Answer<String, String>> {
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            write: BatchWrite::Delete(key.to_string()),
            guard: Guard {
                stripe: 0,
                token: 0,
            },
            started: 0,
        };
        let bytes = key.as_bytes().to_vec();
        assert!(committer.queue.send(Queued { job, bytes, reply }).is_ok());
        outcome
    }

    /// A writer with a batch in flight is relieved once it has not beaten for
    /// [`BATCH_STARVED`], not sooner: the batch's caller hears its write may have been applied
    /// and no writer is in charge until a caller queues again.
    #[test]
    fn a_writer_with_a_batch_in_flight_is_relieved_after_batch_starved() {
        let committer = Committer::<String, String>::default();
        let writers = &committer.writers;
        let Some((writer, _)) = writers.start() else {
            panic!("no writer was in charge yet");
        };
        let (reply, mut outcome) = oneshot::channel();
        let t0 = Instant::now();
        {
            let mut slot = writers.slot.lock();
            let bytes = b"k".to_vec();
            slot.in_flight.push(InFlight {
                bytes,
                reply: Some(reply),
            });
            slot.beat = t0;
        }
        let early = t0 + BATCH_STARVED - Duration::from_millis(1);
        assert_eq!(writers.check_starved(early), None, "it beat just now");
        assert_eq!(writers.check_starved(t0 + BATCH_STARVED), Some((1, 0)));
        assert!(matches!(outcome.try_recv(), Ok(Answer::Abandoned(k)) if k == b"k"));
        assert!(!writers.still_in_charge(writer.id), "relieved");
        assert!(
            !writers.running.load(Ordering::SeqCst),
            "the next write starts one"
        );
        assert_eq!(
            writers.check_starved(t0 + 2 * BATCH_STARVED),
            None,
            "nobody to relieve"
        );
        drop(writer);
    }

    /// Writes queued for a writer with no batch in flight (its last one answered: that does not
    /// count as in flight) are handed back [`WRITER_STARVED`] after the watchdog first saw them
    /// waiting, not after the writer's last beat (an idle writer beats only when it takes a
    /// batch), and not if it took a batch meanwhile. A write whose caller went away stays for
    /// the next writer, which takes it first.
    #[test]
    fn writes_queued_for_a_writer_that_takes_none_go_back_writer_starved_after_first_seen() {
        let committer = Committer::<String, String>::default();
        let writers = &committer.writers;
        let Some((writer, _)) = writers.start() else {
            panic!("no writer was in charge yet");
        };
        let (reply, _answered) = oneshot::channel();
        let t0 = Instant::now();
        {
            let mut slot = writers.slot.lock();
            slot.in_flight.push(InFlight {
                bytes: b"old".to_vec(),
                reply: Some(reply),
            });
            slot.beat = t0;
        }
        writers.answer(writer.id, 0, vec![Ok(true)]);
        let idle = t0 + Duration::from_secs(3600);
        assert_eq!(writers.check_starved(idle), None, "nothing queued");
        let mut live = queue(&committer, "live");
        drop(queue(&committer, "cancelled"));
        assert_eq!(writers.check_starved(idle), None, "first seen now");
        let almost = idle + WRITER_STARVED - Duration::from_millis(1);
        assert_eq!(writers.check_starved(almost), None);
        // The writer takes a batch meanwhile: the wait starts again.
        writers.slot.lock().beat = almost;
        assert_eq!(writers.check_starved(idle + WRITER_STARVED), None, "it ran");
        let late = idle + WRITER_STARVED + WRITER_STARVED;
        assert_eq!(
            writers.check_starved(late),
            Some((0, 1)),
            "the old batch is not abandoned"
        );
        assert!(matches!(live.try_recv(), Ok(Answer::Requeue(_, k, None)) if k == b"live"));
        drop(writer);
        let Some((next, _)) = writers.start() else {
            panic!("no writer in charge after the relief");
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Some(batch)) = writers.take(next.id, &mut cx) else {
            panic!("the next writer found nothing to take");
        };
        assert_eq!(
            batch.writes,
            vec![BatchWrite::Delete("cancelled".to_string())]
        );
        drop(next);
    }
}
