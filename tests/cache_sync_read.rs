//! `Cache::get`'s two read paths: the store answers at once (`Store::get_now`: MemoryStore,
//! GenerationalStore, a DiskStore's memory tier) or the read awaits `Store::get` (Redis; here a
//! `FaultStore`, which never answers now). Every Cache feature that sits on the read path
//! behaves the same on both: each case in `cases` runs twice, `fast` over a MemoryStore and
//! `slow` over a FaultStore wrapping one. Conditions are forced, never slept for: a manual clock
//! for expiry and idle time, a parked store call for cancellation, an injected failure for
//! errors, a store whose `get` never finishes to prove which path a read took.
mod support;

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use strata::{
    Cache, CacheBuilder, EventKind, GenerationalStore, Load, ManualClock, MemoryStore,
    RemovalCause, Result, Store,
};
use support::fault_store::{FaultStore, Op};
use tokio::sync::oneshot;

type Mem = MemoryStore<String, String>;
const MS: Duration = Duration::from_millis(1);

fn s(v: &str) -> String {
    v.to_string()
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// The store under the Cache: the fast path's MemoryStore, or the slow path's FaultStore.
trait Under: Store<String, String> + Clone + 'static {
    fn over(memory: Mem) -> Self;
    fn memory(&self) -> &Mem;
}

impl Under for Mem {
    fn over(memory: Mem) -> Self {
        memory
    }
    fn memory(&self) -> &Mem {
        self
    }
}

impl Under for FaultStore<Mem> {
    fn over(memory: Mem) -> Self {
        FaultStore::new(memory)
    }
    fn memory(&self) -> &Mem {
        self.inner()
    }
}

/// A Cache over `S` on a manual clock, built with `options`.
async fn cache_on<S: Under>(
    time: &ManualClock,
    options: impl FnOnce(CacheBuilder<String, String, S>) -> CacheBuilder<String, String, S>,
) -> Cache<String, String, S> {
    let memory = MemoryStore::builder().clock(time.clock()).build().unwrap();
    let builder = Cache::builder().store(S::over(memory)).clock(time.clock());
    options(builder).build().await.unwrap()
}

/// `(hits, misses)` of the cache, then of the MemoryStore under it.
fn reads<S: Under>(cache: &Cache<String, String, S>) -> [(u64, u64); 2] {
    let (c, m) = (cache.stats(), cache.store().memory().stats());
    [(c.hits, c.misses), (m.hits, m.misses)]
}

/// Each case once per path: `<case>::fast` and `<case>::slow`.
macro_rules! on_both_paths {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn fast() {
                super::cases::$case::<super::Mem>().await
            }
            #[tokio::test]
            async fn slow() {
                super::cases::$case::<super::FaultStore<super::Mem>>().await
            }
        }
    )*};
}

on_both_paths!(
    a_read_is_counted_once_in_the_cache_and_in_the_store,
    an_expired_entry_is_a_miss_and_is_announced_once,
    a_read_restarts_the_idle_time,
    the_eviction_listener_gets_an_entry_a_read_found_expired,
    a_cached_absence_does_not_hide_a_later_write,
    a_stale_entry_read_with_get_starts_no_refresh,
    a_transaction_holding_the_key_does_not_block_a_read,
    a_read_happens_when_polled_not_when_built,
    a_cache_over_a_cache_counts_in_both,
    a_read_of_an_entry_without_a_ttl_does_not_read_the_clock,
);

mod cases {
    use super::*;

    pub async fn a_read_is_counted_once_in_the_cache_and_in_the_store<S: Under>() {
        let time = ManualClock::new();
        let cache = cache_on::<S>(&time, |b| b).await;
        cache.put(s("a"), s("1"), None).await.unwrap();
        assert_eq!(cache.get(&s("a")).await.unwrap(), Some(s("1")));
        assert_eq!(cache.get(&s("b")).await.unwrap(), None);
        assert_eq!(reads(&cache), [(1, 1), (1, 1)]);
    }

    pub async fn an_expired_entry_is_a_miss_and_is_announced_once<S: Under>() {
        let time = ManualClock::new();
        let cache = cache_on::<S>(&time, |b| b).await;
        let mut events = cache.subscribe().unwrap();
        cache.put(s("a"), s("1"), Some(100 * MS)).await.unwrap();
        time.advance(150 * MS);
        assert_eq!(cache.get(&s("a")).await.unwrap(), None);
        assert_eq!(cache.get(&s("a")).await.unwrap(), None);
        // The read or the sweeper removed it; either counts it before announcing it.
        assert_eq!(events.recv().await.map(|e| e.kind), Some(EventKind::Put));
        assert_eq!(
            events.recv().await.map(|e| e.kind),
            Some(EventKind::Expired)
        );
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.expirations), (0, 2, 1));
        assert!(events.try_recv().is_none(), "announced twice");
    }

    pub async fn a_read_restarts_the_idle_time<S: Under>() {
        let time = ManualClock::new();
        let cache = cache_on::<S>(&time, |b| b.time_to_idle(100 * MS)).await;
        cache.put(s("a"), s("1"), None).await.unwrap();
        time.advance(60 * MS);
        assert_eq!(cache.get(&s("a")).await.unwrap(), Some(s("1")));
        time.advance(60 * MS); // 120 ms after the write, 60 after the read
        let kept = cache.get(&s("a")).await.unwrap();
        assert_eq!(kept, Some(s("1")), "the read did not restart the idle time");
        time.advance(101 * MS);
        assert_eq!(cache.get(&s("a")).await.unwrap(), None);
    }

    pub async fn the_eviction_listener_gets_an_entry_a_read_found_expired<S: Under>() {
        let time = ManualClock::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        let cache = cache_on::<S>(&time, |b| {
            b.eviction_listener(move |key, value, cause| {
                let _ = tx.lock().unwrap().send((key, value, cause));
            })
        })
        .await;
        cache.put(s("a"), s("1"), Some(100 * MS)).await.unwrap();
        time.advance(150 * MS);
        assert_eq!(cache.get(&s("a")).await.unwrap(), None);
        // Delivered by the read itself, or by the sweeper if it got there first.
        let heard = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(heard, (s("a"), s("1"), RemovalCause::Expired));
    }

    pub async fn a_cached_absence_does_not_hide_a_later_write<S: Under>() {
        let time = ManualClock::new();
        let cache = cache_on::<S>(&time, |b| b.negative_ttl(Duration::from_secs(60))).await;
        let not_found = |_| async { Ok::<_, std::io::Error>(Load::NotFound) };
        assert_eq!(cache.fetch(s("a"), not_found).await.unwrap(), None);
        assert_eq!(cache.get(&s("a")).await.unwrap(), None);
        cache.put(s("a"), s("1"), None).await.unwrap();
        assert_eq!(cache.get(&s("a")).await.unwrap(), Some(s("1")));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.loads), (1, 1));
    }

    pub async fn a_stale_entry_read_with_get_starts_no_refresh<S: Under>() {
        let time = ManualClock::new();
        let after = Duration::from_secs(10);
        let ttl = Duration::from_secs(3600);
        let cache = cache_on::<S>(&time, |b| b.ttl(ttl).refresh_after(after)).await;
        cache.put(s("a"), s("1"), None).await.unwrap();
        time.advance(2 * after);
        assert_eq!(cache.get(&s("a")).await.unwrap(), Some(s("1")));
        assert_eq!(cache.loads_in_flight(), 0, "get started a reload");
        assert_eq!(cache.stats().loads, 0);
    }

    pub async fn a_transaction_holding_the_key_does_not_block_a_read<S: Under>() {
        let time = ManualClock::new();
        let cache = cache_on::<S>(&time, |b| b).await;
        cache.put(s("a"), s("1"), None).await.unwrap();
        let (entered, in_block) = oneshot::channel();
        let (release, released) = oneshot::channel::<()>();
        let holder = cache.clone();
        let transaction = tokio::spawn(async move {
            let block = |_tx| async move {
                let _ = entered.send(());
                let _ = released.await;
                Ok::<_, strata::Error>(())
            };
            holder.transaction(&[s("a")], block).await
        });
        in_block.await.unwrap(); // the transaction holds "a" and is parked inside its block
        let key = s("a");
        let mut read = pin!(cache.get(&key));
        let answer = poll_once(read.as_mut());
        assert!(
            matches!(&answer, Poll::Ready(Ok(Some(v))) if v == "1"),
            "a read waited on a transaction: {answer:?}"
        );
        release.send(()).unwrap();
        transaction.await.unwrap().unwrap();
    }

    pub async fn a_read_happens_when_polled_not_when_built<S: Under>() {
        let time = ManualClock::new();
        let cache = cache_on::<S>(&time, |b| b).await;
        let key = s("a");
        cache.put(key.clone(), s("old"), None).await.unwrap();
        let read = cache.get(&key);
        cache.put(key.clone(), s("new"), None).await.unwrap();
        assert_eq!(read.await.unwrap(), Some(s("new")));
        drop(cache.get(&key)); // never polled: reads and counts nothing
        assert_eq!(reads(&cache), [(1, 0), (1, 0)]);
    }

    pub async fn a_cache_over_a_cache_counts_in_both<S: Under>() {
        let time = ManualClock::new();
        let inner = cache_on::<S>(&time, |b| b).await;
        let outer = Cache::builder()
            .store(inner.clone())
            .clock(time.clock())
            .build()
            .await
            .unwrap();
        outer.put(s("a"), s("1"), None).await.unwrap();
        assert_eq!(outer.get(&s("a")).await.unwrap(), Some(s("1")));
        assert_eq!(outer.get(&s("b")).await.unwrap(), None);
        let stats = outer.stats();
        assert_eq!((stats.hits, stats.misses), (1, 1));
        assert_eq!(reads(&inner), [(1, 1), (1, 1)]);
    }

    /// Issue 13 item 1: `get`, `get_now` and a `fetch` hit of an entry without a TTL, and a
    /// miss, never read the clock (`ManualClock::reads` counts every read), over a bounded
    /// store and an unbounded one; a read of an entry with a TTL reads it on every read.
    pub async fn a_read_of_an_entry_without_a_ttl_does_not_read_the_clock<S: Under>() {
        for capacity in [None, Some(100)] {
            // A clock of its own per store: a sweeper thread (started by the TTL write below)
            // reads its store's clock, and must not count in the next store's reads.
            let time = ManualClock::new();
            let memory = MemoryStore::builder().clock(time.clock());
            let memory = match capacity {
                Some(n) => memory.max_capacity(n),
                None => memory,
            };
            let store = S::over(memory.build().unwrap());
            let builder = Cache::builder().store(store).clock(time.clock());
            let cache = builder.build().await.unwrap();
            cache.put(s("a"), s("1"), None).await.unwrap();
            let before = time.reads();
            assert_eq!(cache.get(&s("a")).await.unwrap(), Some(s("1")));
            assert_eq!(cache.get(&s("b")).await.unwrap(), None);
            let now = cache.get_now(&s("a")).transpose().unwrap();
            assert!(matches!(now, None | Some(Some(_))), "{now:?}");
            let loader = |_| async { Ok::<_, std::io::Error>(Load::NotFound) };
            assert_eq!(cache.fetch(s("a"), loader).await.unwrap(), Some(s("1")));
            let read = time.reads() - before;
            assert_eq!(read, 0, "{capacity:?}: a read without a TTL read the clock");
            // The control: the counter sees these reads. The sweeper thread the TTL write
            // starts may add reads of its own, never take any away.
            cache
                .put(s("t"), s("2"), Some(Duration::from_secs(60)))
                .await
                .unwrap();
            let before = time.reads();
            for _ in 0..100 {
                assert_eq!(cache.get(&s("t")).await.unwrap(), Some(s("2")));
            }
            let read = time.reads() - before;
            assert!(
                read >= 100,
                "{capacity:?}: 100 reads with a TTL read it {read} times"
            );
        }
    }
}

/// A store that answers every read now and whose awaited `get` never finishes: a `Cache::get`
/// over it that is not ready on its first poll did not take the fast path.
struct NowOnly(Mem);

impl Store<String, String> for NowOnly {
    fn put(
        &self,
        key: String,
        value: String,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send {
        Store::put(&self.0, key, value, ttl)
    }
    fn get(&self, _: &String) -> impl Future<Output = Result<Option<String>>> + Send {
        std::future::pending()
    }
    fn get_now(&self, key: &String) -> Option<Result<Option<String>>> {
        Some(Ok(self.0.get(key)))
    }
    fn delete(&self, key: &String) -> impl Future<Output = Result<bool>> + Send {
        Store::delete(&self.0, key)
    }
    fn keys(&self) -> impl Future<Output = Result<Vec<String>>> + Send {
        Store::keys(&self.0)
    }
}

#[tokio::test]
async fn a_read_the_store_answers_now_never_awaits_its_get() {
    let cache = Cache::builder()
        .store(NowOnly(MemoryStore::new()))
        .build()
        .await
        .unwrap();
    cache.put(s("a"), s("1"), None).await.unwrap();
    for (key, expected) in [("a", Some(s("1"))), ("b", None)] {
        let key = s(key);
        let mut read = pin!(cache.get(&key));
        match poll_once(read.as_mut()) {
            Poll::Ready(answer) => assert_eq!(answer.unwrap(), expected),
            Poll::Pending => panic!("Cache::get awaited the store's get for {key}"),
        }
    }
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 1));
}

/// A read the store answered at once leaves its future not waiting (`src/cache/get.rs`): polled
/// again after it answered, which a caller should not do, it reads again (and counts that read)
/// rather than panicking or answering from a stale copy.
#[tokio::test]
async fn a_read_answered_at_once_and_polled_again_reads_again() {
    let cache = Cache::builder().store(Mem::new()).build().await.unwrap();
    cache.put(s("a"), s("1"), None).await.unwrap();
    let key = s("a");
    let mut read = pin!(cache.get(&key));
    match poll_once(read.as_mut()) {
        Poll::Ready(answer) => assert_eq!(answer.unwrap(), Some(s("1"))),
        Poll::Pending => panic!("a read from memory waited"),
    }
    cache.store().put(s("a"), s("2"), None).unwrap();
    match poll_once(read.as_mut()) {
        Poll::Ready(answer) => assert_eq!(answer.unwrap(), Some(s("2"))),
        Poll::Pending => panic!("a read from memory waited"),
    }
    assert_eq!(cache.stats().hits, 2);
}

/// A value whose `clone` panics while [`CLONE_PANICS`] is set: a read that panics inside the
/// store, after the store has found the entry.
#[derive(Debug, PartialEq)]
struct Fragile(u32);

/// Set only by `a_read_that_panics_counts_nothing_in_the_cache`, the one user of [`Fragile`].
static CLONE_PANICS: AtomicBool = AtomicBool::new(false);

impl Clone for Fragile {
    fn clone(&self) -> Self {
        assert!(
            !CLONE_PANICS.load(Ordering::SeqCst),
            "Fragile::clone failed"
        );
        Fragile(self.0)
    }
}

/// Polls `cache.get(key)` once with the value's `clone` panicking; true if the read panicked.
fn read_panics<S: Store<String, Fragile> + 'static>(
    cache: &Cache<String, Fragile, S>,
    key: &String,
) -> bool {
    CLONE_PANICS.store(true, Ordering::SeqCst);
    let read = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut read = pin!(cache.get(key));
        let _ = poll_once(read.as_mut());
    }));
    CLONE_PANICS.store(false, Ordering::SeqCst);
    read.is_err()
}

/// A read that panics in the store (here in `V::clone`) counts neither a hit nor a miss in the
/// Cache, on the fast path (the MemoryStore counts the Cache's read after its lookup,
/// `MemoryStore::get_counting_also`) and on the slow one (the read's guard takes it back).
#[tokio::test]
async fn a_read_that_panics_counts_nothing_in_the_cache() {
    let fast = Cache::builder()
        .store(MemoryStore::<String, Fragile>::new())
        .build()
        .await
        .unwrap();
    let slow = Cache::builder()
        .store(FaultStore::new(MemoryStore::<String, Fragile>::new()))
        .build()
        .await
        .unwrap();
    let key = s("a");
    fast.put(key.clone(), Fragile(1), None).await.unwrap();
    slow.put(key.clone(), Fragile(1), None).await.unwrap();
    assert!(read_panics(&fast, &key), "the fast read did not panic");
    assert!(read_panics(&slow, &key), "the slow read did not panic");
    for stats in [fast.stats(), slow.stats()] {
        assert_eq!((stats.hits, stats.misses), (0, 0));
    }
    assert_eq!(fast.get(&key).await.unwrap(), Some(Fragile(1)));
    assert_eq!(slow.get(&key).await.unwrap(), Some(Fragile(1)));
    for stats in [fast.stats(), slow.stats()] {
        assert_eq!((stats.hits, stats.misses), (1, 0));
    }
}

#[tokio::test]
async fn get_now_declines_over_a_store_that_must_wait_and_counts_nothing() {
    let time = ManualClock::new();
    let cache = cache_on::<FaultStore<Mem>>(&time, |b| b).await;
    cache.put(s("a"), s("1"), None).await.unwrap();
    assert!(cache.get_now(&s("a")).is_none());
    assert!(Store::get_now(&cache, &s("a")).is_none());
    assert_eq!(reads(&cache), [(0, 0), (0, 0)]);
    assert_eq!(cache.get(&s("a")).await.unwrap(), Some(s("1")));
    assert_eq!(reads(&cache), [(1, 0), (1, 0)]);
}

#[tokio::test]
async fn a_slow_read_cancelled_while_it_waits_counts_nothing() {
    let time = ManualClock::new();
    let cache = cache_on::<FaultStore<Mem>>(&time, |b| b).await;
    cache.put(s("a"), s("1"), None).await.unwrap();
    let _parked = cache.store().park_next(Op::Get);
    let key = s("a");
    {
        let mut read = pin!(cache.get(&key));
        assert!(
            poll_once(read.as_mut()).is_pending(),
            "the read did not wait"
        );
    } // dropped while parked in the store
    assert_eq!(reads(&cache), [(0, 0), (0, 0)]);
}

#[tokio::test]
async fn a_slow_read_parked_in_the_store_is_woken_and_answers() {
    let time = ManualClock::new();
    let cache = cache_on::<FaultStore<Mem>>(&time, |b| b).await;
    cache.put(s("a"), s("1"), None).await.unwrap();
    let mut parked = cache.store().park_next(Op::Get);
    let read = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get(&s("a")).await }
    });
    parked.reached().await; // the read waits inside the store's get
    parked.release();
    assert_eq!(read.await.unwrap().unwrap(), Some(s("1")));
    assert_eq!(reads(&cache), [(1, 0), (1, 0)]);
}

#[tokio::test]
async fn a_slow_read_that_fails_counts_nothing() {
    let time = ManualClock::new();
    let cache = cache_on::<FaultStore<Mem>>(&time, |b| b).await;
    cache.put(s("a"), s("1"), None).await.unwrap();
    cache.store().fail_next(Op::Get);
    assert!(cache.get(&s("a")).await.is_err());
    assert_eq!(reads(&cache), [(0, 0), (0, 0)]);
}

#[test]
fn get_now_answers_outside_any_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cache = runtime.block_on(async {
        let cache = Cache::builder().store(Mem::new()).build().await.unwrap();
        cache.put(s("a"), s("1"), None).await.unwrap();
        cache
    });
    drop(runtime);
    assert_eq!(cache.get_now(&s("a")).unwrap().unwrap(), Some(s("1")));
    assert_eq!(cache.get_now(&s("b")).unwrap().unwrap(), None);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 1));
}

/// A GenerationalStore's read moves a hit in the older generation to the newer one, so it
/// survives the next rotation: through `get_now` as through the awaited `get`.
#[tokio::test]
async fn a_generational_hit_in_the_older_generation_is_kept_on_both_paths() {
    async fn promotes<S: Store<String, String> + 'static>(
        cache: Cache<String, String, S>,
        store: &GenerationalStore<String, String>,
    ) {
        cache.put(s("a"), s("1"), None).await.unwrap();
        store.new_generation(false); // "a" is now in the older generation
        assert_eq!(cache.get(&s("a")).await.unwrap(), Some(s("1")));
        store.new_generation(false); // drops the older generation
        assert_eq!(cache.get(&s("a")).await.unwrap(), Some(s("1")));
    }
    let fast = GenerationalStore::builder().build().unwrap();
    let cache = Cache::builder().store(fast.clone()).build().await.unwrap();
    assert!(
        cache.get_now(&s("none")).is_some(),
        "generational reads answer now"
    );
    promotes(cache, &fast).await;
    let slow = GenerationalStore::builder().build().unwrap();
    let over = FaultStore::new(slow.clone());
    promotes(Cache::builder().store(over).build().await.unwrap(), &slow).await;
}

#[cfg(feature = "disk")]
mod disk {
    use strata::{DiskDb, DiskStore, Error, Faults};

    use super::*;

    #[tokio::test]
    async fn the_memory_tier_answers_now_and_each_namespace_reads_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = DiskDb::builder().dir(dir.path()).open().unwrap();
        let one: DiskStore<String, String> = db.store("one").unwrap();
        let two: DiskStore<String, String> = db.store("two").unwrap();
        let one = Cache::builder().store(one).build().await.unwrap();
        let two = Cache::builder().store(two).build().await.unwrap();
        one.put(s("a"), s("1"), None).await.unwrap();
        assert_eq!(one.get_now(&s("a")).unwrap().unwrap(), Some(s("1")));
        assert_eq!(two.get_now(&s("a")).unwrap().unwrap(), None);
        assert_eq!(one.get(&s("a")).await.unwrap(), Some(s("1")));
        let (a, b) = (one.stats(), two.stats());
        assert_eq!((a.hits, a.misses, b.hits, b.misses), (2, 0, 0, 1));
    }

    #[tokio::test]
    async fn larger_than_memory_reads_wait_for_the_disk_and_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = DiskDb::builder()
            .dir(dir.path())
            .memory_capacity(1)
            .open()
            .unwrap();
        let store: DiskStore<String, String> = db.store("ns").unwrap();
        let cache = Cache::builder().store(store).build().await.unwrap();
        for key in ["a", "b", "c"] {
            cache.put(s(key), s(key), None).await.unwrap();
        }
        assert!(cache.get_now(&s("a")).is_none(), "a cold read answered now");
        for key in ["a", "b", "c"] {
            assert_eq!(cache.get(&s(key)).await.unwrap(), Some(s(key)));
        }
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (3, 0));
    }

    #[tokio::test]
    async fn a_failed_disk_store_answers_its_error_now_and_counts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let db = DiskDb::builder()
            .dir(dir.path())
            .faults(faults.clone())
            .open()
            .unwrap();
        let store: DiskStore<String, String> = db.store("ns").unwrap();
        let cache = Cache::builder().store(store).build().await.unwrap();
        cache.put(s("a"), s("1"), None).await.unwrap();
        faults.fatal(true);
        faults.fail_nth_commit(1);
        assert!(cache.delete(&s("a")).await.is_err());
        let answer = cache.get_now(&s("a")).expect("the memory tier answers now");
        assert!(
            matches!(answer, Err(Error::Unavailable { .. })),
            "{answer:?}"
        );
        assert!(matches!(
            cache.get(&s("a")).await,
            Err(Error::Unavailable { .. })
        ));
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (0, 0));
    }
}

/// The futures of `Cache::get` are `Send` over any store (a compile-time check).
#[allow(dead_code)]
fn get_is_send<S: Store<String, String> + 'static>(cache: &Cache<String, String, S>) {
    fn send<T: Send>(_: T) {}
    send(cache.get(&s("a")));
    send(Arc::new(cache.clone()));
}
