//! A read that finds an entry expired removes it and hands it to the eviction listener before
//! the read returns — not left for the sweeper. Forced: the sweeper thread is parked inside the
//! listener (on a decoy's delivery, holding its shard's delivery turn) while the test reads
//! expired keys, so every delivery made meanwhile by another thread came from a read. The
//! hasher is fixed, so which keys share the parked shard is the same on every run.

use std::{
    collections::hash_map::DefaultHasher,
    hash::BuildHasherDefault,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Barrier, Mutex,
    },
    thread,
    time::Duration,
};

use strata::{ManualClock, MemoryStore, RemovalCause};

/// Who delivered what: key, cause, and whether it was the sweeper thread.
type Heard = Arc<Mutex<Vec<(u64, RemovalCause, bool)>>>;

const DECOYS: u64 = 16;

#[test]
fn a_read_that_finds_an_entry_expired_delivers_it_before_it_returns() {
    let time = ManualClock::new();
    let heard: Heard = Arc::default();
    let (parked, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let blocked = Arc::new(AtomicBool::new(false));
    let store = MemoryStore::<u64, u64>::builder()
        .clock(time.clock())
        .shards(2)
        .hasher(BuildHasherDefault::<DefaultHasher>::default())
        .eviction_listener({
            let (heard, parked, release) = (heard.clone(), parked.clone(), release.clone());
            move |key, _, cause| {
                let sweeper = thread::current().name() == Some("strata-sweeper");
                heard.lock().unwrap().push((key, cause, sweeper));
                if sweeper && key < DECOYS && !blocked.swap(true, Ordering::SeqCst) {
                    parked.wait();
                    release.wait();
                }
            }
        })
        .build()
        .unwrap();
    for decoy in 0..DECOYS {
        store
            .put(decoy, decoy, Some(Duration::from_secs(30)))
            .unwrap();
    }
    let keys = 100..132u64;
    for k in keys.clone() {
        store.put(k, k, Some(Duration::from_secs(60))).unwrap();
    }
    time.advance(Duration::from_secs(30));
    parked.wait(); // the sweeper sits in the listener with a decoy
    time.advance(Duration::from_secs(30)); // the keys expire; the sweeper can't scan
    let mut delivered_by_the_read = 0;
    for k in keys {
        assert_eq!(store.get(&k), None);
        let heard = heard.lock().unwrap();
        let delivered = heard
            .iter()
            .any(|&(key, cause, sweeper)| key == k && cause == RemovalCause::Expired && !sweeper);
        delivered_by_the_read += usize::from(delivered);
    }
    release.wait();
    assert!(
        delivered_by_the_read > 0,
        "no read delivered the expired entry it found (the sweeper was parked throughout)"
    );
}
