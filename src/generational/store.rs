//! The `GenerationalStore` handle: construction, reads and writes across the two generations.

use std::{
    borrow::Borrow,
    hash::{BuildHasher, Hash},
    sync::{Arc, Weak},
    time::Duration,
};

use hashbrown::hash_table::Entry as TableEntry;
use parking_lot::RwLock;

use super::{
    adapt::Aging,
    builder::{GenerationalStoreBuilder, Options, Parts},
    gc::Gc,
    partition::{Partition, Slot, Tally, Ttls, Which},
    sketch::Sketch,
    transaction::Locks,
    weigh::{inline_size, Weigher},
};
use crate::{
    error::Result,
    events::{EventBus, EventKind, Events, RemovalCause},
    listener::{Listener, ListenerSlot},
    local::{Due, Replaced, Report},
    namespace::Namespace,
    stats::{Counter as Stat, Stats, StatsRecorder},
    store::{Counter, Expiry},
    time::Clock,
};

/// The hasher: foldhash, randomly seeded per store.
#[cfg(not(test))]
pub(crate) type DefaultHasher = foldhash::fast::RandomState;
/// In unit tests a seedable one, so the hit-ratio sim (`sim.rs`) can pin the seed.
#[cfg(test)]
pub(crate) type DefaultHasher = foldhash::fast::SeedableRandomState;

#[cfg(test)]
thread_local! {
    /// The seed of the next store built on this thread (`None`: random).
    pub(crate) static HASHER_SEED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// A new store's hasher.
fn new_hasher() -> DefaultHasher {
    #[cfg(test)]
    if let Some(seed) = HASHER_SEED.get() {
        return foldhash::fast::SeedableRandomState::with_seed(
            seed,
            foldhash::SharedSeed::global_fixed(),
        );
    }
    DefaultHasher::default()
}

/// An in-memory store with two generations (Nebulex's Local adapter).
///
/// Reads hit the newer generation; a hit in the older one moves the entry to the newer one (so do
/// `ttl`, `expire`, `touch`, `incr` and `replace`). [`new_generation`](Self::new_generation)
/// drops the older generation whole and makes the newer one older: keys not used since the
/// previous generation are evicted together, with [`crate::RemovalCause::Generation`].
///
/// Cheap to clone: clones share the same entries. Sync methods here; the async [`crate::Store`]
/// impl calls them.
///
/// # Limits
/// `max_size` and `allocated_memory` count both generations. Nebulex checks them only on its
/// clean-up poll, so a cache can sit far above its limit for minutes (nebulex#184, #247). Here a
/// write that makes the **newer generation reach half a limit pushes a new generation** before
/// it returns, on the writer's thread (cheap: one table swap per partition; the dropped table is
/// freed by the GC thread). The older generation then holds at most the other half, so the store
/// holds between about half and all of its limit, for every limit from 1 up ("half" rounds up;
/// a read promotes an older entry only while the newer generation stays under half a limit, so
/// a read never makes a later write evict more than the older generation). **Bound:** once a `put` returns, the store is
/// within its limits, except for entries other threads are writing at that moment (at most one
/// entry per concurrent writer) — and a single entry heavier than half of `allocated_memory`,
/// which is evicted with the next generation. If weights vary so that the store is still over a
/// limit, older partitions are dropped one by one. The clean-up poll still runs with Nebulex's
/// inverse linear back-off, and also removes expired entries when it pushes a generation. With
/// [`admission(true)`](GenerationalStoreBuilder::admission) a write that fills the newer
/// generation moves it whole to the back of the older one instead (nothing is dropped), and a
/// store over a limit evicts one older entry at a time, each new key judged against the entry
/// first in line; the bound is the same.
///
/// ```
/// use std::time::Duration;
/// use strata::{GenerationalStore, ManualClock};
///
/// let time = ManualClock::new();
/// let store = GenerationalStore::builder().clock(time.clock()).build()?;
/// store.put("a".to_string(), 1u32, None)?;
/// store.new_generation(true); // "a" is now in the older generation
/// assert_eq!(store.get("a"), Some(1)); // ... and this read moved it back to the newer one
/// store.new_generation(true);
/// store.new_generation(true); // two generations without a read: evicted
/// assert_eq!(store.get("a"), None);
/// # Ok::<(), strata::Error>(())
/// ```
pub struct GenerationalStore<K, V> {
    pub(super) inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for GenerationalStore<K, V> {
    fn clone(&self) -> Self {
        GenerationalStore {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for GenerationalStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationalStore")
            .field("partitions", &self.inner.partitions.len())
            .field("newer", &self.inner.tally.len(Which::Newer))
            .field("older", &self.inner.tally.len(Which::Older))
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<K, V> {
    pub opts: Options,
    pub namespace: Namespace,
    pub partitions: Box<[RwLock<Partition<K, V>>]>,
    pub hasher: DefaultHasher,
    pub clock: Clock,
    pub stats: StatsRecorder,
    pub events: EventBus<K>,
    pub tally: Tally,
    pub weigher: Option<Weigher<K, V>>,
    pub gc: Gc<K, V>,
    pub sketch: Option<Sketch>,
    /// With the sketch: halves it faster while the hit ratio recovers from a drop (`adapt.rs`).
    pub aging: Option<Aging>,
    pub locks: Locks,
    /// `time_to_idle` in milliseconds (`idle.rs`).
    pub tti: Option<u64>,
    /// The eviction listener, if one was installed (at build or by a `Cache`).
    pub listener: ListenerSlot<K, V>,
    pub me: Weak<Inner<K, V>>,
}

impl<K, V> Drop for Inner<K, V> {
    fn drop(&mut self) {
        self.gc.wake();
    }
}

/// Where `locate` found a key (after promoting it to the newer generation, if that fits).
pub(super) enum Found<'a, K, V> {
    Live(&'a mut Slot<K, V>, Which),
    Expired(Slot<K, V>),
    Missing,
}

/// With admission, the entries its sketch is sized for: the entry limit (or a memory limit at
/// 64 bytes per entry).
fn admission_capacity(opts: &Options) -> Option<u64> {
    let capacity = opts.max_size.or(opts.allocated_memory.map(|m| m / 64))?;
    opts.admission.then_some(capacity)
}

impl<K, V> GenerationalStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder with Nebulex's defaults (see [`GenerationalStoreBuilder`]).
    pub fn builder() -> GenerationalStoreBuilder<K, V> {
        GenerationalStoreBuilder::new()
    }

    pub(super) fn from_parts(parts: Parts<K, V>) -> Self {
        let now = parts.clock.now_ms();
        let listener =
            ListenerSlot::new(parts.listener.map(|Listener(l)| l), parts.opts.partitions);
        let inner = Arc::new_cyclic(|me| Inner {
            namespace: parts.namespace,
            partitions: (0..parts.opts.partitions)
                .map(|_| RwLock::default())
                .collect(),
            hasher: new_hasher(),
            clock: parts.clock,
            stats: StatsRecorder::new(parts.opts.stats),
            events: EventBus::new(parts.opts.event_capacity),
            tally: Tally::default(),
            weigher: parts.weigher,
            gc: Gc::new(&parts.opts, now),
            sketch: admission_capacity(&parts.opts).map(Sketch::new),
            aging: admission_capacity(&parts.opts).map(Aging::new),
            locks: Locks::default(),
            tti: parts.opts.tti.map(crate::time::ttl_ms),
            listener,
            me: me.clone(),
            opts: parts.opts,
        });
        let store = GenerationalStore { inner };
        if store.inner.opts.needs_gc_thread() {
            store.gc_thread();
        }
        store
    }

    /// A fresh, empty store with the same options, namespace and clock, whose entries also
    /// expire `idle` after their last access.
    pub(super) fn with_idle(&self, idle: Duration) -> Result<Self> {
        let mut opts = self.inner.opts.clone();
        opts.tti = Some(idle);
        opts.validate()?;
        Ok(self.sibling_with(self.inner.namespace.clone(), opts))
    }

    /// A fresh, empty store with the same options (and the same clock) in `namespace`.
    pub(super) fn sibling(&self, namespace: Namespace) -> Self {
        self.sibling_with(namespace, self.inner.opts.clone())
    }

    fn sibling_with(&self, namespace: Namespace, opts: Options) -> Self {
        Self::from_parts(Parts {
            opts,
            namespace,
            clock: self.inner.clock.clone(),
            weigher: self.inner.weigher.clone(),
            listener: self.listener().map(Listener),
        })
    }

    #[inline]
    pub(super) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    /// The partition index for `hash` (see [`crate::lane::lane_of`]).
    #[inline]
    pub(super) fn index(&self, hash: u64) -> usize {
        crate::lane::lane_of(hash, self.inner.partitions.len())
    }

    #[inline]
    pub(super) fn partition(&self, index: usize) -> &RwLock<Partition<K, V>> {
        &self.inner.partitions[index]
    }

    #[inline]
    pub(super) fn now(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    pub(super) fn rehash(&self) -> impl Fn(&Slot<K, V>) -> u64 + '_ {
        move |s: &Slot<K, V>| self.inner.hasher.hash_one(&s.key)
    }

    /// An entry's accounted size: inline slot plus the weigher's heap bytes (saturating at 4 GiB).
    #[inline]
    pub(super) fn weigh(&self, key: &K, value: &V) -> u32 {
        let heap = self.inner.weigher.as_ref().map_or(0, |w| w(key, value));
        u32::try_from(inline_size::<Slot<K, V>>() + heap).unwrap_or(u32::MAX)
    }

    /// Finds `key`, moving it from the older to the newer generation, and removes it if expired.
    pub(super) fn locate<'a, Q>(
        &self,
        p: &'a mut Partition<K, V>,
        hash: u64,
        key: &Q,
        now: u64,
    ) -> Found<'a, K, V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let tally = &self.inner.tally;
        let eq = |s: &Slot<K, V>| s.key.borrow() == key;
        if p.newer.table.find(hash, eq).is_none() {
            let Some(found) = p.older.table.find(hash, eq) else {
                return Found::Missing;
            };
            let (expired, weight) = (found.is_expired(now), found.weight);
            if !expired && !self.promotion_fits(weight) {
                // Left in the older generation: promoting it would make the newer one reach
                // half a limit outside a write, and the next rotation carry more than half.
                let slot = p.older.table.find_mut(hash, eq);
                return slot.map_or(Found::Missing, |s| Found::Live(s, Which::Older));
            }
            let Some(slot) = p.older.remove(hash, eq) else {
                return Found::Missing;
            };
            tally.slot(Which::Older, slot.weight, -1);
            if expired {
                return Found::Expired(slot);
            }
            tally.slot(Which::Newer, slot.weight, 1);
            p.newer.insert_new(hash, slot, self.rehash());
        }
        if p.newer
            .table
            .find(hash, eq)
            .is_some_and(|s| s.is_expired(now))
        {
            return match p.newer.remove(hash, eq) {
                Some(slot) => {
                    tally.slot(Which::Newer, slot.weight, -1);
                    Found::Expired(slot)
                }
                None => Found::Missing,
            };
        }
        p.newer
            .table
            .find_mut(hash, eq)
            .map_or(Found::Missing, |s| Found::Live(s, Which::Newer))
    }

    /// Runs `f` on the live entry under `key` (promoted to the newer generation) under the
    /// partition's write lock. `f` may change the slot's weight; the counts follow.
    pub(super) fn with_live<Q, R>(&self, key: &Q, f: impl FnOnce(&mut Slot<K, V>) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.with_live_side(key, |slot, _, _| f(slot))
    }

    /// [`with_live`](Self::with_live) for a step that also reads or records where the entry
    /// keeps its TTL with `time_to_idle` (`f` gets the partition's side map and the hash).
    pub(super) fn with_live_side<Q, R>(
        &self,
        key: &Q,
        f: impl FnOnce(&mut Slot<K, V>, &mut Ttls, u64) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let now = self.now();
        let index = self.index(hash);
        let mut p = self.partition(index).write();
        // Out of the partition while `locate` borrows it, and back before the lock goes.
        let mut ttls = std::mem::take(&mut p.ttls);
        let found = self.locate(&mut p, hash, key, now);
        let (out, mut expired, delta, which) = match found {
            Found::Live(slot, which) => {
                let before = i64::from(slot.weight);
                let out = f(slot, &mut ttls, hash);
                (Some(out), None, i64::from(slot.weight) - before, which)
            }
            Found::Expired(slot) => (None, Some(slot), 0, Which::Newer),
            Found::Missing => (None, None, 0, Which::Newer),
        };
        p.ttls = ttls;
        if delta != 0 {
            let generation = match which {
                Which::Newer => &mut p.newer,
                Which::Older => &mut p.older,
            };
            generation.bytes = generation.bytes.saturating_add_signed(delta);
            self.inner.tally.add(which, 0, delta);
        }
        if let Some(slot) = expired.as_mut() {
            self.report_expired(&slot.key);
            self.removed(index, RemovalCause::Expired, || {
                (slot.key.clone(), slot.value.clone())
            });
        }
        drop(p);
        self.deliver(index);
        out
    }

    /// Counts and announces an entry found expired on access (Nebulex: an eviction too).
    pub(super) fn report_expired(&self, key: &K) {
        self.report().expired(key);
        self.inner.stats.incr(Stat::Evictions);
    }

    /// This store's counters and events, to report what an operation did.
    #[inline]
    pub(super) fn report(&self) -> Report<'_, K> {
        Report {
            stats: &self.inner.stats,
            events: &self.inner.events,
        }
    }

    /// The live value under `key`; a hit in the older generation moves it to the newer one.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        if let Some(sketch) = &self.inner.sketch {
            sketch.record(hash);
        }
        let found = match self.peek_newer(hash, key) {
            Ok(found) => found,
            Err(()) => self.with_live_side(key, |s, ttls, hash| {
                self.read_idle(s, ttls, hash);
                s.value.clone()
            }),
        };
        let stat = if found.is_some() {
            Stat::Hits
        } else {
            Stat::Misses
        };
        self.inner.stats.incr(stat);
        found
    }

    /// The read-locked fast path: `Ok` if the newer generation answers (or the key is nowhere),
    /// `Err` if the key needs the write lock (in the older generation, or expired).
    #[inline]
    fn peek_newer<Q>(&self, hash: u64, key: &Q) -> std::result::Result<Option<V>, ()>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let p = self.partition(self.index(hash)).read();
        let eq = |s: &Slot<K, V>| s.key.borrow() == key;
        match p.newer.table.find(hash, eq) {
            // With `time_to_idle` a hit moves the deadline: that takes the write lock.
            Some(_) if self.idles() => Err(()),
            Some(s) if !s.is_expired_on(&self.inner.clock) => Ok(Some(s.value.clone())),
            Some(_) => Err(()),
            None if p.older.table.find(hash, eq).is_some() => Err(()),
            None => Ok(None),
        }
    }

    /// True if `key` has a live entry (promoting it, as Nebulex's `has_key?` does not; this one
    /// does not either: it only looks). Not counted as a hit or miss.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let now = self.now();
        let p = self.partition(self.index(hash)).read();
        let eq = |s: &Slot<K, V>| s.key.borrow() == key;
        let slot = p
            .newer
            .table
            .find(hash, eq)
            .or_else(|| p.older.table.find(hash, eq));
        slot.is_some_and(|s| !s.is_expired(now))
    }

    /// Writes `value` under `key` (into the newer generation, removing it from the older one),
    /// replacing value and TTL. Fails only for a zero TTL.
    pub fn put(&self, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        let due = self.due(self.inner.clock.entry_deadline(ttl)?);
        let weight = self.weigh(&key, &value);
        let event_key = self.inner.events.is_active().then(|| key.clone());
        let hash = self.hash(&key);
        let index = self.index(hash);
        let slot = Slot {
            key,
            value,
            deadline: due.deadline,
            weight,
            cap: due.cap,
        };
        let replaced = self.upsert(index, hash, slot, &due, self.on_probation());
        self.after_write(event_key.as_ref(), replaced);
        self.enforce_limits(index, hash);
        Ok(())
    }

    /// True if a new key goes to the older generation, on probation: with admission, where it
    /// is judged against the entry it would displace (`gc.rs`). Measured on
    /// `benches/compare/hitratio.rs`: sending a key read at least 4 times lately straight to
    /// the newer generation instead, unjudged, cost 0.1–4 points on 16 of 18 columns and 14–17
    /// on the loop.
    #[inline]
    pub(super) fn on_probation(&self) -> bool {
        self.inner.sketch.is_some()
    }

    /// Inserts `slot` into the newer generation, removing the key from the older one; a new key
    /// on `probation` goes to the older generation instead. Returns what it replaced.
    fn upsert(
        &self,
        index: usize,
        hash: u64,
        slot: Slot<K, V>,
        due: &Due,
        probation: bool,
    ) -> Replaced<()> {
        let now = self.now();
        let mut p = self.partition(index).write();
        let old = self.upsert_in(&mut p, hash, slot, probation);
        self.note_due(&mut p, hash, due);
        let expired = old.as_ref().is_some_and(|o| o.is_expired(now));
        if let Some(old) = old {
            let cause = if expired {
                RemovalCause::Expired
            } else {
                RemovalCause::Replaced
            };
            self.removed(index, cause, || (old.key, old.value));
            drop(p);
            self.deliver(index);
            return Replaced::of(Some(()), expired);
        }
        Replaced::Nothing
    }

    /// `upsert` under a partition lock the caller holds.
    pub(super) fn upsert_in(
        &self,
        p: &mut Partition<K, V>,
        hash: u64,
        slot: Slot<K, V>,
        probation: bool,
    ) -> Option<Slot<K, V>> {
        let tally = &self.inner.tally;
        let from_older = p.older.remove(hash, |s| s.key == slot.key);
        if let Some(old) = &from_older {
            tally.slot(Which::Older, old.weight, -1);
        }
        if probation
            && from_older.is_none()
            && p.newer.table.find(hash, |s| s.key == slot.key).is_none()
        {
            tally.slot(Which::Older, slot.weight, 1);
            p.older.insert_new(hash, slot, self.rehash());
            self.queue_older(p, hash);
            return None;
        }
        let weight = i64::from(slot.weight);
        let old = match p
            .newer
            .table
            .entry(hash, |s| s.key == slot.key, self.rehash())
        {
            TableEntry::Occupied(mut o) => Some(std::mem::replace(o.get_mut(), slot)),
            TableEntry::Vacant(v) => {
                v.insert(slot);
                None
            }
        };
        let old_weight = old.as_ref().map_or(0, |o| i64::from(o.weight));
        p.newer.bytes = p.newer.bytes.saturating_add_signed(weight - old_weight);
        tally.add(Which::Newer, i64::from(old.is_none()), weight - old_weight);
        old.or(from_older)
    }

    pub(super) fn after_write<T>(&self, key: Option<&K>, replaced: Replaced<T>) {
        self.report().write(key, &replaced);
    }

    /// Writes only if `key` has no live entry in either generation; true if written. Atomic.
    /// A live entry in the older generation counts (and is not promoted), as in Nebulex.
    pub fn put_new(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        let due = self.due(self.inner.clock.entry_deadline(ttl)?);
        let weight = self.weigh(&key, &value);
        let event_key = self.inner.events.is_active().then(|| key.clone());
        let hash = self.hash(&key);
        let index = self.index(hash);
        let now = self.now();
        let probation = self.on_probation();
        let mut p = self.partition(index).write();
        let eq = |s: &Slot<K, V>| s.key == key;
        let live = |s: &Slot<K, V>| !s.is_expired(now);
        if p.newer.table.find(hash, eq).is_some_and(live)
            || p.older.table.find(hash, eq).is_some_and(live)
        {
            return Ok(false);
        }
        let slot = Slot {
            key,
            value,
            deadline: due.deadline,
            weight,
            cap: due.cap,
        };
        let old = self.upsert_in(&mut p, hash, slot, probation);
        self.note_due(&mut p, hash, &due);
        let replaced = match old {
            Some(old) => {
                self.removed(index, RemovalCause::Expired, || (old.key, old.value));
                Replaced::Expired(())
            }
            None => Replaced::Nothing,
        };
        drop(p);
        self.deliver(index);
        self.after_write(event_key.as_ref(), replaced);
        self.enforce_limits(index, hash);
        Ok(true)
    }

    /// Replaces the value and TTL of a live `key` (promoting it); false if there was none.
    pub fn replace(&self, key: &K, value: V, ttl: Option<Duration>) -> Result<bool> {
        let due = self.due(self.inner.clock.entry_deadline(ttl)?);
        let weight = self.weigh(key, &value);
        let index = self.index(self.hash(key));
        let replaced = self.with_live_side(key, move |slot, ttls, hash| {
            let old = std::mem::replace(&mut slot.value, value);
            self.apply_due(slot, ttls, hash, &due);
            slot.weight = weight;
            self.removed(index, RemovalCause::Replaced, || (slot.key.clone(), old));
        });
        if replaced.is_some() {
            self.inner.stats.incr(Stat::Updates);
            self.inner.events.emit(key, EventKind::Replace);
            let hash = self.hash(key);
            self.enforce_limits(self.index(hash), hash);
        }
        Ok(replaced.is_some())
    }

    /// Removes `key` from whichever generation holds it and returns its live value. Atomic.
    pub fn take<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let now = self.now();
        let tally = &self.inner.tally;
        let index = self.index(hash);
        let mut p = self.partition(index).write();
        let eq = |s: &Slot<K, V>| s.key.borrow() == key;
        let (slot, which) = match p.newer.remove(hash, eq) {
            Some(slot) => (slot, Which::Newer),
            None => (p.older.remove(hash, eq)?, Which::Older),
        };
        tally.slot(which, slot.weight, -1);
        let expired = slot.is_expired(now);
        let cause = if expired {
            RemovalCause::Expired
        } else {
            RemovalCause::Explicit
        };
        self.removed(index, cause, || (slot.key.clone(), slot.value.clone()));
        drop(p);
        self.deliver(index);
        let taken = |key: &K| self.report_expired(key);
        self.report().taken(&slot.key, slot.value, expired, taken)
    }

    /// Removes `key`; true if a live entry was removed.
    pub fn delete<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.take(key).is_some()
    }

    /// Every live key, each once (a key is never in both generations).
    pub fn keys(&self) -> Vec<K> {
        let now = self.now();
        let mut out = Vec::new();
        for p in self.inner.partitions.iter() {
            let p = p.read();
            let all = p.newer.table.iter().chain(p.older.table.iter());
            out.extend(all.filter(|s| !s.is_expired(now)).map(|s| s.key.clone()));
        }
        out
    }

    /// How many live entries there are, across both generations.
    pub fn count(&self) -> usize {
        let now = self.now();
        let live_in = |p: &RwLock<Partition<K, V>>| {
            let p = p.read();
            let all = p.newer.table.iter().chain(p.older.table.iter());
            all.filter(|s| !s.is_expired(now)).count()
        };
        self.inner.partitions.iter().map(live_in).sum()
    }

    /// Entries held in both generations, expired ones not yet removed included (Nebulex's
    /// `size`). What `max_size` is checked against. O(1).
    pub fn size(&self) -> u64 {
        self.inner.tally.total_len()
    }

    /// Accounted bytes held in both generations. What `allocated_memory` is checked against. O(1).
    pub fn memory(&self) -> u64 {
        self.inner.tally.total_bytes()
    }

    /// Entries held in the newer and in the older generation (Nebulex's `generations`).
    pub fn generation_sizes(&self) -> (u64, u64) {
        (
            self.inner.tally.len(Which::Newer),
            self.inner.tally.len(Which::Older),
        )
    }

    /// Deletes everything; returns how many live entries were removed.
    pub fn clear(&self) -> usize {
        let now = self.now();
        let mut removed = 0;
        for (index, p) in self.inner.partitions.iter().enumerate() {
            let (newer, older) = {
                let mut p = p.write();
                let taken = (std::mem::take(&mut p.newer), std::mem::take(&mut p.older));
                if let Some(notifier) = self.notifier() {
                    let each = taken.0.table.iter().chain(taken.1.table.iter());
                    for s in each {
                        let cause = if s.is_expired(now) {
                            RemovalCause::Expired
                        } else {
                            RemovalCause::Explicit
                        };
                        notifier.push(index, s.key.clone(), s.value.clone(), cause);
                    }
                }
                self.inner.tally.add(
                    Which::Newer,
                    -(taken.0.table.len() as i64),
                    -(taken.0.bytes as i64),
                );
                self.inner.tally.add(
                    Which::Older,
                    -(taken.1.table.len() as i64),
                    -(taken.1.bytes as i64),
                );
                taken
            };
            let each = newer.table.iter().chain(older.table.iter());
            removed += self
                .report()
                .cleared(each.map(|s| (&s.key, s.is_expired(now))));
            self.deliver(index);
            self.defer_flush(vec![newer.table, older.table]);
        }
        removed
    }

    /// The remaining lifetime of `key` (promoting it), or `None` if it has no live entry.
    pub fn ttl<Q>(&self, key: &Q) -> Option<Expiry>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.now();
        self.with_live(key, |s| match s.deadline {
            0 => Expiry::Never,
            d => Expiry::In(Duration::from_millis(d.saturating_sub(now))),
        })
    }

    /// Sets a new TTL on `key` counted from now (`None`: never expires), promoting it; true if
    /// it was live.
    pub fn expire<Q>(&self, key: &Q, ttl: Option<Duration>) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let due = self.due(self.inner.clock.entry_deadline(ttl)?);
        let set = |s: &mut Slot<K, V>, ttls: &mut Ttls, hash| self.apply_due(s, ttls, hash, &due);
        Ok(self.with_live_side(key, set).is_some())
    }

    /// Removes `key`'s TTL; true if it was live.
    pub fn persist<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let due = self.due(0);
        let set = |s: &mut Slot<K, V>, ttls: &mut Ttls, hash| self.apply_due(s, ttls, hash, &due);
        self.with_live_side(key, set).is_some()
    }

    /// Marks `key` as used: moves it to the newer generation, TTL unchanged; true if it was live.
    pub fn touch<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let read = |s: &mut Slot<K, V>, ttls: &mut Ttls, hash| self.read_idle(s, ttls, hash);
        self.with_live_side(key, read).is_some()
    }

    /// Atomically adds `delta` to the integer under `key` (missing or expired: counts from zero,
    /// no TTL), promoting it; returns the new value. An existing TTL is kept. See
    /// [`incr_with_ttl`](Self::incr_with_ttl) for a counter that expires.
    pub fn incr(&self, key: &K, delta: i64) -> Result<V>
    where
        V: Counter,
        K: std::fmt::Debug,
    {
        self.incr_with_ttl(key, delta, None)
    }

    /// Subscribes to this store's events (put, replace, delete, expired, generation).
    pub fn subscribe(&self) -> Events<K> {
        self.inner.events.subscribe()
    }

    /// A snapshot of the counters. Counting follows Nebulex: an entry found expired on access
    /// is a miss, an expiration and an eviction; a new generation adds the older generation's
    /// size to `evictions`; a `put` over a live key is an update. Explicit deletes count in
    /// `deletes` (Nebulex folds them into evictions).
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    /// The clock this store reads.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// This store's namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_admission_a_new_key_is_written_on_probation_however_often_it_was_read() {
        for admission in [false, true] {
            let store: GenerationalStore<u64, u64> = GenerationalStore::builder()
                .max_size(1_000)
                .admission(admission)
                .build()
                .unwrap();
            for _ in 0..20 {
                assert_eq!(store.get(&7), None);
            }
            store.put(7, 7, None).unwrap();
            let sizes = if admission { (0, 1) } else { (1, 0) };
            assert_eq!(store.generation_sizes(), sizes, "admission {admission}");
            assert_eq!(store.get(&7), Some(7));
            assert_eq!(store.generation_sizes(), (1, 0), "a read promotes it");
        }
    }
}
