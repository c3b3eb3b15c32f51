//! `time_to_idle` in a GenerationalStore: an entry expires `tti` after its last read or write,
//! or at its TTL deadline if that comes first (moka's semantics; the rule is `local::Due`,
//! shared with MemoryStore).
//!
//! The entry's `deadline` holds whichever deadline comes first, so expiry checks, `ttl` and the
//! purge work unchanged; its `cap` (a byte in the slot's padding: no size cost) says whether
//! the TTL deadline came first (`Capped`: reads no longer move it) or is later and kept in the
//! partition's `ttls` side map (`SideTtl`). Reads that move a deadline take the partition's
//! write lock (the slot is not atomic), so a store with `time_to_idle` reads through the same
//! path as a hit in the older generation; a store without it reads as before.

use std::hash::Hash;

use super::{
    partition::{Partition, Slot, Ttls},
    store::GenerationalStore,
};
use crate::local::{Due, IdleCap};

impl<K, V> GenerationalStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The deadline of an entry written now with the TTL deadline `ttl` (0 for none).
    #[inline]
    pub(super) fn due(&self, ttl: u64) -> Due {
        Due::at(self.inner.tti, self.now(), ttl)
    }

    /// True if reads move deadlines (the store has `time_to_idle`).
    #[inline]
    pub(super) fn idles(&self) -> bool {
        self.inner.tti.is_some()
    }

    /// Gives `slot` (of hash `hash`) the deadline `due` and records where its TTL lives.
    pub(super) fn apply_due(&self, slot: &mut Slot<K, V>, ttls: &mut Ttls, hash: u64, due: &Due) {
        slot.deadline = due.deadline;
        slot.cap = due.cap;
        if due.cap == IdleCap::SideTtl {
            ttls.insert(hash, due.ttl);
        } else if !ttls.is_empty() {
            ttls.remove(&hash);
        }
    }

    /// A read of the live `slot`: its idle deadline starts again (never past its TTL).
    pub(super) fn read_idle(&self, slot: &mut Slot<K, V>, ttls: &Ttls, hash: u64) {
        let Some(tti) = self.inner.tti else { return };
        let side = (slot.cap == IdleCap::SideTtl)
            .then(|| ttls.get(&hash).copied())
            .flatten();
        let idle = self.now().saturating_add(tti);
        if let Some((deadline, cap)) = Due::on_read(slot.deadline, slot.cap, side, idle) {
            slot.deadline = deadline;
            slot.cap = cap;
        }
    }

    /// An in-place write of the live `slot` that keeps its TTL (`incr`): the idle time starts
    /// again.
    pub(super) fn restart_idle(&self, slot: &mut Slot<K, V>, ttls: &mut Ttls, hash: u64) {
        if !self.idles() || slot.cap == IdleCap::Capped {
            return;
        }
        let ttl = match slot.cap {
            IdleCap::SideTtl => ttls.get(&hash).copied().unwrap_or(0),
            _ => 0,
        };
        let due = self.due(ttl);
        self.apply_due(slot, ttls, hash, &due);
    }

    /// Records the TTL of a slot just inserted with `due` (under the partition lock), and
    /// forgets side TTLs of entries gone when they outnumber the entries.
    pub(super) fn note_due(&self, p: &mut Partition<K, V>, hash: u64, due: &Due) {
        if !self.idles() {
            return;
        }
        if due.cap == IdleCap::SideTtl {
            p.ttls.insert(hash, due.ttl);
        } else {
            p.ttls.remove(&hash);
        }
        let entries = p.newer.table.len() + p.older.table.len();
        if p.ttls.len() > 2 * entries + 64 {
            let side: std::collections::HashSet<u64, foldhash::fast::RandomState> = p
                .newer
                .table
                .iter()
                .chain(p.older.table.iter())
                .filter(|s| s.cap == IdleCap::SideTtl)
                .map(|s| self.hash(&s.key))
                .collect();
            p.ttls.retain(|hash, _| side.contains(hash));
        }
    }
}
