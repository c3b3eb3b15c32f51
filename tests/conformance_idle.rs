//! `time_to_idle`, one suite for every store that supports it (like `conformance.rs`): each
//! store is opened with an idle time of [`IDLE`] and a manual clock. An entry expires `IDLE`
//! after its last read or write, or at its TTL deadline if that comes first.
mod support;

use std::time::Duration;

use strata::{Expiry, Store};
use support::Ctx;

/// The idle time every store of this suite is built with.
pub const IDLE: Duration = Duration::from_secs(60);
const SEC: Duration = Duration::from_secs(1);

pub mod cases {
    use super::*;

    type S = String;

    fn key() -> S {
        "idle".to_string()
    }

    pub async fn an_entry_expires_idle_after_its_last_read<St: Store<S, S>>(ctx: &Ctx, s: &St) {
        s.put(key(), "v".into(), None).await.unwrap();
        for _ in 0..3 {
            ctx.advance(IDLE - SEC).await;
            assert_eq!(s.get(&key()).await.unwrap().as_deref(), Some("v"));
        }
        ctx.advance(IDLE).await;
        assert_eq!(
            s.get(&key()).await.unwrap(),
            None,
            "idle for the whole idle time"
        );
        assert!(!s.keys().await.unwrap().contains(&key()));
    }

    pub async fn a_write_starts_the_idle_time_again<St: Store<S, S>>(ctx: &Ctx, s: &St) {
        s.put(key(), "a".into(), None).await.unwrap();
        ctx.advance(IDLE - SEC).await;
        s.put(key(), "b".into(), None).await.unwrap();
        assert_eq!(s.ttl(&key()).await.unwrap(), Some(Expiry::In(IDLE)));
        ctx.advance(IDLE - SEC).await;
        assert_eq!(s.ttl(&key()).await.unwrap(), Some(Expiry::In(SEC)));
        ctx.advance(SEC).await;
        assert_eq!(s.get(&key()).await.unwrap(), None);
    }

    pub async fn a_ttl_later_than_the_idle_time_still_ends_the_entry<St: Store<S, S>>(
        ctx: &Ctx,
        s: &St,
    ) {
        s.put(key(), "v".into(), Some(IDLE + IDLE / 2))
            .await
            .unwrap();
        ctx.advance(IDLE - SEC).await;
        assert!(s.get(&key()).await.unwrap().is_some(), "read: idle again");
        // The idle deadline would now be 2 × IDLE - 1 s; the TTL ends it at 1.5 × IDLE.
        assert_eq!(
            s.ttl(&key()).await.unwrap(),
            Some(Expiry::In(IDLE / 2 + SEC))
        );
        ctx.advance(IDLE / 2).await;
        assert!(s.get(&key()).await.unwrap().is_some());
        ctx.advance(SEC).await;
        assert_eq!(s.get(&key()).await.unwrap(), None, "the TTL came first");
    }

    pub async fn a_ttl_shorter_than_the_idle_time_wins<St: Store<S, S>>(ctx: &Ctx, s: &St) {
        s.put(key(), "v".into(), Some(IDLE / 2)).await.unwrap();
        assert_eq!(s.ttl(&key()).await.unwrap(), Some(Expiry::In(IDLE / 2)));
        ctx.advance(IDLE / 2 - SEC).await;
        assert!(s.get(&key()).await.unwrap().is_some());
        ctx.advance(SEC).await;
        assert_eq!(s.get(&key()).await.unwrap(), None);
    }

    pub async fn an_entry_without_a_ttl_reports_its_idle_deadline<St: Store<S, S>>(
        ctx: &Ctx,
        s: &St,
    ) {
        s.put(key(), "v".into(), None).await.unwrap();
        ctx.advance(10 * SEC).await;
        assert_eq!(
            s.ttl(&key()).await.unwrap(),
            Some(Expiry::In(IDLE - 10 * SEC))
        );
        assert!(s.get(&key()).await.unwrap().is_some());
        assert_eq!(s.ttl(&key()).await.unwrap(), Some(Expiry::In(IDLE)));
    }

    pub async fn expire_sets_the_ttl_and_the_idle_time_runs_on<St: Store<S, S>>(ctx: &Ctx, s: &St) {
        s.put(key(), "v".into(), None).await.unwrap();
        assert!(s.expire(&key(), Some(3 * IDLE)).await.unwrap());
        assert_eq!(s.ttl(&key()).await.unwrap(), Some(Expiry::In(IDLE)));
        ctx.advance(IDLE).await;
        assert_eq!(s.get(&key()).await.unwrap(), None, "idle before its TTL");
    }

    /// `contains`, `ttl` and `keys` look at an entry without reading it: they do not start
    /// its idle time again.
    pub async fn looking_at_an_entry_does_not_keep_it_alive<St: Store<S, S>>(ctx: &Ctx, s: &St) {
        s.put(key(), "v".into(), None).await.unwrap();
        ctx.advance(IDLE - SEC).await;
        assert!(s.contains(&key()).await.unwrap());
        assert_eq!(s.ttl(&key()).await.unwrap(), Some(Expiry::In(SEC)));
        assert!(s.keys().await.unwrap().contains(&key()));
        ctx.advance(SEC).await;
        assert!(!s.contains(&key()).await.unwrap(), "only looked at: idle");
        assert_eq!(s.get(&key()).await.unwrap(), None);
    }

    pub async fn a_counter_idles_out_unless_counted<St: Store<S, i64>>(ctx: &Ctx, s: &St) {
        assert_eq!(s.incr_with_ttl(&key(), 1, None).await.unwrap(), 1);
        ctx.advance(IDLE - SEC).await;
        assert_eq!(s.incr_with_ttl(&key(), 1, None).await.unwrap(), 2);
        ctx.advance(IDLE - SEC).await;
        assert_eq!(s.get(&key()).await.unwrap(), Some(2), "an incr is a write");
        ctx.advance(IDLE).await;
        assert_eq!(s.incr_with_ttl(&key(), 1, None).await.unwrap(), 1);
    }
}

/// Instantiates every case for a store opened by `$open(&ctx, namespace)` with idle time
/// [`IDLE`] and the context's manual clock. `$ctx` builds each test's context (default
/// `Ctx::manual()`; a disk store adds its directory).
macro_rules! idle_conformance {
    ($open:ident) => {
        idle_conformance!(Ctx::manual(), $open);
    };
    ($ctx:expr, $open:ident) => {
        use super::*;

        macro_rules! case {
            ($name:ident) => {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let ctx = $ctx;
                    let store = $open::<String, String>(&ctx, "idle").await;
                    cases::$name(&ctx, &store).await;
                }
            };
        }

        case!(an_entry_expires_idle_after_its_last_read);
        case!(a_write_starts_the_idle_time_again);
        case!(a_ttl_later_than_the_idle_time_still_ends_the_entry);
        case!(a_ttl_shorter_than_the_idle_time_wins);
        case!(an_entry_without_a_ttl_reports_its_idle_deadline);
        case!(expire_sets_the_ttl_and_the_idle_time_runs_on);
        case!(looking_at_an_entry_does_not_keep_it_alive);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_counter_idles_out_unless_counted() {
            let ctx = $ctx;
            let store = $open::<String, i64>(&ctx, "idle").await;
            cases::a_counter_idles_out_unless_counted(&ctx, &store).await;
        }
    };
}

mod memory {
    use strata::MemoryStore;
    use support::opener::{self, Key, Value};

    async fn open<K: Key, V: Value>(ctx: &Ctx, namespace: &str) -> MemoryStore<K, V> {
        opener::memory(ctx, namespace, |b| b.time_to_idle(IDLE))
    }

    idle_conformance!(open);
}

mod memory_bounded {
    use strata::MemoryStore;
    use support::opener::{self, Key, Value};

    async fn open<K: Key, V: Value>(ctx: &Ctx, namespace: &str) -> MemoryStore<K, V> {
        opener::memory(ctx, namespace, |b| b.max_capacity(1_000).time_to_idle(IDLE))
    }

    idle_conformance!(open);
}

mod generational {
    use strata::GenerationalStore;
    use support::opener::{self, Key, Value};

    async fn open<K: Key, V: Value>(ctx: &Ctx, namespace: &str) -> GenerationalStore<K, V> {
        opener::generational(ctx, namespace, |b| b.max_size(10_000).time_to_idle(IDLE))
    }

    idle_conformance!(open);
}

/// Through a `Cache`: its builder's `time_to_idle` over a MemoryStore built without one.
mod cache_over_memory {
    use strata::{Cache, MemoryStore};
    use support::opener::{self, Key, Value};

    async fn open<K, V>(ctx: &Ctx, namespace: &str) -> Cache<K, V, MemoryStore<K, V>>
    where
        K: Key + std::fmt::Debug,
        V: Value,
    {
        opener::cache_over_memory(ctx, namespace, |b| b.time_to_idle(IDLE)).await
    }

    idle_conformance!(open);
}

/// DiskStore built with `DiskBuilder::time_to_idle` (every namespace of the case in one data
/// directory): its memory tier idles entries out, and the idle delete reaches the disk.
#[cfg(feature = "disk")]
mod disk {
    use serde::{de::DeserializeOwned, Serialize};
    use strata::DiskStore;
    use support::opener;

    async fn open<K, V>(ctx: &Ctx, namespace: &str) -> DiskStore<K, V>
    where
        K: strata::Key,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        opener::disk(ctx, namespace, |b| b.time_to_idle(IDLE))
    }

    idle_conformance!(Ctx::manual().with_dir(), open);
}

/// DiskStore with async writes: memory sees a write before the disk does.
#[cfg(feature = "disk")]
mod disk_async {
    use serde::{de::DeserializeOwned, Serialize};
    use strata::{DiskStore, Writes};
    use support::opener;

    async fn open<K, V>(ctx: &Ctx, namespace: &str) -> DiskStore<K, V>
    where
        K: strata::Key,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        opener::disk(ctx, namespace, |b| {
            b.writes(Writes::Async).time_to_idle(IDLE)
        })
    }

    idle_conformance!(Ctx::manual().with_dir(), open);
}

/// DiskStore bounded by `max_capacity` and idling: both removals reach the disk.
#[cfg(feature = "disk")]
mod disk_bounded {
    use serde::{de::DeserializeOwned, Serialize};
    use strata::DiskStore;
    use support::opener;

    async fn open<K, V>(ctx: &Ctx, namespace: &str) -> DiskStore<K, V>
    where
        K: strata::Key,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        opener::disk(ctx, namespace, |b| b.max_capacity(1_000).time_to_idle(IDLE))
    }

    idle_conformance!(Ctx::manual().with_dir(), open);
}

/// Through a `Cache`: its builder's `time_to_idle` over a DiskStore opened without one
/// (`Store::with_time_to_idle` rebuilds the namespace's memory tier). The larger-than-memory
/// mode refuses idle expiry (`disk_idle::open_refuses_a_zero_idle_time_and_the_larger_than_memory_mode`).
#[cfg(feature = "disk")]
mod cache_over_disk {
    use serde::{de::DeserializeOwned, Serialize};
    use strata::{Cache, DiskStore};
    use support::opener;

    async fn open<K, V>(ctx: &Ctx, namespace: &str) -> Cache<K, V, DiskStore<K, V>>
    where
        K: strata::Key + std::fmt::Debug,
        V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let store = opener::disk(ctx, "cache", |b| b);
        Cache::builder()
            .store(store)
            .namespace(namespace)
            .time_to_idle(IDLE)
            .build()
            .await
            .expect("valid cache options")
    }

    idle_conformance!(Ctx::manual().with_dir(), open);
}

#[tokio::test]
async fn a_cache_refuses_time_to_idle_over_a_store_without_it() {
    use strata::{Cache, Error, MemoryStore};
    use support::four_methods::FourMethods;

    let built = Cache::builder()
        .store(FourMethods(MemoryStore::<String, String>::new()))
        .time_to_idle(IDLE)
        .build()
        .await;
    assert!(matches!(
        built,
        Err(Error::InvalidConfig(ref e)) if e.option == "time_to_idle"
    ));
}
