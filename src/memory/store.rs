//! The `MemoryStore` handle, its sync operations and its `Store` impl.

use std::{
    borrow::Borrow,
    future::{ready, Future},
    hash::{BuildHasher, Hash},
    sync::{Arc, Weak},
    time::Duration,
};

use hashbrown::hash_table::Entry;

use super::{
    bounded::{admit, reweigh, Evicted, Limits},
    builder::MemoryStoreBuilder,
    idle::{flags, Due},
    lean::Lean,
    lock::ShardLock,
    shard::{Shard, Slot},
};
use crate::{
    error::Result,
    events::{EventBus, EventKind, Events, RemovalCause},
    listener::ListenerSlot,
    local::{Replaced, Report},
    namespace::Namespace,
    stats::{current_stripe, Counter as Stat, Stats, StatsRecorder},
    store::{Counter, Expiry, Store},
    sweeper::Schedule,
    time::{deadline_at, Clock},
};

/// The default hasher: fast, randomly seeded per store. For keys an attacker chooses, build the
/// store with `.hasher(std::collections::hash_map::RandomState::new())` (SipHash, HashDoS-resistant).
pub type DefaultHasher = foldhash::fast::RandomState;

/// An in-memory store with per-entry TTL (Pow's `EtsCache`).
///
/// Cheap to clone: clones share the same entries. It has plain sync methods (no runtime needed)
/// and implements the async [`Store`] trait over them.
///
/// ```
/// use std::time::Duration;
/// use strata::{ManualClock, MemoryStore};
///
/// let time = ManualClock::new();
/// let store = MemoryStore::builder().clock(time.clock()).build()?;
/// store.put("token".to_string(), 42u32, Some(Duration::from_secs(60)))?;
/// assert_eq!(store.get("token"), Some(42));
/// time.advance(Duration::from_secs(61));
/// assert_eq!(store.get("token"), None); // expired entries are never returned
/// # Ok::<(), strata::Error>(())
/// ```
pub struct MemoryStore<K, V, S = DefaultHasher> {
    pub(super) inner: Arc<Inner<K, V, S>>,
}

impl<K, V, S> Clone for MemoryStore<K, V, S> {
    fn clone(&self) -> Self {
        MemoryStore {
            inner: self.inner.clone(),
        }
    }
}

/// A handle that does not keep its [`MemoryStore`] alive: for a listener installed on the
/// store that needs the store back (it would otherwise own itself and never drop).
#[cfg(feature = "disk")]
pub(crate) struct WeakMemoryStore<K, V, S = DefaultHasher>(Weak<Inner<K, V, S>>);

#[cfg(feature = "disk")]
impl<K, V, S> Clone for WeakMemoryStore<K, V, S> {
    fn clone(&self) -> Self {
        WeakMemoryStore(self.0.clone())
    }
}

#[cfg(feature = "disk")]
impl<K, V, S> WeakMemoryStore<K, V, S> {
    /// The store, unless it was dropped.
    pub(crate) fn upgrade(&self) -> Option<MemoryStore<K, V, S>> {
        self.0.upgrade().map(|inner| MemoryStore { inner })
    }
}

#[cfg(feature = "disk")]
impl<K, V, S> MemoryStore<K, V, S> {
    /// A handle that does not keep the store alive.
    pub(crate) fn downgrade(&self) -> WeakMemoryStore<K, V, S> {
        WeakMemoryStore(Arc::downgrade(&self.inner))
    }
}

impl<K, V, S> std::fmt::Debug for MemoryStore<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

pub(super) struct Inner<K, V, S> {
    pub namespace: Namespace,
    pub event_capacity: usize,
    pub shards: Box<[ShardLock<Shard<K, V>>]>,
    /// True if the store has a capacity or weight limit (its shards have a policy).
    pub bounded: bool,
    pub limits: Limits<K, V>,
    /// A bounded store's lean toward frequency or recency (`lean.rs`).
    pub lean: Option<Lean>,
    pub hasher: S,
    pub clock: Clock,
    pub stats: StatsRecorder,
    pub events: EventBus<K>,
    /// When the background sweeper wakes (`crate::sweeper`).
    pub schedule: Schedule,
    /// `time_to_idle` in milliseconds (`idle.rs`).
    pub tti: Option<u64>,
    /// True if reads write to the entry (a bounded store's policy bits, or `time_to_idle`).
    pub track_reads: bool,
    /// The eviction listener, if one was installed (at build or by a `Cache`).
    pub listener: ListenerSlot<K, V>,
    pub me: Weak<Inner<K, V, S>>,
}

/// Which writes `insert_slot` does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Only {
    Always,
    /// Only if the key has no live entry (`put_new`).
    IfNotLive,
}

/// When a written entry expires.
#[derive(Clone, Copy)]
pub(super) enum When {
    /// A TTL in milliseconds (0: none), counted from the coarse time read under the shard lock,
    /// so that one reading serves the new deadline and the check of the entry it replaces.
    Ttl(u64),
    /// A deadline (Unix ms, 0: none) worked out at `now` by the caller (a DiskStore's fill).
    #[cfg(feature = "disk")]
    At { now: u64, deadline: u64 },
}

/// What a write did, to report after the shard lock is released.
pub(super) enum Outcome {
    Written(Replaced<()>),
    /// The key had a live entry and the write wanted none.
    Refused,
    /// Too heavy for the store's weight limit: evicted at once, with any older entry.
    Unfit,
}

impl<K, V> MemoryStore<K, V, DefaultHasher>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A builder with the defaults (see [`MemoryStoreBuilder`]).
    pub fn builder() -> MemoryStoreBuilder<K, V, DefaultHasher> {
        MemoryStoreBuilder::new()
    }

    /// A store with the default options.
    pub fn new() -> Self {
        Self::from_parts(MemoryStoreBuilder::<K, V>::new().validated_parts())
    }
}

impl<K, V> Default for MemoryStore<K, V, DefaultHasher>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, S> MemoryStore<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    pub(super) fn from_parts(parts: super::builder::Parts<K, V, S>) -> Self {
        let limits = parts.limits;
        let listener = ListenerSlot::new(parts.listener, parts.shards);
        let tti = parts.tti.map(crate::time::ttl_ms);
        let shard = |i| ShardLock::new(Shard::new(limits.policy(i, parts.shards)));
        let shards = (0..parts.shards).map(shard).collect();
        let inner = Arc::new_cyclic(|me| Inner {
            namespace: parts.namespace,
            event_capacity: parts.event_capacity,
            shards,
            bounded: limits.is_bounded(),
            tti,
            track_reads: limits.is_bounded() || tti.is_some(),
            lean: limits.lean(),
            limits,
            hasher: parts.hasher,
            clock: parts.clock,
            stats: StatsRecorder::new(parts.stats),
            events: EventBus::new(parts.event_capacity),
            schedule: Schedule::default(),
            listener,
            me: me.clone(),
        });
        MemoryStore { inner }
    }

    #[inline]
    pub(super) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    #[inline]
    pub(super) fn shard(&self, hash: u64) -> &ShardLock<Shard<K, V>> {
        &self.inner.shards[self.lane(hash)]
    }

    /// Now for new deadlines and sweeps: the coarse time, which is never ahead of the true time
    /// (so a deadline set from it is never late, and what a sweep at it removes has expired).
    /// Whether one entry has expired is asked with [`Slot::is_expired`], which is exact.
    #[inline]
    pub(super) fn now(&self) -> u64 {
        self.inner.clock.coarse_ms()
    }

    /// Now, exactly: for a remaining lifetime handed out, which must not overstate it.
    fn precise_now(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    pub(super) fn rehash(&self) -> impl Fn(&K) -> u64 + '_ {
        move |k: &K| self.inner.hasher.hash_one(k)
    }

    pub(super) fn rehash_slot(&self) -> impl Fn(&Slot<K, V>) -> u64 + '_ {
        move |s: &Slot<K, V>| self.inner.hasher.hash_one(&s.key)
    }

    /// The live value under `key`.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        // Count the read before the lookup, not after: the count then overlaps the cache miss
        // on the table instead of queueing behind it (~25 ns/get on a 1M-entry table). Hits =
        // reads - misses. The clock is read only for an entry with a deadline.
        self.inner.stats.incr(Stat::Reads);
        let shard = self.shard(hash).read();
        let Some(slot) = shard.table.find(hash, |s| s.key.borrow() == key) else {
            drop(shard);
            self.inner.stats.incr(Stat::Misses);
            return None;
        };
        if slot.is_expired(self.clock()) {
            drop(shard);
            self.stale_read(hash, key);
            return None;
        }
        if self.inner.track_reads {
            self.on_read(&shard, hash, slot);
        }
        Some(slot.value.clone())
    }

    /// [`MemoryStore::get`] that also counts the read on `also`, as `Cache::get` counts its own
    /// (a read, and a miss if nothing live is found): both counts find this thread's stats
    /// stripe once. `also` counts after the lookup, so a read that panics (in `K::hash`,
    /// `K::eq` or `V::clone`) counts nothing there, as a failed `Cache` read.
    ///
    /// `inline(always)`: the whole lookup then runs in the caller's `Cache::get` future, with
    /// no call, no saved registers and no return of the answer through memory (an awaited
    /// `Cache::get` hit 191 → 175 instructions with the two counts in one, the `Get` below and
    /// this; `Cache::get_now` 158 → 139; `benches/compare/getcost.rs`). Its body is `get`'s,
    /// written out again on purpose: with one `#[inline(always)]` body under both, LLVM inlined
    /// `get` into every caller too, which took the bounded 95/5 mix from 169 to 185
    /// instructions per op. Keep the two in step: `tests/cache_read_paths_model.rs` runs random
    /// sequences through both and fails on any observable difference.
    #[inline(always)]
    pub(crate) fn get_counting_also(&self, key: &K, also: &StatsRecorder) -> Option<V> {
        let hash = self.hash(key);
        let stripe = current_stripe();
        self.inner.stats.add_on(stripe, Stat::Reads, 1);
        let shard = self.shard(hash).read();
        let Some(slot) = shard.table.find(hash, |s| s.key == *key) else {
            drop(shard);
            self.inner.stats.incr(Stat::Misses);
            count_miss(also);
            return None;
        };
        if slot.is_expired(self.clock()) {
            drop(shard);
            self.stale_read(hash, key);
            count_miss(also);
            return None;
        }
        if self.inner.track_reads {
            self.on_read(&shard, hash, slot);
        }
        let value = slot.value.clone();
        also.add_on(stripe, Stat::Reads, 1);
        Some(value)
    }

    /// A read that found `key`'s entry expired: a miss, and with a listener the entry goes now.
    /// Out of line, so the hit path keeps fewer registers.
    #[cold]
    #[inline(never)]
    fn stale_read<Q>(&self, hash: u64, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.stats.incr(Stat::Misses);
        self.expire_on_read(hash, key);
    }

    /// True if `key` has a live entry. Not counted as a hit or miss.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let shard = self.shard(hash).read();
        let found = shard.table.find(hash, |s| s.key.borrow() == key);
        found.is_some_and(|s| !s.is_expired(self.clock()))
    }

    /// Writes `value` under `key` with `ttl` (`None`: never expires), replacing value and TTL.
    ///
    /// Fails only for a zero TTL.
    pub fn put(&self, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        // The TTL in ms (0: none); the clock is read under the shard lock (`When`).
        self.put_at(key, value, When::Ttl(deadline_at(0, ttl)?))
    }

    /// `put` with its deadline given as `when`.
    pub(super) fn put_at(&self, key: K, value: V, when: When) -> Result<()> {
        let hash = self.hash(&key);
        let event_key = self.inner.events.is_active().then(|| key.clone());
        let mut evicted = Vec::new();
        let (outcome, deadline) =
            self.insert_slot(hash, key, value, when, Only::Always, &mut evicted);
        self.report_evicted(evicted);
        self.deliver(hash);
        self.after_outcome(event_key.as_ref(), outcome, deadline)?;
        Ok(())
    }

    /// Reports a write's outcome once the shard lock is released; true if it wrote.
    fn after_outcome(&self, key: Option<&K>, outcome: Outcome, deadline: u64) -> Result<bool> {
        match outcome {
            Outcome::Written(replaced) => self.after_write(key, replaced, deadline),
            Outcome::Unfit => self.report_unfit_key(key),
            Outcome::Refused => return Ok(false),
        }
        Ok(true)
    }

    /// The deadline of a write made `when`, and the coarse time if it read it (under the shard
    /// lock, for [`expired`](Self::expired) to judge the entry it replaces by the same reading).
    /// A write with neither a TTL nor `time_to_idle` does not read the clock.
    #[inline]
    fn due_of(&self, when: When) -> (Due, Option<u64>) {
        match when {
            When::Ttl(0) if self.inner.tti.is_none() => (self.due(0, 0), None),
            When::Ttl(ttl) => {
                let now = self.now();
                let deadline = if ttl == 0 { 0 } else { now.saturating_add(ttl) };
                (self.due(now, deadline), Some(now))
            }
            #[cfg(feature = "disk")]
            When::At { now, deadline } => (self.due(now, deadline), None),
        }
    }

    /// Whether `slot` has expired, exactly. `coarse` is a coarse reading taken under the shard
    /// lock held now (see [`due_of`](Self::due_of)): the check then reads no clock again unless
    /// the deadline is near (see [`Clock::is_due_at`]).
    #[inline]
    fn expired(&self, slot: &Slot<K, V>, coarse: Option<u64>) -> bool {
        match coarse {
            None => slot.is_expired(self.clock()),
            Some(coarse) => {
                let deadline = slot.deadline();
                deadline != 0 && self.clock().is_due_at(deadline, coarse)
            }
        }
    }

    /// Writes `key` and `value` expiring `when` (if `only` allows), evicting first in a bounded
    /// store; returns what it did and the entry's deadline.
    fn insert_slot(
        &self,
        hash: u64,
        key: K,
        value: V,
        when: When,
        only: Only,
        evicted: &mut Evicted<K, V>,
    ) -> (Outcome, u64) {
        let weight = self.weigh(&key, &value);
        let mut guard = self.shard(hash).write();
        let shard = &mut *guard;
        if only == Only::IfNotLive {
            let found = shard.table.find(hash, |s| s.key == key);
            if found.is_some_and(|s| !s.is_expired(self.clock())) {
                return (Outcome::Refused, 0);
            }
        }
        if !self.make_room(shard, hash, &key, weight, evicted) {
            evicted.extend(self.drop_unfit(shard, hash, &key));
            self.stage_evicted(hash, evicted);
            // Counted and announced by `report_unfit_key` once the lock is released.
            self.removed(hash, RemovalCause::Size, || (key, value));
            return (Outcome::Unfit, 0);
        }
        self.stage_evicted(hash, evicted);
        shard.keep_size(self.rehash_slot());
        // Read after the evictions and any rebuild above, so the reading is fresh when the
        // replaced entry is judged by it below.
        let (due, coarse) = self.due_of(when);
        let mut slot = Slot::with_flags(key, value, due.deadline, flags(due.cap));
        let entry = shard
            .table
            .entry(hash, |s| s.key == slot.key, self.rehash_slot());
        // The deadline the entry is indexed under already (0: none).
        let (replaced, indexed) = match entry {
            Entry::Occupied(mut o) => {
                let old = o.get_mut().overwrite(slot);
                reweigh(&mut shard.policy, self.weigh(&old.key, &old.value), weight);
                let expired = self.expired(&old, coarse);
                let indexed = old.deadline();
                self.removed(hash, cause_of(expired, RemovalCause::Replaced), || {
                    (old.key, old.value)
                });
                (Replaced::of(Some(()), expired), indexed)
            }
            Entry::Vacant(v) => {
                admit(&mut shard.policy, hash, &mut slot, weight);
                v.insert(slot);
                (Replaced::Nothing, 0)
            }
        };
        shard.reschedule(hash, indexed, due.deadline, self.rehash());
        self.note_due(shard, hash, &due);
        (Outcome::Written(replaced), due.deadline)
    }

    /// Reports a write that was evicted at once (too heavy for the store's weight limit).
    pub(super) fn report_unfit_key(&self, key: Option<&K>) {
        match key {
            Some(key) => self.report_unfit(key),
            None => self.inner.stats.incr(Stat::Evictions),
        }
    }

    pub(super) fn after_write<T>(&self, key: Option<&K>, replaced: Replaced<T>, deadline: u64) {
        self.report().write(key, &replaced);
        self.wake_sweeper_for(deadline);
    }

    /// This store's counters and events, to report what an operation did.
    #[inline]
    pub(super) fn report(&self) -> Report<'_, K> {
        Report {
            stats: &self.inner.stats,
            events: &self.inner.events,
        }
    }

    /// Writes only if `key` has no live entry; true if written. Atomic.
    pub fn put_new(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        let when = When::Ttl(deadline_at(0, ttl)?);
        let hash = self.hash(&key);
        let event_key = self.inner.events.is_active().then(|| key.clone());
        let mut evicted = Vec::new();
        let (outcome, deadline) =
            self.insert_slot(hash, key, value, when, Only::IfNotLive, &mut evicted);
        self.report_evicted(evicted);
        self.deliver(hash);
        self.after_outcome(event_key.as_ref(), outcome, deadline)
    }

    /// Removes `key` and returns its live value. Atomic: of many concurrent `take`s, one wins.
    pub fn take<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let mut guard = self.shard(hash).write();
        let shard = &mut *guard;
        let slot = shard
            .table
            .find_entry(hash, |s| s.key.borrow() == key)
            .ok()?
            .remove()
            .0;
        reweigh(&mut shard.policy, self.weigh(&slot.key, &slot.value), 0);
        let expired = slot.is_expired(self.clock());
        let cause = cause_of(expired, RemovalCause::Explicit);
        self.removed(hash, cause, || (slot.key.clone(), slot.value.clone()));
        drop(guard);
        self.deliver(hash);
        let report = self.report();
        report.taken(&slot.key, slot.value, expired, |key| report.expired(key))
    }

    /// Removes `key`; true if a live entry was removed.
    pub fn delete<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.take(key).is_some()
    }

    /// Every live key.
    pub fn keys(&self) -> Vec<K> {
        let mut out = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard.read();
            let live = shard.table.iter().filter(|s| !s.is_expired(self.clock()));
            out.extend(live.map(|s| s.key.clone()));
        }
        out
    }

    /// Every live entry as `(key, value, remaining TTL)`, shard by shard.
    pub fn entries(&self) -> Vec<(K, V, Option<Duration>)> {
        let now = self.precise_now();
        let mut out = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard.read();
            // Judged at the same reading the remaining TTLs are counted from.
            let live = shard.table.iter().filter(|s| !s.expired_at(now));
            out.extend(live.map(|s| {
                let ttl = (s.deadline() != 0).then(|| Duration::from_millis(s.deadline() - now));
                (s.key.clone(), s.value.clone(), ttl)
            }));
        }
        out
    }

    /// How many live entries there are.
    pub fn count(&self) -> usize {
        let live_in = |shard: &ShardLock<Shard<K, V>>| {
            let shard = shard.read();
            shard
                .table
                .iter()
                .filter(|s| !s.is_expired(self.clock()))
                .count()
        };
        self.inner.shards.iter().map(live_in).sum()
    }

    /// Deletes everything; returns how many live entries were removed.
    pub fn clear(&self) -> usize {
        let mut removed = 0;
        for (lane, shard) in self.inner.shards.iter().enumerate() {
            let mut shard = shard.write();
            shard.clear_deadlines();
            if let Some(policy) = shard.policy.as_deref_mut() {
                policy.clear();
            }
            let drained: Vec<Slot<K, V>> = shard.table.drain().collect();
            let each = drained.iter().map(|s| (&s.key, s.is_expired(self.clock())));
            // Announced under the lock (events never block) so the listener's queue below
            // holds this shard's removals in order.
            removed += self.report().cleared(each);
            let any = !drained.is_empty();
            if let Some(notifier) = self.notifier() {
                for slot in drained {
                    let cause = cause_of(slot.is_expired(self.clock()), RemovalCause::Explicit);
                    notifier.push(lane, slot.key, slot.value, cause);
                }
            }
            drop(shard);
            // A shard it removed nothing from is not its to deliver (`listener.rs`).
            if any {
                self.deliver_lane(lane);
            }
        }
        removed
    }

    /// Empties the store without a trace (no event, no listener delivery, no count): for a
    /// tier replaced by one that took over its entries (`DiskDb::retier`), so that its sweeper
    /// or a read through a stale handle never hands an entry's removal over a second time.
    #[cfg(feature = "disk")]
    pub(crate) fn retire(&self) {
        for shard in self.inner.shards.iter() {
            let mut shard = shard.write();
            shard.clear_deadlines();
            if let Some(policy) = shard.policy.as_deref_mut() {
                policy.clear();
            }
            shard.table.clear();
        }
    }

    /// The remaining lifetime of `key`, or `None` if it has no live entry.
    pub fn ttl<Q>(&self, key: &Q) -> Option<Expiry>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let now = self.precise_now();
        let shard = self.shard(hash).read();
        let slot = shard.table.find(hash, |s| s.key.borrow() == key)?;
        match slot.deadline() {
            0 => Some(Expiry::Never),
            d if d <= now => None,
            d => Some(Expiry::In(Duration::from_millis(d - now))),
        }
    }

    /// The live value under `key` and its remaining lifetime, read under one lock.
    pub fn get_with_ttl<Q>(&self, key: &Q) -> Option<(V, Expiry)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let now = self.precise_now();
        self.inner.stats.incr(Stat::Reads);
        let shard = self.shard(hash).read();
        let found = shard.table.find(hash, |s| s.key.borrow() == key);
        if self.inner.track_reads {
            let live = found.filter(|s| !s.is_expired(self.clock()));
            live.inspect(|s| self.on_read(&shard, hash, s));
        }
        let result = found.and_then(|s| match s.deadline() {
            0 => Some((s.value.clone(), Expiry::Never)),
            d if d <= now => None,
            d => Some((s.value.clone(), Expiry::In(Duration::from_millis(d - now)))),
        });
        let stale = found.is_some() && result.is_none();
        drop(shard);
        if result.is_none() {
            self.inner.stats.incr(Stat::Misses);
        }
        if stale {
            self.expire_on_read(hash, key);
        }
        result
    }

    /// Sets a new TTL on `key`, counted from now (`None`: never expires); true if it was live.
    pub fn expire<Q>(&self, key: &Q, ttl: Option<Duration>) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.now();
        let due = self.due(now, deadline_at(now, ttl)?);
        let hash = self.hash(key);
        let mut guard = self.shard(hash).write();
        let shard = &mut *guard;
        let Some(slot) = shard.table.find_mut(hash, |s| s.key.borrow() == key) else {
            return Ok(false);
        };
        if slot.is_expired(self.clock()) {
            return Ok(false);
        }
        slot.set_deadline(due.deadline, flags(due.cap));
        shard.schedule(hash, due.deadline, self.rehash());
        self.note_due(shard, hash, &due);
        drop(guard);
        self.wake_sweeper_for(due.deadline);
        Ok(true)
    }

    /// Removes `key`'s TTL; true if it was live.
    pub fn persist<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        matches!(self.expire(key, None), Ok(true))
    }

    /// Atomically adds `delta` to the integer under `key` (missing or expired: counts from zero,
    /// no TTL) and returns the new value. An existing TTL is kept. See
    /// [`incr_with_ttl`](Self::incr_with_ttl) for a counter that expires.
    pub fn incr(&self, key: &K, delta: i64) -> Result<V>
    where
        V: Counter,
        K: std::fmt::Debug,
    {
        self.incr_with_ttl(key, delta, None)
    }

    /// Removes every entry whose deadline has passed now, emitting `Expired` events; returns how
    /// many were removed. The background sweeper calls this; tests with a manual clock may too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{ManualClock, MemoryStore};
    ///
    /// let time = ManualClock::new();
    /// let store = MemoryStore::<String, u32>::builder().clock(time.clock()).build()?;
    /// store.put("short".to_string(), 1, Some(Duration::from_secs(1)))?;
    /// store.put("kept".to_string(), 2, None)?;
    /// time.advance(Duration::from_secs(2));
    /// store.purge_expired(); // 1, or 0 if the sweeper was quicker
    /// assert_eq!(store.count(), 1);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn purge_expired(&self) -> usize {
        let now = self.now();
        let mut total = 0;
        let mut removed = Vec::new();
        for (lane, shard) in self.inner.shards.iter().enumerate() {
            loop {
                let (more, any) = {
                    let mut guard = shard.write();
                    let shard = &mut *guard;
                    let rehash = |k: &K| self.inner.hasher.hash_one(k);
                    let more = shard.purge(now, 1024, &mut removed, rehash);
                    for slot in &removed {
                        reweigh(&mut shard.policy, self.weigh(&slot.key, &slot.value), 0);
                    }
                    // Counted before anyone hears of them (events, the listener).
                    total += removed.len();
                    self.inner
                        .stats
                        .add(Stat::Expirations, removed.len() as u64);
                    let any = !removed.is_empty();
                    self.stage(lane, &mut removed, RemovalCause::Expired);
                    (more, any)
                };
                // A sweep that removed nothing here takes no delivery turn (`listener.rs`:
                // holding one, it would keep the removals of a call that returned undelivered).
                if any {
                    self.deliver_lane(lane);
                }
                for slot in removed.drain(..) {
                    self.inner.events.emit(&slot.key, EventKind::Expired);
                }
                if !more {
                    break;
                }
            }
        }
        total
    }

    /// The earliest deadline still scheduled in any shard.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        let each = self
            .inner
            .shards
            .iter()
            .filter_map(|s| s.read().next_deadline());
        each.min()
    }

    /// Subscribes to this store's events (put, replace, delete, expired).
    pub fn subscribe(&self) -> Events<K> {
        self.inner.events.subscribe()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    /// The clock this store reads.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// This store's options, for a new, empty store like it in `namespace`.
    fn parts(&self, namespace: &Namespace) -> super::builder::Parts<K, V, S>
    where
        S: Clone,
    {
        super::builder::Parts {
            namespace: namespace.clone(),
            shards: self.inner.shards.len(),
            clock: self.inner.clock.clone(),
            stats: self.inner.stats.enabled(),
            event_capacity: self.inner.event_capacity,
            hasher: self.inner.hasher.clone(),
            limits: self.inner.limits.clone(),
            listener: self.listener(),
            tti: self.inner.tti.map(Duration::from_millis),
        }
    }
}

impl<K, V, S> Store<K, V> for MemoryStore<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    crate::local::sync_store_methods!(MemoryStore);

    // `inline(always)`, as `get_now` (src/local.rs).
    #[inline(always)]
    fn get_now_counting(&self, key: &K, stats: &StatsRecorder) -> Option<Result<Option<V>>> {
        Some(Ok(self.get_counting_also(key, stats)))
    }

    fn namespace(&self) -> Namespace {
        self.inner.namespace.clone()
    }

    fn install_eviction_listener(&self, listener: crate::EvictionListener<K, V>) -> Result<()> {
        self.install_listener(listener)
    }

    fn with_time_to_idle(&self, idle: Duration) -> Result<Self> {
        if idle.as_millis() == 0 {
            return Err(crate::Error::config(
                "time_to_idle",
                "must be at least 1 ms",
            ));
        }
        Ok(MemoryStore::from_parts(super::builder::Parts {
            tti: Some(idle),
            ..self.parts(&self.inner.namespace)
        }))
    }

    /// A new, empty MemoryStore with the same options: in memory, each store is its own namespace.
    fn with_namespace(&self, namespace: &Namespace) -> Result<Self> {
        Ok(MemoryStore::from_parts(self.parts(namespace)))
    }

    fn get_with_ttl(&self, key: &K) -> impl Future<Output = Result<Option<(V, Expiry)>>> + Send {
        ready(Ok(MemoryStore::get_with_ttl(self, key)))
    }

    fn replace(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        ready(MemoryStore::replace(self, key, value, ttl))
    }
}

/// A read through [`MemoryStore::get_counting_also`] that found nothing live, on `also`.
#[inline]
fn count_miss(also: &StatsRecorder) {
    also.incr(Stat::Reads);
    also.incr(Stat::Misses);
}

/// Why an entry left: `live` (the operation's own cause), or `Expired` if it had expired.
#[inline]
pub(super) fn cause_of(expired: bool, live: RemovalCause) -> RemovalCause {
    if expired {
        RemovalCause::Expired
    } else {
        live
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::time::ManualClock;

    fn indexed(store: &MemoryStore<u64, u64>) -> usize {
        store.inner.shards.iter().map(|s| s.read().indexed()).sum()
    }

    #[test]
    fn a_rewrite_is_indexed_only_when_its_deadline_moves_earlier() {
        // 60 s from here is the start of a 64 ms deadline bucket.
        let time = ManualClock::starting_at((1 << 20) + 32);
        let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
        let ttl = Some(Duration::from_secs(60));
        for round in 0..1_000 {
            store.put(7u64, round, ttl).unwrap();
        }
        assert_eq!(indexed(&store), 1, "same deadline bucket: indexed once");
        time.advance(Duration::from_millis(64));
        store.put(7, 0, ttl).unwrap();
        assert_eq!(
            indexed(&store),
            1,
            "a later bucket: the sweeper indexes it when due"
        );
        store.put(7, 0, Some(Duration::from_secs(30))).unwrap();
        assert_eq!(indexed(&store), 2, "an earlier deadline is indexed at once");
        store.put(7, 0, None).unwrap();
        store.put(7, 0, ttl).unwrap();
        assert_eq!(indexed(&store), 3, "a deadline after none is indexed");
        time.advance(Duration::from_secs(59));
        assert_eq!(store.purge_expired(), 0, "nothing is due yet");
        time.advance(Duration::from_secs(2));
        store.purge_expired(); // or the sweeper did
        assert_eq!(store.stats().expirations, 1, "the entry is still swept");
    }

    #[test]
    fn an_entry_indexed_in_an_earlier_bucket_is_swept_at_its_deadline_not_before() {
        let time = ManualClock::new();
        let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
        store.put(1u64, 1, Some(Duration::from_secs(1))).unwrap();
        time.advance(Duration::from_millis(500));
        store.put(1, 2, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(indexed(&store), 1, "indexed at its first deadline only");
        time.advance(Duration::from_millis(700));
        // The first deadline's bucket is due: the entry is alive and indexed again.
        assert_eq!(store.purge_expired(), 0);
        assert_eq!(store.get(&1), Some(2));
        assert_eq!(indexed(&store), 1, "indexed again at its deadline");
        time.advance(Duration::from_millis(301));
        store.purge_expired(); // or the sweeper did
        assert_eq!(store.stats().expirations, 1, "swept at its deadline");
        assert_eq!(indexed(&store), 0);
    }
}
