//! Group commit: a node's concurrent puts and deletes reach Redis together.
//!
//! One writer task per store (per namespace) sends one batch at a time: whatever queued while
//! the previous batch was in flight, so a lone write goes alone and at once. A batch is one
//! remote call ([`Store::write_many_and_notify`]; on Redis one pipeline of the `SET`s and
//! `UNLINK`s and ONE `PUBLISH` that lists every key, one pipeline per slot on a cluster), so the
//! server fans out one message per batch instead of one per key and each node parses one.
//!
//! After Redis acknowledged the batch, the writer does each write's local part (the fill-guard
//! claim, then the local put or drop, as a single write did) and only then answers the callers.
//! The queue and the callers' answers live under one lock (a slot per caller in a reused slab,
//! [`super::replies`]: no channel and no allocation per write), so a caller that goes away (its
//! future dropped) changes nothing for the others; a write that was queued is still sent, as a
//! request already on the wire would be.
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
    pin::{pin, Pin},
    sync::{atomic::Ordering, Arc, Weak},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use tokio::runtime::Handle;

use super::{
    keybytes::KeyBytes,
    link::Guard,
    message::Op,
    replies::{Replies, Ticket},
    store::Inner,
};
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
    bytes: KeyBytes,
    reply: Ticket,
}

/// The part of a write in the batch being sent that stays where the watchdog relieving a starved
/// writer can reach it: its key and its caller.
struct InFlight {
    bytes: KeyBytes,
    /// `None` once answered.
    reply: Option<Ticket>,
}

/// What a waiting caller hears.
enum Answer<K, V> {
    /// The outcome of its write.
    Done(Result<bool>),
    /// Its write was never sent: the writer's runtime shut down before the writer took it (the
    /// writer that said so is named), or the writer was relieved because its runtime does not
    /// run it (`None`: see [`Writers::check_starved`]). The caller queues the write again.
    Requeue(Job<K, V>, KeyBytes, Option<u64>),
    /// Its write was in the batch of a writer that stopped running before it answered (its
    /// runtime shut down, or starves it): it may have been applied. The key is given back.
    Abandoned(KeyBytes),
}

/// The queue in front of one store's writer, and which writer is in charge.
pub(super) struct Committer<K, V> {
    writers: Arc<Writers<K, V>>,
}

impl<K, V> Default for Committer<K, V> {
    fn default() -> Self {
        Committer {
            writers: Arc::new(Writers {
                slot: Mutex::new(Slot {
                    queue: VecDeque::new(),
                    writer: None,
                    closed: false,
                    replies: Replies::default(),
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

/// The store is gone: its writer ends once it looks for the next batch.
impl<K, V> Drop for Committer<K, V> {
    fn drop(&mut self) {
        let writer = {
            let mut slot = self.writers.slot.lock();
            slot.closed = true;
            slot.writer.take()
        };
        writer.into_iter().for_each(Waker::wake);
    }
}

/// Shared by a store and its writers: the queue, which only the writer in charge takes from,
/// the batch it is sending, and the callers' answers.
struct Writers<K, V> {
    slot: Mutex<Slot<K, V>>,
}

struct Slot<K, V> {
    /// The writes waiting for a batch, in order. Writes whose callers went away, left by a
    /// writer that was relieved, stay at the front: the next writer takes them first (a
    /// cancelled caller's queued write is still made).
    queue: VecDeque<Queued<K, V>>,
    /// The writer in charge, waiting for a write.
    writer: Option<Waker>,
    /// The store is gone (its [`Committer`] dropped).
    closed: bool,
    /// Every waiting caller's answer slot.
    replies: Replies<Answer<K, V>>,
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
    in_flight: Vec<InFlight>,
}

impl<K, V> Slot<K, V> {
    /// Leaves `answer` for the caller of `ticket`; its waker goes to `wake`, to be woken once
    /// the lock is released.
    fn reply(&mut self, ticket: Ticket, answer: Answer<K, V>, wake: &mut Vec<Waker>) {
        if let Ok(Some(waker)) = self.replies.answer(ticket, answer) {
            wake.push(waker);
        }
    }

    /// Tells the callers of the batch in flight that their writes may have been applied (their
    /// writer stopped running, or is replaced).
    fn abandon(&mut self, wake: &mut Vec<Waker>) {
        for f in self.in_flight.drain(..) {
            let Some(reply) = f.reply else { continue };
            if let Ok(Some(waker)) = self.replies.answer(reply, Answer::Abandoned(f.bytes)) {
                wake.push(waker);
            }
        }
    }

    /// Hands every queued write whose caller still waits back to it (`by`: the writer whose
    /// runtime shut down, if that is why); writes whose callers went away stay queued for the
    /// next writer. Returns how many were handed back.
    fn hand_back(&mut self, by: Option<u64>, wake: &mut Vec<Waker>) -> usize {
        let queued = std::mem::take(&mut self.queue);
        let mut handed = 0;
        for q in queued {
            if self.replies.is_gone(&q.reply) {
                self.queue.push_back(q);
                continue;
            }
            handed += 1;
            self.reply(q.reply, Answer::Requeue(q.job, q.bytes, by), wake);
        }
        handed
    }
}

/// Wakes the callers (or the writer) a change under the lock concerns, after it was released.
fn wake_all(wake: Vec<Waker>) {
    wake.into_iter().for_each(Waker::wake);
}

impl<K, V> Writers<K, V> {
    /// Makes a new writer the one in charge; the callers of the old one's batch are told their
    /// writes may have been applied (their wakers go to `wake`).
    fn take_charge(
        self: &Arc<Self>,
        slot: &mut Slot<K, V>,
        wake: &mut Vec<Waker>,
    ) -> Orphaned<K, V> {
        slot.id += 1;
        slot.running = true;
        slot.beat = Instant::now();
        slot.abandon(wake);
        // An old writer waiting for a write wakes to find itself replaced, and ends.
        wake.extend(slot.writer.take());
        Orphaned {
            writers: self.clone(),
            id: slot.id,
        }
    }

    /// Starts a writer if none is in charge.
    #[cfg(test)]
    fn start(self: &Arc<Self>) -> Option<Orphaned<K, V>> {
        let mut wake = Vec::new();
        let started = {
            let mut slot = self.slot.lock();
            (!slot.running).then(|| self.take_charge(&mut slot, &mut wake))
        };
        wake_all(wake);
        started
    }

    /// Queues a write and opens its caller's answer slot (returned); makes a new writer the
    /// one in charge if none is (returned, to spawn). `None` once the store is gone.
    fn queue(
        self: &Arc<Self>,
        job: Job<K, V>,
        bytes: KeyBytes,
    ) -> Option<(u32, Option<Orphaned<K, V>>)> {
        let mut wake = Vec::new();
        let queued = {
            let mut slot = self.slot.lock();
            if slot.closed {
                return None;
            }
            let reply = slot.replies.open();
            let index = reply.index();
            slot.queue.push_back(Queued { job, bytes, reply });
            let started = (!slot.running).then(|| self.take_charge(&mut slot, &mut wake));
            wake.extend(slot.writer.take());
            (index, started)
        };
        wake_all(wake);
        Some(queued)
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
        let mut wake = Vec::new();
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
                if slot.queue.is_empty() {
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
            let abandoned = slot.in_flight.iter().filter(|f| f.reply.is_some()).count();
            slot.abandon(&mut wake);
            let requeued = slot.hand_back(None, &mut wake);
            // The relieved writer, if it waits for a write, wakes to find itself replaced.
            wake.extend(slot.writer.take());
            (abandoned, requeued)
        };
        wake_all(wake);
        Some((abandoned, requeued))
    }

    fn in_charge(slot: &Slot<K, V>, id: u64) -> bool {
        slot.id == id && slot.running
    }

    /// Writer `id` takes the next batch (up to [`MAX_BATCH`] writes, waiting for the first);
    /// `None` once it is no longer in charge or the store is gone. Its callers stay in the slot
    /// until answered.
    fn take(&self, id: u64, cx: &mut Context<'_>) -> Poll<Option<Batch<K, V>>> {
        let mut wake = Vec::new();
        let taken = self.take_locked(id, cx, &mut wake);
        wake_all(wake);
        taken
    }

    fn take_locked(
        &self,
        id: u64,
        cx: &mut Context<'_>,
        wake: &mut Vec<Waker>,
    ) -> Poll<Option<Batch<K, V>>> {
        let mut slot = self.slot.lock();
        if !Self::in_charge(&slot, id) || (slot.closed && slot.queue.is_empty()) {
            return Poll::Ready(None);
        }
        if slot.queue.is_empty() {
            match &slot.writer {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => slot.writer = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        // Every write of the last batch was answered; one that was not (it cannot happen) may
        // have been applied, and its caller is told so rather than left waiting.
        slot.abandon(wake);
        let count = slot.queue.len().min(MAX_BATCH);
        let mut jobs = Batch::with_capacity(count);
        let slot = &mut *slot;
        for queued in slot.queue.drain(..count) {
            jobs.push(queued.job);
            slot.in_flight.push(InFlight {
                bytes: queued.bytes,
                reply: Some(queued.reply),
            });
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
        let mut wake = Vec::with_capacity(outcomes.len());
        {
            let mut slot = self.slot.lock();
            if !Self::in_charge(&slot, id) {
                return;
            }
            let slot = &mut *slot;
            let Some(batch) = slot.in_flight.get_mut(first..first + outcomes.len()) else {
                return;
            };
            for (f, outcome) in batch.iter_mut().zip(outcomes) {
                if let Some(reply) = f.reply.take() {
                    if let Ok(Some(waker)) = slot.replies.answer(reply, Answer::Done(outcome)) {
                        wake.push(waker);
                    }
                }
            }
        }
        wake_all(wake);
    }
}

/// A caller's wait for the answer in its slot `index`. Dropped before the answer (the caller
/// went away), it marks the slot gone: the writer frees it when it answers, so the slot is
/// never reused while the writer can still answer it.
struct Reply<'a, K, V> {
    writers: &'a Writers<K, V>,
    /// `None` once the answer was taken.
    index: Option<u32>,
}

impl<K, V> Future for Reply<'_, K, V> {
    type Output = Answer<K, V>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<K, V>> {
        let Some(index) = self.index else {
            return Poll::Pending;
        };
        let answer = self.writers.slot.lock().replies.poll(index, cx);
        if answer.is_ready() {
            self.index = None;
        }
        answer
    }
}

impl<K, V> Drop for Reply<'_, K, V> {
    fn drop(&mut self) {
        if let Some(index) = self.index.take() {
            // Dropped outside the lock: the answer can hold the caller's key and value.
            let answer = self.writers.slot.lock().replies.cancel(index);
            drop(answer);
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
        let mut wake = Vec::new();
        {
            let mut slot = self.writers.slot.lock();
            if !Writers::in_charge(&slot, self.id) {
                return;
            }
            slot.running = false;
            slot.writer = None;
            slot.abandon(&mut wake);
            slot.hand_back(Some(self.id), &mut wake);
        }
        wake_all(wake);
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
        bytes: KeyBytes,
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
            let Some((index, started)) = self.enqueue(job, bytes, &runtime) else {
                return Err(Error::backend(
                    context(),
                    "the store's write queue is closed",
                ));
            };
            mine = started.or(mine);
            // No timer: a writer that its runtime stops running is relieved by the watchdog
            // thread (`Writers::check_starved`), which answers this write (a timer per caller
            // cost ~670 of a put's ~11,000 instructions, callgrind).
            let reply = Reply {
                writers: &self.commits.writers,
                index: Some(index),
            };
            match reply.await {
                Answer::Done(outcome) => return outcome,
                Answer::Requeue(again, key, by) => {
                    self.hub.counters.waiting.fetch_sub(1, Ordering::Relaxed);
                    if by.is_some() && mine == by {
                        let why = "the task sending this store's writes, started on this call's \
                             runtime, was dropped before it took the write (the runtime is \
                             shutting down); nothing was written";
                        return Err(Error::backend(context(), why));
                    }
                    (job, bytes) = (again, key);
                }
                Answer::Abandoned(key) => {
                    self.settle_abandoned(&key).await;
                    return Err(Error::backend(context(), MAYBE_APPLIED));
                }
            }
        }
    }

    /// Queues a write and returns its caller's answer slot, starting a writer on `runtime` if
    /// none is in charge (then its id too); `None` once the store is gone. The writer is
    /// checked under the lock the queue is taken under: either a writer in charge will take
    /// this write, or this call starts one.
    fn enqueue(
        self: &Arc<Self>,
        job: Job<K, V>,
        bytes: KeyBytes,
        runtime: &Handle,
    ) -> Option<(u32, Option<u64>)> {
        let waiting = &self.hub.counters.waiting;
        // Counted before the writer can take it (it counts it off).
        waiting.fetch_add(1, Ordering::Relaxed);
        let Some((index, started)) = self.commits.writers.queue(job, bytes) else {
            waiting.fetch_sub(1, Ordering::Relaxed);
            return None;
        };
        let Some(guard) = started else {
            return Some((index, None));
        };
        let id = guard.id;
        // Outside the slot's lock: a runtime that is shutting down drops the task inside
        // `spawn`, and the guard's drop takes the lock.
        runtime.spawn(writer(Arc::downgrade(self), guard));
        Some((index, Some(id)))
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

/// Runs `f` on every item concurrently, to the end: each in turn is polled once, and from the
/// first that does not finish at once (a disk tier's put waits for its group commit) that one
/// and all the rest are joined ([`join_chunks`]). A memory tier's local parts finish at their
/// first poll, so a batch of them costs no join and no allocation.
async fn join_each<T, F: Future<Output = ()>>(
    mut items: impl ExactSizeIterator<Item = T>,
    f: impl Fn(T) -> F,
) {
    while let Some(item) = items.next() {
        let mut part = pin!(f(item));
        let polled = poll_fn(|cx| Poll::Ready(part.as_mut().poll(cx))).await;
        if polled.is_pending() {
            futures_util::future::join(part, join_chunks(items, &f)).await;
            return;
        }
    }
}

/// Runs `f` on every item concurrently, to the end. `join_all` of up to [`JOIN_SMALL`]
/// futures at a time, joined by one more `join_all`: a batch of 64 puts costs a few
/// allocations instead of one per put.
async fn join_chunks<T, F: Future<Output = ()>>(
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
    use proptest::prelude::*;

    use super::*;

    fn delete(key: &str) -> Job<String, String> {
        Job {
            write: BatchWrite::Delete(key.to_string()),
            guard: Guard {
                stripe: 0,
                token: 0,
            },
            started: 0,
        }
    }

    /// Queues a delete of `key` as a caller would; its answer slot.
    fn queue(writers: &Arc<Writers<String, String>>, key: &str) -> u32 {
        let Some((index, None)) = writers.queue(delete(key), KeyBytes::from_slice(key.as_bytes()))
        else {
            panic!("the store is open and a writer is in charge");
        };
        index
    }

    /// What the caller of slot `index` finds, polling once.
    fn answer_of(writers: &Writers<String, String>, index: u32) -> Option<Answer<String, String>> {
        let cx = Context::from_waker(Waker::noop());
        match writers.slot.lock().replies.poll(index, &cx) {
            Poll::Ready(answer) => Some(answer),
            Poll::Pending => None,
        }
    }

    /// A batch in flight of one write of `key`, sent by the writer in charge; its caller's slot.
    fn in_flight(writers: &Writers<String, String>, key: &str, beat: Instant) -> u32 {
        let mut slot = writers.slot.lock();
        let reply = slot.replies.open();
        let index = reply.index();
        slot.in_flight.push(InFlight {
            bytes: KeyBytes::from_slice(key.as_bytes()),
            reply: Some(reply),
        });
        slot.beat = beat;
        index
    }

    /// A writer with a batch in flight is relieved once it has not beaten for
    /// [`BATCH_STARVED`], not sooner: the batch's caller hears its write may have been applied
    /// and no writer is in charge until a caller queues again.
    #[test]
    fn a_writer_with_a_batch_in_flight_is_relieved_after_batch_starved() {
        let committer = Committer::<String, String>::default();
        let writers = &committer.writers;
        let Some(writer) = writers.start() else {
            panic!("no writer was in charge yet");
        };
        let t0 = Instant::now();
        let caller = in_flight(writers, "k", t0);
        let early = t0 + BATCH_STARVED - Duration::from_millis(1);
        assert_eq!(writers.check_starved(early), None, "it beat just now");
        assert_eq!(writers.check_starved(t0 + BATCH_STARVED), Some((1, 0)));
        assert!(matches!(answer_of(writers, caller), Some(Answer::Abandoned(k)) if &k[..] == b"k"));
        assert!(!writers.still_in_charge(writer.id), "relieved");
        assert!(!writers.slot.lock().running, "the next write starts one");
        assert_eq!(
            writers.check_starved(t0 + 2 * BATCH_STARVED),
            None,
            "nobody to relieve"
        );
        assert_eq!(writers.slot.lock().replies.in_use(), 0, "no slot leaks");
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
        let Some(writer) = writers.start() else {
            panic!("no writer was in charge yet");
        };
        let t0 = Instant::now();
        let old = in_flight(writers, "old", t0);
        writers.answer(writer.id, 0, vec![Ok(true)]);
        assert!(matches!(
            answer_of(writers, old),
            Some(Answer::Done(Ok(true)))
        ));
        let idle = t0 + Duration::from_secs(3600);
        assert_eq!(writers.check_starved(idle), None, "nothing queued");
        let live = queue(writers, "live");
        let cancelled = queue(writers, "cancelled");
        assert!(writers.slot.lock().replies.cancel(cancelled).is_none());
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
        assert!(
            matches!(answer_of(writers, live), Some(Answer::Requeue(_, k, None)) if &k[..] == b"live")
        );
        drop(writer);
        let Some(next) = writers.start() else {
            panic!("no writer in charge after the relief");
        };
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Some(batch)) = writers.take(next.id, &mut cx) else {
            panic!("the next writer found nothing to take");
        };
        assert_eq!(
            batch.writes,
            vec![BatchWrite::Delete("cancelled".to_string())]
        );
        writers.answer(next.id, 0, vec![Ok(false)]);
        assert_eq!(writers.slot.lock().replies.in_use(), 0, "no slot leaks");
        drop(next);
    }

    /// What the model test does next.
    #[derive(Clone, Debug)]
    enum Step {
        /// A new caller queues a write.
        Queue,
        /// The `n`th caller (modulo those so far) goes away, if it still waits.
        Cancel(usize),
        /// The `n`th caller polls for its answer.
        Poll(usize),
        /// The writer answers the batch in flight (each write with its own key) and takes the
        /// next.
        Answer,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::Queue),
            1 => (0..64usize).prop_map(Step::Cancel),
            2 => (0..64usize).prop_map(Step::Poll),
            2 => Just(Step::Answer),
        ]
    }

    /// The answer the writer gives the write of `key`: an error naming it, so a caller can tell
    /// its own answer from another's.
    fn outcome_for(key: &str) -> Result<bool> {
        Err(Error::backend(key.to_string(), "the model's answer"))
    }

    fn own_answer(key: &str, answer: Answer<String, String>) -> bool {
        let own = format!("backend error while {key}: ");
        matches!(answer, Answer::Done(Err(e)) if e.to_string().starts_with(&own))
    }

    /// The writer answers its batch in flight, each write with an outcome naming its key, and
    /// takes the next batch.
    fn answer_and_take(writers: &Writers<String, String>, id: u64) {
        let keys: Vec<String> = writers
            .slot
            .lock()
            .in_flight
            .iter()
            .map(|f| String::from_utf8_lossy(&f.bytes).into_owned())
            .collect();
        writers.answer(id, 0, keys.iter().map(|k| outcome_for(k)).collect());
        let mut cx = Context::from_waker(Waker::noop());
        let _ = writers.take(id, &mut cx);
    }

    proptest! {
        /// Callers queue, go away (their `Reply` dropped) and poll in any order while the writer
        /// answers batch after batch: every caller that stays gets exactly its own write's
        /// answer, though its slot may be one a cancelled caller held; and once every write was
        /// answered, no slot is left in use (a cancelled caller's slot is freed by the writer's
        /// answer, once).
        #[test]
        fn a_cancelled_callers_slot_is_freed_once_and_never_answers_the_next_caller(
            steps in proptest::collection::vec(step(), 1..200),
        ) {
            let committer = Committer::<String, String>::default();
            let writers = &committer.writers;
            let Some(writer) = writers.start() else {
                panic!("no writer was in charge yet");
            };
            let cx = &mut Context::from_waker(Waker::noop());
            let mut callers: Vec<(String, Option<Reply<'_, String, String>>)> = Vec::new();
            for step in steps {
                match step {
                    Step::Queue => {
                        let key = format!("c{}", callers.len());
                        let index = queue(writers, &key);
                        callers.push((key, Some(Reply { writers, index: Some(index) })));
                    }
                    Step::Cancel(n) if !callers.is_empty() => {
                        let n = n % callers.len();
                        callers[n].1 = None;
                    }
                    Step::Poll(n) if !callers.is_empty() => {
                        let n = n % callers.len();
                        let (key, reply) = &mut callers[n];
                        if let Some(waiting) = reply {
                            if let Poll::Ready(answer) = Pin::new(waiting).poll(cx) {
                                prop_assert!(own_answer(key, answer), "{key} got another's answer");
                                *reply = None;
                            }
                        }
                    }
                    Step::Answer => answer_and_take(writers, writer.id),
                    _ => {}
                }
            }
            let unanswered = |slot: &Slot<String, String>| {
                !slot.queue.is_empty() || slot.in_flight.iter().any(|f| f.reply.is_some())
            };
            while unanswered(&writers.slot.lock()) {
                answer_and_take(writers, writer.id);
            }
            for (key, reply) in &mut callers {
                if let Some(waiting) = reply.take() {
                    let mut waiting = waiting;
                    let Poll::Ready(answer) = Pin::new(&mut waiting).poll(cx) else {
                        panic!("{key} was never answered");
                    };
                    prop_assert!(own_answer(key, answer), "{key} got another's answer");
                }
            }
            prop_assert_eq!(writers.slot.lock().replies.in_use(), 0, "a slot leaked");
            drop(writer);
        }
    }

    /// The model with relief (watchdog and a dropped writer) and requeues in the mix.
    #[test]
    fn relief_and_requeue_never_cross_answers_nor_leak() {
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _round in 0..300 {
            let committer = Committer::<String, String>::default();
            let writers = &committer.writers;
            let mut writer: Option<Orphaned<String, String>> = writers.start();
            let cx = &mut Context::from_waker(Waker::noop());
            let mut callers: Vec<(String, Option<Reply<'_, String, String>>)> = Vec::new();
            let mut now = Instant::now() + Duration::from_secs(10);
            let enq = |writers: &Arc<Writers<String, String>>,
                       key: &str,
                       writer: &mut Option<Orphaned<String, String>>| {
                let (index, started) = writers
                    .queue(delete(key), KeyBytes::from_slice(key.as_bytes()))
                    .unwrap();
                if let Some(s) = started {
                    *writer = Some(s);
                }
                index
            };
            for _ in 0..150 {
                match rnd(7) {
                    0 | 1 => {
                        let key = format!("c{}", callers.len());
                        let index = enq(writers, &key, &mut writer);
                        callers.push((
                            key,
                            Some(Reply {
                                writers,
                                index: Some(index),
                            }),
                        ));
                    }
                    2 if !callers.is_empty() => {
                        let n = rnd(callers.len() as u64) as usize;
                        callers[n].1 = None;
                    }
                    3 if !callers.is_empty() => {
                        let n = rnd(callers.len() as u64) as usize;
                        let key = callers[n].0.clone();
                        if let Some(waiting) = &mut callers[n].1 {
                            if let Poll::Ready(answer) = Pin::new(waiting).poll(cx) {
                                match answer {
                                    Answer::Requeue(job, k, _) => {
                                        assert_eq!(
                                            &k[..],
                                            key.as_bytes(),
                                            "{key} got another's requeue"
                                        );
                                        assert!(
                                            matches!(&job.write, BatchWrite::Delete(d) if *d == key)
                                        );
                                        let index = enq(writers, &key, &mut writer);
                                        callers[n].1 = Some(Reply {
                                            writers,
                                            index: Some(index),
                                        });
                                    }
                                    Answer::Abandoned(k) => {
                                        assert_eq!(
                                            &k[..],
                                            key.as_bytes(),
                                            "{key} got another's abandon"
                                        );
                                        callers[n].1 = None;
                                    }
                                    other => {
                                        assert!(
                                            own_answer(&key, other),
                                            "{key} got another's answer"
                                        );
                                        callers[n].1 = None;
                                    }
                                }
                            }
                        }
                    }
                    4 => {
                        if let Some(w) = &writer {
                            let id = w.id;
                            answer_and_take(writers, id);
                        }
                    }
                    5 => {
                        // The watchdog, twice: first seen, then starved.
                        now += BATCH_STARVED + WRITER_STARVED;
                        let _ = writers.check_starved(now);
                        now += BATCH_STARVED + WRITER_STARVED;
                        let _ = writers.check_starved(now);
                    }
                    _ => {
                        // The writer's runtime shut down.
                        if rnd(3) == 0 {
                            writer = None;
                        }
                    }
                }
            }
            // Settle: every still-waiting caller polls; requeues go again; a writer answers.
            for _ in 0..1000 {
                if let Some(w) = &writer {
                    let id = w.id;
                    if writers.still_in_charge(id) {
                        answer_and_take(writers, id);
                    }
                }
                let mut pending = false;
                for (key, slot) in callers.iter_mut() {
                    if let Some(waiting) = slot {
                        pending = true;
                        if let Poll::Ready(answer) = Pin::new(waiting).poll(cx) {
                            match answer {
                                Answer::Requeue(_, k, _) => {
                                    assert_eq!(&k[..], key.as_bytes());
                                    let index = enq(writers, key, &mut writer);
                                    *slot = Some(Reply {
                                        writers,
                                        index: Some(index),
                                    });
                                }
                                Answer::Abandoned(k) => {
                                    assert_eq!(&k[..], key.as_bytes());
                                    *slot = None;
                                }
                                other => {
                                    assert!(own_answer(key, other), "{key} got another's answer");
                                    *slot = None;
                                }
                            }
                        }
                    }
                }
                let queued = !writers.slot.lock().queue.is_empty();
                if queued && !writers.slot.lock().running {
                    writer = writers.start();
                }
                if !pending && !queued {
                    break;
                }
            }
            assert!(
                callers.iter().all(|c| c.1.is_none()),
                "a caller was never answered"
            );
            // Whatever the last batch left in flight.
            if let Some(w) = &writer {
                let id = w.id;
                answer_and_take(writers, id);
            }
            assert_eq!(writers.slot.lock().replies.in_use(), 0, "a slot leaked");
            drop(writer);
        }
    }
}
