//! A bounded `MemoryStore`: its limits, and the bookkeeping every write and removal does for
//! the eviction policy (`policy.rs`) under the shard's write lock.

use std::{
    hash::{BuildHasher, Hash},
    sync::Arc,
};

use super::{
    policy::Policy,
    shard::{Shard, Slot},
    store::MemoryStore,
};
use crate::{events::EventKind, stats::Counter as Stat};

/// Shards of a store bounded by entries hold at least this many entries each.
const MIN_ENTRIES_PER_SHARD: u64 = 512;
/// Shards of a store bounded by weight hold at least this much weight each.
const MIN_WEIGHT_PER_SHARD: u64 = 64 * 1024;

type WeighFn<K, V> = dyn Fn(&K, &V) -> u32 + Send + Sync;

/// Weighs an entry against `max_weight`.
pub(super) struct Weigher<K, V>(pub Arc<WeighFn<K, V>>);

impl<K, V> Clone for Weigher<K, V> {
    fn clone(&self) -> Self {
        Weigher(self.0.clone())
    }
}

impl<K, V> std::fmt::Debug for Weigher<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Weigher")
    }
}

/// A store's limits, as the builder validated them.
pub(super) struct Limits<K, V> {
    pub max_entries: Option<u64>,
    pub max_weight: Option<u64>,
    pub weigher: Option<Weigher<K, V>>,
}

impl<K, V> Default for Limits<K, V> {
    fn default() -> Self {
        Limits {
            max_entries: None,
            max_weight: None,
            weigher: None,
        }
    }
}

impl<K, V> Clone for Limits<K, V> {
    fn clone(&self) -> Self {
        Limits {
            max_entries: self.max_entries,
            max_weight: self.max_weight,
            weigher: self.weigher.clone(),
        }
    }
}

impl<K, V> Limits<K, V> {
    pub fn is_bounded(&self) -> bool {
        self.max_entries.is_some() || self.max_weight.is_some()
    }

    /// The shard count for a store with these limits (`wanted` for an unbounded one).
    pub fn cap_shards(&self, wanted: usize) -> usize {
        let by_entries = self.max_entries.map(|n| n / MIN_ENTRIES_PER_SHARD);
        let by_weight = self.max_weight.map(|w| w / MIN_WEIGHT_PER_SHARD);
        let most = by_entries.into_iter().chain(by_weight).min();
        match most {
            None => wanted,
            Some(most) => wanted.min(prev_power_of_two(most.max(1))),
        }
    }

    /// The policy of shard `index` of `shards`: the limits split evenly, the first shards
    /// taking one more entry (or unit of weight) each when they do not divide.
    pub fn policy(&self, index: usize, shards: usize) -> Option<Policy> {
        if !self.is_bounded() {
            return None;
        }
        let share = |total: u64| {
            let (each, rest) = (total / shards as u64, total % shards as u64);
            each + u64::from((index as u64) < rest)
        };
        let entries = self.max_entries.map_or(usize::MAX, |n| share(n) as usize);
        let weight = self.max_weight.map_or(u64::MAX, share);
        // A bounded-by-weight shard remembers as many evicted hashes as 1/64 of its weight.
        let ghost = self.max_entries.map_or(weight / 64, |_| entries as u64);
        Some(Policy::new(entries, weight, ghost.min(1 << 24) as usize))
    }
}

fn prev_power_of_two(n: u64) -> usize {
    1usize << (63 - n.leading_zeros()).min(16)
}

/// Queues a new entry in its shard's policy (before it goes into the table) and adds its weight.
#[inline]
pub(super) fn admit<K, V>(
    policy: &mut Option<Box<Policy>>,
    hash: u64,
    slot: &mut Slot<K, V>,
    weight: u64,
) {
    if let Some(policy) = policy {
        if policy.enqueue(hash) {
            slot.enter_main();
        }
        policy.weight += weight;
    }
}

/// Accounts for an entry's weight changing from `old` to `new` (an overwrite, or a removal
/// with `new` = 0).
#[inline]
pub(super) fn reweigh(policy: &mut Option<Box<Policy>>, old: u64, new: u64) {
    if let Some(policy) = policy {
        policy.weight = policy.weight.saturating_sub(old) + new;
    }
}

/// Entries evicted under a shard lock, reported once it is released.
pub(super) type Evicted<K, V> = Vec<Slot<K, V>>;

impl<K, V, S> MemoryStore<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// The entry's weight (0 without a weigher: the store is bounded by entries only).
    #[inline]
    pub(super) fn weigh(&self, key: &K, value: &V) -> u64 {
        match &self.inner.limits.weigher {
            None => 0,
            Some(Weigher(weigh)) => u64::from(weigh(key, value)),
        }
    }

    /// In a bounded store, evicts from `shard` until a write of `key` weighing `weight` fits,
    /// never evicting `key` itself; false if it cannot fit even in an empty shard.
    pub(super) fn make_room(
        &self,
        shard: &mut Shard<K, V>,
        hash: u64,
        key: &K,
        weight: u64,
        evicted: &mut Evicted<K, V>,
    ) -> bool {
        let Some(policy) = shard.policy.as_deref() else {
            return true;
        };
        if weight > policy.max_weight {
            return false;
        }
        let existing = shard.table.find(hash, |s| s.key == *key);
        let (mut entries, mut total) = match existing {
            Some(s) => (
                shard.table.len(),
                policy.weight.saturating_sub(self.weigh(&s.key, &s.value)) + weight,
            ),
            None => (shard.table.len() + 1, policy.weight + weight),
        };
        while shard
            .policy
            .as_deref()
            .is_some_and(|p| p.over(entries, total))
        {
            let rehash = self.rehash();
            let Some(slot) = shard.evict_one(&rehash, &|k: &K| k == key) else {
                break;
            };
            let gone = self.weigh(&slot.key, &slot.value);
            reweigh(&mut shard.policy, gone, 0);
            entries -= 1;
            total = total.saturating_sub(gone);
            evicted.push(slot);
        }
        true
    }

    /// Removes `key`'s entry after a write of it could not fit; returns it.
    pub(super) fn drop_unfit(
        &self,
        shard: &mut Shard<K, V>,
        hash: u64,
        key: &K,
    ) -> Option<Slot<K, V>> {
        let slot = shard
            .table
            .find_entry(hash, |s| s.key == *key)
            .ok()?
            .remove()
            .0;
        let weight = self.weigh(&slot.key, &slot.value);
        reweigh(&mut shard.policy, weight, 0);
        Some(slot)
    }

    /// Counts and announces entries evicted for size (after the shard lock is released).
    pub(super) fn report_evicted(&self, evicted: Evicted<K, V>) {
        if evicted.is_empty() {
            return;
        }
        self.inner.stats.add(Stat::Evictions, evicted.len() as u64);
        for slot in evicted {
            self.inner.events.emit(&slot.key, EventKind::Evicted);
        }
    }

    /// Counts and announces that a write of `key` was evicted at once (too heavy to keep).
    pub(super) fn report_unfit(&self, key: &K) {
        self.inner.stats.incr(Stat::Evictions);
        self.inner.events.emit(key, EventKind::Evicted);
    }
}
