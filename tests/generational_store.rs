//! GenerationalStore's own behaviour beyond the conformance suite: generations, limits, GC
//! timers, queries and transactions. Time moves only by a `ManualClock`; the GC is driven by
//! `maintain()`, which does exactly what the background thread does (and serialises with it).

use std::{
    collections::HashSet,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use strata::{Error, EventKind, Expiry, GenerationalStore, ManualClock, Query};

const SEC: Duration = Duration::from_secs(1);

fn store(time: &ManualClock) -> GenerationalStore<String, u64> {
    GenerationalStore::builder()
        .clock(time.clock())
        .partitions(4)
        .build()
        .unwrap()
}

fn key(i: u64) -> String {
    format!("key-{i}")
}

#[test]
fn a_read_in_the_older_generation_promotes_the_entry() {
    let time = ManualClock::new();
    let s = store(&time);
    s.put("a".into(), 1, None).unwrap();
    assert_eq!(s.generation_sizes(), (1, 0));
    assert_eq!(s.new_generation(true), 0);
    assert_eq!(s.generation_sizes(), (0, 1));
    assert_eq!(s.get("a"), Some(1));
    assert_eq!(
        s.generation_sizes(),
        (1, 0),
        "the hit moved it to the newer generation"
    );
}

#[test]
fn ttl_incr_expire_touch_and_replace_promote_too() {
    let time = ManualClock::new();
    let s = store(&time);
    type Op = fn(&GenerationalStore<String, u64>);
    let ops: [(&str, Op); 5] = [
        ("ttl", |s| assert_eq!(s.ttl("k"), Some(Expiry::Never))),
        ("incr", |s| {
            assert_eq!(s.incr(&"k".to_string(), 2).unwrap(), 7)
        }),
        ("expire", |s| {
            assert!(s.expire("k", Some(60 * SEC)).unwrap())
        }),
        ("touch", |s| assert!(s.touch("k"))),
        ("replace", |s| {
            assert!(s.replace(&"k".to_string(), 9, None).unwrap())
        }),
    ];
    for (name, op) in ops {
        s.clear();
        s.put("k".into(), 5, None).unwrap();
        s.new_generation(false);
        assert_eq!(s.generation_sizes(), (0, 1), "{name}: setup");
        op(&s);
        assert_eq!(s.generation_sizes(), (1, 0), "{name} promotes");
    }
}

#[test]
fn lifecycle_over_two_generations() {
    let time = ManualClock::new();
    let s = store(&time);
    let mut events = s.subscribe();
    s.put("read".into(), 1, None).unwrap();
    s.put("unread".into(), 2, None).unwrap();
    assert_eq!(
        s.new_generation(true),
        0,
        "the first generation drops nothing"
    );
    assert_eq!(s.get("read"), Some(1));
    assert_eq!(s.new_generation(true), 1, "the unread key is dropped");
    assert_eq!(s.get("unread"), None);
    assert_eq!(
        s.get("read"),
        Some(1),
        "still in the older generation, promoted again"
    );
    assert_eq!(s.stats().evictions, 1);
    let dropped: Vec<_> = std::iter::from_fn(|| events.try_recv())
        .filter(|e| e.kind == EventKind::Generation)
        .map(|e| e.key)
        .collect();
    assert_eq!(dropped, ["unread"]);
}

#[test]
fn put_removes_the_key_from_the_older_generation() {
    let time = ManualClock::new();
    let s = store(&time);
    s.put("a".into(), 1, None).unwrap();
    s.new_generation(true);
    s.put("a".into(), 2, None).unwrap();
    assert_eq!(s.generation_sizes(), (1, 0));
    assert_eq!(s.keys(), ["a"]);
    assert_eq!(s.get("a"), Some(2));
    assert_eq!(
        s.stats().updates,
        1,
        "a put over a live older entry is an update"
    );
}

#[test]
fn put_new_respects_an_entry_in_the_older_generation() {
    let time = ManualClock::new();
    let s = store(&time);
    s.put("a".into(), 1, Some(10 * SEC)).unwrap();
    s.new_generation(true);
    assert!(!s.put_new("a".into(), 2, None).unwrap());
    assert_eq!(s.generation_sizes(), (0, 1), "put_new does not promote");
    time.advance(11 * SEC);
    assert!(
        s.put_new("a".into(), 3, None).unwrap(),
        "an expired older entry does not count"
    );
    assert_eq!(s.get("a"), Some(3));
    assert_eq!(s.size(), 1);
}

#[test]
fn listings_see_each_key_once_across_generations() {
    let time = ManualClock::new();
    let s = store(&time);
    for i in 0..200 {
        s.put(key(i), i, None).unwrap();
    }
    s.new_generation(true);
    for i in (0..200).step_by(2) {
        assert_eq!(s.get(&key(i)), Some(i));
    }
    for i in 150..250 {
        s.put(key(i), i, None).unwrap();
    }
    let (newer, older) = s.generation_sizes();
    assert!(newer > 0 && older > 0);
    let expect: HashSet<String> = (0..250).map(key).collect();
    let unique = |keys: Vec<String>| {
        let n = keys.len();
        let set: HashSet<String> = keys.into_iter().collect();
        assert_eq!(set.len(), n, "duplicates");
        set
    };
    assert_eq!(unique(s.keys()), expect);
    assert_eq!(s.count(), 250);
    assert_eq!(s.size(), 250);
    assert_eq!(unique(s.all_keys(&Query::all())), expect);
    assert_eq!(s.count_all(&Query::unexpired()), 250);
    let streamed = s.stream(Query::all(), 7).map(|e| e.key).collect();
    assert_eq!(unique(streamed), expect);
}

#[test]
fn max_size_holds_after_every_put() {
    let time = ManualClock::new();
    let s: GenerationalStore<String, u64> = GenerationalStore::builder()
        .clock(time.clock())
        .partitions(4)
        .max_size(100)
        .build()
        .unwrap();
    s.put("hot".into(), 7, None).unwrap();
    for i in 0..1_000 {
        s.put(key(i), i, None).unwrap();
        assert!(s.size() <= 100, "size {} after put {i}", s.size());
        assert_eq!(s.get(&key(i)), Some(i), "the key just written stays");
        assert_eq!(s.get("hot"), Some(7), "a key read after every put is kept");
        if i >= 10 {
            // A new generation comes every 50 writes or promotions (at most 3 per round here),
            // and an entry survives at least one full generation.
            let recent = key(i - 10);
            assert!(
                s.get(&recent).is_some(),
                "a key written 10 rounds ago is kept ({recent})"
            );
        }
    }
    let stats = s.stats();
    assert_eq!(stats.writes, 1_001);
    assert_eq!(stats.evictions, 1_001 - s.size());
    assert!(
        s.size() >= 50,
        "relief keeps at least half the limit, kept {}",
        s.size()
    );
}

#[test]
fn allocated_memory_holds_after_every_put() {
    let time = ManualClock::new();
    let s: GenerationalStore<String, String> = GenerationalStore::builder()
        .clock(time.clock())
        .partitions(2)
        .allocated_memory(64 * 1024)
        .weigh_heap()
        .build()
        .unwrap();
    let mut peak = 0;
    for i in 0..2_000u64 {
        let value = "x".repeat(100 + (i as usize % 400));
        s.put(key(i), value, None).unwrap();
        assert!(
            s.memory() <= 64 * 1024,
            "memory {} after put {i}",
            s.memory()
        );
        peak = peak.max(s.memory());
    }
    assert!(peak > 48 * 1024, "the limit is used, peak {peak}");
    // Each entry weighs at least its heap bytes: a 500-byte value cannot weigh less.
    s.clear();
    s.put("k".into(), "y".repeat(500), None).unwrap();
    assert!(s.memory() > 500, "memory {}", s.memory());
}

#[test]
fn concurrent_writers_end_within_the_limit() {
    let s: GenerationalStore<u64, u64> = GenerationalStore::builder()
        .partitions(4)
        .max_size(500)
        .build()
        .unwrap();
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..5_000 {
                    s.put(t * 1_000_000 + i, i, None).unwrap();
                    assert!(s.size() <= 500 + 4, "overshoot beyond one entry per writer");
                }
            });
        }
    });
    assert!(s.size() <= 500, "size {}", s.size());
    assert_eq!(s.size() as usize, s.count());
}

#[test]
fn cleanup_poll_uses_the_inverse_linear_backoff() {
    let time = ManualClock::new();
    let s: GenerationalStore<String, u64> = GenerationalStore::builder()
        .clock(time.clock())
        .max_size(100)
        .gc_cleanup_min_timeout(10 * SEC)
        .gc_cleanup_max_timeout(600 * SEC)
        .build()
        .unwrap();
    assert_eq!(s.cleanup_timeout(), 600 * SEC, "empty: max timeout");
    for i in 0..50 {
        s.put(key(i), i, None).unwrap();
    }
    assert_eq!(
        s.cleanup_timeout(),
        305 * SEC,
        "half full: (10-600)/100*50+600"
    );
    assert_eq!(
        s.generation_sizes(),
        (0, 50),
        "half the limit in newer: a new generation"
    );
    // Writes keep the store under its limit, so the poll finds nothing to clean: it reschedules
    // itself by the back-off. The first poll is due max_timeout after start.
    time.advance(599 * SEC);
    assert_eq!(s.maintain(), Some(time.now_ms() + 1_000), "not due yet");
    time.advance(SEC);
    let next = s.maintain().unwrap();
    assert_eq!(
        next,
        time.now_ms() + 305_000,
        "half full: next poll in 305 s"
    );
    for i in 50..75 {
        s.put(key(i), i, None).unwrap();
    }
    assert_eq!(s.size(), 75);
    assert_eq!(
        s.cleanup_timeout(),
        Duration::from_millis(157_500),
        "3/4 full"
    );
    assert!(!s.cleanup(), "under the limit: no clean-up");
    s.clear();
    assert_eq!(s.cleanup_timeout(), 600 * SEC);
}

#[test]
fn gc_interval_pushes_generations_and_reset_timer_postpones() {
    let time = ManualClock::new();
    let s: GenerationalStore<String, u64> = GenerationalStore::builder()
        .clock(time.clock())
        .gc_interval(3600 * SEC)
        .build()
        .unwrap();
    s.put("a".into(), 1, None).unwrap();
    time.advance(3600 * SEC);
    s.maintain();
    assert_eq!(s.generation_sizes(), (0, 1));
    time.advance(1800 * SEC);
    s.new_generation(true); // drops "a", restarts the heartbeat from now
    assert_eq!(s.size(), 0);
    s.put("b".into(), 2, None).unwrap();
    time.advance(1800 * SEC);
    s.maintain();
    assert_eq!(s.generation_sizes(), (1, 0), "heartbeat was postponed");
    time.advance(1800 * SEC);
    s.maintain();
    assert_eq!(s.generation_sizes(), (0, 1));
    s.new_generation(false);
    time.advance(3600 * SEC);
    s.maintain();
    assert_eq!(s.stats().evictions, 2);
}

#[test]
fn dropped_generations_are_freed_after_the_flush_delay() {
    let time = ManualClock::new();
    let s: GenerationalStore<String, u64> = GenerationalStore::builder()
        .clock(time.clock())
        .gc_flush_delay(10 * SEC)
        .build()
        .unwrap();
    for i in 0..10 {
        s.put(key(i), i, None).unwrap();
    }
    s.new_generation(true);
    assert_eq!(s.new_generation(true), 10);
    assert_eq!(s.pending_flush(), 10, "held for the flush delay");
    assert_eq!(s.count(), 0, "but no longer visible");
    time.advance(10 * SEC);
    s.maintain();
    assert_eq!(s.pending_flush(), 0);
}

#[test]
fn limits_without_gc_interval_do_not_crash() {
    let time = ManualClock::new();
    let s: GenerationalStore<String, u64> = GenerationalStore::builder()
        .clock(time.clock())
        .max_size(10)
        .build()
        .unwrap();
    for i in 0..100 {
        s.put(key(i), i, Some(SEC)).unwrap();
    }
    for _ in 0..5 {
        time.advance(600 * SEC);
        s.maintain();
    }
    assert!(s.size() <= 10);
}

#[test]
fn an_expired_read_counts_like_nebulex() {
    let time = ManualClock::new();
    let s = store(&time);
    s.put("a".into(), 1, Some(SEC)).unwrap();
    s.put("a".into(), 2, Some(SEC)).unwrap();
    assert_eq!(s.get("a"), Some(2));
    time.advance(2 * SEC);
    assert_eq!(s.get("a"), None);
    assert_eq!(s.get("b"), None);
    let st = s.stats();
    assert_eq!((st.writes, st.updates, st.hits, st.misses), (1, 1, 1, 2));
    assert_eq!((st.expirations, st.evictions), (1, 1));
    assert_eq!(s.size(), 0, "the expired entry was removed on read");
}

#[test]
fn queries_select_return_count_delete_and_stream() {
    let time = ManualClock::new();
    let s = store(&time);
    for i in 0..10 {
        let ttl = (i < 3).then_some(SEC);
        s.put(key(i), i, ttl).unwrap();
    }
    s.new_generation(true);
    s.put(key(10), 10, None).unwrap();
    time.advance(2 * SEC);
    assert_eq!(s.count_all(&Query::all()), 11);
    assert_eq!(s.count_all(&Query::unexpired()), 8);
    assert_eq!(s.count_all(&Query::expired()), 3);
    let even = Query::matching(|_: &String, v: &u64, _| v.is_multiple_of(2));
    let mut values = s.all_values(&even);
    values.sort();
    assert_eq!(values, [4, 6, 8, 10]);
    let picked = Query::keys_in(vec![key(4), key(0), key(99)]);
    assert_eq!(
        s.all_pairs(&picked),
        [(key(4), 4)],
        "expired and missing keys are left out"
    );
    let entry = &s.all(&Query::keys_in(vec![key(10)]))[0];
    assert_eq!((entry.value, entry.expires_at), (10, None));
    assert_eq!(s.generation_sizes(), (1, 10), "queries do not promote");

    assert_eq!(s.delete_all(&Query::expired()), 3);
    assert_eq!(s.stats().expirations, 3);
    assert_eq!(s.delete_all(&even), 4);
    let mut left: Vec<u64> = s.stream(Query::unexpired(), 2).map(|e| e.value).collect();
    left.sort();
    assert_eq!(left, [3, 5, 7, 9]);
    assert_eq!(s.delete_all(&Query::all()), 4);
    assert_eq!(s.size(), 0);
}

#[test]
fn a_panicking_predicate_leaves_the_store_consistent() {
    let time = ManualClock::new();
    let s = store(&time);
    for i in 0..50 {
        s.put(key(i), i, None).unwrap();
    }
    let boom =
        Query::matching(|_: &String, v: &u64, _| if *v == 25 { panic!("boom") } else { true });
    let counted = catch_unwind(AssertUnwindSafe(|| s.count_all(&boom)));
    assert!(counted.is_err());
    let deleted = catch_unwind(AssertUnwindSafe(|| s.delete_all(&boom)));
    assert!(deleted.is_err());
    // delete_all is atomic per partition: partitions done before the panic stay deleted, the
    // panicking partition is untouched, and the counts agree with the entries.
    assert_eq!(
        s.get(&key(25)),
        Some(25),
        "the panicking partition was left untouched"
    );
    assert_eq!(s.count() as u64, s.size());
    let before = s.count();
    s.put(key(50), 50, None).unwrap();
    assert_eq!(s.count(), before + 1, "no lock left held");
}

#[test]
fn transactions_nest_and_release_on_error_and_panic() {
    let s = Arc::new(store(&ManualClock::new()));
    let k = vec!["k".to_string()];
    assert!(!s.in_transaction());
    let out = s.transaction(&k, || {
        assert!(s.in_transaction());
        s.transaction(&k, || {
            s.transaction(&[], || s.put("k".into(), 1, None)) // all-keys, re-entered
        })?;
        Ok::<_, Error>(s.get("k"))
    });
    assert_eq!(out.unwrap(), Some(1));
    assert!(!s.in_transaction());

    let failed: Result<(), &str> = s.transaction(&k, || Err("aborted"));
    assert_eq!(failed, Err("aborted"));
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        s.transaction(&k, || -> Result<(), Error> { panic!("boom") })
    }));
    assert!(panicked.is_err());
    assert!(!s.in_transaction());
    // Another thread can take the same key at once: nothing is left locked.
    let other = s.clone();
    std::thread::spawn(move || other.transaction(&["k".to_string()], || Ok::<_, Error>(())))
        .join()
        .unwrap()
        .unwrap();
}

#[test]
fn bad_options_are_typed_errors_at_build() {
    fn check(result: strata::Result<GenerationalStore<u64, u64>>, option: &str) {
        match result {
            Err(Error::InvalidConfig(e)) => assert_eq!(e.option, option),
            other => panic!("expected InvalidConfig for {option}, got {other:?}"),
        }
    }
    let b = GenerationalStore::<u64, u64>::builder;
    check(b().max_size(0).build(), "max_size");
    check(b().allocated_memory(0).build(), "allocated_memory");
    check(b().partitions(0).build(), "partitions");
    check(b().gc_interval(Duration::ZERO).build(), "gc_interval");
    check(
        b().gc_cleanup_min_timeout(20 * SEC)
            .gc_cleanup_max_timeout(10 * SEC)
            .build(),
        "gc_cleanup_min_timeout",
    );
    check(
        b().gc_cleanup_min_timeout(Duration::ZERO).build(),
        "gc_cleanup_min_timeout",
    );
}

/// The GC thread holds only a weak reference: once the store is dropped, the next wake-up (a
/// clock advance) ends it. Fails if the thread kept the store alive or never woke up.
#[test]
fn dropping_the_store_stops_its_gc_thread() {
    let time = ManualClock::new();
    let s: GenerationalStore<u64, u64> = GenerationalStore::builder()
        .clock(time.clock())
        .gc_interval(SEC)
        .build()
        .unwrap();
    s.put(1, 1, None).unwrap();
    let gc = s.take_gc_thread().expect("a GC thread runs");
    assert!(s.take_gc_thread().is_none(), "the handle is taken once");
    // The heartbeat is due: the thread pushes a generation, so it has run with the store alive.
    time.advance(SEC);
    let wait_until = |done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    };
    wait_until(&|| s.generation_sizes() == (0, 1));
    assert_eq!(s.generation_sizes(), (0, 1), "the GC thread never ran");
    assert!(
        !gc.is_finished(),
        "the GC thread stopped while its store is alive"
    );
    drop(s);
    // Its next wake-up (this advance) finds the store gone and ends the thread.
    time.advance(SEC);
    wait_until(&|| gc.is_finished());
    assert!(gc.is_finished(), "the GC thread outlived its store");
    gc.join().unwrap();
}

/// A hot set read over and over, then a one-pass scan over 3× the capacity in cold keys.
/// Returns how many hot keys are still there after the scan.
fn hot_keys_after_scan(admission: bool) -> usize {
    let time = ManualClock::new();
    let s: GenerationalStore<String, u64> = GenerationalStore::builder()
        .clock(time.clock())
        .partitions(2)
        .max_size(1_000)
        .admission(admission)
        .build()
        .unwrap();
    let hot: Vec<String> = (0..200).map(|i| format!("hot-{i}")).collect();
    for _ in 0..5 {
        for (i, k) in hot.iter().enumerate() {
            if s.get(k).is_none() {
                s.put(k.clone(), i as u64, None).unwrap();
            }
        }
    }
    for i in 0..3_000 {
        // Each cold key is read once, missed, and written.
        assert_eq!(s.get(&key(i)), None);
        s.put(key(i), i, None).unwrap();
        assert!(s.size() <= 1_000, "size {} after put {i}", s.size());
        assert!(s.contains(&key(i)), "a write is always readable at once");
    }
    assert_eq!(s.size() as usize, s.count());
    hot.iter().filter(|k| s.contains(k.as_str())).count()
}

#[test]
fn admission_keeps_the_hot_set_through_a_scan() {
    // Nebulex's placement: the scan fills the newer generation twice over, so the unread hot
    // set is evicted with the generations.
    assert_eq!(hot_keys_after_scan(false), 0);
    // With admission the cold keys wait in the older generation and are evicted first. (The
    // sketch is randomly seeded; a few hot keys may lose to hash collisions.)
    let kept = hot_keys_after_scan(true);
    assert!(
        kept >= 180,
        "the scan flushed {} of 200 hot keys",
        200 - kept
    );
}

/// A store with admission, one partition and room for `max` entries, filled with keys
/// `0..max`, each read once (missed) and written: all wait on probation in the older
/// generation, in that order. Time stands still (the clean-up poll never fires).
fn admitting(max: u64) -> GenerationalStore<u64, u64> {
    let time = ManualClock::new();
    let s = GenerationalStore::builder()
        .clock(time.clock())
        .partitions(1)
        .max_size(max)
        .admission(true)
        .build()
        .unwrap();
    for k in 0..max {
        assert_eq!(s.get(&k), None);
        s.put(k, k, None).unwrap();
    }
    assert_eq!(
        s.generation_sizes(),
        (0, max),
        "one-read keys wait on probation"
    );
    s
}

/// Reads a missing `key` `reads` times, then writes it (read-through); checks the bound and
/// that the write is readable at once.
fn read_through(s: &GenerationalStore<u64, u64>, key: u64, reads: usize, max: u64) {
    for _ in 0..reads {
        assert_eq!(s.get(&key), None);
    }
    s.put(key, key, None).unwrap();
    assert!(s.contains(&key), "a write is readable at once");
    assert!(s.size() <= max, "size {} over {max}", s.size());
}

#[test]
fn admission_keeps_a_frequent_key_against_one_hit_candidates() {
    // Key 0 is read ten times: promoted to the newer generation, which is then full, so the
    // next write demotes it back to the older one, where an earlier, stale place in the
    // eviction queue puts it first in line. Each one-hit key loses the comparison with it (TinyLFU):
    // the candidate is the next to go and another entry makes room, never key 0.
    let s = admitting(4);
    for _ in 0..10 {
        assert_eq!(s.get(&0), Some(0));
    }
    assert_eq!(s.generation_sizes(), (1, 3));
    for k in 100..300 {
        read_through(&s, k, 1, 4);
        assert!(s.contains(&0), "one-hit key {k} evicted the frequent key");
    }
    assert_eq!(s.size(), 4);
}

#[test]
fn admission_lets_a_candidate_read_more_often_displace_the_victim() {
    let s = admitting(4);
    // Read three times (still on probation: fewer than four reads), then written: it beats
    // key 0, first in line and read once, which is evicted.
    read_through(&s, 50, 3, 4);
    assert!(!s.contains(&0), "the victim read less often stays");
    assert!((1..4).all(|k| s.contains(&k)));
    // A one-hit key ties with key 1, first in line: it is rejected (key 1, the least read in
    // line, makes room for now), and the next eviction takes it first.
    read_through(&s, 60, 1, 4);
    read_through(&s, 61, 3, 4);
    assert!(!s.contains(&60), "a rejected candidate is the next to go");
    assert!(s.contains(&50) && s.contains(&61));
}

/// A store with admission, one partition and room for 1 000 entries, filled by puts alone:
/// keys `0..1_000`, never read, so each loses to any candidate read once.
fn filled_unread() -> GenerationalStore<u64, u64> {
    let time = ManualClock::new();
    let s = GenerationalStore::builder()
        .clock(time.clock())
        .partitions(1)
        .max_size(1_000)
        .admission(true)
        .build()
        .unwrap();
    (0..1_000).for_each(|k| s.put(k, k, None).unwrap());
    s
}

#[test]
fn admission_takes_a_long_run_of_misses_for_a_scan_until_a_hit() {
    // 3 000 keys read once (missed) and written, one after another. Each was read more
    // often than the unread entry first in line, so TinyLFU alone admits the first 1 000 and
    // they displace every entry. The scan guard (`gc.rs`) takes the run for a scan after 64
    // admission tests and rejects the rest: the first 65 get in, plus one stand-in for the
    // rejected candidate that stays readable until the next eviction.
    let s = filled_unread();
    for k in 10_000..13_000 {
        read_through(&s, k, 1, 1_000);
    }
    let kept = (0..1_000).filter(|k| s.contains(k)).count();
    assert!(
        kept >= 930,
        "the scan displaced {} of 1 000 entries",
        1_000 - kept
    );
    // A hit ends the run: a key read twice is judged again, beats the unread entry first in
    // line and stays after the next write (a rejected one would be the next to go).
    let held = (0..1_000).find(|k| s.contains(k)).unwrap();
    assert_eq!(s.get(&held), Some(held));
    read_through(&s, 20_000, 2, 1_000);
    read_through(&s, 20_001, 1, 1_000);
    assert!(
        s.contains(&20_000),
        "a candidate after a hit was taken for a scan"
    );
}

#[test]
fn admission_does_not_take_a_writer_that_puts_without_reading_for_a_scan() {
    // 100 keys read (missed) first, then written in a row: the writes do not follow a miss
    // each, so they are no run of misses, and each beats the unread entry first in line.
    let s = filled_unread();
    (1_000..1_100).for_each(|k| assert_eq!(s.get(&k), None));
    (1_000..1_100).for_each(|k| s.put(k, k, None).unwrap());
    let admitted = (1_000..1_100).filter(|k| s.contains(k)).count();
    assert!(admitted >= 95, "{admitted} of 100 written keys admitted");
    assert!(s.size() <= 1_000);
}

/// Model-based: random operations against a map that tracks each key's generation.
mod model {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Gen {
        Newer,
        Older,
    }

    #[derive(Clone, Debug)]
    enum Op {
        Put(u8, u64, Option<u64>),
        Get(u8),
        Delete(u8),
        Take(u8),
        PutNew(u8, u64),
        NewGeneration,
        Advance(u64),
        Incr(u8, i64),
        Touch(u8),
        Expire(u8, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let k = 0u8..8;
        prop_oneof![
            (k.clone(), 0u64..100, proptest::option::of(1u64..4))
                .prop_map(|(k, v, t)| Op::Put(k, v, t)),
            k.clone().prop_map(Op::Get),
            k.clone().prop_map(Op::Delete),
            k.clone().prop_map(Op::Take),
            (k.clone(), 0u64..100).prop_map(|(k, v)| Op::PutNew(k, v)),
            Just(Op::NewGeneration),
            (0u64..3).prop_map(Op::Advance),
            (k.clone(), 1i64..5).prop_map(|(k, d)| Op::Incr(k, d)),
            k.clone().prop_map(Op::Touch),
            (k, 1u64..4).prop_map(|(k, t)| Op::Expire(k, t)),
        ]
    }

    #[derive(Default)]
    struct Model {
        now: u64,
        map: HashMap<u8, (u64, Option<u64>, Gen)>,
    }

    impl Model {
        fn live(&self, k: u8) -> Option<u64> {
            let (v, d, _) = self.map.get(&k)?;
            d.is_none_or(|d| d > self.now).then_some(*v)
        }

        /// Nebulex's lookup: promote a live entry, remove an expired one.
        fn locate(&mut self, k: u8) -> Option<u64> {
            let live = self.live(k);
            match live {
                Some(_) => self.map.get_mut(&k).unwrap().2 = Gen::Newer,
                None => drop(self.map.remove(&k)),
            }
            live
        }

        fn deadline(&self, secs: Option<u64>) -> Option<u64> {
            secs.map(|s| self.now + s * 1000)
        }
    }

    fn apply(m: &mut Model, s: &GenerationalStore<u8, u64>, time: &ManualClock, op: &Op) {
        let secs = |s: u64| Duration::from_secs(s);
        match *op {
            Op::Put(k, v, t) => {
                s.put(k, v, t.map(secs)).unwrap();
                let d = m.deadline(t);
                m.map.insert(k, (v, d, Gen::Newer));
            }
            Op::Get(k) => assert_eq!(s.get(&k), m.locate(k)),
            Op::Delete(k) => {
                let live = m.live(k);
                m.map.remove(&k);
                assert_eq!(s.delete(&k), live.is_some());
            }
            Op::Take(k) => {
                let live = m.live(k);
                m.map.remove(&k);
                assert_eq!(s.take(&k), live);
            }
            Op::PutNew(k, v) => {
                let fresh = m.live(k).is_none();
                if fresh {
                    m.map.insert(k, (v, None, Gen::Newer));
                }
                assert_eq!(s.put_new(k, v, None).unwrap(), fresh);
            }
            Op::NewGeneration => {
                let older = m.map.values().filter(|e| e.2 == Gen::Older).count();
                m.map.retain(|_, e| e.2 == Gen::Newer);
                m.map.values_mut().for_each(|e| e.2 = Gen::Older);
                assert_eq!(s.new_generation(true), older);
            }
            Op::Advance(t) => {
                time.advance(secs(t));
                m.now += t * 1000;
            }
            Op::Incr(k, d) => {
                let next = match m.locate(k) {
                    Some(v) => {
                        let e = m.map.get_mut(&k).unwrap();
                        e.0 = v + d as u64;
                        e.0
                    }
                    None => {
                        m.map.insert(k, (d as u64, None, Gen::Newer));
                        d as u64
                    }
                };
                assert_eq!(s.incr(&k, d).unwrap(), next);
            }
            Op::Touch(k) => assert_eq!(s.touch(&k), m.locate(k).is_some()),
            Op::Expire(k, t) => {
                let live = m.locate(k).is_some();
                if live {
                    let d = m.deadline(Some(t));
                    m.map.get_mut(&k).unwrap().1 = d;
                }
                assert_eq!(s.expire(&k, Some(secs(t))).unwrap(), live);
            }
        }
    }

    fn check(m: &Model, s: &GenerationalStore<u8, u64>) {
        let mut keys = s.keys();
        keys.sort();
        let mut expect: Vec<u8> = m
            .map
            .keys()
            .copied()
            .filter(|k| m.live(*k).is_some())
            .collect();
        expect.sort();
        assert_eq!(keys, expect);
        let newer = m.map.values().filter(|e| e.2 == Gen::Newer).count() as u64;
        let older = m.map.len() as u64 - newer;
        assert_eq!(s.generation_sizes(), (newer, older));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
            let time = ManualClock::new();
            let s: GenerationalStore<u8, u64> =
                GenerationalStore::builder().clock(time.clock()).partitions(2).build().unwrap();
            let mut m = Model::default();
            for op in &ops {
                apply(&mut m, &s, &time, op);
                check(&m, &s);
            }
        }
    }
}

#[test]
fn readers_writers_and_generations_race_without_losing_consistency() {
    for admission in [false, true] {
        let s: GenerationalStore<u64, u64> = GenerationalStore::builder()
            .partitions(4)
            .max_size(1_000)
            .admission(admission)
            .build()
            .unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for t in 0..2u64 {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..20_000u64 {
                        let k = (i * 7 + t * 13) % 3_000;
                        s.put(k, k * 2, None).unwrap();
                        if let Some(v) = s.get(&((k * 31) % 3_000)) {
                            assert_eq!(v % 2, 0, "a value from another key");
                        }
                    }
                });
            }
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    s.new_generation(false);
                    std::thread::yield_now();
                }
            });
            scope.spawn(|| {
                for k in (0..3_000u64).cycle().take(40_000) {
                    assert!(s.get(&k).is_none_or(|v| v == k * 2));
                }
                stop.store(true, Ordering::Relaxed);
            });
        });
        let keys = s.keys();
        let unique: HashSet<u64> = keys.iter().copied().collect();
        assert_eq!(unique.len(), keys.len(), "a key listed twice");
        assert_eq!(s.size() as usize, keys.len(), "tally and tables disagree");
        assert!(
            s.size() <= 1_000,
            "admission {admission}: {} entries",
            s.size()
        );
        assert!(keys.iter().all(|k| s.get(k) == Some(k * 2)));
    }
}
