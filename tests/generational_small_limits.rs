//! Issue 12, item 7: "half a limit" was `m / 2`, so `max_size(1)` evicted the entry a put had
//! just written and `max_size(3)` held one entry. For every limit the store must hold between
//! half (rounded up) and all of it, and a put must be readable right after it returns.

use proptest::prelude::*;
use strata::{GenerationalStore, ManualClock};

fn store(limit: u64, time: &ManualClock) -> GenerationalStore<u64, u64> {
    GenerationalStore::builder()
        .clock(time.clock())
        .max_size(limit)
        .build()
        .unwrap()
}

/// Puts `n` distinct keys one by one, checking the bounds after each.
fn check_limit(limit: u64, n: u64) {
    let time = ManualClock::new();
    let store = store(limit, &time);
    let half = limit.div_ceil(2);
    for i in 0..n {
        store.put(i, i, None).unwrap();
        assert_eq!(
            store.get(&i),
            Some(i),
            "limit {limit}: put {i} was evicted at once"
        );
        let held = store.count() as u64;
        assert!(held <= limit, "limit {limit}: holds {held}");
        assert!(
            held >= half.min(i + 1),
            "limit {limit}: after {} puts holds {held}, less than half",
            i + 1
        );
    }
}

#[test]
fn generational_small_limits_hold_half_to_all_and_keep_the_last_put() {
    for limit in [1, 2, 3, 5, 1000] {
        check_limit(limit, 3 * limit + 5);
    }
}

#[test]
fn generational_memory_limit_below_two_entries_keeps_the_last_put() {
    let time = ManualClock::new();
    let one_byte: GenerationalStore<u64, u64> = GenerationalStore::builder()
        .clock(time.clock())
        .allocated_memory(1)
        .build()
        .unwrap();
    // An entry heavier than the whole limit is the documented exception: the last put stays
    // readable, and is evicted by the next one (never more than one such entry is held).
    one_byte.put(1, 1, None).unwrap();
    assert_eq!(one_byte.get(&1), Some(1));
    one_byte.put(2, 2, None).unwrap();
    assert_eq!((one_byte.get(&1), one_byte.get(&2)), (None, Some(2)));
    assert_eq!(one_byte.size(), 1);
    let probe: GenerationalStore<u64, u64> = GenerationalStore::builder().build().unwrap();
    probe.put(0, 0, None).unwrap();
    let entry = probe.memory();
    for limit in [entry, entry + entry / 2, 2 * entry - 1] {
        let store: GenerationalStore<u64, u64> = GenerationalStore::builder()
            .clock(time.clock())
            .allocated_memory(limit)
            .build()
            .unwrap();
        for i in 0..10 {
            store.put(i, i, None).unwrap();
            assert_eq!(
                store.get(&i),
                Some(i),
                "memory limit {limit}: put {i} evicted"
            );
            assert!(
                store.memory() <= limit,
                "memory limit {limit}: {}",
                store.memory()
            );
        }
    }
}

proptest! {
    /// Any limit, any sequence of puts (keys may repeat) and reads: never over the limit, the
    /// last put readable, and at least min(distinct keys written, ceil(limit / 2)) held.
    #[test]
    fn generational_limits_hold_for_any_limit(
        limit in 1u64..24,
        ops in proptest::collection::vec((any::<bool>(), 0u64..40), 1..120),
    ) {
        let time = ManualClock::new();
        let store = store(limit, &time);
        let mut distinct = std::collections::HashSet::new();
        for (is_put, key) in ops {
            if is_put {
                store.put(key, key, None).unwrap();
                distinct.insert(key);
                prop_assert_eq!(store.get(&key), Some(key));
            } else {
                let _ = store.get(&key);
            }
            let held = store.count() as u64;
            prop_assert!(held <= limit);
            prop_assert!(held >= limit.div_ceil(2).min(distinct.len() as u64));
        }
    }
}

/// Reads never fill the newer generation to half a limit (only a write does, and it rotates at
/// once). Before this held, reads of older entries promoted them past half, and a put racing
/// such readers could run out of relief steps and return with the store over `max_size`
/// (seen as `size() > max_size` in `readers_writers_and_generations_race_without_losing_consistency`).
#[test]
fn reads_never_fill_the_newer_generation_to_half_a_limit() {
    for limit in [1u64, 2, 3, 4, 9, 100] {
        let time = ManualClock::new();
        let s: GenerationalStore<u64, u64> = GenerationalStore::builder()
            .clock(time.clock())
            .partitions(1)
            .max_size(limit)
            .build()
            .unwrap();
        for i in 0..limit * 3 {
            s.put(i, i, None).unwrap();
        }
        let half = limit.div_ceil(2);
        for k in s.keys() {
            assert_eq!(s.get(&k), Some(k), "limit {limit}: key {k}");
            let (newer, older) = s.generation_sizes();
            assert!(
                newer < half,
                "limit {limit}: a read filled the newer generation to {newer}"
            );
            assert!(newer + older <= limit, "limit {limit}: {newer} + {older}");
        }
        s.put(u64::MAX, 0, None).unwrap();
        assert!(s.size() <= limit, "limit {limit}: {} after a put", s.size());
        assert_eq!(s.get(&u64::MAX), Some(0));
    }
}
