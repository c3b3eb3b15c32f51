//! DiskStore bounded by `max_capacity` or `max_weight`: the memory tier evicts (S3-FIFO) and
//! every eviction is a delete on disk too. These cases force: a flood over a tiny limit (never more than the
//! limit, evicted keys gone after reopen, survivors kept), a limit lowered between runs (the
//! surplus is evicted at open and deleted on disk), a put of an evicted key racing the
//! eviction's delete (pinned with a parked commit), the counters and events, a weight limit
//! (never exceeded, evictions and unfit entries gone after reopen, the default weigher being
//! the encoded size), and the options `open()` refuses. The conformance suite runs on these
//! modes too (`conformance::disk_bounded`, `conformance::disk_weighted`).
#![cfg(feature = "disk")]

use std::{
    collections::BTreeSet,
    future::Future,
    path::Path,
    pin::pin,
    task::{Context, Poll, Waker},
};

use strata::{DiskDb, DiskStore, Error, EventKind, Faults, ManualClock, Store, Writes};

fn open(
    dir: &Path,
    clock: &ManualClock,
    writes: Writes,
    cap: Option<u64>,
) -> DiskStore<u64, String> {
    let mut builder = DiskDb::builder()
        .dir(dir)
        .clock(clock.clock())
        .writes(writes);
    if let Some(cap) = cap {
        builder = builder.max_capacity(cap);
    }
    builder.open().unwrap().store("ns").unwrap()
}

async fn keys(store: &DiskStore<u64, String>) -> BTreeSet<u64> {
    store.keys().await.unwrap().into_iter().collect()
}

/// A flood of `puts` distinct keys over a limit of `cap`: never more than `cap`, every
/// eviction counted, and after reopening (with no limit, so nothing is evicted at open) the
/// disk holds exactly the survivors, with their values.
async fn flood_then_reopen(writes: Writes) {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let (cap, puts) = (8u64, 200u64);
    let store = open(dir.path(), &time, writes, Some(cap));
    for i in 0..puts {
        store.put(i, format!("v{i}"), None).await.unwrap();
        let count = store.count().await.unwrap() as u64;
        assert!(count <= cap, "{count} entries after put {i}");
    }
    assert_eq!(
        store.stats().evictions,
        puts - cap,
        "every eviction counted"
    );
    let survivors = keys(&store).await;
    assert_eq!(survivors.len() as u64, cap);
    assert!(survivors.contains(&(puts - 1)), "the last put survives");
    drop(store);

    let reopened = open(dir.path(), &time, writes, None);
    assert_eq!(
        keys(&reopened).await,
        survivors,
        "evicted keys are gone on disk too"
    );
    for key in survivors {
        assert_eq!(reopened.get(&key).await.unwrap(), Some(format!("v{key}")));
    }
}

#[tokio::test]
async fn a_flood_never_exceeds_the_limit_and_evictions_are_gone_after_reopen_sync() {
    flood_then_reopen(Writes::Sync).await;
}

#[tokio::test]
async fn a_flood_never_exceeds_the_limit_and_evictions_are_gone_after_reopen_async() {
    flood_then_reopen(Writes::Async).await;
}

#[tokio::test]
async fn a_limit_lowered_between_runs_evicts_the_surplus_at_open_and_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let unbounded = open(dir.path(), &time, Writes::Sync, None);
    for i in 0..50u64 {
        unbounded.put(i, format!("v{i}"), None).await.unwrap();
    }
    drop(unbounded);

    let bounded = open(dir.path(), &time, Writes::Sync, Some(10));
    let survivors = keys(&bounded).await;
    assert!(survivors.len() <= 10, "{} entries loaded", survivors.len());
    assert_eq!(bounded.stats().evictions, 50 - survivors.len() as u64);
    drop(bounded);

    let reopened = open(dir.path(), &time, Writes::Sync, None);
    assert_eq!(
        keys(&reopened).await,
        survivors,
        "the surplus was deleted on disk"
    );
}

#[tokio::test]
async fn evictions_show_in_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let store = open(dir.path(), &time, Writes::Sync, Some(1));
    let mut events = store.subscribe();
    store.put(1, "a".into(), None).await.unwrap();
    store.put(2, "b".into(), None).await.unwrap();
    let mut seen = Vec::new();
    while let Some(event) = events.try_recv() {
        seen.push((event.key, event.kind));
    }
    assert!(seen.contains(&(1, EventKind::Evicted)), "{seen:?}");
    assert_eq!(store.stats().evictions, 1);
}

/// Polls `fut` once (it runs up to its first wait); the test awaits it later.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// The race the design must win: A's put of `K` evicts `E`, and B's put of `E` (a new value)
/// commits in the same group commit, before A queues the eviction's delete. A delete queued
/// blindly after B's put would erase B's write on disk (memory would still show it, a restart
/// would not). Pinned: a write in another namespace parks the writer while A and B queue.
#[tokio::test]
async fn a_put_after_an_eviction_is_not_deleted_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let faults = Faults::new();
    let db = DiskDb::builder()
        .dir(dir.path())
        .clock(time.clock())
        .max_capacity(1)
        .faults(faults.clone())
        .open()
        .unwrap();
    let store: DiskStore<u64, String> = db.store("ns").unwrap();
    let other: DiskStore<u64, String> = db.store("other").unwrap();
    let (k, e) = (1u64, 2u64);
    store.put(e, "old".into(), None).await.unwrap();

    faults.park_next_commit();
    let parker = tokio::spawn(async move { other.put(0, "park".into(), None).await });
    let parked = faults.clone();
    assert!(tokio::task::spawn_blocking(move || parked.wait_parked())
        .await
        .unwrap());
    {
        let mut a = pin!(store.put(k, "k".into(), None));
        let mut b = pin!(store.put(e, "new".into(), None));
        assert!(
            poll_once(a.as_mut()).is_pending(),
            "A queued behind the parked commit"
        );
        assert!(
            poll_once(b.as_mut()).is_pending(),
            "B queued behind the parked commit"
        );
        faults.release();
        parker.await.unwrap().unwrap();
        let (a, b) = tokio::join!(a, b);
        a.unwrap();
        b.unwrap();
    }

    assert_eq!(store.get(&e).await.unwrap().as_deref(), Some("new"));
    assert_eq!(store.stats().evictions, 2, "E's old value, then K");
    drop(store);
    db.close().await;

    let reopened = open(dir.path(), &time, Writes::Sync, None);
    assert_eq!(
        reopened.get(&e).await.unwrap().as_deref(),
        Some("new"),
        "B's put survives"
    );
    assert_eq!(
        reopened.get(&k).await.unwrap(),
        None,
        "K's eviction reached the disk"
    );
}

#[test]
fn open_refuses_a_zero_limit() {
    let dir = tempfile::tempdir().unwrap();
    let zero = DiskDb::builder().dir(dir.path()).max_capacity(0).open();
    assert!(matches!(zero, Err(Error::InvalidConfig { .. })), "{zero:?}");
    let cold_zero = DiskDb::builder()
        .dir(dir.path())
        .max_capacity(0)
        .memory_capacity(5)
        .open();
    assert!(
        matches!(cold_zero, Err(Error::InvalidConfig { .. })),
        "{cold_zero:?}"
    );
}

/// A store bounded by `weight` bytes of values (the test's weigher).
fn weighted(
    dir: &Path,
    clock: &ManualClock,
    writes: Writes,
    weight: u64,
) -> DiskStore<u64, String> {
    DiskStore::builder()
        .dir(dir)
        .clock(clock.clock())
        .writes(writes)
        .namespace("ns")
        .max_weight(weight)
        .weigher(|_key: &u64, value: &String| value.len() as u32)
        .open()
        .unwrap()
}

async fn weight_of(store: &DiskStore<u64, String>) -> u64 {
    let mut total = 0;
    for key in store.keys().await.unwrap() {
        if let Some(value) = store.get(&key).await.unwrap() {
            total += value.len() as u64;
        }
    }
    total
}

async fn weight_flood_then_reopen(writes: Writes) {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let (limit, puts) = (1_000u64, 100u64);
    let store = weighted(dir.path(), &time, writes, limit);
    for i in 0..puts {
        // 10 to 190 bytes, so evictions free different amounts.
        let value = "x".repeat(10 + (i as usize * 37) % 181);
        store.put(i, value, None).await.unwrap();
        let weight = weight_of(&store).await;
        assert!(weight <= limit, "{weight} bytes after put {i}");
    }
    let survivors = keys(&store).await;
    assert_eq!(
        store.stats().evictions,
        puts - survivors.len() as u64,
        "every eviction counted"
    );
    assert!(survivors.contains(&(puts - 1)), "the last put survives");
    drop(store);

    let reopened = open(dir.path(), &time, writes, None);
    assert_eq!(
        keys(&reopened).await,
        survivors,
        "evicted keys are gone on disk too"
    );
}

#[tokio::test]
async fn a_weight_limit_is_never_exceeded_and_evictions_are_gone_after_reopen_sync() {
    weight_flood_then_reopen(Writes::Sync).await;
}

#[tokio::test]
async fn a_weight_limit_is_never_exceeded_and_evictions_are_gone_after_reopen_async() {
    weight_flood_then_reopen(Writes::Async).await;
}

#[tokio::test]
async fn an_entry_heavier_than_the_limit_is_not_kept_on_disk_either() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let store = weighted(dir.path(), &time, Writes::Sync, 100);
    store.put(1, "light".into(), None).await.unwrap();
    store.put(2, "x".repeat(101), None).await.unwrap();
    assert_eq!(store.get(&2).await.unwrap(), None, "too heavy to keep");
    assert_eq!(store.get(&1).await.unwrap().as_deref(), Some("light"));
    drop(store);
    let reopened = open(dir.path(), &time, Writes::Sync, None);
    assert_eq!(keys(&reopened).await, BTreeSet::from([1]));
}

/// Without a weigher (a `DiskDb`, whose namespaces have any types), an entry weighs its
/// encoded size on disk: more than its value's bytes.
#[tokio::test]
async fn the_default_weigher_is_the_encoded_size() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db = DiskDb::builder()
        .dir(dir.path())
        .clock(time.clock())
        .max_weight(10_000)
        .open()
        .unwrap();
    let store: DiskStore<u64, String> = db.store("ns").unwrap();
    for i in 0..50u64 {
        store.put(i, "x".repeat(1_000), None).await.unwrap();
    }
    let count = store.count().await.unwrap();
    assert!(
        (1..=9).contains(&count),
        "{count} entries of over 1000 bytes"
    );
    assert_eq!(store.stats().evictions, 50 - count as u64);
}

#[test]
fn open_refuses_a_zero_weight_a_weigher_alone_and_weight_with_memory_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |opened: strata::Result<DiskStore<u64, String>>, option: &str| match opened {
        Err(Error::InvalidConfig(e)) => assert_eq!(e.option, option),
        other => panic!("{option}: {other:?}"),
    };
    let builder = || DiskStore::<u64, String>::builder().dir(dir.path());
    refused(builder().max_weight(0).open(), "max_weight");
    refused(builder().weigher(|_, _| 1).open(), "weigher");
    refused(
        builder().max_weight(100).memory_capacity(10).open(),
        "max_weight",
    );
}
