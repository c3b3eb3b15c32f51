//! One shard: a hash table of entries and a coarse index of their deadlines.

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicU64, Ordering},
};

use hashbrown::HashTable;

use super::policy::Policy;
use crate::time::Clock;

/// Deadlines are grouped into buckets of 2^6 = 64 ms. The sweeper handles a bucket once all of it
/// has passed, so expired entries are *removed* (and their events sent) at most 64 ms late;
/// reads check the exact deadline and never return an expired entry.
const BUCKET_SHIFT: u32 = 6;

/// The low 48 bits of [`Slot::meta`]: the deadline in Unix milliseconds (0 for none; 48 bits
/// last until the year 10889).
const DEADLINE_MASK: u64 = (1 << 48) - 1;
/// Bits 48–49: how often the entry was read since it last went round its queue (0–3).
const FREQ_SHIFT: u32 = 48;
const FREQ_MASK: u64 = 0b11 << FREQ_SHIFT;
/// Bit 50: the entry sits in the policy's main queue (else in its small queue).
const MAIN_BIT: u64 = 1 << 50;
/// The bits a bounded store's policy owns, kept across overwrites and TTL changes.
const POLICY_BITS: u64 = FREQ_MASK | MAIN_BIT;
/// Bit 51, in a store with `time_to_idle` only: the deadline is the entry's TTL deadline
/// (reached before its idle deadline), so reads no longer move it.
pub(crate) const CAPPED: u64 = 1 << 51;
/// Bit 52, in a store with `time_to_idle` only: the entry has a TTL deadline later than its
/// idle deadline, kept in the shard's `ttls` (so entries pay for it only in such a store).
pub(crate) const SIDE_TTL: u64 = 1 << 52;
const IDLE_BITS: u64 = CAPPED | SIDE_TTL;

/// An entry. Its deadline and a bounded store's policy bits share one word, so the policy
/// costs no memory in the entry: `meta` is atomic only so a read under the shard's *read* lock
/// can record the access (readers race only with readers there, on the frequency bits; the
/// deadline changes under the write lock).
pub(crate) struct Slot<K, V> {
    pub key: K,
    pub value: V,
    meta: AtomicU64,
}

impl<K, V> Slot<K, V> {
    /// An entry expiring at `deadline` (Unix ms, 0 for never), fresh to the policy.
    #[inline]
    pub fn new(key: K, value: V, deadline: u64) -> Self {
        Slot {
            key,
            value,
            meta: AtomicU64::new(deadline & DEADLINE_MASK),
        }
    }

    #[inline]
    fn meta(&self) -> u64 {
        self.meta.load(Ordering::Relaxed)
    }

    /// The deadline in Unix milliseconds, 0 for none.
    #[inline]
    pub fn deadline(&self) -> u64 {
        self.meta() & DEADLINE_MASK
    }

    /// An entry expiring at `deadline` with the idle `flags` ([`CAPPED`], [`SIDE_TTL`]).
    #[inline]
    pub fn with_flags(key: K, value: V, deadline: u64, flags: u64) -> Self {
        let mut slot = Slot::new(key, value, deadline);
        *slot.meta.get_mut() |= flags & IDLE_BITS;
        slot
    }

    /// Sets the deadline and the idle flags, keeping the policy bits.
    #[inline]
    pub fn set_deadline(&mut self, deadline: u64, flags: u64) {
        let meta = self.meta.get_mut();
        *meta = (*meta & POLICY_BITS) | (deadline & DEADLINE_MASK) | (flags & IDLE_BITS);
    }

    /// The idle flags ([`CAPPED`], [`SIDE_TTL`]).
    #[inline]
    pub fn idle_flags(&self) -> u64 {
        self.meta() & IDLE_BITS
    }

    /// A read in a store with `time_to_idle`: moves the deadline to `idle` (now + the idle
    /// time), or to the TTL deadline `ttl` if that comes first (then marks it [`CAPPED`]);
    /// never earlier. Records the read for the policy too if `touch`. One compare-and-swap
    /// loop, so racing readers neither lose an extension nor a recorded read.
    #[inline]
    pub fn extend_idle(&self, idle: u64, ttl: Option<u64>, touch: bool) {
        let mut seen = self.meta();
        while let Err(current) = self.try_extend_idle(seen, idle, ttl, touch) {
            seen = current;
        }
    }

    /// One step of [`extend_idle`](Self::extend_idle), from the word as it was `seen`: fails
    /// with the word as it is if another reader changed it since (the caller tries again from
    /// there, so neither reader's extension nor its read is lost).
    #[inline]
    fn try_extend_idle(
        &self,
        seen: u64,
        idle: u64,
        ttl: Option<u64>,
        touch: bool,
    ) -> Result<(), u64> {
        let next = idle_extended(seen, idle, ttl, touch);
        if next == seen {
            return Ok(());
        }
        let swap = self
            .meta
            .compare_exchange(seen, next, Ordering::Relaxed, Ordering::Relaxed);
        swap.map(drop)
    }

    /// True if the entry has a deadline and it has passed; reads the clock only then, and
    /// exactly (see [`Clock::is_due`]).
    #[inline]
    pub fn is_expired(&self, clock: &Clock) -> bool {
        let deadline = self.deadline();
        deadline != 0 && clock.is_due(deadline)
    }

    /// True if the entry had expired by `now`: for sweeps over many entries with one reading.
    /// A `now` from the coarse clock is never ahead of the true time, so what this calls
    /// expired is.
    #[inline]
    pub fn expired_at(&self, now: u64) -> bool {
        let deadline = self.deadline();
        deadline != 0 && deadline <= now
    }

    /// Replaces this entry by `new` in place, keeping the policy bits (the entry keeps its
    /// place in the policy's queues); returns the old entry.
    #[inline]
    pub fn overwrite(&mut self, mut new: Slot<K, V>) -> Slot<K, V> {
        let kept = *self.meta.get_mut() & POLICY_BITS;
        *new.meta.get_mut() |= kept;
        std::mem::replace(self, new)
    }

    /// Records a read (saturating at 3). A plain load and store, not a read-modify-write:
    /// two racing readers may count one read between them, which only makes the estimate low.
    #[inline]
    pub fn touch(&self) {
        let meta = self.meta();
        if meta & FREQ_MASK != FREQ_MASK {
            self.meta.store(meta + (1 << FREQ_SHIFT), Ordering::Relaxed);
        }
    }

    /// Reads recorded since the entry last went round its queue.
    #[inline]
    pub fn freq(&self) -> u64 {
        (self.meta() & FREQ_MASK) >> FREQ_SHIFT
    }

    /// Spends one recorded read (the entry goes round the main queue once more).
    #[inline]
    pub fn spend_freq(&mut self) {
        let meta = self.meta.get_mut();
        if *meta & FREQ_MASK != 0 {
            *meta -= 1 << FREQ_SHIFT;
        }
    }

    /// True if the entry sits in the main queue.
    #[inline]
    pub fn in_main(&self) -> bool {
        self.meta() & MAIN_BIT != 0
    }

    /// Moves the entry to the main queue (or marks it as entering there), keeping its reads:
    /// an entry read while in the small queue gets that many passes round the main queue.
    #[inline]
    pub fn enter_main(&mut self) {
        *self.meta.get_mut() |= MAIN_BIT;
    }
}

/// The deadline word `meta` after a read in a store with `time_to_idle` (see
/// [`Slot::extend_idle`]).
#[inline]
fn idle_extended(meta: u64, idle: u64, ttl: Option<u64>, touch: bool) -> u64 {
    let mut next = meta;
    if meta & CAPPED == 0 {
        let (deadline, capped) = match ttl {
            Some(ttl) if ttl <= idle => (ttl, CAPPED),
            _ => (idle, 0),
        };
        if deadline > meta & DEADLINE_MASK {
            next = (meta & !DEADLINE_MASK) | deadline | capped;
        }
    }
    if touch && next & FREQ_MASK != FREQ_MASK {
        next += 1 << FREQ_SHIFT;
    }
    next
}

pub(crate) use crate::lane::lane_of;

/// TTL deadlines kept beside the table, by entry hash (see [`SIDE_TTL`]).
pub(crate) type Ttls = std::collections::HashMap<u64, u64, foldhash::fast::RandomState>;

/// The deadline index maps a 64 ms bucket to the *hashes* of the entries expiring in it (8 bytes
/// per entry whatever the key type). Writes with the same TTL append to the newest bucket, a
/// sequential write to a hot cache line (a binary heap, tried first, costs a cache miss per push
/// on its parent slot). When a bucket is due, the sweeper removes the entries on each hash's
/// probe path whose deadline has passed. That may take along another expired entry sharing the
/// hash's control byte, which is correct: every entry it removes is expired. Overwritten
/// deadlines stay in the index until their bucket is due (lazy deletion); the index is rebuilt
/// from the table when it holds more than four times as many hashes as the table has entries
/// (so at most 32 bytes of index per entry, 8–16 on average in steady overwrite traffic).
pub(crate) struct Shard<K, V> {
    pub table: HashTable<Slot<K, V>>,
    /// The eviction policy's state, in a bounded store only.
    pub policy: Option<Box<Policy>>,
    /// `(bucket, hashes)`, sorted by bucket.
    buckets: VecDeque<(u64, Vec<u64>)>,
    indexed: usize,
    /// In a store with `time_to_idle`: the TTL deadlines of entries flagged [`SIDE_TTL`], by
    /// hash (empty otherwise). Pruned when the index is rebuilt.
    pub ttls: Ttls,
    /// The table's capacity without tombstones (hashbrown's `capacity()` counts only free
    /// slots, so it drops below this as removals leave tombstones).
    full: usize,
}

impl<K, V> Default for Shard<K, V> {
    fn default() -> Self {
        Shard {
            table: HashTable::new(),
            policy: None,
            buckets: VecDeque::new(),
            indexed: 0,
            ttls: Ttls::default(),
            full: 0,
        }
    }
}

impl<K, V> Shard<K, V> {
    /// An empty shard; bounded by `policy` if given.
    pub fn new(policy: Option<Policy>) -> Self {
        Shard {
            full: 0,
            table: HashTable::new(),
            policy: policy.map(Box::new),
            buckets: VecDeque::new(),
            indexed: 0,
            ttls: Ttls::default(),
        }
    }

    /// Call before a write to the table. In a bounded shard whose table has no free slot left
    /// because removals left tombstones, rebuilds the table at its size instead of letting
    /// hashbrown double it (it rehashes in place only when at most half full). Eviction holds
    /// a bounded shard at its share, so a doubled table would stay half empty for good. The
    /// rebuild happens only while it leaves at least an eighth of the table free, so it costs
    /// at most 8 moves per tombstone; a table fuller than that grows as usual.
    #[inline]
    pub fn keep_size(&mut self, rehash: impl Fn(&Slot<K, V>) -> u64) {
        if self.policy.is_none() {
            // `full` serves the check below only, which an unbounded shard never makes.
            return;
        }
        let (len, capacity) = (self.table.len(), self.table.capacity());
        self.full = self.full.max(capacity);
        if capacity == len {
            let free = self.full - len;
            if free > 0 && free >= self.full / 8 {
                self.rebuild_table(rehash);
            }
        }
    }

    /// Moves every entry into a fresh table of the same size, which has no tombstones.
    #[cold]
    fn rebuild_table(&mut self, rehash: impl Fn(&Slot<K, V>) -> u64) {
        let mut fresh = HashTable::with_capacity(self.full);
        for slot in self.table.drain() {
            fresh.insert_unique(rehash(&slot), slot, &rehash);
        }
        self.table = fresh;
    }

    /// Records that the entry with `hash`, whose deadline was `old` (0: none), expires at
    /// `deadline` now. Every entry with a deadline is indexed in its deadline's bucket or an
    /// earlier one; where earlier, the sweeper finds it alive when that bucket is due and
    /// indexes it again at its deadline (`reindex_moved`). So a deadline that moves later needs
    /// nothing now: a hot key rewritten with the same TTL costs the index one hash per TTL
    /// instead of one per 64 ms bucket, and the index neither grows nor needs rebuilding
    /// sooner. A deadline that moves earlier is indexed at once. (With `time_to_idle`, reads
    /// move deadlines later the same way, under the read lock.)
    #[inline]
    pub fn reschedule(&mut self, hash: u64, old: u64, deadline: u64, rehash: impl Fn(&K) -> u64) {
        if old != 0 && old >> BUCKET_SHIFT <= deadline >> BUCKET_SHIFT {
            return;
        }
        self.schedule(hash, deadline, rehash);
    }

    /// The table's capacity without tombstones (7/8 of its buckets).
    #[cfg(test)]
    pub fn table_capacity(&self) -> usize {
        self.full.max(self.table.capacity())
    }

    /// How many hashes the deadline index holds (overwritten ones included).
    #[cfg(test)]
    pub fn indexed(&self) -> usize {
        self.indexed
    }

    /// Records that the entry with `hash` expires at `deadline` (no-op for 0).
    #[inline]
    pub fn schedule(&mut self, hash: u64, deadline: u64, rehash: impl Fn(&K) -> u64) {
        if deadline == 0 {
            return;
        }
        self.index(hash, deadline);
        if self.indexed > 4 * self.table.len() + 64 {
            self.rebuild_deadlines(rehash);
        }
    }

    #[inline]
    fn index(&mut self, hash: u64, deadline: u64) {
        let bucket = deadline >> BUCKET_SHIFT;
        self.indexed += 1;
        // The common case, one TTL for everything: append to the newest bucket.
        if let Some((last, hashes)) = self.buckets.back_mut() {
            if *last == bucket {
                hashes.push(hash);
                return;
            }
        }
        self.index_slow(hash, bucket);
    }

    fn index_slow(&mut self, hash: u64, bucket: u64) {
        match self.buckets.binary_search_by_key(&bucket, |(b, _)| *b) {
            Ok(i) => self.buckets[i].1.push(hash),
            Err(i) => {
                // A new newest bucket closes the previous one to appends (with one TTL for
                // everything): give back its growth slack, so the index costs ~8 B per entry.
                if i == self.buckets.len() {
                    if let Some((_, closed)) = self.buckets.back_mut() {
                        closed.shrink_to_fit();
                    }
                }
                self.buckets.insert(i, (bucket, vec![hash]));
            }
        }
    }

    /// Records (or forgets) the TTL deadline an entry flagged [`SIDE_TTL`] keeps here.
    pub fn note_ttl(&mut self, hash: u64, flags: u64, ttl: u64, rehash: impl Fn(&K) -> u64) {
        if flags & SIDE_TTL != 0 {
            self.ttls.insert(hash, ttl);
            if self.ttls.len() > 2 * self.table.len() + 64 {
                self.rebuild_deadlines(rehash);
            }
        } else if !self.ttls.is_empty() {
            self.ttls.remove(&hash);
        }
    }

    /// The TTL deadline of an entry with these idle `flags`, if it keeps one here.
    #[inline]
    pub fn side_ttl(&self, hash: u64, flags: u64) -> Option<u64> {
        if flags & SIDE_TTL == 0 {
            return None;
        }
        self.ttls.get(&hash).copied()
    }

    #[cold]
    fn rebuild_deadlines(&mut self, rehash: impl Fn(&K) -> u64) {
        if !self.ttls.is_empty() {
            let side: std::collections::HashSet<u64, foldhash::fast::RandomState> = self
                .table
                .iter()
                .filter(|s| s.idle_flags() & SIDE_TTL != 0)
                .map(|s| rehash(&s.key))
                .collect();
            self.ttls.retain(|hash, _| side.contains(hash));
        }
        let live: Vec<(u64, u64)> = self
            .table
            .iter()
            .filter(|s| s.deadline() != 0)
            .map(|s| (s.deadline(), rehash(&s.key)))
            .collect();
        self.clear_deadlines();
        self.schedule_all(live);
    }

    /// Records many `(deadline, hash)` pairs at once (deadline 0: none, skipped), for entries
    /// added without [`schedule`](Self::schedule). Sorted by bucket first, so each bucket is
    /// appended to in one run and closed (its growth slack given back) before the next.
    pub fn schedule_all(&mut self, mut due: Vec<(u64, u64)>) {
        due.retain(|(deadline, _)| *deadline != 0);
        // Sorting by bucket only (a stable radix-like pass would do too); then appends are O(1).
        due.sort_unstable_by_key(|(deadline, _)| *deadline >> BUCKET_SHIFT);
        for (deadline, hash) in due {
            self.index(hash, deadline);
        }
    }

    /// Forgets every scheduled deadline (after the table was emptied).
    pub fn clear_deadlines(&mut self) {
        self.buckets.clear();
        self.indexed = 0;
    }

    /// When the earliest bucket will be fully due, if any deadline is scheduled.
    pub fn next_deadline(&self) -> Option<u64> {
        let (bucket, _) = self.buckets.front()?;
        Some((bucket + 1) << BUCKET_SHIFT)
    }

    /// Processes up to `budget` scheduled hashes from buckets due at `now`, moving the expired
    /// entries found into `out`; returns true if due buckets remain (call again). Once no fully
    /// due bucket remains, the bucket `now` falls in is handled too (its entries not yet due stay
    /// indexed), so a purge that runs to completion is exact.
    pub fn purge(
        &mut self,
        now: u64,
        budget: usize,
        out: &mut Vec<Slot<K, V>>,
        rehash: impl Fn(&K) -> u64,
    ) -> bool {
        let mut done = 0;
        while done < budget {
            let Some((bucket, hashes)) = self.buckets.front_mut() else {
                return false;
            };
            if (*bucket + 1) << BUCKET_SHIFT > now {
                break;
            }
            let take = hashes.len().min(budget - done);
            let batch = hashes.split_off(hashes.len() - take);
            if hashes.is_empty() {
                self.buckets.pop_front();
            }
            done += take;
            self.indexed -= take;
            for hash in batch {
                self.remove_expired(hash, now, out);
                self.reindex_moved(hash, now, &rehash);
            }
        }
        if done >= budget {
            return true;
        }
        self.purge_partial_bucket(now, out, &rehash);
        false
    }

    /// Removes what has expired from the bucket that `now` falls in, keeping the rest indexed.
    fn purge_partial_bucket(
        &mut self,
        now: u64,
        out: &mut Vec<Slot<K, V>>,
        rehash: &impl Fn(&K) -> u64,
    ) {
        let bucket = now >> BUCKET_SHIFT;
        let Ok(i) = self.buckets.binary_search_by_key(&bucket, |(b, _)| *b) else {
            return;
        };
        let Some((_, hashes)) = self.buckets.remove(i) else {
            return;
        };
        self.indexed -= hashes.len();
        for hash in hashes {
            self.remove_expired(hash, now, out);
            let pending =
                |s: &Slot<K, V>| s.deadline() > now && s.deadline() >> BUCKET_SHIFT == bucket;
            if self.table.find(hash, pending).is_some() {
                self.index(hash, bucket << BUCKET_SHIFT | 1);
            }
            self.reindex_moved(hash, ((bucket + 1) << BUCKET_SHIFT) - 1, rehash);
        }
    }

    fn remove_expired(&mut self, hash: u64, now: u64, out: &mut Vec<Slot<K, V>>) {
        while let Ok(entry) = self.table.find_entry(hash, |s| s.expired_at(now)) {
            out.push(entry.remove().0);
            if !self.ttls.is_empty() {
                self.ttls.remove(&hash);
            }
        }
    }

    /// A rewrite (see [`reschedule`](Self::reschedule)) or, with `time_to_idle`, a read may
    /// have moved a due entry's deadline past the bucket being purged without telling the
    /// index: index it again at its new deadline if that is after `after`.
    fn reindex_moved(&mut self, hash: u64, after: u64, rehash: &impl Fn(&K) -> u64) {
        let moved = |s: &Slot<K, V>| s.deadline() > after && rehash(&s.key) == hash;
        if let Some(deadline) = self.table.find(hash, moved).map(Slot::deadline) {
            self.index(hash, deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_with(n: u64) -> Shard<u64, u64> {
        let mut shard = Shard::default();
        for k in 0..n {
            shard.table.insert_unique(k, Slot::new(k, k, 10), |s| s.key);
        }
        shard
    }

    #[test]
    fn overwrites_do_not_grow_the_deadline_index_without_bound() {
        let mut shard = shard_with(100);
        for round in 0..20_000 {
            shard.schedule(round % 100, 10 + round, |k| *k);
        }
        assert!(shard.indexed <= 4 * 100 + 64 + 1, "{}", shard.indexed);
        let in_buckets: usize = shard.buckets.iter().map(|(_, h)| h.len()).sum();
        assert_eq!(in_buckets, shard.indexed);
    }

    fn insert(shard: &mut Shard<u64, u64>, key: u64, deadline: u64) {
        let slot = Slot::new(key, key, deadline);
        shard.table.insert_unique(key, slot, |s| s.key);
        shard.schedule(key, deadline, |k| *k);
    }

    #[test]
    fn racing_idle_extensions_lose_neither_an_extension_nor_a_read() {
        let slot: Slot<u64, u64> = Slot::new(1, 1, 1_000);
        // Reader A reads the word, then reader B extends the deadline and records its read
        // before A writes: A's write must not undo B's.
        let seen_by_a = slot.meta();
        slot.extend_idle(5_000, None, true);
        let retry = slot.try_extend_idle(seen_by_a, 3_000, None, true);
        let current = retry.expect_err("A's word is stale: its write must fail");
        assert_eq!(slot.try_extend_idle(current, 3_000, None, true), Ok(()));
        assert_eq!(slot.deadline(), 5_000, "B's later deadline is kept");
        assert_eq!(slot.freq(), 2, "both reads are recorded");
        // The other order: A's later deadline lands after B read the word.
        let seen_by_b = slot.meta();
        slot.extend_idle(9_000, None, true);
        let current = slot
            .try_extend_idle(seen_by_b, 7_000, None, true)
            .unwrap_err();
        assert_eq!(slot.try_extend_idle(current, 7_000, None, true), Ok(()));
        assert_eq!((slot.deadline(), slot.freq()), (9_000, 3));
    }

    #[test]
    fn purge_removes_due_entries_only_and_respects_the_budget() {
        let mut shard = shard_with(0);
        // Deadlines 60..69 fall in buckets 0 and 1 (64 ms each), 1000 in bucket 15.
        for k in 0..10u64 {
            insert(&mut shard, k, 60 + k);
        }
        insert(&mut shard, 99, 1000);
        let mut out = Vec::new();
        assert!(!shard.purge(59, 100, &mut out, |k| *k));
        assert!(out.is_empty(), "nothing due yet");
        shard.purge(63, 100, &mut out, |k| *k);
        let keys = |out: &[Slot<u64, u64>]| {
            let mut keys: Vec<u64> = out.iter().map(|s| s.key).collect();
            keys.sort();
            keys
        };
        assert_eq!(
            keys(&out),
            [0, 1, 2, 3],
            "a partly due bucket is purged exactly"
        );
        let before = out.len();
        assert!(
            shard.purge(200, 3, &mut out, |k| *k),
            "budget respected: more to do"
        );
        assert!(out.len() - before >= 3);
        // Removing by hash may take other due entries along (they are expired too): never a
        // live one.
        assert!(out.iter().all(|s| s.deadline() <= 200));
        shard.purge(200, 100, &mut out, |k| *k);
        assert_eq!(keys(&out), (0..10).collect::<Vec<_>>());
        assert_eq!(shard.table.len(), 1);
        assert_eq!(shard.next_deadline(), Some(1024));
    }
}
