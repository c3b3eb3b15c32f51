//! Statistics counters, striped per thread so that counting a hit never writes to a cache line
//! another core is reading.

use std::{
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

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
}

const COUNTERS: usize = 16;
const STRIPES: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; COUNTERS]);

/// Live counters behind a [`Stats`] snapshot. Adds are relaxed atomics on a per-thread stripe.
pub struct StatsRecorder {
    enabled: bool,
    stripes: Box<[Stripe]>,
}

fn stripe_index() -> usize {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        if i.get() == usize::MAX {
            i.set(NEXT.fetch_add(1, Ordering::Relaxed) as usize % STRIPES);
        }
        i.get()
    })
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
        if self.enabled {
            self.stripes[stripe_index()].0[counter as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds one to `counter`.
    #[inline]
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    fn sum(&self, counter: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[counter as usize].load(Ordering::Relaxed))
            .sum()
    }

    /// The current totals.
    pub fn snapshot(&self) -> Stats {
        Stats {
            hits: self.sum(Counter::Hits),
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
    fn disabled_counts_nothing() {
        let stats = StatsRecorder::new(false);
        stats.incr(Counter::Hits);
        assert_eq!(stats.snapshot(), Stats::default());
    }
}
