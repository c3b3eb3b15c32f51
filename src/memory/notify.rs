//! MemoryStore's side of the eviction listener (`crate::listener`): removals are queued under
//! the shard lock that made them and delivered once it is released. Without a listener each
//! hook costs one load of the `OnceLock`.

use std::{
    borrow::Borrow,
    hash::{BuildHasher, Hash},
};

use super::{bounded::Evicted, shard::Slot, store::MemoryStore};
use crate::{
    error::Result,
    events::{EventKind, RemovalCause},
    listener::{EvictionListener, Notifier},
    stats::Counter as Stat,
};

impl<K, V, S> MemoryStore<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Installs `listener`; fails if the store already has one (a store has at most one, so
    /// no removal is delivered to a listener that was replaced half-way).
    pub(crate) fn install_listener(&self, listener: EvictionListener<K, V>) -> Result<()> {
        self.inner.listener.install(listener)
    }

    #[inline]
    pub(super) fn notifier(&self) -> Option<&Notifier<K, V>> {
        self.inner.listener.notifier()
    }

    /// The listener, for a store made from this one.
    pub(crate) fn listener(&self) -> Option<EvictionListener<K, V>> {
        self.inner.listener.listener()
    }

    /// How many times the eviction listener panicked (each panic was caught and logged;
    /// the store and later deliveries go on).
    ///
    /// ```
    /// let store = strata::MemoryStore::<u64, u64>::builder()
    ///     .eviction_listener(|key, _, _| assert!(key != 1, "a bug in the listener"))
    ///     .build()?;
    /// store.put(1, 10, None)?;
    /// store.delete(&1); // the listener panics; the delete is done all the same
    /// assert_eq!(store.listener_panics(), 1);
    /// assert_eq!(store.get(&1), None);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn listener_panics(&self) -> u64 {
        self.inner.listener.panics()
    }

    #[inline]
    pub(super) fn lane(&self, hash: u64) -> usize {
        super::shard::lane_of(hash, self.inner.shards.len())
    }

    /// Queues the removal of `key`'s `value` (under the shard lock); `make` builds it only when
    /// a listener is installed.
    ///
    /// Always inline, down to the check for a listener: without one, every overwrite would
    /// otherwise pay a call (the compiler kept it out of line: ~19 instructions a put).
    #[inline(always)]
    pub(super) fn removed(&self, hash: u64, cause: RemovalCause, make: impl FnOnce() -> (K, V)) {
        // The lane is worked out only with a listener: a put without one pays one load here.
        if let Some(notifier) = self.notifier() {
            self.push_removed(notifier, hash, cause, make);
        }
    }

    #[inline(never)]
    fn push_removed(
        &self,
        notifier: &Notifier<K, V>,
        hash: u64,
        cause: RemovalCause,
        make: impl FnOnce() -> (K, V),
    ) {
        let (key, value) = make();
        notifier.push(self.lane(hash), key, value, cause);
    }

    /// With a listener, announces and queues the slots in `slots` as removed for `cause`
    /// (under the shard lock of `lane`) and empties `slots`; without one, leaves them for the
    /// caller to announce after the lock.
    pub(super) fn stage(&self, lane: usize, slots: &mut Vec<Slot<K, V>>, cause: RemovalCause) {
        let Some(notifier) = self.notifier() else {
            return;
        };
        for slot in slots.drain(..) {
            self.inner.events.emit(&slot.key, EventKind::from(cause));
            notifier.push(lane, slot.key, slot.value, cause);
        }
    }

    /// [`stage`](Self::stage) for entries evicted for size, counting them. Inline up to the
    /// emptiness check: most writes evict nothing, and then cost no call.
    #[inline]
    pub(super) fn stage_evicted(&self, hash: u64, evicted: &mut Evicted<K, V>) {
        if !evicted.is_empty() && self.notifier().is_some() {
            self.stage_evicted_now(hash, evicted);
        }
    }

    fn stage_evicted_now(&self, hash: u64, evicted: &mut Evicted<K, V>) {
        self.inner.stats.add(Stat::Evictions, evicted.len() as u64);
        self.stage(self.lane(hash), evicted, RemovalCause::Size);
    }

    /// Delivers what removals in `key`'s shard queued (after its lock is released).
    #[inline]
    pub(super) fn deliver(&self, hash: u64) {
        if self.notifier().is_some() {
            self.deliver_lane(self.lane(hash));
        }
    }

    #[inline]
    pub(super) fn deliver_lane(&self, lane: usize) {
        self.inner.listener.deliver(lane);
    }

    /// With a listener, removes `key`'s entry if a read found it expired, so the listener
    /// hears of it now rather than when the sweeper comes by.
    pub(super) fn expire_on_read<Q>(&self, hash: u64, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.notifier().is_none() {
            return;
        }
        let mut guard = self.shard(hash).write();
        let shard = &mut *guard;
        let found = shard.table.find_entry(hash, |s| {
            s.key.borrow() == key && s.is_expired(self.clock())
        });
        let Ok(entry) = found else { return };
        let slot = entry.remove().0;
        super::bounded::reweigh(&mut shard.policy, self.weigh(&slot.key, &slot.value), 0);
        self.report().expired(&slot.key);
        self.removed(hash, RemovalCause::Expired, || (slot.key, slot.value));
        drop(guard);
        self.deliver(hash);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use crate::{ManualClock, MemoryStore};

    /// The listener's promise (`listener.rs`): once every call that removed something has
    /// returned, every removal has been delivered. A sweep that removed nothing (`purge_expired`
    /// with nothing expired, as the sweeper runs it) must take no delivery turn: parked inside
    /// one, it held back the removals of puts that had all returned.
    #[test]
    fn a_sweep_that_removed_nothing_takes_no_delivery_turn() {
        let time = ManualClock::new();
        let seen = Arc::new(Mutex::new(0usize));
        let counted = seen.clone();
        let store = MemoryStore::<u64, u64>::builder()
            .clock(time.clock())
            .shards(1)
            .eviction_listener(move |_, _, _| *counted.lock() += 1)
            .build()
            .unwrap();
        store.put(0, 0, None).unwrap();
        let swept = store.clone();
        let (parked, finish) = store.notifier().unwrap().run_parked_in_turn(move || {
            assert_eq!(swept.purge_expired(), 0, "nothing has a TTL");
        });
        for value in 1..=10 {
            store.put(0, value, None).unwrap(); // each replaces the last
        }
        let delivered = *seen.lock();
        finish();
        assert_eq!(
            (parked, delivered),
            (false, 10),
            "every put has returned: each value it replaced is delivered"
        );
    }
}
