//! The eviction policy of a bounded `MemoryStore`: S3-FIFO, per shard.
//!
//! S3-FIFO is from Juncheng Yang, Yazhuo Zhang, Ziyue Qiu, Yao Yue and K. V. Rashmi, "FIFO queues
//! are all you need for cache eviction", SOSP 2023 (<https://doi.org/10.1145/3600006.3613147>).
//! In this code's terms:
//!
//! - a new entry joins the **small queue**, which holds about 2 % of the shard's entries (the
//!   paper's 10 % measured worse here, see `SMALL_PERMILLE`);
//! - when the shard is full, the entry at the head of the small queue leaves it: if it was read
//!   since it arrived it moves to the **main queue**, otherwise it is evicted and its hash is
//!   remembered in the **ghost** (a one-hit wonder, such as every key of a scan, is gone after
//!   one short stay and never displaces the hot set in the main queue);
//! - the main queue is a FIFO with a second chance (CLOCK): its head goes back to the tail while
//!   it has reads left (at most 3, one spent per pass), and is evicted when it has none;
//! - a new entry whose hash the ghost remembers was evicted from the small queue lately and is
//!   back: it goes straight to the main queue.
//!
//! Reads only record themselves in the entry's two frequency bits (a relaxed load and store
//! under the shard's read lock, skipped once the count is at 3): no queue moves on a hit, which
//! is what lets S3-FIFO read at the speed of an unbounded map. All queue work happens on writes,
//! under the shard's write lock.
//!
//! Costs per entry: the frequency and queue bits live in the spare top bits of the entry's
//! deadline word (0 B); each queue holds the entry's 8-byte hash; the ghost is a direct-mapped
//! array of 4-byte fingerprints with 0.75 slot per entry of capacity (3 B per entry; a
//! colliding newcomer takes the slot over, which approximates the paper's FIFO ghost with
//! random replacement; see `GHOST_PERCENT` for its size).
//!
//! Queues are never searched: a delete, an expiry or an overwrite leaves the entry's hash in its
//! queue, and the hash is skipped when it reaches the head (its entry is gone, or is now in the
//! other queue). When the queues hold more than twice as many hashes as the shard has entries,
//! they are rebuilt from the table.

use std::collections::VecDeque;

use super::shard::{Shard, Slot};

/// The small queue's share of the shard's entries, in thousandths. The paper uses 10 %; on our
/// hit-ratio bench (`benches/compare/hitratio.rs`, 18 columns; with the ghost below) 2 % gained
/// 0.2–1.3 points on 11 of the 12 Zipf columns (the 12th moved by -0.05, within the spread of
/// the hasher's random seed) and 8–14 points on the loop columns, as quick_cache's 3 % cold
/// ring does:
/// a shorter probation leaves more room to the main queue, and the ghost still catches the
/// keys that come back.
const SMALL_PERMILLE: usize = 20;

/// Ghost slots per 100 entries of capacity. The paper's ghost holds as many entries as the main
/// queue; a direct-mapped ghost that large remembered keys evicted too long ago (they then
/// displaced the main queue's frequent entries: 1 point lost on Zipf, 12 on a loop at 20 %
/// capacity). Measured 25–400: 75 is the best worst column; smaller favours Zipf, larger the
/// shifting hot set.
const GHOST_PERCENT: usize = 75;

/// One shard's policy state and limits.
pub(crate) struct Policy {
    small: VecDeque<u64>,
    main: VecDeque<u64>,
    /// Fingerprints of hashes lately evicted from the small queue (0: empty).
    ghost: Box<[u32]>,
    /// This shard's share of `max_capacity` (`usize::MAX`: none).
    pub max_entries: usize,
    /// This shard's share of `max_weight` (`u64::MAX`: none).
    pub max_weight: u64,
    /// The weight of the entries in the table (0 unless the store has a weigher).
    pub weight: u64,
}

impl Policy {
    /// A policy for a shard holding at most `max_entries` entries and `max_weight` weight,
    /// remembering about `ghost_slots` evicted hashes.
    pub fn new(max_entries: usize, max_weight: u64, ghost_slots: usize) -> Self {
        let slots = (ghost_slots * GHOST_PERCENT / 100).clamp(16, 1 << 24);
        Policy {
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: vec![0; slots].into_boxed_slice(),
            max_entries,
            max_weight,
            weight: 0,
        }
    }

    /// True if `entries` entries of total weight `weight` exceed this shard's limits.
    #[inline]
    pub fn over(&self, entries: usize, weight: u64) -> bool {
        entries > self.max_entries || weight > self.max_weight
    }

    /// Queues a new entry's hash; true if it goes to the main queue (the ghost remembered it).
    #[inline]
    pub fn enqueue(&mut self, hash: u64) -> bool {
        let to_main = self.recall(hash);
        if to_main {
            self.main.push_back(hash);
        } else {
            self.small.push_back(hash);
        }
        to_main
    }

    /// The ghost slot for `hash` (any slot count: a multiply-shift, not a mask, so the ghost
    /// is sized to the capacity and not rounded to a power of two) and its fingerprint there.
    fn ghost_slot(&self, hash: u64) -> (usize, u32) {
        let index = ((u64::from(hash as u32) * self.ghost.len() as u64) >> 32) as usize;
        (index, (hash >> 32) as u32 | 1)
    }

    fn remember(&mut self, hash: u64) {
        let (i, fingerprint) = self.ghost_slot(hash);
        self.ghost[i] = fingerprint;
    }

    fn recall(&mut self, hash: u64) -> bool {
        let (i, fingerprint) = self.ghost_slot(hash);
        let hit = self.ghost[i] == fingerprint;
        if hit {
            self.ghost[i] = 0;
        }
        hit
    }

    /// Which queue to take the next candidate from: the small one while it holds its share.
    fn take_small(&self, entries: usize) -> bool {
        self.main.is_empty() || self.small.len() * 1000 > entries * SMALL_PERMILLE
    }

    fn queued(&self) -> usize {
        self.small.len() + self.main.len()
    }

    /// Forgets every queued hash and ghost (after the table was emptied).
    pub fn clear(&mut self) {
        self.small.clear();
        self.main.clear();
        self.ghost.fill(0);
        self.weight = 0;
    }
}

/// What came off a queue's head.
enum Candidate {
    /// Its entry is gone or in the other queue: nothing to do.
    Stale,
    /// Moved on (small to main, or round the main queue again).
    Kept,
    /// To be evicted.
    Evict,
}

impl<K, V> Shard<K, V> {
    /// Evicts one entry by S3-FIFO and returns it; `None` if nothing can be evicted (the queues
    /// are empty, or hold only `protected`). `rehash` recomputes an entry's hash from its key.
    pub fn evict_one(
        &mut self,
        rehash: &impl Fn(&K) -> u64,
        protected: &impl Fn(&K) -> bool,
    ) -> Option<Slot<K, V>> {
        self.compact_queues(rehash);
        let mut kept_protected = 0;
        loop {
            let policy = self.policy.as_deref_mut()?;
            let small = policy.take_small(self.table.len());
            let queue = if small {
                &mut policy.small
            } else {
                &mut policy.main
            };
            let hash = queue.pop_front()?;
            let found = self.table.find_entry(hash, |s| rehash(&s.key) == hash);
            let Ok(mut entry) = found else { continue };
            let slot = entry.get_mut();
            if protected(&slot.key) {
                slot.enter_main();
                policy.main.push_back(hash);
                kept_protected += 1;
                if kept_protected > 1 && self.table.len() <= 1 {
                    return None;
                }
                continue;
            }
            match judge(slot, small) {
                Candidate::Stale => {}
                Candidate::Kept => policy.main.push_back(hash),
                Candidate::Evict => {
                    if small {
                        policy.remember(hash);
                    }
                    return Some(entry.remove().0);
                }
            }
        }
    }

    /// Rebuilds the queues from the table when stale hashes outnumber the entries (deletes and
    /// expiries leave theirs behind). Order within each queue is lost; membership is kept.
    fn compact_queues(&mut self, rehash: &impl Fn(&K) -> u64) {
        let Some(policy) = self.policy.as_deref_mut() else {
            return;
        };
        if policy.queued() <= 2 * self.table.len() + 64 {
            return;
        }
        policy.small.clear();
        policy.main.clear();
        for slot in self.table.iter() {
            let queue = if slot.in_main() {
                &mut policy.main
            } else {
                &mut policy.small
            };
            queue.push_back(rehash(&slot.key));
        }
    }
}

/// The S3-FIFO step for the entry at a queue's head (`small`: the small queue's).
fn judge<K, V>(slot: &mut Slot<K, V>, small: bool) -> Candidate {
    if slot.in_main() == small {
        return Candidate::Stale;
    }
    if small {
        if slot.freq() > 0 {
            slot.enter_main();
            return Candidate::Kept;
        }
        return Candidate::Evict;
    }
    if slot.freq() > 0 {
        slot.spend_freq();
        return Candidate::Kept;
    }
    Candidate::Evict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(max_entries: usize) -> Shard<u64, u64> {
        Shard::new(Some(Policy::new(max_entries, u64::MAX, max_entries)))
    }

    /// A hash that spreads small keys over all 64 bits, as the store's hasher does.
    fn hash(key: &u64) -> u64 {
        key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// Inserts `key` the way the store does: queue first, then the table.
    fn insert(shard: &mut Shard<u64, u64>, key: u64) {
        let mut slot = Slot::new(key, key, 0);
        if shard.policy.as_mut().unwrap().enqueue(hash(&key)) {
            slot.enter_main();
        }
        shard
            .table
            .insert_unique(hash(&key), slot, |s| hash(&s.key));
        while shard.table.len() > shard.policy.as_ref().unwrap().max_entries {
            shard.evict_one(&hash, &|_: &u64| false).unwrap();
        }
    }

    fn read(shard: &Shard<u64, u64>, key: u64) -> bool {
        let found = shard.table.find(hash(&key), |s| s.key == key);
        found.inspect(|s| s.touch()).is_some()
    }

    #[test]
    fn a_read_entry_survives_a_stream_of_one_hit_wonders() {
        let mut shard = shard(20);
        for key in 0..20 {
            insert(&mut shard, key);
        }
        for key in 0..10 {
            assert!(read(&shard, key));
        }
        for key in 1000..1500 {
            insert(&mut shard, key);
        }
        for key in 0..10 {
            assert!(read(&shard, key), "hot key {key} evicted by a scan");
        }
        assert_eq!(shard.table.len(), 20);
    }

    #[test]
    fn a_key_evicted_from_the_small_queue_and_back_goes_to_main() {
        let mut shard = shard(20);
        for key in 0..40 {
            insert(&mut shard, key);
        }
        assert!(!read(&shard, 0), "key 0 evicted unread");
        insert(&mut shard, 0);
        let slot = shard.table.find(hash(&0), |s| s.key == 0).unwrap();
        assert!(slot.in_main(), "the ghost sends a returning key to main");
    }

    #[test]
    fn stale_hashes_are_compacted() {
        let mut shard = shard(100);
        for round in 0..200 {
            insert(&mut shard, round);
            if let Ok(entry) = shard.table.find_entry(hash(&round), |s| s.key == round) {
                entry.remove();
            }
        }
        assert!(shard.policy.as_ref().unwrap().queued() > 2 * shard.table.len() + 64);
        insert(&mut shard, 7_000);
        shard.evict_one(&hash, &|_: &u64| false);
        assert!(shard.policy.as_ref().unwrap().queued() <= 2 * shard.table.len() + 64);
    }
}
