//! The eviction listener (`eviction_listener` on the local store builders): every cause is
//! forced (manual clock for expiry, a tiny capacity for size), every removal arrives under
//! concurrent writers (counted exactly), a panicking listener poisons nothing, and a pinned
//! interleaving shows per-key order and that a removing call never waits for another
//! thread's listener. No sleeps. Where an entry expires, the store's sweeper thread (woken by
//! the manual clock) may remove it before the test's own call does: those tests wait on a
//! condition variable for the removals they expect, whoever delivered them.

use std::{
    sync::{Arc, Barrier, Condvar, Mutex},
    thread,
    time::Duration,
};

use strata::{
    Cache, Error, GenerationalStore, GenerationalStoreBuilder, ManualClock, MemoryStore,
    MemoryStoreBuilder, RemovalCause,
};
use support::four_methods::FourMethods;

mod support;

type Removal = (u64, u64, RemovalCause);

/// Collects what a listener is handed.
#[derive(Clone, Default)]
struct Recorder(Arc<(Mutex<Vec<Removal>>, Condvar)>);

impl Recorder {
    fn listener(&self) -> impl Fn(u64, u64, RemovalCause) + Send + Sync + 'static {
        let log = self.0.clone();
        move |key, value, cause| {
            log.0.lock().unwrap().push((key, value, cause));
            log.1.notify_all();
        }
    }

    fn take(&self) -> Vec<Removal> {
        std::mem::take(&mut *self.0 .0.lock().unwrap())
    }

    /// Waits until `n` removals arrived (from any thread: the sweeper's too) and takes them,
    /// sorted.
    fn wait_for(&self, n: usize) -> Vec<Removal> {
        let (log, arrived) = &*self.0;
        let (mut log, timeout) = arrived
            .wait_timeout_while(log.lock().unwrap(), Duration::from_secs(30), |l| {
                l.len() < n
            })
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} of {n} removals arrived: {log:?}",
            log.len()
        );
        let mut got = std::mem::take(&mut *log);
        got.sort();
        got
    }
}

fn memory(time: &ManualClock, recorder: &Recorder) -> MemoryStoreBuilder<u64, u64> {
    MemoryStore::builder()
        .clock(time.clock())
        .eviction_listener(recorder.listener())
}

const MINUTE: Option<Duration> = Some(Duration::from_secs(60));

#[test]
fn explicit_removals_carry_their_values() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    let store = memory(&time, &seen).build().unwrap();
    for key in 1..=4 {
        store.put(key, key * 10, None).unwrap();
    }
    assert!(store.delete(&1));
    assert_eq!(store.take(&2), Some(20));
    assert!(
        !store.delete(&1),
        "nothing left to remove: nothing delivered"
    );
    assert_eq!(
        seen.take(),
        [
            (1, 10, RemovalCause::Explicit),
            (2, 20, RemovalCause::Explicit)
        ]
    );
    assert_eq!(store.clear(), 2);
    let mut cleared = seen.take();
    cleared.sort();
    assert_eq!(
        cleared,
        [
            (3, 30, RemovalCause::Explicit),
            (4, 40, RemovalCause::Explicit)
        ]
    );
}

#[test]
fn every_overwrite_hands_over_the_old_value_as_replaced() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    let store = memory(&time, &seen).build().unwrap();
    store.put(1, 10, None).unwrap();
    store.put(1, 11, None).unwrap();
    assert!(store.replace(1, 12, None).unwrap());
    assert!(store.compare_and_set(1, Some(12), 13, None).unwrap());
    assert_eq!(store.incr(&1, 1).unwrap(), 14);
    assert!(
        !store.put_new(1, 99, None).unwrap(),
        "refused: nothing removed"
    );
    assert!(!store.compare_and_set(1, Some(0), 99, None).unwrap());
    let replaced = |v| (1, v, RemovalCause::Replaced);
    assert_eq!(
        seen.take(),
        [replaced(10), replaced(11), replaced(12), replaced(13)]
    );
}

#[test]
fn the_sweeper_delivers_expired_entries() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    let store = memory(&time, &seen).build().unwrap();
    store.put(1, 10, MINUTE).unwrap();
    store.put(2, 20, None).unwrap();
    time.advance(Duration::from_secs(61));
    // The purge the sweeper runs, called here so the test does not wait for its thread (which
    // may still get there first).
    store.purge_expired();
    store.purge_expired();
    assert_eq!(seen.wait_for(1), [(1, 10, RemovalCause::Expired)]);
    store.purge_expired();
    assert!(seen.take().is_empty(), "delivered once");
}

#[test]
fn a_read_that_finds_an_entry_expired_delivers_it_at_once() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    let store = memory(&time, &seen).build().unwrap();
    store.put(1, 10, MINUTE).unwrap();
    store.put(2, 20, MINUTE).unwrap();
    time.advance(Duration::from_secs(60));
    // The read removes what it finds expired (unless the sweeper, woken by the clock, got
    // there first): either way it is delivered once, as expired.
    assert_eq!(store.get(&1), None);
    assert_eq!(store.get_with_ttl(&2), None);
    let expired = [
        (1, 10, RemovalCause::Expired),
        (2, 20, RemovalCause::Expired),
    ];
    assert_eq!(seen.wait_for(2), expired);
    store.purge_expired();
    assert!(seen.take().is_empty(), "each removal is delivered once");
    assert_eq!(store.count(), 0);
}

#[test]
fn writes_and_removals_over_an_expired_entry_deliver_it_as_expired() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    let store = memory(&time, &seen).build().unwrap();
    for key in 1..=4 {
        store.put(key, key * 10, MINUTE).unwrap();
    }
    time.advance(Duration::from_secs(60));
    store.put(1, 11, None).unwrap();
    assert_eq!(store.incr(&2, 1).unwrap(), 1);
    assert_eq!(store.take(&3), None);
    assert_eq!(store.clear(), 2, "the two live entries");
    let expired = |k| (k, k * 10, RemovalCause::Expired);
    let seen = seen.wait_for(6);
    let explicit = |k, v| (k, v, RemovalCause::Explicit);
    assert_eq!(
        seen,
        [
            expired(1),
            explicit(1, 11),
            explicit(2, 1),
            expired(2),
            expired(3),
            expired(4)
        ]
    );
}

#[test]
fn a_tiny_capacity_delivers_evictions_as_size() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    let store = memory(&time, &seen).max_capacity(4).build().unwrap();
    for key in 0..10 {
        store.put(key, key * 10, None).unwrap();
    }
    let evicted = seen.take();
    assert_eq!(evicted.len(), 6, "{evicted:?}");
    for (key, value, cause) in evicted {
        assert_eq!((value, cause), (key * 10, RemovalCause::Size));
        assert_eq!(store.get(&key), None, "evicted key {key} still readable");
    }
    assert_eq!(store.stats().evictions, 6);
}

#[test]
fn a_write_too_heavy_to_keep_is_delivered_as_size_with_the_entry_it_replaced() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    let store = memory(&time, &seen)
        .max_weight(100)
        .weigher(|_: &u64, value: &u64| *value as u32)
        .build()
        .unwrap();
    store.put(1, 10, None).unwrap();
    store.put(1, 1_000, None).unwrap();
    assert_eq!(
        seen.take(),
        [(1, 10, RemovalCause::Size), (1, 1_000, RemovalCause::Size)]
    );
    assert_eq!(store.stats().evictions, 2);
}

const THREADS: u64 = 4;
const PUTS: u64 = 5_000;

/// Races `THREADS` writers on `store` (released together by a barrier): each puts `PUTS`
/// unique values over keys that overlap across threads and deletes every 7th key's half, so
/// replaces, evictions and deletes all race. Returns every value written, sorted.
fn race_writers<S>(store: &S, put: fn(&S, u64, u64), delete: fn(&S, u64)) -> Vec<u64>
where
    S: Clone + Send + 'static,
{
    let start = Arc::new(Barrier::new(THREADS as usize));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, start) = (store.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..PUTS {
                    let key = i % 3_000;
                    put(&store, key, t * PUTS + i);
                    if i % 7 == 0 {
                        delete(&store, key / 2);
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    (0..THREADS * PUTS).collect()
}

#[test]
fn every_removal_arrives_under_concurrent_writers() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    let store = memory(&time, &seen).max_capacity(1_024).build().unwrap();
    let written = race_writers(
        &store,
        |s, k, v| s.put(k, v, None).unwrap(),
        |s, k| {
            s.delete(&k);
        },
    );
    let removed = seen.take();
    let mut values: Vec<u64> = removed.iter().map(|(_, v, _)| *v).collect();
    values.extend(store.entries().into_iter().map(|(_, v, _)| v));
    values.sort_unstable();
    // Every value written is either still in the store or was handed over exactly once.
    assert_eq!(values, written);
    let evictions = removed.iter().filter(|r| r.2 == RemovalCause::Size).count();
    assert_eq!(evictions as u64, store.stats().evictions);
}

#[test]
fn a_panicking_listener_poisons_nothing() {
    let seen = Recorder::default();
    let record = seen.listener();
    let store = MemoryStore::<u64, u64>::builder()
        .shards(1)
        .eviction_listener(move |key, value, cause| {
            assert!(key != 1, "the listener fails on key 1");
            record(key, value, cause)
        })
        .build()
        .unwrap();
    for key in 0..4 {
        store.put(key, key, None).unwrap();
    }
    assert!(store.delete(&1), "the removal itself succeeds");
    assert!(store.delete(&2));
    store.put(3, 30, None).unwrap();
    assert_eq!(store.get(&0), Some(0), "the shard is not poisoned");
    assert_eq!(store.listener_panics(), 1);
    assert_eq!(
        seen.take(),
        [
            (2, 2, RemovalCause::Explicit),
            (3, 3, RemovalCause::Replaced)
        ]
    );
}

#[test]
fn a_listener_may_write_to_its_own_store() {
    let store_slot: Arc<Mutex<Option<MemoryStore<u64, u64>>>> = Arc::default();
    let reach = store_slot.clone();
    let store = MemoryStore::<u64, u64>::builder()
        .shards(1)
        .eviction_listener(move |key, value, _| {
            let store = reach.lock().unwrap().clone();
            if let Some(store) = store.filter(|_| key < 100) {
                // Archive under key + 100: a removal of that key (a replace) is queued by
                // this nested call and delivered after this one returns.
                store.put(key + 100, value, None).unwrap();
            }
        })
        .build()
        .unwrap();
    *store_slot.lock().unwrap() = Some(store.clone());
    store.put(1, 10, None).unwrap();
    store.delete(&1);
    store.put(1, 11, None).unwrap();
    store.delete(&1);
    assert_eq!(store.get(&101), Some(11));
    store_slot.lock().unwrap().take();
}

#[test]
fn removals_of_one_key_arrive_in_order_and_no_remover_waits_for_another_listener() {
    let seen = Recorder::default();
    let record = seen.listener();
    let (entered, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let (hold, resume) = (entered.clone(), release.clone());
    let store = MemoryStore::<u64, u64>::builder()
        .shards(1)
        .eviction_listener(move |key, value, cause| {
            if value == 1 {
                hold.wait(); // the first delivery parks, holding the shard's delivery turn
                resume.wait();
            }
            record(key, value, cause)
        })
        .build()
        .unwrap();
    store.put(7, 1, None).unwrap();
    let first = {
        let store = store.clone();
        thread::spawn(move || store.put(7, 2, None).unwrap()) // replaces 1: parks
    };
    entered.wait();
    // These removals of the same key queue behind the parked one; the calls return at once.
    store.put(7, 3, None).unwrap();
    assert!(store.delete(&7));
    assert!(
        seen.take().is_empty(),
        "nothing overtakes the parked delivery"
    );
    release.wait();
    first.join().unwrap();
    let replaced = |v| (7, v, RemovalCause::Replaced);
    assert_eq!(
        seen.take(),
        [replaced(1), replaced(2), (7, 3, RemovalCause::Explicit)]
    );
}

#[tokio::test]
async fn a_cache_installs_its_listener_on_the_store() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    let store = MemoryStore::builder()
        .clock(time.clock())
        .max_capacity(2)
        .build()
        .unwrap();
    let cache = Cache::builder()
        .store(store)
        .namespace("listened")
        .eviction_listener(seen.listener())
        .build()
        .await
        .unwrap();
    cache.put(1, 10, MINUTE).await.unwrap();
    cache.put(1, 11, MINUTE).await.unwrap();
    cache.put(2, 20, None).await.unwrap();
    cache.put(3, 30, None).await.unwrap();
    assert!(cache.delete(&3).await.unwrap() || cache.delete(&2).await.unwrap());
    let seen = seen.take();
    assert_eq!(seen[0], (1, 10, RemovalCause::Replaced));
    let causes: Vec<_> = seen[1..].iter().map(|r| r.2).collect();
    assert_eq!(
        causes,
        [RemovalCause::Size, RemovalCause::Explicit],
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_cache_refuses_a_listener_its_store_cannot_serve() {
    let seen = Recorder::default();
    let remote_like = FourMethods(MemoryStore::<u64, u64>::new());
    let built = Cache::builder()
        .store(remote_like)
        .eviction_listener(seen.listener())
        .build()
        .await;
    let Err(Error::InvalidConfig(refused)) = built else {
        panic!("a store without listener support must be refused at build");
    };
    assert_eq!(refused.option, "eviction_listener");
    let time = ManualClock::new();
    let twice = Cache::builder()
        .store(memory(&time, &seen).build().unwrap())
        .eviction_listener(seen.listener())
        .build()
        .await;
    assert!(
        matches!(
            twice,
            Err(Error::InvalidConfig(ref e)) if e.option == "eviction_listener"
        ),
        "a store has one listener"
    );
}

fn generational(time: &ManualClock, recorder: &Recorder) -> GenerationalStoreBuilder<u64, u64> {
    GenerationalStore::builder()
        .clock(time.clock())
        .eviction_listener(recorder.listener())
}

#[test]
fn generational_delivers_every_cause() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    let store = generational(&time, &seen).build().unwrap();
    store.put(1, 10, None).unwrap();
    store.put(1, 11, None).unwrap();
    assert!(store.replace(&1, 12, None).unwrap());
    assert!(store.compare_and_set(1, Some(12), 13, None).unwrap());
    assert_eq!(store.incr(&1, 1).unwrap(), 14);
    assert_eq!(store.take(&1), Some(14));
    let replaced = |v| (1, v, RemovalCause::Replaced);
    let explicit = (1, 14, RemovalCause::Explicit);
    assert_eq!(
        seen.take(),
        [
            replaced(10),
            replaced(11),
            replaced(12),
            replaced(13),
            explicit
        ]
    );

    store.put(2, 20, MINUTE).unwrap();
    store.put(3, 30, MINUTE).unwrap();
    time.advance(Duration::from_secs(60));
    assert_eq!(
        store.get(&2),
        None,
        "a read that finds it expired removes it"
    );
    assert_eq!(seen.take(), [(2, 20, RemovalCause::Expired)]);
    store.purge_expired();
    assert_eq!(seen.take(), [(3, 30, RemovalCause::Expired)]);

    store.put(4, 40, None).unwrap();
    assert_eq!(store.new_generation(true), 0);
    assert_eq!(
        store.new_generation(true),
        1,
        "the count includes what was handed over"
    );
    assert_eq!(seen.take(), [(4, 40, RemovalCause::Generation)]);
    store.put(5, 50, None).unwrap();
    assert_eq!(store.clear(), 1);
    assert_eq!(seen.take(), [(5, 50, RemovalCause::Explicit)]);
}

#[test]
fn generational_limits_deliver_size_and_generation_for_every_entry() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    for admission in [false, true] {
        let store = generational(&time, &seen)
            .partitions(2)
            .max_size(8)
            .admission(admission)
            .build()
            .unwrap();
        for key in 0..200 {
            store.put(key, key * 10, None).unwrap();
        }
        let removed = seen.take();
        let mut values: Vec<u64> = removed.iter().map(|r| r.1).collect();
        values.extend(store.keys().into_iter().map(|k| k * 10));
        values.sort_unstable();
        assert_eq!(values, (0..200).map(|k| k * 10).collect::<Vec<_>>());
        let limited = |c: &RemovalCause| matches!(c, RemovalCause::Size | RemovalCause::Generation);
        assert!(removed.iter().all(|r| limited(&r.2)), "{removed:?}");
        assert_eq!(removed.len() as u64, store.stats().evictions);
    }
}

#[test]
fn generational_every_removal_arrives_under_concurrent_writers() {
    let (time, seen) = (ManualClock::new(), Recorder::default());
    let store = generational(&time, &seen).max_size(1_024).build().unwrap();
    let written = race_writers(
        &store,
        |s, k, v| s.put(k, v, None).unwrap(),
        |s, k| {
            s.delete(&k);
        },
    );
    let mut values: Vec<u64> = seen.take().iter().map(|(_, v, _)| *v).collect();
    for key in store.keys() {
        values.extend(store.get(&key));
    }
    values.sort_unstable();
    assert_eq!(values, written);
}

/// A listener that writes to its own GenerationalStore while generations rotate or entries are
/// evicted for size. The deliveries used to run under the store's rotation lock, so a put over
/// the limit from inside the listener waited for that lock forever. Run on a thread so a hang
/// fails the test instead of stalling the suite.
#[test]
fn a_listener_may_write_to_its_own_generational_store() {
    let store_slot: Arc<Mutex<Option<GenerationalStore<u64, u64>>>> = Arc::default();
    let reach = store_slot.clone();
    let store = GenerationalStore::<u64, u64>::builder()
        .max_size(4)
        .eviction_listener(move |key, value, _| {
            let store = reach.lock().unwrap().clone();
            if let Some(store) = store.filter(|_| key < 1_000) {
                // Re-homed under key + 1000: a write over the limit, which rotates again.
                store.put(key + 1_000, value, None).unwrap();
                if key == 5 {
                    store.new_generation(true); // the GC's timer lock, too
                    store.cleanup();
                }
            }
        })
        .build()
        .unwrap();
    *store_slot.lock().unwrap() = Some(store.clone());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let writer = thread::spawn({
        let store = store.clone();
        move || {
            for k in 0..20 {
                store.put(k, k, None).unwrap();
            }
            store.new_generation(false);
            done_tx.send(()).unwrap();
        }
    });
    let finished = done_rx.recv_timeout(Duration::from_secs(60));
    store_slot.lock().unwrap().take();
    assert!(finished.is_ok(), "a listener writing to its store hung it");
    writer.join().unwrap();
    assert!(
        store.count() <= 4,
        "{} entries over a limit of 4",
        store.count()
    );
}
