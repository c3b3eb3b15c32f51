//! Issue 12, items 5 and 6: what a Cache guarantees when a write races a counter or a load.
//! Each test forces the interleaving that broke the guarantee on the old code, with a manual
//! clock, a `FaultStore` (a parked store call, a hook at a named point) or a loader parked on a
//! oneshot (no sleeps).

mod support;

use std::{future::Future, pin::Pin, task::Poll, time::Duration};

use strata::{Cache, Expiry, Load, ManualClock, MemoryStore, Store};
use support::fault_store::{At, FaultStore, Op};
use tokio::{sync::oneshot, task::JoinHandle};

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
    let counted = cache.incr(&key, 1).await.unwrap();
    assert!(!faults.armed(), "the expiry was not pinned inside incr");
    assert_eq!(counted, 1, "counted on an expired counter");
    assert_eq!(
        store.ttl(&key),
        Some(Expiry::In(Duration::from_secs(10))),
        "the re-created counter did not get the default TTL"
    );
    time.advance(Duration::from_secs(10));
    assert_eq!(cache.get(&key).await.unwrap(), None, "a permanent lock-out");
}

type Strings<S> = Cache<String, String, S>;
type Faulty = FaultStore<MemoryStore<String, String>>;

/// A cache over a manual-clock MemoryStore, and a loader parked until the test releases it.
async fn cache_and_parked_loader() -> (
    Strings<MemoryStore<String, String>>,
    oneshot::Sender<()>,
    JoinHandle<Option<String>>,
) {
    let time = ManualClock::new();
    let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
    let cache = Cache::builder()
        .store(store)
        .clock(time.clock())
        .build()
        .await
        .unwrap();
    let (release, task) = parked_fetch(&cache, "k", Load::Commit(s("old"))).await;
    (cache, release, task)
}

/// Spawns `fetch(key)` and returns once its loader runs; the loader answers `load` when
/// released.
async fn parked_fetch<S>(
    cache: &Strings<S>,
    key: &str,
    load: Load<String>,
) -> (oneshot::Sender<()>, JoinHandle<Option<String>>)
where
    S: Store<String, String> + 'static,
{
    let (release, parked) = oneshot::channel::<()>();
    let (started_tx, started) = oneshot::channel::<()>();
    let (loading, key) = (cache.clone(), s(key));
    let task = tokio::spawn(async move {
        let loader = |_| async move {
            started_tx.send(()).unwrap();
            parked.await.unwrap();
            Ok::<_, std::io::Error>(load)
        };
        loading.fetch(key, loader).await.unwrap()
    });
    started.await.unwrap();
    (release, task)
}

/// Polls `future` once: runs it up to its first wait, and says whether it finished.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
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

/// A write before the fetch began does not stop its load from committing (only a write made
/// during the load does).
#[tokio::test]
async fn a_fetch_that_starts_after_a_write_still_commits() {
    let time = ManualClock::new();
    let store = MemoryStore::builder().clock(time.clock()).build().unwrap();
    let cache = Cache::builder().store(store).clock(time.clock());
    let cache = cache.build().await.unwrap();
    cache.delete(&s("k")).await.unwrap();
    let (release, task) = parked_fetch(&cache, "k", Load::Commit(s("fresh"))).await;
    release.send(()).unwrap();
    assert_eq!(task.await.unwrap().as_deref(), Some("fresh"));
    let now = cache.get(&s("k")).await.unwrap();
    assert_eq!(
        now.as_deref(),
        Some("fresh"),
        "a load with no write during it is cached"
    );
}

/// A cache that remembers absences for 30 s, over a `FaultStore`, on a manual clock.
async fn negative_cache(time: &ManualClock) -> (Strings<Faulty>, Faulty) {
    let memory = MemoryStore::builder().clock(time.clock()).build().unwrap();
    let faults = FaultStore::new(memory);
    let cache = Cache::builder()
        .store(faults.clone())
        .clock(time.clock())
        .negative_ttl(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    (cache, faults)
}

/// True if a `fetch` of the missing `key` asks its loader (and returns what it loaded), false
/// if a cached absence answers `None` instead.
async fn asks_the_loader(cache: &Strings<Faulty>, key: &str) -> bool {
    let loader = |_| async { Ok::<_, std::io::Error>(Load::Commit(s("from the loader"))) };
    let fetched = cache.fetch(s(key), loader).await.unwrap();
    fetched.as_deref() == Some("from the loader")
}

/// Item 1 (issue 12): a writer that forgot a key's cached absence *before* waiting out another
/// key's committing leader let a load of the first key remember "not found" meanwhile, after
/// the forget. The write's value then hid behind that absence once it expired: `fetch`
/// answered `None` for 30 s without asking the loader.
///
/// The case needs b's load to finish while a's leader commits. Now and then b shares a's
/// commit-lock stripe (64 stripes, hashed with a seed chosen per cache): then b's load waits
/// for a's commit, the case cannot arise, and the test starts over with a fresh cache (it used
/// to wait for b forever, a hang in about 1 run of 64).
#[tokio::test]
async fn an_absence_remembered_during_a_write_never_outlives_it() {
    for _ in 0..20 {
        if let Some(asked) = absence_remembered_during_a_write().await {
            assert!(asked, "an absence remembered during the write outlived it");
            return;
        }
    }
    panic!("b shared a's commit-lock stripe in 20 fresh caches");
}

/// One try of the case above: `Some(true)` if `fetch` of b asks the loader once the write's
/// TTL is over, `None` if b's load could not finish while a's leader commits.
async fn absence_remembered_during_a_write() -> Option<bool> {
    let time = ManualClock::new();
    let (cache, faults) = negative_cache(&time).await;
    // The leader of "a" holds a's commit lock, parked inside its store write.
    let mut committing = faults.park_next(Op::Put);
    let (release_a, fetch_a) = parked_fetch(&cache, "a", Load::Commit(s("a0"))).await;
    release_a.send(()).unwrap();
    committing.reached().await;
    let (release_b, fetch_b) = parked_fetch(&cache, "b", Load::NotFound).await;
    let entries = vec![(s("a"), s("a1")), (s("b"), s("b1"))];
    let mut write = Box::pin(cache.put_many(entries, Some(Duration::from_secs(1))));
    let waiting = poll_once(&mut write).await;
    assert!(
        waiting.is_pending(),
        "the write did not wait out a's commit"
    );
    // b's load finds nothing while the write waits.
    release_b.send(()).unwrap();
    let b_finished = runs_to_its_end(&fetch_b).await;
    committing.release();
    if !b_finished {
        write.await.unwrap();
        fetch_a.await.unwrap();
        fetch_b.await.unwrap();
        return None;
    }
    assert_eq!(fetch_b.await.unwrap(), None);
    write.await.unwrap();
    assert_eq!(fetch_a.await.unwrap().as_deref(), Some("a0"));
    time.advance(Duration::from_secs(2));
    Some(asks_the_loader(&cache, "b").await)
}

/// Lets the other tasks of this (single-threaded) runtime run until `task` has finished;
/// false if it is still waiting after many turns, i.e. it waits for a lock this task holds
/// the way open (nothing in these tests waits on time or I/O).
async fn runs_to_its_end<T>(task: &JoinHandle<T>) -> bool {
    for _ in 0..1000 {
        if task.is_finished() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    task.is_finished()
}

/// `Cache::load` (a dump merged in) is a write like `put`: a load in flight must not
/// overwrite what it merged with the older value its loader read.
#[tokio::test]
async fn a_dump_loaded_during_a_fetch_is_not_overwritten_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.dump");
    let source = Cache::builder()
        .store(MemoryStore::new())
        .build()
        .await
        .unwrap();
    source.put(s("k"), s("dumped"), None).await.unwrap();
    source.dump(&path).await.unwrap();
    let (cache, release, task) = cache_and_parked_loader().await;
    assert_eq!(cache.load(&path).await.unwrap().loaded, 1);
    release.send(()).unwrap();
    assert_eq!(task.await.unwrap().as_deref(), Some("old"));
    assert_eq!(
        cache.get(&s("k")).await.unwrap().as_deref(),
        Some("dumped"),
        "the load overwrote the dump merged during it"
    );
}

/// `Cache::replace` is a write like `put`: it forgets a cached absence, or that absence hid the
/// key from `fetch` once the replaced value expired (the key was written by another writer of
/// the same store, then replaced through the cache).
#[tokio::test]
async fn a_replace_forgets_a_cached_absence() {
    let time = ManualClock::new();
    let (cache, faults) = negative_cache(&time).await;
    let not_found = |_| async { Ok::<_, std::io::Error>(Load::NotFound) };
    assert_eq!(cache.fetch(s("k"), not_found).await.unwrap(), None);
    let second = Duration::from_secs(1);
    faults
        .inner()
        .put(s("k"), s("other writer"), Some(second))
        .unwrap();
    let replaced = cache.replace(s("k"), s("v"), Some(second)).await.unwrap();
    assert!(replaced, "the live entry was not replaced");
    time.advance(Duration::from_secs(2));
    assert!(
        asks_the_loader(&cache, "k").await,
        "an absence cached before the replace outlived it"
    );
}

/// A cache with default options over a `FaultStore` wrapping a MemoryStore.
async fn faulty_cache() -> (Strings<Faulty>, Faulty) {
    let faults = FaultStore::new(MemoryStore::new());
    let cache = Cache::builder()
        .store(faults.clone())
        .build()
        .await
        .unwrap();
    (cache, faults)
}

/// `Cache::get` counts a read before the lookup and a miss after it (hits = reads − misses); a
/// read that fails must be taken back, or it would show as a hit. Every read kind is checked.
#[tokio::test]
async fn a_failed_read_counts_neither_a_hit_nor_a_miss() {
    let (cache, faults) = faulty_cache().await;
    cache.put(s("a"), s("1"), None).await.unwrap();
    for op in [Op::Get, Op::GetMany, Op::Contains, Op::Take] {
        faults.fail_next(op);
    }
    assert!(cache.get(&s("a")).await.is_err());
    assert!(cache.get_many(&[s("a"), s("b")]).await.is_err());
    assert!(cache.contains(&s("a")).await.is_err());
    assert!(cache.take(&s("a")).await.is_err());
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (0, 0), "{stats:?}");
    assert_eq!(cache.get(&s("a")).await.unwrap(), Some(s("1")));
    assert_eq!(cache.get(&s("b")).await.unwrap(), None);
    assert_eq!(cache.get_many(&[s("a"), s("b")]).await.unwrap().len(), 2);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (2, 2), "{stats:?}");
}

/// A `Cache::get` cancelled mid-read (its task aborted while the store call is parked) is
/// counted neither as a hit nor as a miss: the read counted before the lookup is taken back.
#[tokio::test]
async fn a_cancelled_read_counts_neither_a_hit_nor_a_miss() {
    let (cache, faults) = faulty_cache().await;
    let mut parked = faults.park_next(Op::Get);
    let read = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get(&s("absent")).await }
    });
    parked.reached().await;
    read.abort();
    assert!(read.await.unwrap_err().is_cancelled());
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (0, 0), "{stats:?}");
    drop(parked);
}
