//! DiskStore's eviction listener (`Store::install_eviction_listener`): every removal of the
//! memory tier, which holds every live entry, with its value and cause — size evictions of a
//! bounded store included, forwarded by the tier's own listener that also deletes them on
//! disk. The larger-than-memory mode refuses it (a delete of an entry only on disk would never
//! be seen).
#![cfg(feature = "disk")]

use std::{sync::Arc, time::Duration};

use parking_lot::Mutex;
use strata::{DiskDb, DiskStore, Error, ManualClock, RemovalCause, Store};

type Seen = Arc<Mutex<Vec<(u64, String, RemovalCause)>>>;

fn listen(store: &DiskStore<u64, String>) -> Seen {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    store
        .install_eviction_listener(Arc::new(move |k, v, cause| sink.lock().push((k, v, cause))))
        .unwrap();
    seen
}

fn open(dir: &std::path::Path, time: &ManualClock, cap: Option<u64>) -> DiskStore<u64, String> {
    let mut builder = DiskDb::builder().dir(dir).clock(time.clock());
    if let Some(cap) = cap {
        builder = builder.max_capacity(cap);
    }
    builder.open().unwrap().store("ns").unwrap()
}

#[tokio::test]
async fn a_bounded_store_delivers_evictions_replacements_and_deletes_with_values() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let store = open(dir.path(), &time, Some(1));
    let seen = listen(&store);
    store.put(1, "a".into(), None).await.unwrap();
    store.put(1, "b".into(), None).await.unwrap();
    store.put(2, "c".into(), None).await.unwrap();
    store.delete(&2).await.unwrap();
    assert_eq!(
        *seen.lock(),
        vec![
            (1, "a".to_string(), RemovalCause::Replaced),
            (1, "b".to_string(), RemovalCause::Size),
            (2, "c".to_string(), RemovalCause::Explicit),
        ]
    );
    let again = store.install_eviction_listener(Arc::new(|_, _, _| {}));
    assert!(
        matches!(again, Err(Error::InvalidConfig { .. })),
        "{again:?}"
    );
}

#[tokio::test]
async fn an_unbounded_store_delivers_deletes_and_expiries_with_values() {
    let dir = tempfile::tempdir().unwrap();
    let time = ManualClock::new();
    let store = open(dir.path(), &time, None);
    let seen = listen(&store);
    store.put(1, "a".into(), None).await.unwrap();
    store
        .put(2, "b".into(), Some(Duration::from_secs(10)))
        .await
        .unwrap();
    store.delete(&1).await.unwrap();
    time.advance(Duration::from_secs(11));
    assert_eq!(store.get(&2).await.unwrap(), None);
    assert_eq!(
        *seen.lock(),
        vec![
            (1, "a".to_string(), RemovalCause::Explicit),
            (2, "b".to_string(), RemovalCause::Expired),
        ]
    );
}

#[test]
fn the_larger_than_memory_mode_refuses_a_listener() {
    let dir = tempfile::tempdir().unwrap();
    let store: DiskStore<u64, String> = DiskDb::builder()
        .dir(dir.path())
        .memory_capacity(2)
        .open()
        .unwrap()
        .store("ns")
        .unwrap();
    let refused = store.install_eviction_listener(Arc::new(|_, _, _| {}));
    assert!(
        matches!(refused, Err(Error::Unsupported { .. })),
        "{refused:?}"
    );
}
