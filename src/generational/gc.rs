//! Generations and their garbage collection: pushing a new generation, relieving a store that a
//! write took past its limits, the Nebulex timers (heartbeat, clean-up poll with inverse linear
//! back-off, flush delay) and the one background thread per store that runs them.
//!
//! Lock order: `tick` → `rotation` → partition locks → `flush`. Dropped tables are never freed
//! under a partition lock: they are queued here and freed by the GC thread after `gc_flush_delay`
//! (the previous batch at once when a new one arrives, as Nebulex deletes the previously
//! deprecated table), so readers and writers never wait for a big deallocation (nebulex#196).

use std::{
    collections::HashSet,
    hash::Hash,
    sync::{OnceLock, Weak},
    thread::{JoinHandle, Thread},
    time::Duration,
};

use hashbrown::HashTable;
use parking_lot::Mutex;

use super::{
    builder::Options,
    partition::{Gen, Partition, Slot, Which},
    store::{GenerationalStore, Inner},
};
use crate::{
    events::{EventKind, RemovalCause},
    stats::Counter as Stat,
    time::ttl_ms,
};

/// The longest the GC thread sleeps on the system clock without checking its timers.
const MAX_NAP: Duration = Duration::from_secs(5);

/// Admission mode: entries read at least this often lately survive a new generation.
const RESCUE_READS: u8 = 2;

/// Admission mode: a candidate read at least this often lately that loses to its victim still
/// wins once in 128 (Caffeine's `admit`).
const JITTER_READS: u8 = 6;

/// Admission mode: admission tests in a row, in one partition, each after misses only by the
/// judging thread, after which the store takes the run for a scan (the scan guard,
/// `in_scan`). At the lowest hit ratio of the hit-ratio bench's Zipf columns (46 %) a run
/// that long comes once in 10^17 misses.
pub(super) const SCAN_RUN: u32 = 64;

/// Admission mode: how many entries in line a rejected candidate's stand-in is chosen from.
const SAMPLE: usize = 8;

type Table<K, V> = HashTable<Slot<K, V>>;

/// Dropped tables waiting to be freed.
struct Pending<K, V> {
    due: u64,
    tables: Vec<Table<K, V>>,
}

/// When the timers fire next (Unix ms).
struct Timers {
    heartbeat: Option<u64>,
    cleanup: Option<u64>,
}

/// The GC's state inside a store.
pub(crate) struct Gc<K, V> {
    tick: Mutex<Timers>,
    rotation: Mutex<()>,
    flush: Mutex<Vec<Pending<K, V>>>,
    thread: OnceLock<Option<Thread>>,
    /// The GC thread's handle, kept so a test can check that dropping the store ends it.
    join: Mutex<Option<JoinHandle<()>>>,
}

impl<K, V> Gc<K, V> {
    pub fn new(opts: &Options, now: u64) -> Self {
        let after = |d: Duration| now.saturating_add(ttl_ms(d));
        Gc {
            tick: Mutex::new(Timers {
                heartbeat: opts.gc_interval.map(after),
                cleanup: opts
                    .has_limits()
                    .then(|| after(opts.gc_cleanup_max_timeout)),
            }),
            rotation: Mutex::new(()),
            flush: Mutex::new(Vec::new()),
            thread: OnceLock::new(),
            join: Mutex::new(None),
        }
    }

    /// Wakes the GC thread, if it runs.
    pub fn wake(&self) {
        if let Some(Some(thread)) = self.thread.get() {
            thread.unpark();
        }
    }
}

/// Nebulex's inverse linear back-off: the poll period shrinks from `max` (empty) to `min` (at
/// the limit) in proportion to how full the store is.
pub(crate) fn backoff(value: u64, limit: u64, min: Duration, max: Duration) -> Duration {
    if value == 0 {
        return max;
    }
    if value >= limit {
        return min;
    }
    let (min_ms, max_ms) = (min.as_millis() as f64, max.as_millis() as f64);
    let ms = (min_ms - max_ms) / limit as f64 * value as f64 + max_ms;
    Duration::from_millis(ms.round() as u64)
}

impl<K, V> GenerationalStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Queues `tables` to be freed after the flush delay; the previous batch becomes due now.
    pub(super) fn defer_flush(&self, tables: Vec<Table<K, V>>) {
        if tables.iter().all(HashTable::is_empty) {
            return;
        }
        let now = self.now();
        let due = now.saturating_add(ttl_ms(self.inner.opts.gc_flush_delay));
        let gc = &self.inner.gc;
        let mut queue = gc.flush.lock();
        queue.iter_mut().for_each(|p| p.due = p.due.min(now));
        queue.push(Pending { due, tables });
        drop(queue);
        if self.gc_thread() {
            gc.wake();
        } else {
            drop(std::mem::take(&mut *gc.flush.lock())); // no thread: free here
        }
    }

    /// Pushes a new generation: the newer generation becomes the older one and the older one is
    /// dropped (its entries count as evictions, with `Generation` events). `reset_timer` restarts
    /// the `gc_interval` heartbeat from now. Returns how many entries were dropped.
    pub fn new_generation(&self, reset_timer: bool) -> usize {
        let dropped = self.rotate();
        if reset_timer {
            self.reset_generation_timer();
        }
        self.deliver_if(dropped);
        dropped
    }

    /// Restarts the `gc_interval` heartbeat from now (Nebulex `reset_generation_timer`).
    pub fn reset_generation_timer(&self) {
        if let Some(interval) = self.inner.opts.gc_interval {
            let next = self.now().saturating_add(ttl_ms(interval));
            self.inner.gc.tick.lock().heartbeat = Some(next);
            self.inner.gc.wake();
        }
    }

    /// Rotates every partition. The removals it queues for a listener are delivered by the
    /// caller once it holds none of the GC's locks ([`deliver_all`](Self::deliver_all)).
    fn rotate(&self) -> usize {
        let _rotation = self.inner.gc.rotation.lock();
        self.rotate_locked(None)
    }

    /// Rotates every partition; in admission mode the entry with hash `protect` (the one a writer
    /// just wrote) survives.
    fn rotate_locked(&self, protect: Option<u64>) -> usize {
        let tally = &self.inner.tally;
        let mut dropped = Vec::with_capacity(self.inner.partitions.len());
        let mut handed_over = 0;
        for (index, p) in self.inner.partitions.iter().enumerate() {
            let mut p = p.write();
            let demoted: Vec<u64> = match self.inner.sketch {
                Some(_) => p.newer.table.iter().map(|s| self.hash(&s.key)).collect(),
                None => Vec::new(),
            };
            let newer = std::mem::take(&mut p.newer);
            let mut older = std::mem::replace(&mut p.older, newer);
            let (moved_len, moved_bytes) = (p.older.table.len() as i64, p.older.bytes as i64);
            tally.add(Which::Newer, -moved_len, -moved_bytes);
            tally.add(
                Which::Older,
                moved_len - older.table.len() as i64,
                moved_bytes - older.bytes as i64,
            );
            if self.inner.sketch.is_some() {
                let rescued = self.rescue_frequent(&mut older, &mut p.older, protect);
                // The rescued entries were unread for a generation: they go first.
                p.queue = rescued.into_iter().chain(demoted).collect();
                p.rejected = None;
            }
            handed_over += self.hand_over_table(index, &mut older.table, RemovalCause::Generation);
            drop(p);
            dropped.push(older.table);
        }
        handed_over + self.evicted(dropped, EventKind::Generation)
    }

    /// Admission mode: keeps the often-read entries of a dropped generation in the new older one
    /// (they stay evictable, least read first), so a generation does not flush the hot set.
    fn rescue_frequent(
        &self,
        dropped: &mut Gen<K, V>,
        older: &mut Gen<K, V>,
        protect: Option<u64>,
    ) -> Vec<u64> {
        let frequent = |s: &mut Slot<K, V>| {
            let hash = self.hash(&s.key);
            Some(hash) == protect || self.read_count_of(hash) >= RESCUE_READS
        };
        let rescued: Vec<Slot<K, V>> = dropped.table.extract_if(frequent).collect();
        let mut hashes = Vec::with_capacity(rescued.len());
        for slot in rescued {
            dropped.bytes -= u64::from(slot.weight);
            self.inner.tally.slot(Which::Older, slot.weight, 1);
            let hash = self.hash(&slot.key);
            older.insert_new(hash, slot, self.rehash());
            hashes.push(hash);
        }
        hashes
    }

    /// Counts and announces evicted tables, then queues them to be freed.
    fn evicted(&self, tables: Vec<Table<K, V>>, kind: EventKind) -> usize {
        let count = tables.iter().map(HashTable::len).sum::<usize>();
        self.inner.stats.add(Stat::Evictions, count as u64);
        if self.inner.events.is_active() {
            let keys = tables.iter().flat_map(HashTable::iter);
            keys.for_each(|s| self.inner.events.emit(&s.key, kind));
        }
        self.defer_flush(tables);
        count
    }

    /// True if a write took the store past a limit (strictly: a store may be full).
    fn over_limit(&self) -> bool {
        let (opts, tally) = (&self.inner.opts, &self.inner.tally);
        opts.max_size.is_some_and(|m| tally.total_len() > m)
            || opts
                .allocated_memory
                .is_some_and(|m| tally.total_bytes() > m)
    }

    /// True if the newer generation holds at least half a limit, rounded up: then a new
    /// generation frees enough. Rounded up, never zero (issue 12, item 7): with `m / 2` a limit
    /// of 1 rotated twice per put (evicting the entry just written) and a limit of 3 held one
    /// entry. With `h = ceil(m / 2)` the older generation holds at most `h` and the newer one at
    /// most `h - 1` between writes, so the store holds `h..=2h - 1 <= m` entries once full.
    fn newer_is_big(&self) -> bool {
        let (opts, tally) = (&self.inner.opts, &self.inner.tally);
        opts.max_size
            .is_some_and(|m| tally.len(Which::Newer) >= half_limit(m))
            || opts
                .allocated_memory
                .is_some_and(|m| tally.bytes(Which::Newer) >= half_limit(m))
    }

    /// True if moving an entry of `weight` from the older to the newer generation keeps the
    /// newer one under half a limit (always true without limits). Reads and in-place updates
    /// promote only then, so only a write ever makes the newer generation reach half a limit,
    /// and that write rotates at once: the bound of `newer_is_big` holds after reads too, and a
    /// put's `relieve` never races readers that keep refilling the newer generation.
    pub(super) fn promotion_fits(&self, weight: u32) -> bool {
        let (opts, tally) = (&self.inner.opts, &self.inner.tally);
        let len = tally.len(Which::Newer) + 1;
        let bytes = tally.bytes(Which::Newer) + u64::from(weight);
        opts.max_size.is_none_or(|m| len < half_limit(m))
            && opts.allocated_memory.is_none_or(|m| bytes < half_limit(m))
    }

    /// Called after every write that may have grown the store: pushes a new generation as soon
    /// as the newer one holds half a limit, so the older one (at most the other half) plus the
    /// newer one stay within the limit (the fix for nebulex#184/#247: no waiting for a poll).
    #[inline]
    pub(super) fn enforce_limits(&self, index: usize, written: u64) {
        let admitting = self.inner.sketch.is_some();
        if self.inner.opts.has_limits()
            && (self.over_limit()
                || if admitting {
                    self.newer_full()
                } else {
                    self.newer_is_big()
                })
        {
            self.relieve(index, written);
        }
    }

    /// Rotates while the newer generation is big; if the store is still over a limit (entries
    /// of very different weights), drops older partitions one by one. Runs until the store is
    /// within its limits: a fixed number of steps let a put racing other writers return over
    /// `max_size`. Only the documented exception stops it early: after a full round, a store
    /// holding nothing but the entry just written (heavier than the limit) is left as it is.
    #[cold]
    fn relieve(&self, index: usize, written: u64) {
        let rotation = self.inner.gc.rotation.lock();
        let removed = self.relieve_locked(index, written);
        drop(rotation);
        self.deliver_if(removed);
    }

    /// [`relieve`](Self::relieve) under the rotation lock; returns how many entries it removed.
    fn relieve_locked(&self, index: usize, written: u64) -> usize {
        if self.inner.sketch.is_some() {
            return self.relieve_admitting(index, written);
        }
        let partitions = self.inner.partitions.len();
        let mut removed = 0;
        for step in 0usize.. {
            if step >= partitions + 2 && self.inner.tally.total_len() <= 1 {
                break;
            }
            if self.newer_is_big() {
                removed += self.rotate_locked(Some(written));
            } else if !self.over_limit() {
                break;
            } else if self.inner.tally.len(Which::Older) == 0 {
                removed += self.rotate_locked(Some(written));
            } else {
                removed += self.drop_older((index + step) % partitions, written);
            }
        }
        removed
    }

    /// Drops one partition's older generation (entries unused since the last generation), except
    /// the entry just written (`protect`, its hash), which moves to the newer generation: an
    /// entry heavier than half of `allocated_memory` rotates into the older generation with the
    /// put that wrote it and leaves the store over its limit, and a put must never evict what it
    /// just wrote (the documented single-heavy-entry exception). Returns how many it dropped.
    fn drop_older(&self, index: usize, protect: u64) -> usize {
        let (older, handed_over) = {
            let mut p = self.partition(index).write();
            let mut older = std::mem::take(&mut p.older);
            self.inner.tally.add(
                Which::Older,
                -(older.table.len() as i64),
                -(older.bytes as i64),
            );
            let written = |s: &Slot<K, V>| self.hash(&s.key) == protect;
            if let Some(slot) = older.remove(protect, written) {
                self.inner.tally.slot(Which::Newer, slot.weight, 1);
                p.newer.insert_new(protect, slot, self.rehash());
            }
            let handed_over = self.hand_over_table(index, &mut older.table, RemovalCause::Size);
            (older, handed_over)
        };
        handed_over + self.evicted(vec![older.table], EventKind::Evicted)
    }

    fn read_count_of(&self, hash: u64) -> u8 {
        self.inner.sketch.as_ref().map_or(0, |s| s.estimate(hash))
    }

    /// Admission mode: true once the newer generation holds its share of a limit (a read can
    /// no longer promote into it); the next write then demotes it whole.
    fn newer_full(&self) -> bool {
        self.inner.sketch.is_some()
            && self.inner.tally.len(Which::Newer) > 0
            && !self.promotion_fits(0)
    }

    /// Admission mode's [`relieve_locked`](Self::relieve_locked): demotes a full newer
    /// generation, then evicts one entry at a time, starting in the writer's partition, until
    /// the store is within its limits. Entries leave only through [`Self::evict_admitting`], so
    /// each new key is judged against the entry it would displace. Returns how many it evicted.
    fn relieve_admitting(&self, index: usize, written: u64) -> usize {
        if let (Some(sketch), Some(aging)) = (&self.inner.sketch, &self.inner.aging) {
            if let Some(bits) = aging.observe(&self.inner.stats) {
                sketch.age_by(bits);
                // The old hot keys leave the newer generation (`adapt.rs`).
                self.demote_all();
            }
        }
        let partitions = self.inner.partitions.len();
        let (mut barren, mut removed) = (0, 0);
        for step in 0usize.. {
            if self.newer_full() {
                self.demote_all();
                continue;
            }
            if !self.over_limit() {
                break;
            }
            if self.evict_admitting((index + step) % partitions, written) {
                (barren, removed) = (0, removed + 1);
                continue;
            }
            barren += 1;
            if barren < partitions {
                continue;
            }
            // No older generation has anything but the entry just written.
            if self.inner.tally.len(Which::Newer) == 0 {
                break; // the single-heavy-entry exception
            }
            self.demote_all();
            barren = 0;
        }
        removed
    }

    /// Admission mode: moves every partition's newer generation into its older one, at the
    /// back of the eviction queue (the least read first). Evicts nothing.
    fn demote_all(&self) {
        let tally = &self.inner.tally;
        for p in self.inner.partitions.iter() {
            let mut p = p.write();
            let newer = std::mem::take(&mut p.newer);
            let (len, bytes) = (newer.table.len() as i64, newer.bytes as i64);
            tally.add(Which::Newer, -len, -bytes);
            tally.add(Which::Older, len, bytes);
            // The least read first: a counting sort on the sketch's 16 values.
            let mut by_reads: [Vec<(u64, Slot<K, V>)>; 16] = Default::default();
            for slot in newer.table {
                let hash = self.hash(&slot.key);
                let reads = usize::from(self.read_count_of(hash)).min(15);
                by_reads[reads].push((hash, slot));
            }
            p.older.table.reserve(len as usize, self.rehash());
            for (hash, slot) in by_reads.into_iter().flatten() {
                p.older.insert_new(hash, slot, self.rehash());
                p.queue.push_back(hash);
            }
            self.compact_queue_if_stale(&mut p);
        }
    }

    /// Admission mode: appends the hash of an entry just put in the older generation to the
    /// eviction queue.
    pub(super) fn queue_older(&self, p: &mut Partition<K, V>, hash: u64) {
        p.queue.push_back(hash);
        self.compact_queue_if_stale(p);
    }

    /// Drops the stale hashes from a queue that is mostly stale (and repeated hashes, keeping
    /// the last): after each push the queue holds at most twice the older generation (+64),
    /// amortized O(1) per push.
    fn compact_queue_if_stale(&self, p: &mut Partition<K, V>) {
        if p.queue.len() <= 2 * p.older.table.len() + 64 {
            return;
        }
        let mut seen: HashSet<u64, foldhash::fast::RandomState> = HashSet::default();
        let queue = std::mem::take(&mut p.queue);
        let mut kept: Vec<u64> = queue
            .into_iter()
            .rev()
            .filter(|&h| self.in_older(p, h) && seen.insert(h))
            .collect();
        kept.reverse();
        p.queue = kept.into();
    }

    /// True if the older generation of `p` holds the entry with `hash`.
    #[inline]
    fn in_older(&self, p: &Partition<K, V>, hash: u64) -> bool {
        let eq = |s: &Slot<K, V>| self.hash(&s.key) == hash;
        p.older.table.find(hash, eq).is_some()
    }

    /// The next victim of `p`: the first live hash of its queue other than `protect` (stale
    /// ones are dropped on the way). Rebuilds a queue that lost track of the older generation.
    fn front_victim(&self, p: &mut Partition<K, V>, protect: u64) -> Option<u64> {
        for attempt in 0..2 {
            let mut skipped = false;
            let found = loop {
                match p.queue.front() {
                    None => break None,
                    Some(&h) if h == protect => {
                        skipped = true;
                        p.queue.pop_front();
                    }
                    Some(&h) if self.in_older(p, h) => break Some(h),
                    Some(_) => {
                        p.queue.pop_front();
                    }
                }
            };
            if skipped {
                p.queue.push_back(protect);
            }
            let others = p.older.table.len() - usize::from(self.in_older(p, protect));
            if found.is_some() || others == 0 || attempt == 1 {
                return found;
            }
            p.queue = p.older.table.iter().map(|s| self.hash(&s.key)).collect();
        }
        None
    }

    /// The queue position of the least read live entry among the first [`SAMPLE`] ones other
    /// than `protect` (the front one on a tie); the front must be live.
    fn least_read_in_line(&self, p: &Partition<K, V>, protect: u64) -> usize {
        let mut best = (u8::MAX, 0);
        let live = p.queue.iter().enumerate().filter(|&(_, &h)| h != protect);
        let live = live.filter(|&(_, &h)| self.in_older(p, h)).take(SAMPLE);
        for (at, &h) in live {
            let reads = self.read_count_of(h);
            if reads < best.0 {
                best = (reads, at);
            }
        }
        best.1
    }

    /// TinyLFU's admission test: the candidate read more often lately than the victim wins;
    /// a warm candidate that does not still wins once in 128 at random (Caffeine's defence
    /// against an attacker who keeps a victim looking hot, hash flooding).
    fn admit(&self, p: &mut Partition<K, V>, candidate: u64, victim: u64) -> bool {
        if self.in_scan(p) {
            if let Some(sketch) = &self.inner.sketch {
                sketch.unsample(candidate);
            }
            return false;
        }
        let (c, v) = (self.read_count_of(candidate), self.read_count_of(victim));
        if c > v {
            return true;
        }
        if c < JITTER_READS {
            return false;
        }
        p.jitter = p.jitter.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = p.jitter;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) & 127 == 0
    }

    /// Admission mode's scan guard: true once more than [`SCAN_RUN`] admission tests in a row
    /// in `p` each came after misses only by the judging thread (its own hits unchanged, its
    /// misses up: a read-through of keys nobody holds, such as a one-pass scan, whose keys are
    /// never read again). The candidate is then rejected whatever its count, and its read does
    /// not bring the sketch's next halving closer: the scan neither displaces entries nor
    /// fades the counts of the keys read around it. The counts are the thread's own stats
    /// stripe, so the hit path writes nothing more; a writer that puts without reading is
    /// never taken for a scan, and a store without stats never starts a run (no guard).
    /// Several threads judging in one partition compare each one's own counts with the last
    /// judge's: the run goes on only while each judge has no more hits and more misses than
    /// the count it is compared with, so threads that hit break it at once; threads that all
    /// only miss may keep it going, which is a scan too.
    ///
    /// Measured in the hit-ratio sim (`sim.rs`, 3 hasher seeds, means; quick_cache in
    /// brackets): Zipf 0.99 with a scan at 1 / 5 / 20 % capacity 47.97 / 58.54 / 67.48 →
    /// 47.94 / 58.57 / 67.61 % (47.77 / 58.45 / 67.56), Zipf 0.9 with a scan at 20 % 61.43 →
    /// 61.51 % (61.25); the columns without a scan and the shifting hot set unchanged (no run
    /// that long there), the loop at 5 / 20 % 78.02 / 75.74 → 78.57 / 77.31 %. Rejecting only
    /// candidates read at most twice gave 67.51 at 20 % (seed 1, 67.60 rejecting all).
    fn in_scan(&self, p: &mut Partition<K, V>) -> bool {
        let now = self.inner.stats.own_hits_and_misses();
        let (hits, misses) = p.scan_seen;
        match now {
            Some((h, m)) if h == hits && m > misses => p.scan_run = p.scan_run.saturating_add(1),
            _ => p.scan_run = 0,
        }
        p.scan_seen = now.unwrap_or((u64::MAX, u64::MAX));
        p.scan_run > SCAN_RUN
    }

    /// Admission mode: evicts one entry of partition `index`'s older generation; false if it
    /// holds nothing but the entry just written (`written`, its hash). The last rejected key
    /// goes first; otherwise the front of the queue. A new key just written to the older
    /// generation is judged against the front entry: if it loses, it is the next to go.
    fn evict_admitting(&self, index: usize, written: u64) -> bool {
        let slot = {
            let mut p = self.partition(index).write();
            let judged = self.in_older(&p, written);
            let rejected = p.rejected.filter(|&r| r != written);
            let mut slot = None;
            if let Some(r) = rejected {
                p.rejected = None;
                slot = p.older.remove(r, |s| self.hash(&s.key) == r);
                if slot.is_some() && judged {
                    if let Some(victim) = self.front_victim(&mut p, written) {
                        if !self.admit(&mut p, written, victim) {
                            p.rejected = Some(written);
                        }
                    }
                }
            }
            if slot.is_none() {
                let Some(victim) = self.front_victim(&mut p, written) else {
                    return false;
                };
                let mut at = 0;
                if judged && !self.admit(&mut p, written, victim) {
                    // The candidate stays readable until the next eviction, so another entry
                    // makes room now: the least read of the next few in line, not the victim
                    // that just won.
                    p.rejected = Some(written);
                    at = self.least_read_in_line(&p, written);
                }
                let gone = p.queue.remove(at).unwrap_or(victim);
                slot = p.older.remove(gone, |s| self.hash(&s.key) == gone);
            }
            let Some(slot) = slot else { return false };
            self.inner.tally.slot(Which::Older, slot.weight, -1);
            let cause = RemovalCause::Size;
            self.removed(index, cause, || (slot.key.clone(), slot.value.clone()));
            slot
        };
        self.inner.stats.incr(Stat::Evictions);
        self.inner.events.emit(&slot.key, EventKind::Evicted);
        true
    }

    /// True when a limit is reached (Nebulex's `value >= limit` check on the clean-up poll).
    fn limit_reached(&self) -> bool {
        let (opts, tally) = (&self.inner.opts, &self.inner.tally);
        opts.max_size.is_some_and(|m| tally.total_len() >= m)
            || opts
                .allocated_memory
                .is_some_and(|m| tally.total_bytes() >= m)
    }

    /// The clean-up poll period for how full the store is now (the shorter of the two limits').
    pub fn cleanup_timeout(&self) -> Duration {
        let (opts, tally) = (&self.inner.opts, &self.inner.tally);
        let (min, max) = (opts.gc_cleanup_min_timeout, opts.gc_cleanup_max_timeout);
        let by_size = opts
            .max_size
            .map(|m| backoff(tally.total_len(), m, min, max));
        let by_memory = opts
            .allocated_memory
            .map(|m| backoff(tally.total_bytes(), m, min, max));
        by_size.into_iter().chain(by_memory).min().unwrap_or(max)
    }

    /// Nebulex's clean-up check, as the poll runs it: if a limit is reached, push a new
    /// generation, remove expired entries and restart the heartbeat. Returns true if it pushed a
    /// generation.
    pub fn cleanup(&self) -> bool {
        let mut timers = self.inner.gc.tick.lock();
        let removed = self.cleanup_locked(&mut timers);
        drop(timers);
        self.deliver_if(removed.unwrap_or(0));
        removed.is_some()
    }

    /// The clean-up check under the timers' lock: `None` if no limit is reached, otherwise how
    /// many entries the new generation and the purge removed.
    fn cleanup_locked(&self, timers: &mut Timers) -> Option<usize> {
        if !self.limit_reached() {
            return None;
        }
        let removed = self.rotate() + self.purge_undelivered();
        let now = self.now();
        timers.heartbeat = self
            .inner
            .opts
            .gc_interval
            .map(|i| now.saturating_add(ttl_ms(i)));
        Some(removed)
    }

    /// Removes every expired entry from both generations; returns how many.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{GenerationalStore, ManualClock};
    ///
    /// let time = ManualClock::new();
    /// let store = GenerationalStore::<String, u32>::builder().clock(time.clock()).build()?;
    /// store.put("short".to_string(), 1, Some(Duration::from_secs(1)))?;
    /// store.put("kept".to_string(), 2, None)?;
    /// time.advance(Duration::from_secs(2));
    /// assert_eq!(store.purge_expired(), 1);
    /// assert_eq!(store.count(), 1);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn purge_expired(&self) -> usize {
        let removed = self.purge_undelivered();
        self.deliver_if(removed);
        removed
    }

    /// [`purge_expired`](Self::purge_expired), leaving the delivery to the caller.
    fn purge_undelivered(&self) -> usize {
        let now = self.now();
        let mut total = 0;
        for (index, p) in self.inner.partitions.iter().enumerate() {
            let removed: Vec<(Slot<K, V>, Which)> = {
                let mut p = p.write();
                let mut out: Vec<_> = p
                    .newer
                    .table
                    .extract_if(|s| s.is_expired(now))
                    .map(|s| (s, Which::Newer))
                    .collect();
                out.extend(
                    p.older
                        .table
                        .extract_if(|s| s.is_expired(now))
                        .map(|s| (s, Which::Older)),
                );
                for (slot, which) in &out {
                    let g = match which {
                        Which::Newer => &mut p.newer,
                        Which::Older => &mut p.older,
                    };
                    g.bytes -= u64::from(slot.weight);
                    self.inner.tally.slot(*which, slot.weight, -1);
                    let cause = RemovalCause::Expired;
                    self.removed(index, cause, || (slot.key.clone(), slot.value.clone()));
                }
                out
            };
            total += removed.len();
            removed
                .iter()
                .for_each(|(s, _)| self.inner.events.emit(&s.key, EventKind::Expired));
        }
        self.inner.stats.add(Stat::Expirations, total as u64);
        total
    }

    /// Runs whatever GC work is due now — the heartbeat, the clean-up poll, freeing dropped
    /// generations — exactly as the background thread does; returns when it next has work (Unix
    /// ms). Tests with a [`crate::ManualClock`] call it after `advance` to be deterministic.
    pub fn maintain(&self) -> Option<u64> {
        let now = self.now();
        self.flush_due(now);
        let mut timers = self.inner.gc.tick.lock();
        let mut removed = 0;
        if timers.heartbeat.is_some_and(|t| t <= now) {
            removed += self.rotate();
            timers.heartbeat = self
                .inner
                .opts
                .gc_interval
                .map(|i| now.saturating_add(ttl_ms(i)));
        }
        if timers.cleanup.is_some_and(|t| t <= now) {
            removed += self.cleanup_locked(&mut timers).unwrap_or(0);
            timers.cleanup = Some(now.saturating_add(ttl_ms(self.cleanup_timeout())));
        }
        let flush = self.inner.gc.flush.lock().iter().map(|p| p.due).min();
        let next = [timers.heartbeat, timers.cleanup, flush]
            .into_iter()
            .flatten()
            .min();
        drop(timers);
        self.deliver_if(removed);
        next
    }

    /// Delivers every partition's queued removals if this pass removed something. A pass that
    /// removed nothing takes no delivery turn: holding one, it would keep the removals of a
    /// call that already returned undelivered (`listener.rs`: only a thread that removed
    /// something delivers; test `a_gc_pass_that_removed_nothing_takes_no_delivery_turn`).
    fn deliver_if(&self, removed: usize) {
        if removed > 0 {
            self.deliver_all();
        }
    }

    /// Frees the dropped generations whose flush delay has passed.
    fn flush_due(&self, now: u64) {
        let due: Vec<Pending<K, V>> = {
            let mut queue = self.inner.gc.flush.lock();
            let (due, keep) = std::mem::take(&mut *queue)
                .into_iter()
                .partition(|p| p.due <= now);
            *queue = keep;
            due
        };
        drop(due);
    }

    /// Entries in dropped generations not yet freed.
    pub fn pending_flush(&self) -> usize {
        let queue = self.inner.gc.flush.lock();
        queue
            .iter()
            .flat_map(|p| p.tables.iter())
            .map(HashTable::len)
            .sum()
    }

    /// The GC thread's join handle (taken: `None` on a second call or if no thread runs).
    /// Hidden: lets a test prove that dropping the store ends the thread.
    #[doc(hidden)]
    pub fn take_gc_thread(&self) -> Option<JoinHandle<()>> {
        self.inner.gc.join.lock().take()
    }

    /// Starts the GC thread if it is not running; false if it could not be started.
    pub(super) fn gc_thread(&self) -> bool {
        let thread = self.inner.gc.thread.get_or_init(|| self.spawn_gc());
        thread.is_some()
    }

    fn spawn_gc(&self) -> Option<Thread> {
        let weak = self.inner.me.clone();
        let spawned = std::thread::Builder::new()
            .name("strata-generational-gc".into())
            .spawn(move || gc_loop(weak));
        match spawned {
            Ok(handle) => {
                let thread = handle.thread().clone();
                *self.inner.gc.join.lock() = Some(handle);
                let (waker, alive) = (thread.clone(), self.inner.me.clone());
                self.inner.clock.on_advance(move || {
                    waker.unpark();
                    alive.strong_count() > 0
                });
                Some(thread)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not start the strata generational GC thread; call maintain() to run the GC timers");
                None
            }
        }
    }
}

fn gc_loop<K, V>(weak: Weak<Inner<K, V>>)
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let store = GenerationalStore { inner };
        let next = store.maintain();
        let nap = next.and_then(|t| store.inner.clock.sleep_hint(t));
        let manual = store.inner.clock.is_manual();
        drop(store);
        match nap {
            Some(nap) => std::thread::park_timeout(nap.min(MAX_NAP)),
            None if manual => std::thread::park(),
            None => std::thread::park_timeout(MAX_NAP),
        }
    }
}

/// Half a limit, rounded up, at least 1 (the newer generation's size that pushes a new one).
fn half_limit(limit: u64) -> u64 {
    limit.div_ceil(2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listener's promise (`listener.rs`): once every call and every GC pass that removed
    /// something has returned, every removal has been delivered. A GC pass that removed nothing
    /// (`maintain` with nothing due, as the GC thread runs it at start-up and on every wake)
    /// must take no delivery turn: parked inside one, it held back the removals of puts that
    /// had all returned (the CI failure of `eviction_listener`'s
    /// `generational_limits_deliver_size_and_generation_for_every_entry`).
    #[test]
    fn a_gc_pass_that_removed_nothing_takes_no_delivery_turn() {
        let time = crate::ManualClock::new();
        let seen = std::sync::Arc::new(Mutex::new(0usize));
        let counted = seen.clone();
        let store = GenerationalStore::<u64, u64>::builder()
            .clock(time.clock())
            .partitions(1)
            .max_size(4)
            .eviction_listener(move |_, _, _| *counted.lock() += 1)
            .build()
            .unwrap();
        let gc = store.clone();
        let (parked, finish) = store.notifier().unwrap().run_parked_in_turn(move || {
            gc.maintain(); // nothing is due (a manual clock): it removes nothing
        });
        for key in 0..20 {
            store.put(key, key, None).unwrap();
        }
        let (delivered, kept) = (*seen.lock(), store.count());
        finish();
        assert_eq!(
            (parked, delivered),
            (false, 20 - kept),
            "every put has returned: each removal it made is delivered"
        );
    }

    #[test]
    fn the_eviction_queue_holds_every_older_entry_and_stays_bounded() {
        let store: GenerationalStore<u64, u64> = GenerationalStore::builder()
            .partitions(2)
            .max_size(200)
            .admission(true)
            .build()
            .unwrap();
        // A hot set read over and over (promoted, demoted with the newer generation, promoted
        // again: each round leaves stale hashes behind) and a stream of one-hit keys.
        for round in 0..300u64 {
            for k in 0..150 {
                if store.get(&k).is_none() {
                    store.put(k, k, None).unwrap();
                }
            }
            for k in 1_000 + round * 50..1_050 + round * 50 {
                assert_eq!(store.get(&k), None);
                store.put(k, k, None).unwrap();
            }
        }
        for p in store.inner.partitions.iter() {
            let p = p.read();
            // Checked (and compacted) when a hash is pushed; entries promoted since then left
            // the older generation but not the partition.
            let entries = p.older.table.len() + p.newer.table.len();
            assert!(
                p.queue.len() <= 2 * entries + 66,
                "{} for {entries}",
                p.queue.len()
            );
            let queued: HashSet<u64> = p.queue.iter().copied().collect();
            let missing = p.older.table.iter().map(|s| store.hash(&s.key));
            assert_eq!(missing.filter(|h| !queued.contains(h)).count(), 0);
        }
        let hot = (0..150).filter(|k| store.contains(k)).count();
        assert!(
            hot >= 140,
            "the one-hit keys displaced {} hot keys",
            150 - hot
        );
    }

    /// The keys of `keys` held by the newer generation.
    fn in_newer(store: &GenerationalStore<u64, u64>, keys: std::ops::Range<u64>) -> usize {
        let p = store.inner.partitions[0].read();
        keys.filter(|k| p.newer.table.iter().any(|s| s.key == *k))
            .count()
    }

    fn read_through(store: &GenerationalStore<u64, u64>, k: u64) {
        if store.get(&k).is_none() {
            store.put(k, k, None).unwrap();
        }
    }

    #[test]
    fn a_recovery_demotes_the_newer_generation_that_holds_the_old_hot_set() {
        let store: GenerationalStore<u64, u64> = GenerationalStore::builder()
            .partitions(1)
            .max_size(1_000)
            .admission(true)
            .build()
            .unwrap();
        // Hot set A (400 keys), read until it is all in the newer generation; 3 windows of
        // reads at a hit ratio near 1.
        for i in 0..3 * 16_384 {
            read_through(&store, i % 400);
        }
        assert_eq!(in_newer(&store, 0..400), 400);
        // The hot set moves to B (50 keys), half the reads now go to keys never seen again: a
        // lasting drop to a ratio of 0.5. A and B fit in the newer generation (450 of its 500),
        // so it never fills and nothing demotes A but the recovery.
        for i in 0..6 * 8_192 {
            read_through(&store, 10_000 + i % 50);
            read_through(&store, 1_000_000 + i);
        }
        assert_eq!(
            in_newer(&store, 0..400),
            0,
            "the old hot set left the newer generation"
        );
        assert!(
            in_newer(&store, 10_000..10_050) >= 45,
            "the new one is there"
        );
    }
}
