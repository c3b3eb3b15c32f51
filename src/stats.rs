//! Statistics counters, striped per thread so that counting a hit never writes to a cache line
//! another core is reading.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
    time::Duration,
};

use parking_lot::Mutex;

/// A snapshot of a store's or cache's counters (Nebulex/Cachex naming).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found nothing (or only an expired entry, or a value that failed to decode).
    pub misses: u64,
    /// Writes of new keys.
    pub writes: u64,
    /// Writes that replaced an existing key's value.
    pub updates: u64,
    /// Explicit deletions.
    pub deletes: u64,
    /// Entries evicted for size, memory, or with an old generation.
    pub evictions: u64,
    /// Entries removed because their TTL ran out.
    pub expirations: u64,
    /// Loader calls made by `fetch`.
    pub loads: u64,
    /// Loader calls that failed or panicked.
    pub load_errors: u64,
    /// Total time spent in loaders.
    pub load_time: Duration,
}

impl Stats {
    /// `hits / (hits + misses)`, or 0 when nothing was read.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// One counter of [`Stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
#[allow(missing_docs)]
pub enum Counter {
    Hits,
    Misses,
    Writes,
    Updates,
    Deletes,
    Evictions,
    Expirations,
    Loads,
    LoadErrors,
    LoadNanos,
    /// Reads (hits + misses), counted before the lookup so the count overlaps the lookup's
    /// cache miss. A recorder counts reads either as `Hits` + `Misses` or as `Reads` + `Misses`
    /// (never both); `hits` in the snapshot is `Hits + (Reads - Misses)`.
    Reads,
}

const COUNTERS: usize = 16;
const STRIPES: usize = 64;

#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; COUNTERS]);

/// Live counters behind a [`Stats`] snapshot.
///
/// Each thread owns one of 64 stripes while it lives (the index goes back to a free list when
/// the thread exits), so a count is a plain load and store on a line no other thread writes: no
/// locked instruction, which on x86 would also stall the read path's memory-level parallelism
/// (measured: ~30 ns per `get` on a 1M-entry table). A thread that finds no free stripe (more than
/// 64 live counting threads) shares one and adds with atomic read-modify-writes, so counts stay
/// exact either way.
pub struct StatsRecorder {
    enabled: bool,
    stripes: Box<[Stripe]>,
}

/// A read counted by [`StatsRecorder::begin_read`] and not settled yet.
pub(crate) struct ReadCount<'a> {
    stats: &'a StatsRecorder,
    settled: bool,
}

impl ReadCount<'_> {
    /// The read ended: a hit, or a miss (`found == false`).
    #[inline]
    pub(crate) fn settle(mut self, found: bool) {
        self.settled = true;
        if !found {
            self.stats.add(Counter::Misses, 1);
        }
    }
}

impl Drop for ReadCount<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.settled {
            self.stats.sub(Counter::Reads, 1);
        }
    }
}

/// This thread's stripe: its index, and whether it owns it alone.
struct StripeLease {
    index: usize,
    exclusive: bool,
}

fn free_stripes() -> &'static Mutex<Vec<usize>> {
    static FREE: OnceLock<Mutex<Vec<usize>>> = OnceLock::new();
    FREE.get_or_init(|| Mutex::new((0..STRIPES).rev().collect()))
}

impl StripeLease {
    fn take() -> Self {
        match free_stripes().lock().pop() {
            Some(index) => StripeLease {
                index,
                exclusive: true,
            },
            None => {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let index = NEXT.fetch_add(1, Ordering::Relaxed) as usize % STRIPES;
                StripeLease {
                    index,
                    exclusive: false,
                }
            }
        }
    }
}

impl Drop for StripeLease {
    fn drop(&mut self) {
        if self.exclusive {
            free_stripes().lock().push(self.index);
        }
    }
}

thread_local! {
    static LEASE: StripeLease = StripeLease::take();
}

impl StatsRecorder {
    /// Counters that count (`enabled`) or ignore every add.
    pub fn new(enabled: bool) -> Self {
        let stripes = if enabled { STRIPES } else { 0 };
        StatsRecorder {
            enabled,
            stripes: (0..stripes).map(|_| Stripe::default()).collect(),
        }
    }

    /// True when counting.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Adds `n` to `counter`.
    #[inline]
    pub fn add(&self, counter: Counter, n: u64) {
        if !self.enabled {
            return;
        }
        let added = LEASE.try_with(|lease| {
            let cell = &self.stripes[lease.index].0[counter as usize];
            if lease.exclusive {
                cell.store(
                    cell.load(Ordering::Relaxed).wrapping_add(n),
                    Ordering::Relaxed,
                );
            } else {
                cell.fetch_add(n, Ordering::Relaxed);
            }
        });
        if added.is_err() {
            // This thread is being torn down and its lease is gone: share stripe 0.
            self.stripes[0].0[counter as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds one to `counter`.
    #[inline]
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Counts a read now, before the lookup; the returned guard counts the miss when the read
    /// ends without a value, and takes the read back if it fails or is cancelled (dropped
    /// before [`ReadCount::settle`]), so neither shows as a hit.
    #[inline]
    pub(crate) fn begin_read(&self) -> ReadCount<'_> {
        self.add(Counter::Reads, 1);
        ReadCount {
            stats: self,
            settled: false,
        }
    }

    /// Takes `n` back from `counter` (a count made before an operation that then failed). The
    /// stripes add with wrapping arithmetic, so the total is right even when the taking-back
    /// thread's stripe is not the one that counted.
    #[inline]
    pub(crate) fn sub(&self, counter: Counter, n: u64) {
        self.add(counter, n.wrapping_neg());
    }

    fn sum(&self, counter: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[counter as usize].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Reads and misses so far, for a recorder that counts its reads as `Reads` + `Misses`
    /// (the `MemoryStore`): what a bounded store's policy adapts to.
    pub(crate) fn reads_and_misses(&self) -> (u64, u64) {
        (self.sum(Counter::Reads), self.sum(Counter::Misses))
    }

    /// The current totals.
    pub fn snapshot(&self) -> Stats {
        Stats {
            hits: self.sum(Counter::Hits)
                + self
                    .sum(Counter::Reads)
                    .saturating_sub(self.sum(Counter::Misses)),
            misses: self.sum(Counter::Misses),
            writes: self.sum(Counter::Writes),
            updates: self.sum(Counter::Updates),
            deletes: self.sum(Counter::Deletes),
            evictions: self.sum(Counter::Evictions),
            expirations: self.sum(Counter::Expirations),
            loads: self.sum(Counter::Loads),
            load_errors: self.sum(Counter::LoadErrors),
            load_time: Duration::from_nanos(self.sum(Counter::LoadNanos)),
        }
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        for stripe in self.stripes.iter() {
            for c in &stripe.0 {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}

impl Default for StatsRecorder {
    fn default() -> Self {
        Self::new(true)
    }
}

impl std::fmt::Debug for StatsRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_across_threads() {
        let stats = std::sync::Arc::new(StatsRecorder::new(true));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let s = stats.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| s.incr(Counter::Hits)))
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        stats.incr(Counter::Misses);
        let snap = stats.snapshot();
        assert_eq!((snap.hits, snap.misses), (4000, 1));
        assert!((snap.hit_ratio() - 4000.0 / 4001.0).abs() < 1e-9);
    }

    #[test]
    fn counts_stay_exact_with_more_threads_than_stripes() {
        let stats = std::sync::Arc::new(StatsRecorder::new(true));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(100));
        let handles: Vec<_> = (0..100)
            .map(|_| {
                let (s, b) = (stats.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait(); // all 100 alive at once: some must share stripes
                    (0..1000).for_each(|_| s.incr(Counter::Writes));
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(stats.snapshot().writes, 100_000);
    }

    #[test]
    fn disabled_counts_nothing() {
        let stats = StatsRecorder::new(false);
        stats.incr(Counter::Hits);
        assert_eq!(stats.snapshot(), Stats::default());
    }
}
