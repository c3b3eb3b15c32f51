//! Issue 12, items 5 and 6: each test forces the interleaving that broke the guarantee on the
//! old code, with a manual clock, a store hook or a loader parked on a oneshot (no sleeps).

mod support;

use std::time::Duration;

use strata::{Cache, Expiry, Load, ManualClock, MemoryStore};
use support::fault_store::{At, FaultStore, Op};
use tokio::sync::oneshot;

fn s(v: &str) -> String {
    v.to_string()
}

/// Item 5: `Cache::incr` was `contains`, `incr`, then `expire` only if new. A counter that
/// expired between the first two calls was re-created with no TTL: a permanent lock-out.
#[tokio::test]
async fn cache_incr_never_creates_a_counter_without_a_ttl() {
    let time = ManualClock::new();
    let store = MemoryStore::<String, i64>::builder()
        .clock(time.clock())
        .build()
        .unwrap();
    let faults = FaultStore::new(store.clone());
    let cache = Cache::builder()
        .store(faults.clone())
        .clock(time.clock())
        .ttl(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let key = s("failed_logins:ada");
    cache.incr(&key, 1).await.unwrap();
    // The counter expires inside the next incr: right after the old code's `contains` said
    // "live", or right before the store's increment.
    let clock = time.clone();
    let inside = [
        At::After(Op::Contains),
        At::Before(Op::IncrWithTtl),
        At::Before(Op::Incr),
    ];
    faults.arm(&inside, move || clock.advance(Duration::from_secs(11)));
    cache.incr(&key, 1).await.unwrap();
    assert!(!faults.armed(), "the expiry was not pinned inside incr");
    assert_ne!(
        store.ttl(&key),
        Some(Expiry::Never),
        "a counter was created without a TTL"
    );
    cache.incr(&key, 1).await.unwrap();
    assert!(matches!(store.ttl(&key), Some(Expiry::In(_))));
}

/// A cache over a manual-clock MemoryStore, and a loader parked until the test releases it.
async fn cache_and_parked_loader() -> (
    Cache<String, String, MemoryStore<String, String>>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Option<String>>,
) {
    let time = ManualClock::new();
    let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
    let cache = Cache::builder()
        .store(store)
        .clock(time.clock())
        .build()
        .await
        .unwrap();
    let (release, parked) = oneshot::channel::<()>();
    let (started_tx, started) = oneshot::channel::<()>();
    let loading = cache.clone();
    let task = tokio::spawn(async move {
        let loader = |_| async move {
            started_tx.send(()).unwrap();
            parked.await.unwrap();
            Ok::<_, std::io::Error>(Load::Commit(s("old")))
        };
        loading.fetch(s("k"), loader).await.unwrap()
    });
    started.await.unwrap();
    (cache, release, task)
}

/// Item 6: a `put` made while the loader ran was overwritten by the loader's older value.
#[tokio::test]
async fn fetch_does_not_overwrite_a_put_made_during_the_load() {
    let (cache, release, task) = cache_and_parked_loader().await;
    cache.put(s("k"), s("new"), None).await.unwrap();
    release.send(()).unwrap();
    assert_eq!(
        task.await.unwrap().as_deref(),
        Some("old"),
        "the caller gets its load"
    );
    assert_eq!(
        cache.get(&s("k")).await.unwrap().as_deref(),
        Some("new"),
        "the put made during the load was overwritten"
    );
}

/// Item 6: a `delete` (an invalidation) made while the loader ran was undone by its commit.
#[tokio::test]
async fn fetch_does_not_undo_a_delete_made_during_the_load() {
    let (cache, release, task) = cache_and_parked_loader().await;
    cache.delete(&s("k")).await.unwrap();
    release.send(()).unwrap();
    assert_eq!(task.await.unwrap().as_deref(), Some("old"));
    assert_eq!(
        cache.get(&s("k")).await.unwrap(),
        None,
        "the delete made during the load was undone"
    );
}

/// A load with no write during it still commits (the mark is per load).
#[tokio::test]
async fn fetch_commits_when_nothing_overtook_the_load() {
    let (cache, release, task) = cache_and_parked_loader().await;
    cache.put(s("other"), s("x"), None).await.unwrap();
    release.send(()).unwrap();
    assert_eq!(task.await.unwrap().as_deref(), Some("old"));
    assert_eq!(cache.get(&s("k")).await.unwrap().as_deref(), Some("old"));
}
