//! `time_to_idle` in a MemoryStore: an entry expires `tti` after its last read or write, or at
//! its TTL deadline if that comes first (moka's semantics).
//!
//! The entry's one deadline word holds whichever deadline comes first, so the read path, the
//! expiry check and the sweeper's index work as without idle expiry. A read moves the deadline
//! to `now + tti` (a compare-and-swap on the word, under the shard's read lock); it must not
//! pass the TTL deadline, so an entry whose TTL deadline is later than its idle deadline keeps
//! it in the shard's `ttls` side map (flag `SIDE_TTL`), and one whose TTL deadline came first is
//! flagged `CAPPED` (reads no longer move it). A store without `time_to_idle` has neither flag
//! nor side map: it pays nothing per entry, and its reads of entries without a TTL never read
//! the clock. Reads do not tell the deadline index they moved a deadline; the sweeper indexes
//! such an entry again when it finds it alive under a due bucket.

use std::hash::{BuildHasher, Hash};

use super::{
    shard::{Shard, Slot, CAPPED},
    store::MemoryStore,
};
pub(super) use crate::local::Due;
use crate::local::IdleCap;

impl<K, V, S> MemoryStore<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// The deadline of an entry written `now` with the TTL deadline `ttl` (0 for none).
    #[inline]
    pub(super) fn due(&self, now: u64, ttl: u64) -> Due {
        Due::at(self.inner.tti, now, ttl)
    }

    /// Records where the entry `hash` keeps its TTL deadline (under the shard lock).
    #[inline]
    pub(super) fn note_due(&self, shard: &mut Shard<K, V>, hash: u64, due: &Due) {
        if self.inner.tti.is_some() {
            shard.note_ttl(hash, flags(due.cap), due.ttl, self.rehash());
        }
    }

    /// A read of a live entry: records it for the policy and moves its idle deadline.
    /// `inline(always)`: with two callers (`get`, `get_counting_also`) LLVM kept it out of line
    /// at the `#[inline]` hint, a call on every bounded read (+18 instructions per op on the
    /// bounded 95/5 mix, `benches/compare/getcost.rs`).
    #[inline(always)]
    pub(super) fn on_read(&self, shard: &Shard<K, V>, hash: u64, slot: &Slot<K, V>) {
        match self.inner.tti {
            None => slot.touch(),
            Some(tti) => {
                let idle = self.now().saturating_add(tti);
                if idle <= slot.deadline() {
                    // Read again within the same millisecond: nothing moves, and the side map
                    // (a second random memory access) is not looked at. The policy's read bit
                    // still goes through the compare-and-swap, so it cannot undo a racing
                    // reader's extension.
                    if self.inner.bounded {
                        slot.extend_idle(idle, None, true);
                    }
                    return;
                }
                let ttl = shard.side_ttl(hash, slot.idle_flags());
                slot.extend_idle(idle, ttl, self.inner.bounded);
            }
        }
    }

    /// The live value under `key` and its TTL deadline (Unix ms, 0: none): with
    /// `time_to_idle`, the deadline its TTL asked for, not the idle one that comes first. Only
    /// looks: no read is counted and no deadline moves (a DiskStore writer decides on it, and
    /// its write rewrites the entry anyway).
    #[cfg(feature = "disk")]
    pub(crate) fn peek_ttl_deadline<Q>(&self, key: &Q) -> Option<(V, u64)>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let shard = self.shard(hash).read();
        let slot = shard.table.find(hash, |s| s.key.borrow() == key)?;
        if slot.is_expired(self.clock()) {
            return None;
        }
        let flags = slot.idle_flags();
        let ttl = match self.inner.tti {
            Some(_) if flags & CAPPED == 0 => shard.side_ttl(hash, flags).unwrap_or(0),
            _ => slot.deadline(),
        };
        Some((slot.value.clone(), ttl))
    }

    /// An in-place write of a live entry that keeps its TTL (a counter's `incr`): its idle
    /// deadline starts again. Returns the deadline to schedule (0: none changed).
    pub(super) fn restart_idle(
        &self,
        shard: &mut Shard<K, V>,
        hash: u64,
        key: &K,
        now: u64,
    ) -> u64 {
        if self.inner.tti.is_none() {
            return 0;
        }
        let Some(slot) = shard.table.find(hash, |s| s.key == *key) else {
            return 0;
        };
        let current = slot.idle_flags();
        if current & CAPPED != 0 {
            return 0;
        }
        let due = self.due(now, shard.side_ttl(hash, current).unwrap_or(0));
        if let Some(slot) = shard.table.find_mut(hash, |s| s.key == *key) {
            slot.set_deadline(due.deadline, flags(due.cap));
        }
        self.note_due(shard, hash, &due);
        due.deadline
    }
}

/// The slot's idle flags for `cap`.
#[inline]
pub(super) fn flags(cap: IdleCap) -> u64 {
    match cap {
        IdleCap::Free => 0,
        IdleCap::Capped => CAPPED,
        IdleCap::SideTtl => super::shard::SIDE_TTL,
    }
}
