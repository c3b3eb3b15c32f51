//! The compact tier's sweeper thread: started by a write with a TTL, stopped when the store is
//! closed. A test binary of its own so no other test's sweepers are counted.
#![cfg(all(feature = "disk", target_os = "linux"))]

use std::time::{Duration, Instant};

use strata::{DiskDb, DiskStore, Store};

fn sweepers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "strata-sweeper")
        .count()
}

/// Polls `done` until it holds or 10 s pass (threads name themselves as they start, and stop
/// once woken; the time only bounds a failure).
fn within_10s(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

#[tokio::test]
async fn the_sweeper_thread_stops_when_the_store_is_closed() {
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let open = |dir: &tempfile::TempDir| {
        DiskDb::builder()
            .dir(dir.path())
            .compact_memory(true)
            .open()
            .unwrap()
    };
    let dbs: Vec<DiskDb> = dirs.iter().map(open).collect();
    let before = sweepers();
    let stores: Vec<DiskStore<u64, u64>> = dbs.iter().map(|db| db.store("ns").unwrap()).collect();
    assert_eq!(sweepers(), before, "no sweeper before a write with a TTL");
    for s in &stores {
        s.put(1, 1, Some(Duration::from_secs(60))).await.unwrap();
    }
    assert!(
        within_10s(|| sweepers() == before + 4),
        "one sweeper per compact namespace with a TTL: {} more",
        sweepers() - before
    );
    drop(stores);
    for db in dbs {
        db.close().await;
    }
    assert!(
        within_10s(|| sweepers() == before),
        "sweeper threads still running after close: {}",
        sweepers() - before
    );
}
