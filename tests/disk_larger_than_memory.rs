//! DiskStore's larger-than-memory mode (`memory_capacity`): the memory tier holds a bounded hot
//! set, the disk everything. The conformance suite runs on this mode too
//! (`conformance::disk_larger_than_memory`); these cases force what only this mode has: reads
//! of entries memory never held (a cold start), deadlines kept on disk, a cold read racing a
//! write whose commit is parked, and the options `open()` refuses; and with `max_capacity`, the
//! disk's own limit: FIFO by insertion, never more than the limit, evictions gone from memory
//! and disk (checked after a restart), a limit lowered between runs trimmed at open. The
//! suite runs on that mode too (`conformance::disk_larger_than_memory_limited`).
#![cfg(feature = "disk")]

use std::{path::Path, time::Duration};

use strata::{DiskDb, DiskStore, Error, Expiry, Faults, ManualClock, Store, Writes};

const HOUR: Duration = Duration::from_secs(3600);

fn open(dir: &Path, clock: &ManualClock, hot: u64) -> DiskStore<u64, String> {
    DiskDb::builder()
        .dir(dir)
        .clock(clock.clock())
        .memory_capacity(hot)
        .open()
        .unwrap()
        .store("ns")
        .unwrap()
}

#[tokio::test]
async fn a_cold_start_reads_every_entry_from_disk_with_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let store = open(dir.path(), &time, 8);
    for i in 0..200u64 {
        let ttl = (i % 2 == 0).then_some(HOUR);
        store.put(i, format!("v{i}"), ttl).await.unwrap();
    }
    drop(store);

    time.advance(Duration::from_secs(600));
    let store = open(dir.path(), &time, 8);
    assert_eq!(store.db().load_summary().live, 0, "nothing is loaded");
    for i in 0..200u64 {
        assert_eq!(store.get(&i).await.unwrap(), Some(format!("v{i}")));
    }
    let cold = store.stats();
    assert_eq!(cold.misses, 200, "the memory tier started cold");
    assert_eq!(store.get(&199).await.unwrap().as_deref(), Some("v199"));
    let promoted = store.stats();
    assert_eq!(
        (promoted.hits, promoted.misses),
        (cold.hits + 1, 200),
        "a cold read promotes"
    );
    assert_eq!(store.count().await.unwrap(), 200);
    assert_eq!(
        store.ttl(&0).await.unwrap(),
        Some(Expiry::In(Duration::from_secs(3000))),
        "the deadline on disk, not a fresh TTL"
    );
    assert_eq!(store.ttl(&1).await.unwrap(), Some(Expiry::Never));

    time.advance(Duration::from_secs(3000));
    assert_eq!(store.get(&0).await.unwrap(), None, "expired on disk");
    assert_eq!(store.count().await.unwrap(), 100);
    let mut keys = store.keys().await.unwrap();
    keys.sort_unstable();
    assert_eq!(keys, (0..200).filter(|i| i % 2 == 1).collect::<Vec<_>>());
}

#[tokio::test]
async fn conditional_writes_decide_on_entries_only_the_disk_holds() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let store = open(dir.path(), &time, 1);
    for i in 0..50u64 {
        store.put(i, format!("v{i}"), None).await.unwrap();
    }
    // Key 0 was evicted from the one-entry tier long ago: only the disk has it.
    assert!(!store.put_new(0, "new".into(), None).await.unwrap());
    assert!(store.replace(1, "r".into(), None).await.unwrap());
    assert!(!store
        .compare_and_set(2, Some("wrong".into()), "x".into(), None)
        .await
        .unwrap());
    assert!(store
        .compare_and_set(3, Some("v3".into()), "c".into(), None)
        .await
        .unwrap());
    assert_eq!(store.take(&4).await.unwrap().as_deref(), Some("v4"));
    assert_eq!(store.delete_many(&[5, 6, 1000]).await.unwrap(), 2);
    assert!(store.expire(&7, Some(HOUR)).await.unwrap());
    drop(store);

    let store = open(dir.path(), &time, 1);
    assert_eq!(store.get(&0).await.unwrap().as_deref(), Some("v0"));
    assert_eq!(store.get(&1).await.unwrap().as_deref(), Some("r"));
    assert_eq!(store.get(&2).await.unwrap().as_deref(), Some("v2"));
    assert_eq!(store.get(&3).await.unwrap().as_deref(), Some("c"));
    assert_eq!(store.get(&4).await.unwrap(), None);
    assert_eq!(store.get(&5).await.unwrap(), None);
    assert_eq!(store.ttl(&7).await.unwrap(), Some(Expiry::In(HOUR)));
    assert_eq!(store.clear().await.unwrap(), 47);
    assert_eq!(store.count().await.unwrap(), 0);
}

#[tokio::test]
async fn counters_on_disk_keep_counting() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let store: DiskStore<u64, i64> = DiskDb::builder()
        .dir(dir.path())
        .clock(time.clock())
        .memory_capacity(1)
        .open()
        .unwrap()
        .store("n")
        .unwrap();
    store.incr_with_ttl(&1, 5, Some(HOUR)).await.unwrap();
    for i in 2..20u64 {
        store.put(i, 0, None).await.unwrap();
    }
    time.advance(Duration::from_secs(60));
    assert_eq!(store.incr_with_ttl(&1, 2, Some(HOUR)).await.unwrap(), 7);
    assert_eq!(
        store.ttl(&1).await.unwrap(),
        Some(Expiry::In(HOUR - Duration::from_secs(60))),
        "an existing counter keeps its deadline"
    );
}

/// A read of a key memory does not hold, while a write of that key waits for its commit: the
/// read does not wait, sees the committed value (never the write in flight), and the write
/// wins once committed (the read promoted nothing over it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_read_during_a_parked_commit_sees_the_committed_value() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let store: DiskStore<u64, String> = DiskDb::builder()
        .dir(dir.path())
        .memory_capacity(1)
        .faults(faults.clone())
        .open()
        .unwrap()
        .store("ns")
        .unwrap();
    for i in 0..20u64 {
        store.put(i, "old".into(), None).await.unwrap();
    }
    faults.park_next_commit();
    let writer = tokio::spawn({
        let store = store.clone();
        async move { store.put(0, "new".into(), None).await }
    });
    let parked = faults.clone();
    assert!(tokio::task::spawn_blocking(move || parked.wait_parked())
        .await
        .unwrap());
    assert_eq!(store.get(&0).await.unwrap().as_deref(), Some("old"));
    faults.release();
    writer.await.unwrap().unwrap();
    assert_eq!(store.get(&0).await.unwrap().as_deref(), Some("new"));
    for i in 1..20u64 {
        store.get(&i).await.unwrap();
    }
    assert_eq!(store.get(&0).await.unwrap().as_deref(), Some("new"));
}

#[test]
fn open_refuses_a_zero_hot_set_and_async_writes() {
    let dir = tempfile::tempdir().unwrap();
    let zero = DiskDb::builder().dir(dir.path()).memory_capacity(0).open();
    assert!(matches!(zero, Err(Error::InvalidConfig { .. })), "{zero:?}");
    let with_async = DiskDb::builder()
        .dir(dir.path())
        .memory_capacity(10)
        .writes(Writes::Async)
        .open();
    let err = with_async.unwrap_err();
    assert!(err.to_string().contains("Writes::Sync"), "{err}");
}

fn limited(dir: &Path, clock: &ManualClock, hot: u64, limit: u64) -> DiskStore<u64, String> {
    DiskDb::builder()
        .dir(dir)
        .clock(clock.clock())
        .memory_capacity(hot)
        .max_capacity(limit)
        .open()
        .unwrap()
        .store("ns")
        .unwrap()
}

async fn keys_of(store: &DiskStore<u64, String>) -> std::collections::BTreeSet<u64> {
    store.keys().await.unwrap().into_iter().collect()
}

#[tokio::test]
async fn a_disk_limit_evicts_the_first_inserted_from_memory_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let (hot, limit) = (4u64, 20u64);
    let store = limited(dir.path(), &time, hot, limit);
    for i in 0..100u64 {
        store.put(i, format!("v{i}"), None).await.unwrap();
        // An overwrite keeps its place: key 0's rewrites do not save it.
        if i < limit {
            store.put(0, "again".into(), None).await.unwrap();
        }
        let count = store.count().await.unwrap() as u64;
        assert!(count <= limit, "{count} entries on disk after put {i}");
    }
    let last: std::collections::BTreeSet<u64> = (100 - limit..100).collect();
    assert_eq!(keys_of(&store).await, last, "the last {limit} inserted");
    for i in 0..100 - limit {
        assert_eq!(
            store.get(&i).await.unwrap(),
            None,
            "{i} evicted (memory too)"
        );
    }
    drop(store);

    let reopened = open(dir.path(), &time, hot);
    assert_eq!(keys_of(&reopened).await, last, "gone on disk too");
    assert_eq!(reopened.get(&99).await.unwrap().as_deref(), Some("v99"));
}

#[tokio::test]
async fn deletes_and_a_clear_free_their_places() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let store = limited(dir.path(), &time, 2, 3);
    for i in 0..3u64 {
        store.put(i, format!("v{i}"), None).await.unwrap();
    }
    assert!(store.delete(&0).await.unwrap());
    store.put(3, "v3".into(), None).await.unwrap();
    assert_eq!(
        keys_of(&store).await,
        [1, 2, 3].into(),
        "the delete made room: nothing evicted"
    );
    store.put(0, "back".into(), None).await.unwrap();
    assert_eq!(
        keys_of(&store).await,
        [0, 2, 3].into(),
        "0 re-inserted last; 1 was first"
    );
    assert_eq!(store.clear().await.unwrap(), 3);
    for i in 10..13u64 {
        store.put(i, format!("v{i}"), None).await.unwrap();
    }
    assert_eq!(keys_of(&store).await, [10, 11, 12].into());
}

#[tokio::test]
async fn a_disk_limit_lowered_between_runs_trims_the_surplus_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let unlimited = open(dir.path(), &time, 4);
    for i in 0..50u64 {
        unlimited.put(i, format!("v{i}"), None).await.unwrap();
    }
    drop(unlimited);

    let limited_store = limited(dir.path(), &time, 4, 10);
    let survivors = keys_of(&limited_store).await;
    assert_eq!(survivors.len(), 10);
    limited_store.put(100, "new".into(), None).await.unwrap();
    assert_eq!(
        limited_store.count().await.unwrap(),
        10,
        "still at the limit"
    );
    let survivors = keys_of(&limited_store).await;
    drop(limited_store);

    let reopened = open(dir.path(), &time, 4);
    assert_eq!(keys_of(&reopened).await, survivors, "trimmed on disk");
}

#[tokio::test]
async fn an_entry_evicted_from_disk_leaves_the_hot_set_too() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    // A hot set bigger than the disk limit: 0 is still in memory when the disk evicts it.
    let store = limited(dir.path(), &time, 8, 2);
    for i in 0..3u64 {
        store.put(i, format!("v{i}"), None).await.unwrap();
    }
    assert_eq!(store.get(&0).await.unwrap(), None, "not served from memory");
    assert_eq!(store.ttl(&0).await.unwrap(), None);
    assert_eq!(keys_of(&store).await, [1, 2].into());
}
