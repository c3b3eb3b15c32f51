//! Eviction listeners: a callback that receives every entry a local store removes, with its key,
//! its value and why it left ([`RemovalCause`]) — moka's `eviction_listener`, Caffeine's
//! `removalListener`.
//!
//! See [`EvictionListener`] for the delivery guarantees; `Notifier` keeps them.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
};

use parking_lot::Mutex;

use crate::{
    error::{Error, Result},
    events::RemovalCause,
};

/// The callback a store hands each removed entry: key, value and cause.
///
/// Unlike [events](crate::Events), which go through a bounded ring that may drop and carry no
/// value, a listener is handed **every** removal. Delivery:
///
/// - **Never dropped.** A removal is queued under the lock that removed it, in the shard it was
///   removed from, and delivered once that lock is released; the queue has no bound (it holds
///   only what is being delivered right now).
/// - **Outside the store's locks**, so a listener may read or write the same store.
/// - **In order per key** (per shard, in fact): one thread at a time delivers a shard's queue,
///   in the order the removals happened. That is usually the removing thread, before its call
///   returns; if another thread is delivering for the same shard at that moment, that thread
///   delivers this removal too, right after the earlier ones, and the removing call returns at
///   once (it never waits for another thread's listener). Once every call that removed
///   something, and every call on the store and every expiry sweep or GC pass running
///   alongside it, has returned, every removal has been delivered. The sweeper and the
///   generational GC take a delivery turn only for what they removed themselves, never when a
///   pass removed nothing, so an idle sweeper or GC thread never holds a removal back.
/// - **A panicking listener poisons nothing**: the panic is caught and logged (without the key
///   or value, which may be secret), and delivery goes on with the next removal.
/// - Keep it short: it runs on the thread of a writer (or of the expiry sweeper). Send slow
///   work to a channel.
///
/// Causes: [`RemovalCause::Explicit`] (`delete`, `take`, `clear`), [`RemovalCause::Replaced`]
/// (a write over a live entry, with the old value), [`RemovalCause::Expired`] (found expired by
/// the sweeper, by a read or by a write), [`RemovalCause::Size`] (evicted for a capacity or
/// weight limit, including a write too heavy to keep) and [`RemovalCause::Generation`].
pub type EvictionListener<K, V> = Arc<dyn Fn(K, V, RemovalCause) + Send + Sync>;

/// A listener as a builder holds it (printable, unlike the closure).
pub(crate) struct Listener<K, V>(pub EvictionListener<K, V>);

impl<K, V> Clone for Listener<K, V> {
    fn clone(&self) -> Self {
        Listener(self.0.clone())
    }
}

impl<K, V> std::fmt::Debug for Listener<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EvictionListener")
    }
}

/// One removal waiting for delivery.
type Removal<K, V> = (K, V, RemovalCause);

/// A shard's queue of removals and the right to deliver them.
struct Lane<K, V> {
    pending: Mutex<Vec<Removal<K, V>>>,
    /// Held by the one thread delivering this lane.
    delivering: Mutex<()>,
}

/// A store's listener with one delivery lane per shard.
pub(crate) struct Notifier<K, V> {
    listener: EvictionListener<K, V>,
    lanes: Box<[Lane<K, V>]>,
    panics: AtomicU64,
    /// Unit tests only: called by a thread right after it takes a lane's delivery turn, so a
    /// test can park it there and pin an interleaving.
    #[cfg(test)]
    pub on_turn: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

impl<K, V> Notifier<K, V> {
    /// A notifier for a store of `lanes` shards.
    pub fn new(listener: EvictionListener<K, V>, lanes: usize) -> Self {
        let lane = |_| Lane {
            pending: Mutex::new(Vec::new()),
            delivering: Mutex::new(()),
        };
        Notifier {
            listener,
            lanes: (0..lanes.max(1)).map(lane).collect(),
            panics: AtomicU64::new(0),
            #[cfg(test)]
            on_turn: Mutex::new(None),
        }
    }

    /// The listener, to hand on to a store made from this one (a new namespace).
    pub fn listener(&self) -> EvictionListener<K, V> {
        self.listener.clone()
    }

    /// Queues a removal from shard `lane`. Call it under the lock that removed the entry, so
    /// removals of one key queue in the order they happened.
    #[inline]
    pub fn push(&self, lane: usize, key: K, value: V, cause: RemovalCause) {
        self.lane(lane).pending.lock().push((key, value, cause));
    }

    /// Delivers shard `lane`'s queue, unless another thread is delivering it (then that thread
    /// delivers what this one queued). Call it after releasing the shard's lock.
    pub fn deliver(&self, lane: usize) {
        let lane = self.lane(lane);
        loop {
            let Some(turn) = lane.delivering.try_lock() else {
                return;
            };
            #[cfg(test)]
            if let Some(hook) = self.on_turn.lock().clone() {
                hook();
            }
            self.drain(lane);
            drop(turn);
            // A removal queued after our last look, by a thread that found us delivering,
            // is ours to deliver: look again now that the turn is released.
            if lane.pending.lock().is_empty() {
                return;
            }
        }
    }

    /// How many times the listener panicked.
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    #[inline]
    fn lane(&self, lane: usize) -> &Lane<K, V> {
        &self.lanes[lane % self.lanes.len()]
    }

    fn drain(&self, lane: &Lane<K, V>) {
        loop {
            let batch = std::mem::take(&mut *lane.pending.lock());
            if batch.is_empty() {
                return;
            }
            for (key, value, cause) in batch {
                self.call(key, value, cause);
            }
        }
    }

    fn call(&self, key: K, value: V, cause: RemovalCause) {
        let listener = &self.listener;
        if catch_unwind(AssertUnwindSafe(|| listener(key, value, cause))).is_err() {
            self.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                ?cause,
                "the eviction listener panicked; the store goes on and delivers the next removal"
            );
        }
    }
}

#[cfg(test)]
impl<K, V> Notifier<K, V> {
    /// Unit tests: runs `pass` on a thread of its own, parked inside the first delivery turn it
    /// takes, if it takes one. Returns once `pass` is parked there or has finished: whether it
    /// is parked, and what releases it and waits for it to finish.
    pub fn run_parked_in_turn(
        &self,
        pass: impl FnOnce() + Send + 'static,
    ) -> (bool, impl FnOnce()) {
        const PASS: &str = "a-pass-parked-in-its-turn";
        let (tx, rx) = std::sync::mpsc::channel();
        let release = Arc::new(std::sync::Barrier::new(2));
        let (turn, parked, once) = (tx.clone(), release.clone(), std::sync::Once::new());
        *self.on_turn.lock() = Some(Arc::new(move || {
            if std::thread::current().name() == Some(PASS) {
                once.call_once(|| {
                    turn.send(true).unwrap();
                    parked.wait();
                });
            }
        }));
        let thread = std::thread::Builder::new()
            .name(PASS.into())
            .spawn(move || {
                pass();
                let _ = tx.send(false); // heard only if it never parked
            })
            .unwrap();
        let parked = rx.recv().unwrap();
        let finish = move || {
            if parked {
                release.wait();
            }
            thread.join().unwrap();
        };
        (parked, finish)
    }
}

/// A store's listener slot: empty, or a [`Notifier`] with one lane per shard. Both local stores
/// hold one, so installing, queueing and delivering live here once; the stores only say which
/// lane a removal belongs to. Without a listener each hook costs one load of the `OnceLock`.
pub(crate) struct ListenerSlot<K, V> {
    notifier: OnceLock<Notifier<K, V>>,
    lanes: usize,
}

impl<K, V> ListenerSlot<K, V> {
    /// A slot for a store of `lanes` shards, holding `listener` if the builder was given one.
    pub fn new(listener: Option<EvictionListener<K, V>>, lanes: usize) -> Self {
        let notifier = OnceLock::new();
        if let Some(listener) = listener {
            let _ = notifier.set(Notifier::new(listener, lanes));
        }
        ListenerSlot { notifier, lanes }
    }

    /// Installs `listener`; fails if the store already has one (a store has at most one, so
    /// no removal is delivered to a listener that was replaced half-way).
    pub fn install(&self, listener: EvictionListener<K, V>) -> Result<()> {
        let notifier = Notifier::new(listener, self.lanes);
        self.notifier.set(notifier).map_err(|_| {
            Error::config(
                "eviction_listener",
                "this store already has one: give a single listener that does both jobs",
            )
        })
    }

    #[inline]
    pub fn notifier(&self) -> Option<&Notifier<K, V>> {
        self.notifier.get()
    }

    /// The listener, for a store made from this one.
    pub fn listener(&self) -> Option<EvictionListener<K, V>> {
        self.notifier().map(Notifier::listener)
    }

    /// How many times the listener panicked (0 without one).
    pub fn panics(&self) -> u64 {
        self.notifier().map_or(0, Notifier::panics)
    }

    /// Queues a removal from shard `lane` (under its lock); `make` builds it only when a
    /// listener is installed.
    #[inline]
    pub fn removed(&self, lane: usize, cause: RemovalCause, make: impl FnOnce() -> (K, V)) {
        if let Some(notifier) = self.notifier() {
            let (key, value) = make();
            notifier.push(lane, key, value, cause);
        }
    }

    /// Delivers what removals in shard `lane` queued (after its lock is released).
    #[inline]
    pub fn deliver(&self, lane: usize) {
        if let Some(notifier) = self.notifier() {
            notifier.deliver(lane);
        }
    }
}

impl<K, V> std::fmt::Debug for ListenerSlot<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSlot")
            .field("notifier", &self.notifier())
            .finish()
    }
}

impl<K, V> std::fmt::Debug for Notifier<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("lanes", &self.lanes.len())
            .field("panics", &self.panics())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_queued_while_another_thread_delivers_is_delivered_by_it() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let notifier = Notifier::new(Arc::new(move |k: u32, _: (), _| log.lock().push(k)), 1);
        let turn = notifier.lanes[0].delivering.lock();
        notifier.push(0, 1, (), RemovalCause::Explicit);
        notifier.deliver(0); // another thread holds the turn: returns at once
        assert!(seen.lock().is_empty());
        drop(turn);
        notifier.deliver(0);
        assert_eq!(*seen.lock(), [1]);
    }
}
