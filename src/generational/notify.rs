//! GenerationalStore's side of the eviction listener (`crate::listener`): removals are queued
//! under the partition lock that made them and delivered once it is released. A dropped
//! generation is handed over entry by entry under its partition's lock (so, with a listener,
//! its values are freed by the listener's thread, not later by the GC thread). Without a
//! listener each hook costs one load of the `OnceLock`.

use std::hash::Hash;

use hashbrown::HashTable;

use super::{partition::Slot, store::GenerationalStore};
use crate::{
    error::Result,
    events::{EventKind, RemovalCause},
    listener::{EvictionListener, Notifier},
    stats::Counter as Stat,
};

impl<K, V> GenerationalStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Installs `listener`; fails if the store already has one.
    pub(crate) fn install_listener(&self, listener: EvictionListener<K, V>) -> Result<()> {
        self.inner.listener.install(listener)
    }

    #[inline]
    pub(super) fn notifier(&self) -> Option<&Notifier<K, V>> {
        self.inner.listener.notifier()
    }

    /// The listener, for a store made from this one.
    pub(super) fn listener(&self) -> Option<EvictionListener<K, V>> {
        self.inner.listener.listener()
    }

    /// How many times the eviction listener panicked (each panic was caught and logged;
    /// the store and later deliveries go on).
    ///
    /// ```
    /// let store = strata::GenerationalStore::<u64, u64>::builder()
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

    /// Queues a removal from partition `index` (under its lock); `make` builds it only when a
    /// listener is installed.
    #[inline]
    pub(super) fn removed(&self, index: usize, cause: RemovalCause, make: impl FnOnce() -> (K, V)) {
        self.inner.listener.removed(index, cause, make);
    }

    /// With a listener, counts, announces and queues every entry of `table` (dropped from
    /// partition `index`, under its lock) as evicted for `cause`, leaving it empty, and returns
    /// how many; without one, leaves it to the caller (and returns 0).
    pub(super) fn hand_over_table(
        &self,
        index: usize,
        table: &mut HashTable<Slot<K, V>>,
        cause: RemovalCause,
    ) -> usize {
        let Some(notifier) = self.notifier() else {
            return 0;
        };
        let count = table.len();
        self.inner.stats.add(Stat::Evictions, count as u64);
        for slot in table.drain() {
            self.inner.events.emit(&slot.key, EventKind::from(cause));
            notifier.push(index, slot.key, slot.value, cause);
        }
        count
    }

    /// Delivers what every partition queued. Rotations and size evictions queue under the
    /// rotation lock and deliver through this once it is released: a listener that writes to
    /// the store may rotate or evict in turn, which takes that lock (test
    /// `a_listener_may_write_to_its_own_generational_store`).
    pub(super) fn deliver_all(&self) {
        (0..self.inner.partitions.len()).for_each(|index| self.deliver(index));
    }

    /// Delivers what removals in partition `index` queued (after its lock is released).
    #[inline]
    pub(super) fn deliver(&self, index: usize) {
        self.inner.listener.deliver(index);
    }
}
