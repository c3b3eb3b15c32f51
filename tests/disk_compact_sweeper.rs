//! The compact tier's sweeper thread: started by a write with a TTL, stopped when the store is
//! closed. A test binary of its own so no other test's sweepers are counted.
#![cfg(all(feature = "disk", target_os = "linux"))]

use std::time::Duration;

use strata::{DiskDb, DiskStore, Store};
use threads::{sweepers, within_10s};

#[path = "support/threads.rs"]
mod threads;

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
