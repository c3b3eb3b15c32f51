//! The Cache facade over a MemoryStore: builder validation, store operations with stats,
//! `fetch` single flight (including panicking, failing, cancelled and hanging loaders), negative
//! caching, warmers, events, dump/load and rate limiting. Expiry is driven by a ManualClock;
//! back-off and timeouts by tokio's paused time.

use std::{
    future::pending,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use strata::{
    BoxError, Cache, Error, EventKind, Expiry, FetchError, Load, ManualClock, MemoryStore,
    RateLimiter, Update, Warmer, DUMP_VERSION,
};
use tokio::sync::Notify;

type Store = MemoryStore<String, String>;
type StrCache = Cache<String, String, Store>;

fn s(v: &str) -> String {
    v.to_string()
}

async fn cache_on(time: &ManualClock) -> StrCache {
    let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
    Cache::builder()
        .store(store)
        .clock(time.clock())
        .build()
        .await
        .unwrap()
}

/// Waits (yielding) until the cache has counted `n` misses: every fetch has started.
async fn until_misses(cache: &StrCache, n: u64) {
    while cache.stats().misses < n {
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------- builder

#[tokio::test]
async fn builder_validates_at_build() {
    let zero = Cache::builder().store(Store::new()).ttl(Duration::ZERO);
    assert!(matches!(zero.build().await, Err(Error::InvalidTtl { .. })));
    let neg = Cache::builder()
        .store(Store::new())
        .negative_ttl(Duration::ZERO);
    assert!(matches!(neg.build().await, Err(Error::InvalidTtl { .. })));
    let ns = Cache::builder().store(Store::new()).namespace("a:b");
    assert!(matches!(
        ns.build().await,
        Err(Error::InvalidNamespace { .. })
    ));
    let timeout = Cache::builder()
        .store(Store::new())
        .load_timeout(Duration::ZERO);
    assert!(matches!(
        timeout.build().await,
        Err(Error::InvalidConfig(ref e)) if e.option == "load_timeout"
    ));
    // A builder without `.store(..)` has no `build()`: `()` is not a Store, so the compiler
    // refuses it before run time.
}

#[tokio::test]
async fn namespace_defaults_to_cache_and_can_be_set() {
    let plain = Cache::builder().store(Store::new()).build().await.unwrap();
    assert_eq!(plain.namespace().as_str(), "cache");
    let named = Cache::builder()
        .store(Store::new())
        .namespace("sessions")
        .build()
        .await
        .unwrap();
    assert_eq!(named.namespace().as_str(), "sessions");
    let clone = named.clone();
    clone.put(s("k"), s("v"), None).await.unwrap();
    assert_eq!(named.get(&s("k")).await.unwrap(), Some(s("v")));
}

// ---------------------------------------------------------------- operations

#[tokio::test]
async fn default_ttl_applies_when_a_call_gives_none() {
    let time = ManualClock::new();
    let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
    let cache = Cache::builder()
        .store(store)
        .clock(time.clock())
        .ttl(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    cache.put(s("default"), s("v"), None).await.unwrap();
    cache
        .put(s("own"), s("v"), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    time.advance(Duration::from_secs(11));
    assert_eq!(cache.get(&s("default")).await.unwrap(), None);
    assert_eq!(cache.get(&s("own")).await.unwrap(), Some(s("v")));
}

#[tokio::test]
async fn update_keeps_the_ttl_and_refuses_missing_keys() {
    let time = ManualClock::new();
    let cache = cache_on(&time).await;
    cache
        .put(s("k"), s("a"), Some(Duration::from_secs(10)))
        .await
        .unwrap();
    time.advance(Duration::from_secs(4));
    assert!(cache.update(&s("k"), s("b")).await.unwrap());
    assert_eq!(
        cache.ttl(&s("k")).await.unwrap(),
        Some(Expiry::In(Duration::from_secs(6)))
    );
    assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("b")));
    assert!(!cache.update(&s("missing"), s("x")).await.unwrap());
    assert_eq!(cache.get(&s("missing")).await.unwrap(), None);
    time.advance(Duration::from_secs(6));
    assert_eq!(cache.get(&s("k")).await.unwrap(), None);
}

#[tokio::test]
async fn refresh_restarts_the_ttl_and_touch_does_not() {
    let time = ManualClock::new();
    let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
    let cache = Cache::builder()
        .store(store)
        .clock(time.clock())
        .ttl(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    cache.put(s("r"), s("v"), None).await.unwrap();
    cache.put(s("t"), s("v"), None).await.unwrap();
    time.advance(Duration::from_secs(7));
    assert!(cache.refresh(&s("r")).await.unwrap());
    assert!(cache.touch(&s("t")).await.unwrap());
    assert_eq!(
        cache.ttl(&s("r")).await.unwrap(),
        Some(Expiry::In(Duration::from_secs(10)))
    );
    assert_eq!(
        cache.ttl(&s("t")).await.unwrap(),
        Some(Expiry::In(Duration::from_secs(3)))
    );
    assert!(!cache.refresh(&s("missing")).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_update_is_atomic_per_key() {
    let cache = Cache::builder()
        .store(MemoryStore::<String, u64>::new())
        .build()
        .await
        .unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_and_update(&s("n"), |old| Update::Commit(old.unwrap_or(0) + 1))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(cache.get(&s("n")).await.unwrap(), Some(200));
    let ignored = cache
        .get_and_update(&s("n"), |_| Update::Ignore)
        .await
        .unwrap();
    assert_eq!(ignored, Some(200));
    let deleted = cache
        .get_and_update(&s("n"), |_| Update::Delete)
        .await
        .unwrap();
    assert_eq!(deleted, None);
    assert!(!cache.contains(&s("n")).await.unwrap());
}

#[tokio::test]
async fn incr_counts_from_zero_with_the_default_ttl() {
    let time = ManualClock::new();
    let store = MemoryStore::<String, i64>::builder()
        .clock(time.clock())
        .build()
        .unwrap();
    let cache = Cache::builder()
        .store(store)
        .clock(time.clock())
        .ttl(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    assert_eq!(cache.incr(&s("c"), 3).await.unwrap(), 3);
    assert_eq!(cache.decr(&s("c"), 1).await.unwrap(), 2);
    time.advance(Duration::from_secs(5));
    assert_eq!(cache.get(&s("c")).await.unwrap(), None);
}

#[tokio::test]
async fn every_store_operation_passes_through() {
    let time = ManualClock::new();
    let cache = cache_on(&time).await;
    assert!(cache.is_empty().await.unwrap());
    assert!(cache.put_new(s("a"), s("1"), None).await.unwrap());
    assert!(!cache.put_new(s("a"), s("2"), None).await.unwrap());
    cache
        .put_many(vec![(s("b"), s("2")), (s("c"), s("3"))], None)
        .await
        .unwrap();
    let got = cache.get_many(&[s("a"), s("x"), s("c")]).await.unwrap();
    assert_eq!(got, [Some(s("1")), None, Some(s("3"))]);
    let mut keys = cache.keys().await.unwrap();
    keys.sort();
    assert_eq!(keys, [s("a"), s("b"), s("c")]);
    assert_eq!(cache.take(&s("a")).await.unwrap(), Some(s("1")));
    assert_eq!(cache.take(&s("a")).await.unwrap(), None);
    assert!(cache
        .expire(&s("b"), Some(Duration::from_secs(3)))
        .await
        .unwrap());
    assert_eq!(
        cache.ttl(&s("b")).await.unwrap(),
        Some(Expiry::In(Duration::from_secs(3)))
    );
    assert!(cache.persist(&s("b")).await.unwrap());
    assert_eq!(cache.ttl(&s("b")).await.unwrap(), Some(Expiry::Never));
    assert_eq!(cache.delete_many(&[s("b"), s("zz")]).await.unwrap(), 1);
    assert_eq!(cache.len().await.unwrap(), 1);
    assert_eq!(cache.clear().await.unwrap(), 1);
    assert!(cache.is_empty().await.unwrap());
    assert_eq!(cache.default_ttl(), None);
}

#[tokio::test]
async fn stats_count_every_kind_of_operation() {
    let time = ManualClock::new();
    let cache = cache_on(&time).await;
    cache
        .put(s("a"), s("1"), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    cache
        .put_many(vec![(s("b"), s("2")), (s("c"), s("3"))], None)
        .await
        .unwrap();
    assert_eq!(cache.get(&s("a")).await.unwrap(), Some(s("1")));
    assert_eq!(cache.get(&s("zz")).await.unwrap(), None);
    assert!(cache.update(&s("b"), s("22")).await.unwrap());
    assert!(cache.delete(&s("c")).await.unwrap());
    time.advance(Duration::from_secs(2));
    cache.store().purge_expired();
    let _ = cache
        .fetch(s("l"), |_| async {
            Ok::<_, std::io::Error>(Load::Commit(s("x")))
        })
        .await
        .unwrap();
    let stats = cache.stats();
    assert_eq!(stats.writes, 4, "{stats:?}"); // 1 + 2 + the fetch's commit
    assert_eq!(stats.updates, 1, "{stats:?}");
    assert_eq!(stats.deletes, 1, "{stats:?}");
    assert_eq!(stats.expirations, 1, "{stats:?}"); // from the store
    assert_eq!(stats.loads, 1, "{stats:?}");
    assert!(stats.load_time > Duration::ZERO, "{stats:?}");
    assert_eq!(stats.hits, 1, "{stats:?}"); // get a
    assert_eq!(stats.misses, 2, "{stats:?}"); // get zz, fetch l
    cache.reset_stats();
    assert_eq!(cache.stats().hits, 0);
    let off = Cache::builder()
        .store(Store::new())
        .stats(false)
        .build()
        .await
        .unwrap();
    off.get(&s("x")).await.unwrap();
    assert_eq!(off.stats().misses, 0);
}

// ---------------------------------------------------------------- fetch

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_fetches_of_one_key_call_the_loader_once() {
    let cache = Cache::builder().store(Store::new()).build().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .fetch(s("user:1"), |key| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok::<_, std::io::Error>(Load::Commit(format!("loaded {key}")))
                    })
                    .await
            })
        })
        .collect();
    until_misses(&cache, 200).await;
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    gate.notify_waiters();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), Some(s("loaded user:1")));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().loads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fetches_of_fifty_keys_call_the_loader_fifty_times() {
    let cache = Cache::builder().store(Store::new()).build().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                let key = format!("k{}", i % 50);
                let got = cache
                    .fetch(key.clone(), |key| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, std::io::Error>(Load::Commit(key))
                    })
                    .await;
                (key, got)
            })
        })
        .collect();
    for t in tasks {
        let (key, got) = t.await.unwrap();
        assert_eq!(got.unwrap(), Some(key));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_fails_every_waiter_and_releases_the_key() {
    let cache = Cache::builder().store(Store::new()).build().await.unwrap();
    let gate = Arc::new(Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cache, gate, started) = (cache.clone(), gate.clone(), started.clone());
            tokio::spawn(async move {
                cache
                    .fetch(s("boom"), |_| async move {
                        started.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        panic!("database driver bug");
                        #[allow(unreachable_code)]
                        Ok::<_, std::io::Error>(Load::NotFound)
                    })
                    .await
            })
        })
        .collect();
    until_misses(&cache, 20).await;
    while started.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    gate.notify_waiters();
    for t in tasks {
        match t.await.unwrap() {
            Err(FetchError::Cache(e)) => {
                assert!(
                    matches!(&*e, Error::Loader(l) if l.reason.contains("database driver bug")),
                    "{e}"
                );
            }
            other => panic!("expected a loader error, got {other:?}"),
        }
    }
    assert_eq!(started.load(Ordering::SeqCst), 1);
    let next = cache
        .fetch(s("boom"), |_| async {
            Ok::<_, std::io::Error>(Load::Commit(s("fine")))
        })
        .await;
    assert_eq!(next.unwrap(), Some(s("fine")));
    assert_eq!(cache.stats().load_errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_error_reaches_every_waiter_and_is_not_cached() {
    let cache = Cache::builder().store(Store::new()).build().await.unwrap();
    let gate = Arc::new(Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (cache, gate, started) = (cache.clone(), gate.clone(), started.clone());
            tokio::spawn(async move {
                cache
                    .fetch(s("k"), |_| async move {
                        started.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Err::<Load<String>, _>(std::io::Error::other("database down"))
                    })
                    .await
            })
        })
        .collect();
    until_misses(&cache, 20).await;
    while started.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    gate.notify_waiters();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Err(FetchError::Load(e)) => errors.push(e),
            other => panic!("expected the loader's error, got {other:?}"),
        }
    }
    assert!(
        errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])),
        "one shared Arc"
    );
    assert_eq!(errors[0].to_string(), "database down");
    assert_eq!(
        cache.get(&s("k")).await.unwrap(),
        None,
        "errors are not cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_leader_hands_the_key_to_a_waiter() {
    let cache = Cache::builder().store(Store::new()).build().await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let leader = {
        let (cache, started) = (cache.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .fetch(s("k"), |_| async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    pending::<Result<Load<String>, std::io::Error>>().await
                })
                .await
        })
    };
    while started.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .fetch(s("k"), |_| async {
                    Ok::<_, std::io::Error>(Load::Commit(s("second")))
                })
                .await
        })
    };
    until_misses(&cache, 2).await;
    leader.abort();
    assert_eq!(waiter.await.unwrap().unwrap(), Some(s("second")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_fetches_at_random_points_never_wedges_a_key() {
    for round in 0..20u64 {
        let cache = Cache::builder().store(Store::new()).build().await.unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (cache, calls) = (cache.clone(), calls.clone());
                tokio::spawn(async move {
                    cache
                        .fetch(s("k"), |_| async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            for _ in 0..3 {
                                tokio::task::yield_now().await;
                            }
                            Ok::<_, std::io::Error>(Load::Commit(s("v")))
                        })
                        .await
                })
            })
            .collect();
        let mut aborted = 0;
        for (i, task) in tasks.iter().enumerate() {
            if (i as u64 * 7 + round).is_multiple_of(5) {
                task.abort();
                aborted += 1;
            }
        }
        for task in tasks {
            // A wedged key would hang here; the timeout only turns a hang into a failure.
            match tokio::time::timeout(Duration::from_secs(30), task).await {
                Ok(Ok(result)) => assert_eq!(result.unwrap(), Some(s("v"))),
                Ok(Err(join)) => assert!(join.is_cancelled()),
                Err(_) => panic!("round {round}: a fetch hung"),
            }
        }
        let calls = calls.load(Ordering::SeqCst);
        assert!(
            (1..=1 + aborted).contains(&calls),
            "round {round}: {calls} loads"
        );
        assert_eq!(cache.get(&s("k")).await.unwrap(), Some(s("v")));
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_loader_times_out_and_the_next_fetch_retries() {
    let cache = Cache::builder()
        .store(Store::new())
        .load_timeout(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let hung = cache
        .fetch(s("k"), |_| {
            pending::<Result<Load<String>, std::io::Error>>()
        })
        .await;
    assert!(matches!(hung, Err(FetchError::Cache(e)) if matches!(*e, Error::Timeout { .. })));
    let next = cache
        .fetch(s("k"), |_| async {
            Ok::<_, std::io::Error>(Load::Commit(s("v")))
        })
        .await;
    assert_eq!(next.unwrap(), Some(s("v")));
    assert_eq!(cache.stats().load_errors, 1);
}

#[tokio::test]
async fn a_loader_may_fetch_other_keys() {
    // cachex#192: nested fetches must neither deadlock nor load twice.
    let cache = Cache::builder().store(Store::new()).build().await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let outer = {
        let (inner_cache, calls) = (cache.clone(), calls.clone());
        cache.fetch(s("page"), move |_| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let user = inner_cache
                .fetch(s("user"), |_| async {
                    Ok::<_, std::io::Error>(Load::Commit(s("ada")))
                })
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok::<_, std::io::Error>(Load::Commit(format!(
                "page of {}",
                user.unwrap_or_default()
            )))
        })
    };
    assert_eq!(outer.await.unwrap(), Some(s("page of ada")));
    assert_eq!(cache.get(&s("user")).await.unwrap(), Some(s("ada")));
    assert_eq!((calls.load(Ordering::SeqCst), cache.stats().loads), (1, 2));
}

#[tokio::test]
async fn commit_for_uses_its_own_ttl_and_ignore_caches_nothing() {
    let time = ManualClock::new();
    let cache = cache_on(&time).await;
    let got = cache
        .fetch(s("short"), |_| async {
            Ok::<_, std::io::Error>(Load::CommitFor(s("v"), Duration::from_secs(2)))
        })
        .await;
    assert_eq!(got.unwrap(), Some(s("v")));
    assert_eq!(
        cache.ttl(&s("short")).await.unwrap(),
        Some(Expiry::In(Duration::from_secs(2)))
    );
    time.advance(Duration::from_secs(2));
    assert_eq!(cache.get(&s("short")).await.unwrap(), None);
    let ignored = cache
        .fetch(s("i"), |_| async {
            Ok::<_, std::io::Error>(Load::Ignore(s("once")))
        })
        .await;
    assert_eq!(ignored.unwrap(), Some(s("once")));
    assert_eq!(cache.get(&s("i")).await.unwrap(), None);
}

#[tokio::test]
async fn negative_caching_spares_the_database_until_the_absence_expires() {
    let time = ManualClock::new();
    let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
    let cache = Cache::builder()
        .store(store)
        .clock(time.clock())
        .negative_ttl(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    // A fetch loader owns what it uses (`Send + 'static`, for refresh-ahead): an Arc'd counter.
    let calls = Arc::new(AtomicUsize::new(0));
    let lookup = {
        let calls = calls.clone();
        move |_: String| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::io::Error>(Load::NotFound) }
        }
    };
    for _ in 0..100 {
        assert_eq!(
            cache.fetch(s("bogus-token"), lookup.clone()).await.unwrap(),
            None
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "enumeration hits the cache"
    );
    time.advance(Duration::from_secs(30));
    assert_eq!(
        cache.fetch(s("bogus-token"), lookup.clone()).await.unwrap(),
        None
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the absence expired");
    cache
        .put(s("bogus-token"), s("now real"), None)
        .await
        .unwrap();
    let got = cache.fetch(s("bogus-token"), lookup.clone()).await.unwrap();
    assert_eq!(got, Some(s("now real")), "a put clears the absence");
    cache.delete(&s("bogus-token")).await.unwrap();
    assert_eq!(cache.fetch(s("other"), lookup.clone()).await.unwrap(), None);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(cache.fetch(s("other"), lookup.clone()).await.unwrap(), None);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "absence of other cached");
    cache.clear().await.unwrap();
    assert_eq!(cache.fetch(s("other"), lookup.clone()).await.unwrap(), None);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "clear forgets absences too"
    );
}

// ---------------------------------------------------------------- warmers

struct Flaky {
    fail_first: usize,
    attempts: Arc<AtomicUsize>,
}

impl Warmer<String, String> for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    async fn warm(&self) -> Result<Vec<(String, String)>, BoxError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        if attempt < self.fail_first {
            return Err("connection refused".into());
        }
        Ok(vec![(s("warm"), format!("attempt {attempt}"))])
    }
}

#[tokio::test(start_paused = true)]
async fn a_required_warmer_is_loaded_before_build_returns() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let warmer = Flaky {
        fail_first: 2,
        attempts: attempts.clone(),
    };
    let cache = Cache::builder()
        .store(Store::new())
        .required_warmer(warmer, Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    assert_eq!(cache.get(&s("warm")).await.unwrap(), Some(s("attempt 2")));
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "two failures retried with back-off"
    );
}

#[tokio::test(start_paused = true)]
async fn a_required_warmer_whose_source_is_down_fails_build_with_a_clear_error() {
    let warmer = Flaky {
        fail_first: usize::MAX,
        attempts: Arc::default(),
    };
    let result = Cache::builder()
        .store(Store::new())
        .required_warmer(warmer, Duration::from_secs(60))
        .warm_timeout(Duration::from_secs(10))
        .build()
        .await;
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("flaky") && text.contains("connection refused"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_optional_warmer_never_blocks_start_and_retries_with_backoff() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let warmer = Flaky {
        fail_first: 5,
        attempts: attempts.clone(),
    };
    let cache = Cache::builder()
        .store(Store::new())
        .warmer(warmer, Duration::from_secs(3600))
        .warmer_backoff(Duration::from_secs(1), Duration::from_secs(4))
        .build()
        .await
        .unwrap();
    assert_eq!(
        cache.get(&s("warm")).await.unwrap(),
        None,
        "start did not wait"
    );
    // Back-off: ~1, 2, 4, 4, 4 s (±25 %) between the six attempts: 20 s covers them all.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 6);
    assert_eq!(cache.get(&s("warm")).await.unwrap(), Some(s("attempt 5")));
    // Then it waits the interval: the success came at 11.25..=18.75 s, the next run 3600 s later.
    tokio::time::sleep(Duration::from_secs(3590)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 6);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 7);
}

struct Hanging {
    _alive: Arc<()>,
}

impl Warmer<String, String> for Hanging {
    async fn warm(&self) -> Result<Vec<(String, String)>, BoxError> {
        pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_required_warmer_times_out_and_its_task_ends() {
    let token = Arc::new(());
    let result = Cache::builder()
        .store(Store::new())
        .required_warmer(
            Hanging {
                _alive: token.clone(),
            },
            Duration::from_secs(60),
        )
        .warm_timeout(Duration::from_secs(5))
        .build()
        .await;
    assert!(matches!(result, Err(Error::Timeout { .. })));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "the warmer task was stopped and dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_cache_stops_its_warmers() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let warmer = Flaky {
        fail_first: 0,
        attempts: attempts.clone(),
    };
    let cache = Cache::builder()
        .store(Store::new())
        .required_warmer(warmer, Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    drop(cache);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(Arc::strong_count(&attempts), 1);
}

struct Panicky;

impl Warmer<String, String> for Panicky {
    async fn warm(&self) -> Result<Vec<(String, String)>, BoxError> {
        panic!("warmer bug")
    }
}

#[tokio::test(start_paused = true)]
async fn warm_now_reports_failures_and_a_panicking_warmer_is_an_error() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let cache = Cache::builder()
        .store(Store::new())
        .warmer(Panicky, Duration::from_secs(60))
        .warmer(
            Flaky {
                fail_first: 0,
                attempts,
            },
            Duration::from_secs(60),
        )
        .build()
        .await
        .unwrap();
    let err = cache.warm_now().await.unwrap_err();
    assert!(err.to_string().contains("warmer bug"), "{err}");
    assert!(
        cache.get(&s("warm")).await.unwrap().is_some(),
        "the other warmer ran"
    );
}

// ---------------------------------------------------------------- events

#[tokio::test]
async fn subscribers_see_key_and_cause() {
    let time = ManualClock::new();
    let cache = cache_on(&time).await;
    let mut events = cache.subscribe().unwrap();
    cache.put(s("a"), s("1"), None).await.unwrap();
    cache.put(s("a"), s("2"), None).await.unwrap();
    cache.delete(&s("a")).await.unwrap();
    cache
        .put(s("b"), s("1"), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    time.advance(Duration::from_secs(1));
    cache.store().purge_expired();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let e = events.recv().await.unwrap();
        seen.push((e.key, e.kind));
    }
    assert_eq!(
        seen,
        [
            (s("a"), EventKind::Put),
            (s("a"), EventKind::Replace),
            (s("a"), EventKind::Delete),
            (s("b"), EventKind::Put),
            (s("b"), EventKind::Expired),
        ]
    );
}

#[tokio::test]
async fn a_slow_subscriber_does_not_block_writers() {
    let store = MemoryStore::builder().event_capacity(16).build().unwrap();
    let cache = Cache::builder().store(store).build().await.unwrap();
    let mut idle = cache.subscribe().unwrap();
    for i in 0..10_000 {
        cache.put(format!("k{i}"), s("v"), None).await.unwrap();
    }
    let first = idle.recv().await.unwrap();
    assert_eq!(first.key, "k9984");
    assert_eq!(idle.lagged(), 9984);
}

struct Silent;

impl strata::Store<String, String> for Silent {
    async fn put(&self, _: String, _: String, _: Option<Duration>) -> strata::Result<()> {
        Ok(())
    }
    async fn get(&self, _: &String) -> strata::Result<Option<String>> {
        Ok(None)
    }
    async fn delete(&self, _: &String) -> strata::Result<bool> {
        Ok(false)
    }
    async fn keys(&self) -> strata::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_store_without_events_says_unsupported() {
    let cache = Cache::builder().store(Silent).build().await.unwrap();
    assert!(matches!(
        cache.subscribe(),
        Err(Error::Unsupported {
            operation: "subscribe"
        })
    ));
    assert!(matches!(
        Cache::builder().store(Silent).namespace("x").build().await,
        Err(Error::Unsupported {
            operation: "with_namespace"
        })
    ));
}

// ---------------------------------------------------------------- dump / load

#[tokio::test]
async fn dump_and_load_keep_remaining_ttls_and_skip_expired_entries() {
    let time = ManualClock::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.dump");
    let cache = cache_on(&time).await;
    for i in 0..3000 {
        cache
            .put(format!("k{i}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    cache
        .put(s("short"), s("v"), Some(Duration::from_secs(10)))
        .await
        .unwrap();
    cache
        .put(s("long"), s("v"), Some(Duration::from_secs(100)))
        .await
        .unwrap();
    time.advance(Duration::from_secs(5));
    assert_eq!(cache.dump(&path).await.unwrap(), 3002);
    time.advance(Duration::from_secs(20)); // "short" expires between dump and load

    let restored = cache_on(&time).await;
    let summary = restored.load(&path).await.unwrap();
    assert_eq!((summary.loaded, summary.expired), (3001, 1));
    assert_eq!(restored.get(&s("k2999")).await.unwrap(), Some(s("v2999")));
    assert_eq!(restored.ttl(&s("k0")).await.unwrap(), Some(Expiry::Never));
    assert_eq!(
        restored.ttl(&s("long")).await.unwrap(),
        Some(Expiry::In(Duration::from_secs(75)))
    );
    assert_eq!(restored.get(&s("short")).await.unwrap(), None);
}

async fn dump_of_three(path: &std::path::Path) -> Vec<u8> {
    let cache = Cache::builder().store(Store::new()).build().await.unwrap();
    for k in ["a", "b", "c"] {
        cache.put(s(k), s(k), None).await.unwrap();
    }
    cache.dump(path).await.unwrap();
    std::fs::read(path).unwrap()
}

async fn load_into_fresh(path: &std::path::Path) -> (strata::Result<strata::LoadSummary>, usize) {
    let cache = Cache::builder().store(Store::new()).build().await.unwrap();
    let result = cache.load(path).await;
    (result, cache.len().await.unwrap())
}

#[tokio::test]
async fn a_truncated_or_corrupt_dump_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d");
    let bytes = dump_of_three(&path).await;
    for cut in [0, 5, 12, 20, bytes.len() - 13, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let (result, len) = load_into_fresh(&path).await;
        let err = result.unwrap_err();
        assert!(matches!(err, Error::InvalidDump { .. }), "cut {cut}: {err}");
        assert_eq!(len, 0, "cut {cut}: nothing loaded");
    }
    let mut flipped = bytes.clone();
    flipped[30] ^= 0xFF;
    std::fs::write(&path, &flipped).unwrap();
    let (result, len) = load_into_fresh(&path).await;
    assert!(result.unwrap_err().to_string().contains("checksum"));
    assert_eq!(len, 0);
    std::fs::write(&path, b"not a dump at all").unwrap();
    assert!(matches!(
        load_into_fresh(&path).await.0,
        Err(Error::InvalidDump { .. })
    ));
}

#[tokio::test]
async fn a_dump_from_a_newer_version_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d");
    let mut bytes = dump_of_three(&path).await;
    bytes[10..12].copy_from_slice(&(DUMP_VERSION + 1).to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let (result, len) = load_into_fresh(&path).await;
    let err = result.unwrap_err();
    assert!(err.to_string().contains("upgrade strata"), "{err}");
    assert_eq!(len, 0);
}

#[tokio::test]
async fn a_dump_of_another_value_type_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d");
    dump_of_three(&path).await;
    let cache = Cache::builder()
        .store(MemoryStore::<String, u64>::new())
        .build()
        .await
        .unwrap();
    assert!(matches!(
        cache.load(&path).await,
        Err(Error::InvalidDump { .. })
    ));
    assert_eq!(cache.len().await.unwrap(), 0);
    let missing = cache.load(dir.path().join("nope")).await;
    assert!(matches!(missing, Err(Error::Io { .. })));
}

// ---------------------------------------------------------------- rate limiting

fn limiter(time: &ManualClock) -> RateLimiter<MemoryStore<String, i64>> {
    let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
    RateLimiter::with_clock(store, time.clock())
}

#[tokio::test]
async fn fixed_window_allows_the_limit_per_window() {
    let time = ManualClock::starting_at(1_000_000);
    let rl = limiter(&time);
    let window = Duration::from_secs(10);
    for left in (0..5).rev() {
        let d = rl.check("ip:1", 5, window).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, left);
    }
    let denied = rl.check("ip:1", 5, window).await.unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, Some(window));
    assert!(
        rl.check("ip:2", 5, window).await.unwrap().allowed,
        "keys are independent"
    );
    time.advance(Duration::from_secs(4));
    let still = rl.check("ip:1", 5, window).await.unwrap();
    assert_eq!(still.retry_after, Some(Duration::from_secs(6)));
    time.advance(Duration::from_secs(6));
    assert!(rl.check("ip:1", 5, window).await.unwrap().allowed);
    assert!(matches!(
        rl.check("x", 0, window).await,
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        rl.check("x", 1, Duration::ZERO).await,
        Err(Error::InvalidTtl { .. })
    ));
}

#[tokio::test]
async fn gcra_allows_a_burst_then_refills_smoothly() {
    let time = ManualClock::starting_at(1_000_000);
    let rl = limiter(&time);
    let window = Duration::from_secs(10); // 5 per 10 s: one every 2 s
    for _ in 0..5 {
        assert!(rl.check_gcra("tok", 5, window).await.unwrap().allowed);
    }
    let denied = rl.check_gcra("tok", 5, window).await.unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, Some(Duration::from_secs(2)));
    time.advance(Duration::from_secs(2));
    let d = rl.check_gcra("tok", 5, window).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
    assert!(!rl.check_gcra("tok", 5, window).await.unwrap().allowed);
    time.advance(Duration::from_secs(10));
    let d = rl.check_gcra("tok", 5, window).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_never_exceed_the_limit() {
    let time = ManualClock::starting_at(1_000_000);
    let rl = limiter(&time);
    let window = Duration::from_secs(60);
    for gcra in [false, true] {
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let rl = rl.clone();
                tokio::spawn(async move {
                    let d = match gcra {
                        false => rl.check("shared", 10, window).await,
                        true => rl.check_gcra("shared", 10, window).await,
                    };
                    d.unwrap().allowed
                })
            })
            .collect();
        let mut allowed = 0;
        for t in tasks {
            allowed += usize::from(t.await.unwrap());
        }
        assert_eq!(allowed, 10, "gcra: {gcra}");
    }
}
