//! Filling a store in bulk, as a `DiskStore` does when it reopens: each thread that decodes
//! gathers its entries with their hashes in one buffer, sorted by shard and bucket; then each
//! shard's table grows once and is filled under one lock, in the order of its buckets.
//!
//! A `put` per entry costs a lock, a clock read, the policy and event checks, a deadline
//! index append and, above all, two cache misses in a table far bigger than the caches (its
//! control group and its slot, at a random bucket). Filling a shard in bucket order turns those
//! misses into a sweep over the table; the deadlines are indexed afterwards, sorted by bucket,
//! so the index costs ~8 B per entry.
//!
//! The buffers are sized once, for every record the thread will decode: one allocation each,
//! which the allocator hands back to the OS when it is freed (it maps a big block on its own)
//! instead of leaving freed holes between the entries' own allocations, which would stay
//! resident (per-shard buffers grown as they fill did: 64 B per entry at 1 M).
//!
//! Only an unbounded store without idle expiry or event subscribers fills in bulk: a bounded
//! one must admit and evict entry by entry, an idle one flags entries as it writes them, a
//! subscriber expects a `Put` event per entry. Those (and a key already present) go through
//! [`MemoryStore::put`], exactly as before.

use std::hash::{BuildHasher, Hash};

use hashbrown::hash_table::Entry;

use super::{
    shard::{lane_of, Slot},
    store::MemoryStore,
};
use crate::stats::Counter as Stat;

/// Below this many entries a fill runs on the calling thread alone.
const PARALLEL_FILL_MIN: usize = 32 * 1024;

/// An entry gathered for a fill, with its hash; `None` once it went into the table.
type Gathered<K, V> = (u64, Option<Slot<K, V>>);

/// The entries of one shard, one run per gatherer.
type Runs<'a, K, V> = Vec<&'a mut [Gathered<K, V>]>;

/// Entries gathered for [`MemoryStore::fill`] by one thread that decodes.
pub(crate) struct Fill<K, V> {
    /// When the fill began: an entry expiring by then is not written.
    now: u64,
    /// False when the store puts entry by entry (see the module docs).
    bulk: bool,
    entries: Vec<Gathered<K, V>>,
}

impl<K, V, S> MemoryStore<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// True if this store fills in bulk (see the module docs for when it does not).
    fn fills_in_bulk(&self) -> bool {
        let inner = &self.inner;
        !inner.bounded && inner.tti.is_none() && !inner.events.is_active()
    }

    /// An empty [`Fill`] for this store, with room for `capacity` entries (all the ones the
    /// thread will add: the buffer is allocated once).
    pub(crate) fn new_fill(&self, capacity: usize) -> Fill<K, V> {
        let bulk = self.fills_in_bulk();
        Fill {
            now: self.now(),
            bulk,
            entries: Vec::with_capacity(if bulk { capacity } else { 0 }),
        }
    }

    /// Adds `key` with `value`, expiring at `deadline` (Unix ms, 0: never), to `fill`; a store
    /// that does not fill in bulk writes it now. An entry expired when the fill began is not
    /// written (a live one under its key is removed, as a write of it would).
    pub(crate) fn add(&self, fill: &mut Fill<K, V>, key: K, value: V, deadline: u64) {
        if deadline != 0 && deadline <= fill.now {
            self.delete(&key);
            return;
        }
        if !fill.bulk {
            let written = self.put_until(key, value, deadline, self.now());
            debug_assert!(written.is_ok());
            return;
        }
        let hash = self.hash(&key);
        fill.entries
            .push((hash, Some(Slot::new(key, value, deadline))));
    }

    /// Writes what `fills` gathered, on up to two threads: each shard's table grows once and is
    /// filled in bucket order. Counted as writes, like `put`s.
    pub(crate) fn fill(&self, mut fills: Vec<Fill<K, V>>) {
        let total: usize = fills.iter().map(|f| f.entries.len()).sum();
        let parallel = total >= PARALLEL_FILL_MIN
            && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        let shards = self.inner.shards.len();
        let mask = bucket_mask(total / shards);
        let order =
            |(hash, _): &Gathered<K, V>| (lane_of(*hash, shards) as u64) << 40 | hash & mask;
        self.each(&mut fills, parallel, |fill| {
            fill.entries.sort_unstable_by_key(order);
        });
        let mut lanes: Vec<Runs<'_, K, V>> = (0..shards).map(|_| Vec::new()).collect();
        for fill in &mut fills {
            for (lane, run) in by_lane(&mut fill.entries, shards).into_iter().enumerate() {
                lanes[lane].push(run);
            }
        }
        let mut jobs: Vec<(usize, Runs<'_, K, V>)> = lanes.into_iter().enumerate().collect();
        let second = jobs.split_off(if parallel { jobs.len() / 2 } else { jobs.len() });
        let mut halves = [jobs, second];
        let mut late = Vec::new();
        self.each(&mut halves, parallel, |jobs| {
            late_of(jobs, |lane, runs| self.fill_lane(lane, runs))
        })
        .into_iter()
        .for_each(|l| late.extend(l));
        self.put_late(late);
    }

    /// Runs `work` on each of `items`, on a thread each if `parallel`; returns the results.
    fn each<T: Send, R: Send>(
        &self,
        items: &mut [T],
        parallel: bool,
        work: impl Fn(&mut T) -> R + Sync,
    ) -> Vec<R> {
        if !parallel {
            return items.iter_mut().map(&work).collect();
        }
        std::thread::scope(|scope| {
            let work = &work;
            let threads: Vec<_> = items
                .iter_mut()
                .map(|item| scope.spawn(move || work(item)))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    /// Fills shard `lane` with `runs` (one per gatherer, each in bucket order); returns the
    /// entries whose key was present already, for [`put_late`](Self::put_late).
    fn fill_lane(&self, lane: usize, runs: &mut Runs<'_, K, V>) -> Vec<Slot<K, V>> {
        let count: usize = runs.iter().map(|r| r.len()).sum();
        if count == 0 {
            return Vec::new();
        }
        let mut guard = self.inner.shards[lane].write();
        let shard = &mut *guard;
        shard.table.reserve(count, self.rehash_slot());
        let (mut due, mut late, mut earliest) = (Vec::with_capacity(count), Vec::new(), u64::MAX);
        let gathered = runs.iter_mut().flat_map(|run| run.iter_mut());
        for (hash, slot) in gathered.filter_map(|(hash, slot)| Some((*hash, slot.take()?))) {
            let entry = shard
                .table
                .entry(hash, |s| s.key == slot.key, self.rehash_slot());
            match entry {
                Entry::Occupied(_) => late.push(slot),
                Entry::Vacant(vacant) => {
                    let deadline = slot.deadline();
                    if deadline != 0 {
                        earliest = earliest.min(deadline);
                        due.push((deadline, hash));
                    }
                    vacant.insert(slot);
                }
            }
        }
        let written = count - late.len();
        shard.schedule_all(due);
        drop(guard);
        self.inner.stats.add(Stat::Writes, written as u64);
        self.wake_sweeper_for(earliest);
        late
    }

    /// Writes entries whose key a fill found present already, one `put` each.
    fn put_late(&self, late: Vec<Slot<K, V>>) {
        let now = self.now();
        for slot in late {
            let deadline = slot.deadline();
            let written = self.put_until(slot.key, slot.value, deadline, now);
            debug_assert!(written.is_ok());
        }
    }

    /// [`put_until`](Self::put_until) for a caller that read `now` (coarse) just now to work
    /// out `deadline`: a DiskStore's async put, applied to memory as it returns. Reads no
    /// clock; `put_until` reads it twice more (the exact time, then the coarse one).
    pub(crate) fn put_until_read(
        &self,
        key: K,
        value: V,
        deadline: u64,
        now: u64,
    ) -> crate::error::Result<()> {
        self.put_until_then(key, value, deadline, now, || now)
    }

    /// `put` with a deadline (0: never) instead of a TTL; a deadline not after `now` removes
    /// the key instead (the write would be expired at once). The entry keeps `deadline` itself,
    /// not a TTL counted again from another clock reading, which would move it: later with a
    /// later reading, earlier with the coarse one (DiskStore's writes used to lose a tick so).
    pub(crate) fn put_until(
        &self,
        key: K,
        value: V,
        deadline: u64,
        now: u64,
    ) -> crate::error::Result<()> {
        self.put_until_then(key, value, deadline, now, || self.now().max(now))
    }

    /// The two above: a deadline not after `now` removes the key; otherwise the entry is
    /// written as of `entry_now()`.
    fn put_until_then(
        &self,
        key: K,
        value: V,
        deadline: u64,
        now: u64,
        entry_now: impl FnOnce() -> u64,
    ) -> crate::error::Result<()> {
        if deadline != 0 && deadline <= now {
            self.delete(&key);
            return Ok(());
        }
        let now = entry_now();
        self.put_at(key, value, super::store::When::At { now, deadline })
    }
}

/// Runs `fill` on each shard's runs; returns every entry it handed back.
fn late_of<'a, K, V, T>(
    jobs: &mut [(usize, Runs<'a, K, V>)],
    mut fill: impl FnMut(usize, &mut Runs<'a, K, V>) -> Vec<T>,
) -> Vec<T> {
    let mut late = Vec::new();
    for (lane, runs) in jobs {
        late.extend(fill(*lane, runs));
    }
    late
}

/// `entries`, sorted by shard, cut into one run per shard of `shards`.
fn by_lane<K, V>(entries: &mut [Gathered<K, V>], shards: usize) -> Vec<&mut [Gathered<K, V>]> {
    let mut runs = Vec::with_capacity(shards);
    let mut rest = entries;
    for lane in 0..shards {
        let end = rest.partition_point(|(hash, _)| lane_of(*hash, shards) <= lane);
        let (run, tail) = std::mem::take(&mut rest).split_at_mut(end);
        runs.push(run);
        rest = tail;
    }
    runs
}

/// The bucket mask of a hashbrown table holding `capacity` entries (7/8 of its power-of-two
/// buckets; the low bits of a hash pick the bucket). Used only to order inserts: a wrong guess
/// (another hashbrown layout, a shard with more entries than average) costs speed, never
/// correctness.
fn bucket_mask(capacity: usize) -> u64 {
    ((capacity.max(1) * 8 / 7).next_power_of_two() - 1) as u64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::time::ManualClock;

    fn store(clock: &ManualClock) -> MemoryStore<u64, u64> {
        let store = MemoryStore::builder()
            .clock(clock.clock())
            .shards(4)
            .build();
        store.expect("valid options")
    }

    /// Fills `store` with `keys` from two gatherers, as two decoding threads would.
    fn fill_with(store: &MemoryStore<u64, u64>, keys: impl Iterator<Item = (u64, u64)>) {
        let mut fills = vec![store.new_fill(0), store.new_fill(0)];
        for (key, deadline) in keys {
            store.add(&mut fills[(key % 2) as usize], key, key * 10, deadline);
        }
        store.fill(fills);
    }

    #[test]
    fn a_fill_writes_what_puts_would() {
        let time = ManualClock::new();
        let store = store(&time);
        let now = store.now();
        let n = PARALLEL_FILL_MIN as u64 + 1000;
        fill_with(
            &store,
            (0..n).map(|k| (k, if k % 3 == 0 { 0 } else { now + k + 1 })),
        );
        assert_eq!(store.count(), n as usize);
        assert_eq!(store.stats().writes, n);
        assert_eq!(store.get(&7), Some(70));
        assert_eq!(store.ttl(&3), Some(crate::Expiry::Never));
        assert_eq!(
            store.ttl(&4),
            Some(crate::Expiry::In(Duration::from_millis(5)))
        );
        // The deadline index holds every entry with a deadline: purging (here or on the
        // sweeper's thread, whichever comes first) removes them all.
        time.advance(Duration::from_millis(n + 10));
        store.purge_expired();
        assert_eq!(store.stats().expirations, n - n.div_ceil(3));
        assert_eq!(store.count(), n.div_ceil(3) as usize);
    }

    /// Each shard's entry count and its table's bucket count.
    fn sizes(store: &MemoryStore<u64, u64>) -> impl Iterator<Item = (usize, usize)> + '_ {
        let shards = store.inner.shards.iter().map(|shard| shard.read());
        shards.map(|shard| {
            let buckets = (shard.table_capacity() * 8 / 7).next_power_of_two();
            (shard.table.len(), buckets)
        })
    }

    /// How full each shard's table is, in percent of its buckets.
    fn fullness(store: &MemoryStore<u64, u64>) -> Vec<usize> {
        sizes(store)
            .map(|(len, buckets)| len * 100 / buckets)
            .collect()
    }

    #[test]
    fn a_store_sized_for_its_fill_fills_about_three_quarters_of_each_table() {
        // 60 k entries over 16 shards: 3 750 each need 8 192-bucket tables (4 096 hold 3 584),
        // 46 % full. Sized for them, the store takes more shards with 4 096 buckets each. Keys
        // fall on shards at random (binomially, σ ≈ 59 entries per shard), so a shard given
        // fewer than 3 584 (2.8 σ below the mean, about one shard in 400) fits a 4 096-bucket
        // table and is over 80 % full: the unsized store is judged on all its buckets, which
        // stay under 55 % full unless 5 of the 16 shards are that far below the mean.
        let entries = 60_000u64;
        let build = |expected: Option<usize>| {
            let builder = MemoryStore::builder().shards(16);
            let builder = match expected {
                Some(n) => builder.expected_entries(n),
                None => builder,
            };
            let store: MemoryStore<u64, u64> = builder.build().expect("valid options");
            fill_with(&store, (0..entries).map(|k| (k, 0)));
            assert_eq!(store.count(), entries as usize);
            store
        };
        let unsized_store = build(None);
        let (len, buckets) =
            sizes(&unsized_store).fold((0, 0), |(len, all), (n, buckets)| (len + n, all + buckets));
        assert!(
            len * 100 / buckets < 55,
            "{len} entries in {buckets} buckets"
        );
        let sized = build(Some(entries as usize));
        assert!(sized.inner.shards.len() > 16);
        for full in fullness(&sized) {
            assert!((60..=80).contains(&full), "{full} % full");
        }
    }

    #[test]
    fn a_key_present_before_the_fill_is_overwritten_and_an_expired_one_skipped() {
        let time = ManualClock::new();
        let store = store(&time);
        let now = store.now();
        store.put(1, 99, None).expect("no ttl");
        store.put(2, 99, None).expect("no ttl");
        // Key 2 arrives already expired: like a write of it, the fill removes the live entry.
        fill_with(&store, [(1, 0), (2, now), (3, 0)].into_iter());
        assert_eq!(store.get(&1), Some(10), "the fill's value wins");
        assert_eq!(store.get(&2), None, "an expired entry is not written");
        assert_eq!(store.get(&3), Some(30));
        assert_eq!(store.count(), 2);
    }

    /// A write that a fill makes by `put` (a key present already, or a store that does not fill
    /// in bulk) keeps the record's deadline, however long ago the fill read the clock: the
    /// clock moved 500 ms since `now` was read, and the entry must still expire at 2 000.
    #[test]
    fn a_put_of_a_fill_keeps_the_deadline_when_the_clock_moved_since_now() {
        let time = ManualClock::starting_at(1_000);
        let store = store(&time);
        time.advance(Duration::from_millis(500));
        store.put_until(1, 10, 2_000, 1_000).unwrap();
        assert_eq!(
            store.ttl(&1),
            Some(crate::Expiry::In(Duration::from_millis(500))),
            "expires at 2 000, not 500 ms later"
        );
        time.advance(Duration::from_millis(500));
        assert_eq!(store.get(&1), None, "expired at its deadline");
    }

    #[test]
    fn a_store_with_a_subscriber_gets_an_event_per_entry() {
        let time = ManualClock::new();
        let store = store(&time);
        let mut events = store.subscribe();
        fill_with(&store, (0..3).map(|k| (k, 0)));
        let mut seen = 0;
        while events.try_recv().is_some() {
            seen += 1;
        }
        assert_eq!(seen, 3);
    }
}
