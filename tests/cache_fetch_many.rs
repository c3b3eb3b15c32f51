//! Issue 13 item 4: `Cache::fetch_many` (one batch loader call, single flight per key). The
//! overlaps are forced: a `fetch` parked inside its loader while the batch runs, a batch loader
//! parked on a `Notify` while waiters join, cancelled or panicking (no sleeps).

use std::{
    future::pending,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use parking_lot::Mutex;
use strata::{Cache, Error, FetchError, Load, MemoryStore};
use tokio::sync::Notify;

type Strings = Cache<String, String, MemoryStore<String, String>>;
type Batch = Vec<(String, Load<String>)>;

fn s(v: &str) -> String {
    v.to_string()
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|k| s(k)).collect()
}

async fn cache() -> Strings {
    Cache::builder()
        .store(MemoryStore::new())
        .build()
        .await
        .unwrap()
}

/// Every key loaded as "v:<key>".
fn loaded(missing: &[String]) -> Batch {
    missing
        .iter()
        .map(|k| (k.clone(), Load::Commit(format!("v:{k}"))))
        .collect()
}

/// The result of a `fetch_many` of `String`s.
type Fetched = Result<Vec<Option<String>>, FetchError<std::io::Error>>;

/// A `fetch_many` running in its own task whose batch loader counts its start in `started`,
/// waits for `gate`, then answers with `finish(missing keys)`.
struct Parked {
    started: Arc<AtomicUsize>,
    gate: Arc<Notify>,
    batch: tokio::task::JoinHandle<Fetched>,
}

fn parked_batch(
    cache: &Strings,
    names: &[&str],
    finish: fn(&[String]) -> Result<Batch, std::io::Error>,
) -> Parked {
    let (started, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let (cache, names) = (cache.clone(), keys(names));
    let batch = {
        let (started, gate) = (started.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .fetch_many(&names, |missing| {
                    let (started, gate) = (started.clone(), gate.clone());
                    async move {
                        started.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        finish(&missing)
                    }
                })
                .await
        })
    };
    Parked {
        started,
        gate,
        batch,
    }
}

/// `cache.fetch(key)` in its own task, with a loader that commits `value`.
fn spawned_fetch(cache: &Strings, key: &str, value: &str) -> tokio::task::JoinHandle<FetchedOne> {
    let (cache, key, value) = (cache.clone(), s(key), s(value));
    tokio::spawn(async move {
        cache
            .fetch(key, |_| async move {
                Ok::<_, std::io::Error>(Load::Commit(value))
            })
            .await
    })
}

/// The result of one `fetch` of a `String`.
type FetchedOne = Result<Option<String>, FetchError<std::io::Error>>;

async fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn one_loader_call_gets_every_missing_key_and_hits_are_not_loaded() {
    let cache = cache().await;
    cache.put(s("k1"), s("cached"), None).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let got = cache
        .fetch_many(&keys(&["k1", "k2", "k3", "k2"]), |missing| {
            seen.lock().push(missing.clone());
            async move { Ok::<_, std::io::Error>(loaded(&missing)) }
        })
        .await
        .unwrap();
    assert_eq!(
        got,
        [
            Some(s("cached")),
            Some(s("v:k2")),
            Some(s("v:k3")),
            Some(s("v:k2"))
        ]
    );
    assert_eq!(
        *seen.lock(),
        [keys(&["k2", "k3"])],
        "one call, missing keys once"
    );
    assert_eq!(cache.get(&s("k3")).await.unwrap(), Some(s("v:k3")));
    assert_eq!(cache.stats().loads, 1);
}

#[tokio::test]
async fn a_key_another_fetch_is_loading_is_awaited_not_loaded_again() {
    let cache = cache().await;
    let (started, gate) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let single = {
        let (cache, started, gate) = (cache.clone(), started.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .fetch(s("k2"), move |_| async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    Ok::<_, std::io::Error>(Load::Commit(s("from fetch")))
                })
                .await
        })
    };
    until(|| started.load(Ordering::SeqCst) == 1).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let batch = {
        let (cache, seen) = (cache.clone(), seen.clone());
        tokio::spawn(async move {
            cache
                .fetch_many(&keys(&["k1", "k2", "k3"]), |missing| {
                    seen.lock().push(missing.clone());
                    async move { Ok::<_, std::io::Error>(loaded(&missing)) }
                })
                .await
        })
    };
    // The batch commits k1 and k3, then waits for k2's parked loader.
    until(|| !seen.lock().is_empty()).await;
    assert_eq!(*seen.lock(), [keys(&["k1", "k3"])]);
    gate.notify_one();
    assert_eq!(single.await.unwrap().unwrap(), Some(s("from fetch")));
    let got = batch.await.unwrap().unwrap();
    assert_eq!(
        got,
        [Some(s("v:k1")), Some(s("from fetch")), Some(s("v:k3"))]
    );
    assert_eq!(cache.stats().loads, 2);
}

#[tokio::test]
async fn a_batch_loader_error_reaches_every_waiter_of_the_batch() {
    let cache = cache().await;
    let Parked {
        started,
        gate,
        batch,
    } = parked_batch(&cache, &["k1", "k2"], |_| {
        Err(std::io::Error::other("database down"))
    });
    until(|| started.load(Ordering::SeqCst) == 1).await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .fetch(s("k2"), |_| async {
                    unreachable!("k2 was loaded twice");
                    #[allow(unreachable_code)]
                    Ok::<_, std::io::Error>(Load::NotFound)
                })
                .await
        })
    };
    until(|| cache.stats().misses == 3).await;
    gate.notify_one();
    let Err(FetchError::Load(theirs)) = waiter.await.unwrap() else {
        panic!("the waiter did not get the batch's error");
    };
    let Err(FetchError::Load(ours)) = batch.await.unwrap() else {
        panic!("the batch did not fail with its loader's error");
    };
    assert!(Arc::ptr_eq(&ours, &theirs), "one shared error");
    assert_eq!(
        cache.get(&s("k1")).await.unwrap(),
        None,
        "an error was cached"
    );
    assert_eq!(cache.loads_in_flight(), 0);
}

#[tokio::test]
async fn a_panicking_batch_loader_fails_its_waiters_and_releases_the_keys() {
    let cache = cache().await;
    let Parked {
        started,
        gate,
        batch,
    } = parked_batch(&cache, &["k1", "k2", "k3"], |_| panic!("driver bug"));
    until(|| started.load(Ordering::SeqCst) == 1).await;
    let waiter = spawned_fetch(&cache, "k3", "unused");
    until(|| cache.stats().misses == 4).await;
    gate.notify_one();
    let outcomes = [
        batch.await.unwrap().map(|_| ()),
        waiter.await.unwrap().map(|_| ()),
    ];
    for outcome in outcomes {
        match outcome {
            Err(FetchError::Cache(e)) => assert!(
                matches!(&*e, Error::Loader(l) if l.reason.contains("driver bug")),
                "{e}"
            ),
            other => panic!("expected the panic as a loader error, got {other:?}"),
        }
    }
    assert_eq!(cache.loads_in_flight(), 0, "a key stayed wedged");
    let again = cache
        .fetch_many(&keys(&["k1", "k2", "k3"]), |missing| async move {
            Ok::<_, std::io::Error>(loaded(&missing))
        })
        .await
        .unwrap();
    assert_eq!(again, [Some(s("v:k1")), Some(s("v:k2")), Some(s("v:k3"))]);
}

#[tokio::test]
async fn a_cancelled_batch_hands_its_keys_to_their_waiters() {
    let cache = cache().await;
    let started = Arc::new(AtomicUsize::new(0));
    let batch = {
        let (cache, started) = (cache.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .fetch_many(&keys(&["k1", "k2"]), |_| {
                    started.fetch_add(1, Ordering::SeqCst);
                    pending::<Result<Batch, std::io::Error>>()
                })
                .await
        })
    };
    until(|| started.load(Ordering::SeqCst) == 1).await;
    let waiter = spawned_fetch(&cache, "k2", "second");
    until(|| cache.stats().misses == 3).await;
    batch.abort();
    assert!(batch.await.unwrap_err().is_cancelled());
    assert_eq!(waiter.await.unwrap().unwrap(), Some(s("second")));
    assert_eq!(cache.loads_in_flight(), 0, "a key stayed wedged");
    let k1 = cache
        .fetch(s("k1"), |_| async {
            Ok::<_, std::io::Error>(Load::Commit(s("loaded")))
        })
        .await;
    assert_eq!(k1.unwrap(), Some(s("loaded")));
}

#[tokio::test]
async fn absences_are_cached_and_a_key_the_loader_leaves_out_is_not_found() {
    let cache: Strings = Cache::builder()
        .store(MemoryStore::new())
        .negative_ttl(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let got = cache
        .fetch_many(&keys(&["here", "gone"]), |_| async {
            Ok::<_, std::io::Error>(vec![(s("here"), Load::Commit(s("v")))])
        })
        .await
        .unwrap();
    assert_eq!(got, [Some(s("v")), None]);
    let again = cache
        .fetch_many(&keys(&["gone"]), |missing| async move {
            panic!("loaded a remembered absence: {missing:?}");
            #[allow(unreachable_code)]
            Ok::<Batch, std::io::Error>(Vec::new())
        })
        .await
        .unwrap();
    assert_eq!(again, [None]);
    assert_eq!(cache.stats().loads, 1);
}

#[tokio::test]
async fn a_put_made_during_the_batch_load_wins() {
    let cache = cache().await;
    let Parked {
        started,
        gate,
        batch,
    } = parked_batch(&cache, &["k1", "k2"], |missing| Ok(loaded(missing)));
    until(|| started.load(Ordering::SeqCst) == 1).await;
    cache.put(s("k1"), s("written"), None).await.unwrap();
    assert!(!cache.delete(&s("k2")).await.unwrap());
    gate.notify_one();
    let got = batch.await.unwrap().unwrap();
    assert_eq!(
        got,
        [Some(s("v:k1")), Some(s("v:k2"))],
        "callers get what they asked for"
    );
    assert_eq!(cache.get(&s("k1")).await.unwrap(), Some(s("written")));
    assert_eq!(
        cache.get(&s("k2")).await.unwrap(),
        None,
        "the delete was undone"
    );
}
