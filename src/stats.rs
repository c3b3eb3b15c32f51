//! Statistics counters, striped per thread so that counting a hit never writes to a cache line
//! another core is reading.

use std::{
    cell::Cell,
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
/// exact either way. The thread's stripe is kept in a constant-initialised thread-local without a
/// destructor, so finding it is one load (no lazy-initialisation check on every count).
pub struct StatsRecorder {
    /// `None` when not counting.
    stripes: Option<Box<[Stripe; STRIPES]>>,
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

/// A [`STRIPE`] value: the stripe is shared with other threads (add atomically); the index is
/// in the bits below.
const SHARED: usize = 1 << 16;
/// The [`STRIPE`] value of a thread that has not counted yet.
const UNSET: usize = usize::MAX;

thread_local! {
    /// This thread's stripe: its index if the thread owns it alone, `index | SHARED` if not,
    /// [`UNSET`] before the first count. No destructor, so it stays readable while the thread
    /// is torn down (a count from another thread-local's destructor then goes to a shared
    /// stripe).
    static STRIPE: Cell<usize> = const { Cell::new(UNSET) };
    /// Owns the stripe taken at the first count and gives it back when the thread exits.
    static LEASE: StripeLease = StripeLease::take();
}

/// This thread's stripe, as a [`STRIPE`] value, owned while the lease lives.
struct StripeLease(usize);

fn free_stripes() -> &'static Mutex<Vec<usize>> {
    static FREE: OnceLock<Mutex<Vec<usize>>> = OnceLock::new();
    FREE.get_or_init(|| Mutex::new((0..STRIPES).rev().collect()))
}

impl StripeLease {
    fn take() -> Self {
        match free_stripes().lock().pop() {
            Some(index) => StripeLease(index),
            None => {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let index = NEXT.fetch_add(1, Ordering::Relaxed) as usize % STRIPES;
                StripeLease(index | SHARED)
            }
        }
    }
}

impl Drop for StripeLease {
    fn drop(&mut self) {
        // Counts made after this (other thread-locals' destructors) go to stripe 0, shared.
        STRIPE.with(|stripe| stripe.set(SHARED));
        if self.0 < STRIPES {
            free_stripes().lock().push(self.0);
        }
    }
}

/// This thread's [`STRIPE`] value, taking a stripe if it has none yet.
#[cold]
fn lease_stripe() -> usize {
    // Fails only while the thread is torn down: then share stripe 0.
    let leased = LEASE.try_with(|lease| lease.0).unwrap_or(SHARED);
    // A lease dropped already set `STRIPE` to shared: keep that.
    STRIPE.with(|stripe| {
        if stripe.get() == UNSET {
            stripe.set(leased);
        }
        stripe.get()
    })
}

impl StatsRecorder {
    /// Counters that count (`enabled`) or ignore every add.
    pub fn new(enabled: bool) -> Self {
        let stripes = enabled.then(|| Box::new(std::array::from_fn(|_| Stripe::default())));
        StatsRecorder { stripes }
    }

    /// True when counting.
    pub fn enabled(&self) -> bool {
        self.stripes.is_some()
    }

    /// Adds `n` to `counter`.
    #[inline]
    pub fn add(&self, counter: Counter, n: u64) {
        // Not counting: not even the thread-local is read.
        if self.stripes.is_some() {
            self.add_on(current_stripe(), counter, n);
        }
    }

    /// Adds `n` to `counter` on `stripe`, this thread's [`STRIPE`] value read earlier on the
    /// same thread ([`current_stripe`]): two recorders counting one operation find the stripe
    /// once (a `Cache` read and its `MemoryStore`'s, `MemoryStore::get_counting_also`).
    #[inline(always)]
    pub(crate) fn add_on(&self, stripe: usize, counter: Counter, n: u64) {
        let Some(stripes) = &self.stripes else {
            return;
        };
        if stripe < STRIPES {
            let cell = &stripes[stripe].0[counter as usize];
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            add_shared(stripes, stripe, counter, n);
        }
    }

    /// Adds one to `counter`.
    #[inline]
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// This thread's own hits and misses in this recorder (its stripe's counts), or `None` when
    /// not counting or when the thread shares a stripe with others. Between two calls on one
    /// thread, hits unchanged and misses up means every read it made in between missed: the
    /// GenerationalStore's scan guard (`generational/gc.rs`) tells a run of misses by this,
    /// with no write on the hit path.
    #[inline]
    pub(crate) fn own_hits_and_misses(&self) -> Option<(u64, u64)> {
        let stripes = self.stripes.as_ref()?;
        let stripe = stripes.get(STRIPE.with(Cell::get))?;
        let count = |c: Counter| stripe.0[c as usize].load(Ordering::Relaxed);
        Some((count(Counter::Hits), count(Counter::Misses)))
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
        let stripes = self.stripes.iter().flat_map(|s| s.iter());
        stripes
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
        for stripe in self.stripes.iter().flat_map(|s| s.iter()) {
            for c in &stripe.0 {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// This thread's [`STRIPE`] value, for [`StatsRecorder::add_on`] (valid on this thread only:
/// a value read before the thread's first count, or during its teardown, makes `add_on` take
/// the slow path, which finds the stripe again).
#[inline(always)]
pub(crate) fn current_stripe() -> usize {
    STRIPE.with(Cell::get)
}

/// [`StatsRecorder::add`] for a thread without a stripe of its own yet, or sharing one.
#[cold]
#[inline(never)]
fn add_shared(stripes: &[Stripe; STRIPES], stripe: usize, counter: Counter, n: u64) {
    let stripe = if stripe == UNSET {
        lease_stripe()
    } else {
        stripe
    };
    let cell = &stripes[stripe % SHARED % STRIPES].0[counter as usize];
    if stripe < STRIPES {
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    } else {
        cell.fetch_add(n, Ordering::Relaxed);
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
    fn a_count_made_after_the_threads_stripe_went_back_still_counts_once() {
        use std::{
            cell::RefCell,
            sync::{atomic::AtomicBool, Arc},
        };
        // Destroyed after the thread's lease (thread-locals go in the reverse order of their
        // first use, and this one is used before the thread counts): it records that the lease
        // is gone, then counts, as a count from a thread-local's destructor would.
        struct CountsOnExit(Arc<StatsRecorder>, Arc<AtomicBool>);
        impl Drop for CountsOnExit {
            fn drop(&mut self) {
                let lease_gone = LEASE.try_with(|_| ()).is_err();
                self.1.store(lease_gone, Ordering::SeqCst);
                self.0.incr(Counter::Writes);
            }
        }
        thread_local! {
            static ON_EXIT: RefCell<Option<CountsOnExit>> = const { RefCell::new(None) };
        }
        let stats = Arc::new(StatsRecorder::new(true));
        let lease_gone = Arc::new(AtomicBool::new(false));
        let (s, gone) = (stats.clone(), lease_gone.clone());
        std::thread::spawn(move || {
            ON_EXIT.with(|slot| *slot.borrow_mut() = Some(CountsOnExit(s.clone(), gone)));
            s.incr(Counter::Writes);
        })
        .join()
        .unwrap();
        assert!(
            lease_gone.load(Ordering::SeqCst),
            "the last count came after the stripe went back"
        );
        // The stripe that went back is leased again; the late count is neither lost nor doubled.
        let s = stats.clone();
        std::thread::spawn(move || s.incr(Counter::Writes))
            .join()
            .unwrap();
        assert_eq!(stats.snapshot().writes, 3);
    }

    #[test]
    fn disabled_counts_nothing() {
        let stats = StatsRecorder::new(false);
        stats.incr(Counter::Hits);
        assert_eq!(stats.snapshot(), Stats::default());
    }
}
