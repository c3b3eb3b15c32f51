//! Issue 13 item 4: `CacheBuilder::refresh_after` (refresh-ahead). Every test ages the entry
//! with a manual clock and parks the reload's loader on a `Notify` (no sleeps): a stale hit
//! returns the old value while exactly one reload runs, a failed reload keeps the old value, and
//! a put or delete made while the reload runs wins over it.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use strata::{Cache, Error, Expiry, Load, ManualClock, MemoryStore};
use tokio::sync::Notify;

type Strings = Cache<String, String, MemoryStore<String, String>>;

const TTL: Duration = Duration::from_secs(600);
const AFTER: Duration = Duration::from_secs(60);

fn s(v: &str) -> String {
    v.to_string()
}

async fn cache_on(time: &ManualClock) -> Strings {
    let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
    Cache::builder()
        .store(store)
        .clock(time.clock())
        .ttl(TTL)
        .refresh_after(AFTER)
        .build()
        .await
        .unwrap()
}

/// A cache holding `k = "old"`, written `AFTER` + 1 s ago (stale).
async fn stale_cache(time: &ManualClock) -> Strings {
    let cache = cache_on(time).await;
    let first = cache
        .fetch(s("k"), |_| async {
            Ok::<_, std::io::Error>(Load::Commit(s("old")))
        })
        .await;
    assert_eq!(first.unwrap(), Some(s("old")));
    time.advance(AFTER + Duration::from_secs(1));
    cache
}

/// Waits (yielding, never sleeping) until the background reload has settled.
async fn settled(cache: &Strings) {
    for _ in 0..1_000_000 {
        if cache.loads_in_flight() == 0 {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the background reload never settled");
}

type Loaded = Result<Load<String>, std::io::Error>;
type Parked = std::pin::Pin<Box<dyn std::future::Future<Output = Loaded> + Send>>;

/// A loader parked on `gate` that counts its calls in `calls` and then answers `answer`.
fn parked(
    calls: &Arc<AtomicUsize>,
    gate: &Arc<Notify>,
    answer: Loaded,
) -> impl FnOnce(String) -> Parked + Send + 'static {
    let (calls, gate) = (calls.clone(), gate.clone());
    move |_| {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            gate.notified().await;
            answer
        })
    }
}

async fn until_called(calls: &AtomicUsize) {
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_stale_hit_returns_the_old_value_at_once_and_one_reload_runs_for_many_hits() {
    let time = ManualClock::new();
    let cache = stale_cache(&time).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let hits: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            let loader = parked(&calls, &gate, Ok(Load::Commit(s("new"))));
            tokio::spawn(async move { cache.fetch(s("k"), loader).await })
        })
        .collect();
    // Every hit returns while the one reload is parked inside its loader.
    for hit in hits {
        assert_eq!(hit.await.unwrap().unwrap(), Some(s("old")));
    }
    until_called(&calls).await;
    let more = cache
        .fetch(s("k"), parked(&calls, &gate, Ok(Load::Commit(s("x")))))
        .await;
    assert_eq!(more.unwrap(), Some(s("old")), "a hit waited for the reload");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "more than one reload ran");
    assert_eq!(cache.loads_in_flight(), 1);
    gate.notify_one();
    settled(&cache).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("new")));
    assert_eq!(
        cache.store().ttl(&s("k")),
        Some(Expiry::In(TTL)),
        "the reloaded value did not get the normal TTL"
    );
    assert_eq!(cache.stats().loads, 2);
}

#[tokio::test]
async fn a_fresh_hit_does_not_reload_and_a_miss_during_a_reload_waits_for_it() {
    let time = ManualClock::new();
    let cache = cache_on(&time).await;
    cache.put(s("k"), s("old"), None).await.unwrap();
    time.advance(AFTER - Duration::from_secs(1));
    let fresh = cache
        .fetch(s("k"), |_| async {
            unreachable!("a fresh hit reloaded");
            #[allow(unreachable_code)]
            Ok::<_, std::io::Error>(Load::NotFound)
        })
        .await;
    assert_eq!(fresh.unwrap(), Some(s("old")));
    assert_eq!(cache.loads_in_flight(), 0);

    // Stale now: the reload leads the key's single flight, so a miss joins it.
    time.advance(Duration::from_secs(2));
    let (calls, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let hit = cache.fetch(s("k"), parked(&calls, &gate, Ok(Load::Commit(s("new")))));
    assert_eq!(hit.await.unwrap(), Some(s("old")));
    until_called(&calls).await;
    cache.store().delete(&s("k")); // bypasses the cache: no overtaking mark
    let miss = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .fetch(s("k"), |_| async {
                    unreachable!("a miss loaded again during the reload");
                    #[allow(unreachable_code)]
                    Ok::<_, std::io::Error>(Load::NotFound)
                })
                .await
        })
    };
    while cache.stats().misses == 0 {
        tokio::task::yield_now().await;
    }
    gate.notify_one();
    assert_eq!(miss.await.unwrap().unwrap(), Some(s("new")));
}

#[tokio::test]
async fn a_failed_reload_keeps_the_old_value() {
    let time = ManualClock::new();
    let cache = stale_cache(&time).await;
    let (calls, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let failing = parked(&calls, &gate, Err(std::io::Error::other("database down")));
    assert_eq!(cache.fetch(s("k"), failing).await.unwrap(), Some(s("old")));
    until_called(&calls).await;
    gate.notify_one();
    settled(&cache).await;
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("old")));
    assert_eq!(cache.stats().load_errors, 1);

    // A panicking reload and an ignored value keep it too, and the key is free again.
    let panicking = |_| async {
        panic!("driver bug");
        #[allow(unreachable_code)]
        Ok::<_, std::io::Error>(Load::NotFound)
    };
    assert_eq!(
        cache.fetch(s("k"), panicking).await.unwrap(),
        Some(s("old"))
    );
    settled(&cache).await;
    assert_eq!(cache.stats().load_errors, 2);
    let ignored = |_| async { Ok::<_, std::io::Error>(Load::Ignore(s("not cached"))) };
    assert_eq!(cache.fetch(s("k"), ignored).await.unwrap(), Some(s("old")));
    settled(&cache).await;
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("old")));
    assert_eq!(
        cache.stats().loads,
        4,
        "each stale hit after a failure reloads"
    );
}

#[tokio::test]
async fn a_put_made_during_the_reload_wins() {
    let time = ManualClock::new();
    let cache = stale_cache(&time).await;
    let (calls, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let reload = parked(&calls, &gate, Ok(Load::Commit(s("reloaded"))));
    assert_eq!(cache.fetch(s("k"), reload).await.unwrap(), Some(s("old")));
    until_called(&calls).await;
    cache.put(s("k"), s("written"), None).await.unwrap();
    gate.notify_one();
    settled(&cache).await;
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("written")));
}

#[tokio::test]
async fn a_delete_made_during_the_reload_is_not_undone() {
    let time = ManualClock::new();
    let cache = stale_cache(&time).await;
    let (calls, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let reload = parked(&calls, &gate, Ok(Load::Commit(s("reloaded"))));
    assert_eq!(cache.fetch(s("k"), reload).await.unwrap(), Some(s("old")));
    until_called(&calls).await;
    assert!(cache.delete(&s("k")).await.unwrap());
    gate.notify_one();
    settled(&cache).await;
    assert_eq!(cache.get(&s("k")).await.unwrap(), None);
}

#[tokio::test]
async fn a_reload_that_finds_nothing_removes_the_entry() {
    let time = ManualClock::new();
    let cache = stale_cache(&time).await;
    let gone = |_| async { Ok::<_, std::io::Error>(Load::NotFound) };
    assert_eq!(cache.fetch(s("k"), gone).await.unwrap(), Some(s("old")));
    settled(&cache).await;
    assert_eq!(cache.get(&s("k")).await.unwrap(), None);
}

#[tokio::test]
async fn the_builder_refuses_a_refresh_it_cannot_measure() {
    let store = || MemoryStore::<String, String>::new();
    let no_ttl = Cache::builder().store(store()).refresh_after(AFTER).build();
    assert!(matches!(
        no_ttl.await,
        Err(Error::InvalidConfig(ref e)) if e.option == "refresh_after"
    ));
    let longer = Cache::builder()
        .store(store())
        .ttl(AFTER)
        .refresh_after(AFTER)
        .build();
    assert!(matches!(
        longer.await,
        Err(Error::InvalidConfig(ref e)) if e.option == "refresh_after"
    ));
    let zero = Cache::builder()
        .store(store())
        .ttl(TTL)
        .refresh_after(Duration::ZERO)
        .build();
    assert!(matches!(
        zero.await,
        Err(Error::InvalidConfig(ref e)) if e.option == "refresh_after"
    ));
}
