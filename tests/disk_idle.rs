//! DiskStore's `time_to_idle` (`DiskBuilder::time_to_idle`, `Store::with_time_to_idle`): an
//! entry that idled out is deleted on disk too (gone after a restart, sync and async writes),
//! idle time restarts at open (the disk does not record reads), a write racing the idle delete
//! wins (pinned: the write's commit is parked while the settler waits for its stripe), and the
//! modes `open()` refuses. The idle suite runs on DiskStore too (`conformance_idle::disk*`).
#![cfg(feature = "disk")]

use std::{path::Path, sync::Arc, time::Duration};

use parking_lot::Mutex;
use strata::{DiskDb, DiskStore, Error, Faults, ManualClock, RemovalCause, Store, Writes};

const IDLE: Duration = Duration::from_secs(60);
const SEC: Duration = Duration::from_secs(1);

fn db(dir: &Path, time: &ManualClock, writes: Writes, idle: Option<Duration>) -> DiskDb {
    let mut builder = DiskDb::builder()
        .dir(dir)
        .clock(time.clock())
        .writes(writes);
    if let Some(idle) = idle {
        builder = builder.time_to_idle(idle);
    }
    builder.open().unwrap()
}

type Seen = Arc<Mutex<Vec<(u64, RemovalCause)>>>;

/// Records every removal the store reports (the tier records a key for the settler before
/// the user's listener hears of it).
fn listen(store: &DiskStore<u64, String>) -> Seen {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    store
        .install_eviction_listener(Arc::new(move |k, _, cause| sink.lock().push((k, cause))))
        .unwrap();
    seen
}

/// Waits (yielding, bounded) until `done` holds: a background thread's work, never a timing
/// window.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn idled_out_entries_are_gone_after_a_restart(writes: Writes) {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let db1 = db(dir.path(), &time, writes, Some(IDLE));
    let store: DiskStore<u64, String> = db1.store("ns").unwrap();
    let seen = listen(&store);
    store.put(1, "idle".into(), None).await.unwrap();
    store.put(2, "read".into(), None).await.unwrap();
    time.advance(IDLE - SEC);
    assert_eq!(store.get(&2).await.unwrap().as_deref(), Some("read"));
    time.advance(SEC);
    assert_eq!(store.get(&1).await.unwrap(), None, "idle for IDLE");
    assert_eq!(store.get(&2).await.unwrap().as_deref(), Some("read"));
    until("the expiry is delivered", || {
        seen.lock().contains(&(1, RemovalCause::Expired))
    })
    .await;
    db1.settle_idle().await.unwrap();
    drop(store);
    db1.close().await;

    // Without time_to_idle, so the reopened store shows exactly what is on disk.
    let reopened: DiskStore<u64, String> = db(dir.path(), &time, writes, None).store("ns").unwrap();
    assert_eq!(reopened.get(&1).await.unwrap(), None, "deleted on disk too");
    assert_eq!(reopened.get(&2).await.unwrap().as_deref(), Some("read"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idled_out_entry_is_gone_after_a_restart_sync() {
    idled_out_entries_are_gone_after_a_restart(Writes::Sync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idled_out_entry_is_gone_after_a_restart_async() {
    idled_out_entries_are_gone_after_a_restart(Writes::Async).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_time_restarts_at_open_and_the_ttl_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let first = db(dir.path(), &time, Writes::Sync, Some(IDLE));
    let store: DiskStore<u64, String> = first.store("ns").unwrap();
    store.put(1, "no ttl".into(), None).await.unwrap();
    store
        .put(2, "ttl".into(), Some(IDLE + IDLE / 2))
        .await
        .unwrap();
    time.advance(IDLE - SEC);
    drop(store);
    first.close().await;

    let store: DiskStore<u64, String> = db(dir.path(), &time, Writes::Sync, Some(IDLE))
        .store("ns")
        .unwrap();
    time.advance(IDLE - SEC);
    // 2 × IDLE - 2 s since the write and no read: alive, because the idle time restarted at
    // the open (the disk does not record reads).
    assert_eq!(store.get(&1).await.unwrap().as_deref(), Some("no ttl"));
    assert_eq!(
        store.get(&2).await.unwrap(),
        None,
        "the TTL deadline from before the restart ended it"
    );
    time.advance(IDLE);
    assert_eq!(store.get(&1).await.unwrap(), None);
}

/// The race the design must win: the old value of `K` idles out while a put of a new value
/// of `K` is committing. A delete queued after that put would erase it on disk (memory would
/// show it, a restart would not). Pinned: the put's commit is parked (it holds `K`'s stripe),
/// the expiry is found, and the test waits until the settler waits for that stripe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_racing_the_idle_delete_wins() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let faults = Faults::new();
    let db1 = DiskDb::builder()
        .dir(dir.path())
        .clock(time.clock())
        .time_to_idle(IDLE)
        .faults(faults.clone())
        .open()
        .unwrap();
    let store: DiskStore<u64, String> = db1.store("ns").unwrap();
    let seen = listen(&store);
    store.put(1, "old".into(), None).await.unwrap();

    faults.park_next_commit();
    let writer = store.clone();
    let put = tokio::spawn(async move { writer.put(1, "new".into(), None).await });
    let parked = faults.clone();
    assert!(tokio::task::spawn_blocking(move || parked.wait_parked())
        .await
        .unwrap());
    time.advance(IDLE);
    // Memory still holds the old value (the new one is not committed): it expired.
    assert_eq!(store.get(&1).await.unwrap(), None);
    until("the settler waits for the put's stripe", || {
        db1.idle_waits() == 1
    })
    .await;
    faults.release();
    put.await.unwrap().unwrap();
    assert_eq!(seen.lock().first(), Some(&(1, RemovalCause::Expired)));
    db1.settle_idle().await.unwrap();
    assert_eq!(store.get(&1).await.unwrap().as_deref(), Some("new"));
    drop((store, seen));
    db1.close().await;

    let reopened: DiskStore<u64, String> = db(dir.path(), &time, Writes::Sync, None)
        .store("ns")
        .unwrap();
    assert_eq!(
        reopened.get(&1).await.unwrap().as_deref(),
        Some("new"),
        "the put survives the idle delete"
    );
}

#[tokio::test]
async fn with_time_to_idle_keeps_the_entries_and_refuses_a_shared_namespace_or_a_second_idle_time()
{
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let plain: DiskStore<u64, String> = db(dir.path(), &time, Writes::Sync, None)
        .store("ns")
        .unwrap();
    let seen = listen(&plain);
    plain.put(1, "kept".into(), None).await.unwrap();
    plain.put(2, "ttl".into(), Some(IDLE / 2)).await.unwrap();
    let other = plain.clone();
    let shared = plain.with_time_to_idle(IDLE);
    assert!(
        matches!(
            shared,
            Err(Error::InvalidConfig(ref e)) if e.option == "time_to_idle"
        ),
        "another handle would keep the old tier: {shared:?}"
    );
    drop(other);
    let idle = plain.with_time_to_idle(IDLE).unwrap();
    drop(plain);
    assert_eq!(idle.get(&1).await.unwrap().as_deref(), Some("kept"));
    assert_eq!(
        idle.ttl(&2).await.unwrap(),
        Some(strata::Expiry::In(IDLE / 2)),
        "the TTL deadline is kept"
    );
    assert!(
        idle.with_time_to_idle(IDLE).is_ok(),
        "the same idle time: the store itself"
    );
    let again = idle.with_time_to_idle(2 * IDLE);
    assert!(
        matches!(
            again,
            Err(Error::InvalidConfig(ref e)) if e.option == "time_to_idle"
        ),
        "one idle time per namespace: {again:?}"
    );
    time.advance(IDLE);
    assert_eq!(idle.get(&1).await.unwrap(), None, "idled out");
    until("the listener, carried over, hears of it", || {
        seen.lock().contains(&(1, RemovalCause::Expired))
    })
    .await;
    let later: DiskStore<u64, String> = idle.db().store("ns").unwrap();
    assert_eq!(
        later.count().await.unwrap(),
        0,
        "later handles share the new tier"
    );
}

#[test]
fn open_refuses_a_zero_idle_time_and_the_larger_than_memory_mode() {
    let dir = tempfile::tempdir().unwrap();
    let refused = |builder: strata::DiskDbBuilder| {
        let opened = builder.dir(dir.path()).open();
        assert!(
            matches!(
                opened,
                Err(Error::InvalidConfig(ref e)) if e.option == "time_to_idle"
            ),
            "{opened:?}"
        );
    };
    refused(DiskDb::builder().time_to_idle(Duration::ZERO));
    refused(DiskDb::builder().time_to_idle(IDLE).memory_capacity(10));

    let cold: DiskStore<u64, String> = DiskDb::builder()
        .dir(dir.path())
        .memory_capacity(10)
        .open()
        .unwrap()
        .store("ns")
        .unwrap();
    let idle = cold.with_time_to_idle(IDLE);
    assert!(matches!(idle, Err(Error::InvalidConfig { .. })), "{idle:?}");
}
