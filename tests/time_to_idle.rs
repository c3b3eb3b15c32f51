//! `time_to_idle` beyond the shared suite (`conformance_idle.rs`): the sweeper removes idle
//! entries with cause `Expired`, including entries whose deadline a read moved after the
//! sweeper indexed them, and a zero idle time is refused at build. Manual clock, no sleeps;
//! the store's own sweeper thread (woken by the clock) may purge before the test does, so the
//! test waits on a condition variable for the removals it expects, whoever made them.

use std::{
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use strata::{ManualClock, MemoryStore, RemovalCause};

const IDLE: Duration = Duration::from_secs(60);
const SEC: Duration = Duration::from_secs(1);

type Heard = Vec<(u64, RemovalCause)>;

/// What the listener heard, and a condition variable to wait for it on.
#[derive(Clone, Default)]
struct Log(Arc<(Mutex<Heard>, Condvar)>);

impl Log {
    fn listener(&self) -> impl Fn(u64, u64, RemovalCause) + Send + Sync + 'static {
        let log = self.0.clone();
        move |key, _, cause| {
            log.0.lock().unwrap().push((key, cause));
            log.1.notify_all();
        }
    }

    /// Waits until `n` removals in all arrived; returns them sorted.
    fn wait_for(&self, n: usize) -> Heard {
        let (log, arrived) = &*self.0;
        let (log, timeout) = arrived
            .wait_timeout_while(log.lock().unwrap(), Duration::from_secs(30), |l| {
                l.len() < n
            })
            .unwrap();
        assert!(!timeout.timed_out(), "only {log:?} of {n} removals arrived");
        let mut got = log.clone();
        got.sort();
        got
    }
}

fn idle_store(time: &ManualClock) -> (MemoryStore<u64, u64>, Log) {
    let log = Log::default();
    let store = MemoryStore::builder()
        .clock(time.clock())
        .shards(1)
        .time_to_idle(IDLE)
        .eviction_listener(log.listener())
        .build()
        .unwrap();
    (store, log)
}

#[test]
fn the_sweeper_removes_idle_entries_as_expired_even_after_reads_moved_them() {
    // Purged exactly at the first deadline (its bucket partly due) and a little after (the
    // bucket wholly due): the sweeper's two paths.
    for late in [Duration::ZERO, 2 * SEC] {
        let time = ManualClock::new();
        let (store, log) = idle_store(&time);
        store.put(1, 10, None).unwrap();
        store.put(2, 20, None).unwrap();
        store.put(3, 30, Some(IDLE * 10)).unwrap();
        time.advance(IDLE - SEC);
        assert_eq!(store.get(&2), Some(20)); // moves 2's deadline; the index has the old one
        assert_eq!(store.get(&3), Some(30)); // and 3's, whose TTL waits in the side map
        time.advance(SEC + late);
        // The purge the sweeper runs (called here so the test does not wait on its thread,
        // which may still get there first).
        store.purge_expired();
        let expired = |k| (k, RemovalCause::Expired);
        assert_eq!(log.wait_for(1), [expired(1)]);
        assert_eq!(store.count(), 2, "the entries read were kept");
        time.advance(IDLE);
        // Only a re-indexed entry can be purged: the index held 2 and 3 at their old deadline.
        store.purge_expired();
        assert_eq!(log.wait_for(3), [expired(1), expired(2), expired(3)]);
        assert_eq!(store.count(), 0);
    }
}

/// `MemoryStore::entries` (not in the `Store` trait) looks without reading; `contains`, `ttl`
/// and `keys` are the shared case `conformance_idle::*::looking_at_an_entry_does_not_keep_it_alive`.
#[test]
fn listing_the_entries_does_not_keep_them_alive() {
    let time = ManualClock::new();
    let (store, _) = idle_store(&time);
    store.put(1, 10, None).unwrap();
    time.advance(IDLE - SEC);
    assert_eq!(store.entries().len(), 1);
    time.advance(SEC);
    assert_eq!(store.get(&1), None);
}

#[test]
fn a_zero_idle_time_is_refused_at_build() {
    let built = MemoryStore::<u64, u64>::builder()
        .time_to_idle(Duration::ZERO)
        .build();
    assert!(matches!(
        built,
        Err(strata::Error::InvalidConfig(ref e)) if e.option == "time_to_idle"
    ));
}

#[test]
fn generational_purge_removes_idle_entries_as_expired() {
    let time = ManualClock::new();
    let log = Log::default();
    let store = strata::GenerationalStore::<u64, u64>::builder()
        .clock(time.clock())
        .time_to_idle(IDLE)
        .eviction_listener(log.listener())
        .build()
        .unwrap();
    store.put(1, 10, None).unwrap();
    store.put(2, 20, None).unwrap();
    time.advance(IDLE - SEC);
    assert!(store.touch(&2), "touch counts as a read");
    time.advance(SEC);
    // No background thread here (no limit, no timer): the purge is the only remover.
    assert_eq!(store.purge_expired(), 1);
    assert_eq!(log.wait_for(1), [(1, RemovalCause::Expired)]);
    time.advance(IDLE);
    assert_eq!(store.purge_expired(), 1);
    assert_eq!(log.wait_for(2).len(), 2);
    let zero = strata::GenerationalStore::<u64, u64>::builder().time_to_idle(Duration::ZERO);
    assert!(zero.build().is_err());
}

/// An idle time too long for milliseconds in a u64 means "practically never", not the few
/// hundred milliseconds a truncating conversion made of it; on both local stores.
#[test]
fn a_huge_idle_time_saturates_instead_of_wrapping() {
    let time = ManualClock::new();
    let huge = Duration::from_secs(18_446_744_073_709_552); // > u64::MAX ms
    let memory = MemoryStore::<u64, u64>::builder()
        .clock(time.clock())
        .time_to_idle(huge)
        .build()
        .unwrap();
    let generational = strata::GenerationalStore::<u64, u64>::builder()
        .clock(time.clock())
        .time_to_idle(huge)
        .build()
        .unwrap();
    memory.put(1, 1, None).unwrap();
    generational.put(1, 1, None).unwrap();
    time.advance(Duration::from_secs(86_400 * 3650));
    assert_eq!(memory.get(&1), Some(1));
    assert_eq!(generational.get(&1), Some(1));
}
