//! `CacheBuilder`: the options of a `Cache`, validated at `build()`.

use std::{fmt::Debug, hash::Hash, marker::PhantomData, sync::Arc, time::Duration};

use super::{
    cache::{Cache, Parts},
    lease::Distributed,
    warmer::{Backoff, WarmerSpec},
    Warmer,
};
use crate::{
    error::{Error, Result},
    listener::Listener,
    namespace::Namespace,
    store::Store,
    time::{check_ttl, Clock},
};

/// Builds a [`Cache`].
///
/// # Defaults
/// - `store`: none — required;
/// - `namespace`: the store's own (`"cache"` for a store built with defaults, as in Pow);
/// - `ttl` (default TTL): none, entries never expire unless a call gives a TTL;
/// - `negative_ttl`: none, a loader that finds nothing caches nothing;
/// - `stats`: on;
/// - `load_timeout`: none, a loader may run for as long as it likes;
/// - `refresh_after`: none, a fetch hit never reloads;
/// - `eviction_listener`: none (the store's own, if it was built with one);
/// - `time_to_idle`: none (the store's own, if it was built with one);
/// - `clock`: [`Clock::system`] (give the store's clock when testing with a manual one);
/// - warmers: none; `warm_timeout` 30 s for required warmers; warmer back-off from 100 ms,
///   doubling to at most 30 s, with ±25 % jitter.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
/// use std::time::Duration;
/// use strata::{Cache, MemoryStore};
///
/// let cache = Cache::builder()
///     .store(MemoryStore::<String, String>::new())
///     .namespace("sessions")
///     .ttl(Duration::from_secs(1800))
///     .build()
///     .await?;
/// assert_eq!(cache.namespace().as_str(), "sessions");
///
/// let zero = Cache::builder().store(MemoryStore::<String, String>::new()).ttl(Duration::ZERO);
/// assert!(matches!(zero.build().await, Err(strata::Error::InvalidTtl { .. })));
/// # Ok(()) }
/// ```
#[must_use]
pub struct CacheBuilder<K, V, S> {
    types: PhantomData<fn() -> (K, V)>,
    store: Option<S>,
    namespace: Option<String>,
    ttl: Option<Duration>,
    negative_ttl: Option<Duration>,
    stats: bool,
    load_timeout: Option<Duration>,
    refresh_after: Option<Duration>,
    clock: Clock,
    warmers: Vec<WarmerSpec<K, V>>,
    warm_timeout: Duration,
    backoff: Backoff,
    distributed: Option<Distributed<K>>,
    eviction_listener: Option<Listener<K, V>>,
    time_to_idle: Option<Duration>,
}

impl<K, V, S> Debug for CacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("namespace", &self.namespace)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("warmers", &self.warmers.len())
            .finish_non_exhaustive()
    }
}

impl<K, V> CacheBuilder<K, V, ()> {
    pub(super) fn new() -> Self {
        CacheBuilder {
            types: PhantomData,
            store: None,
            namespace: None,
            ttl: None,
            negative_ttl: None,
            stats: true,
            load_timeout: None,
            refresh_after: None,
            clock: Clock::system(),
            warmers: Vec::new(),
            warm_timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
            distributed: None,
            eviction_listener: None,
            time_to_idle: None,
        }
    }
}

impl<K, V, S> CacheBuilder<K, V, S> {
    /// The store entries live in (required).
    pub fn store<S2>(self, store: S2) -> CacheBuilder<K, V, S2> {
        CacheBuilder {
            types: PhantomData,
            store: Some(store),
            namespace: self.namespace,
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
            stats: self.stats,
            load_timeout: self.load_timeout,
            refresh_after: self.refresh_after,
            clock: self.clock,
            warmers: self.warmers,
            warm_timeout: self.warm_timeout,
            backoff: self.backoff,
            distributed: self.distributed,
            eviction_listener: self.eviction_listener,
            time_to_idle: self.time_to_idle,
        }
    }

    /// The namespace; `build()` validates it and calls [`Store::with_namespace`].
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The default TTL, used when a write gives none.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Remember for `ttl` that a loader found nothing ([`Load::NotFound`](super::Load)), so the
    /// next fetches of that key answer `None` without calling the loader (against enumeration).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Count hits, misses, writes and loads.
    pub fn stats(mut self, enabled: bool) -> Self {
        self.stats = enabled;
        self
    }

    /// Give up on a loader after `timeout`: every waiter gets [`Error::Timeout`] and the key is
    /// released for the next fetch.
    pub fn load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = Some(timeout);
        self
    }

    /// Refresh-ahead (Caffeine `refreshAfterWrite`): a [`Cache::fetch`] hit on an entry written
    /// at least `after` ago returns the cached value at once and starts **one** background
    /// reload with that fetch's loader (single flight with every other fetch of the key). The
    /// reload's value replaces the entry with the normal TTL. A reload that fails, panics, times
    /// out or returns [`Load::Ignore`](super::Load::Ignore) keeps the old value (counted as a
    /// load error, logged without the key); [`Load::NotFound`](super::Load::NotFound) removes
    /// the entry. A put or delete made while the reload runs wins over it.
    ///
    /// The entry's age is read from the store, not kept in the cache: age = default TTL −
    /// remaining TTL. So this needs a default [`ttl`](Self::ttl) longer than `after`, costs one
    /// TTL read per fetch hit (none on a miss), uses no memory per entry, and sees writes made
    /// by other processes sharing the store (a side map of write times would be per process and
    /// grow with the keys). An entry written with its own TTL ages as if written with the
    /// default one (a shorter TTL looks older, so it refreshes sooner), and an entry without a
    /// TTL never refreshes. Only `fetch` refreshes (a `fetch_many` hit does not: its batch
    /// loader answers for many keys). Not combined with `distributed_fetch` (`build()` refuses
    /// it).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use std::time::Duration;
    /// use strata::{Cache, Load, ManualClock, MemoryStore};
    ///
    /// let clock = ManualClock::new();
    /// let cache = Cache::builder()
    ///     .store(MemoryStore::<String, u32>::builder().clock(clock.clock()).build()?)
    ///     .ttl(Duration::from_secs(600))
    ///     .refresh_after(Duration::from_secs(60))
    ///     .build()
    ///     .await?;
    /// let load = |v| move |_| async move { Ok::<_, std::io::Error>(Load::Commit(v)) };
    /// assert_eq!(cache.fetch("rate".into(), load(1)).await.ok().flatten(), Some(1));
    /// clock.advance(Duration::from_secs(61));
    /// // Stale: the old value comes back at once while the reload runs in the background.
    /// assert_eq!(cache.fetch("rate".into(), load(2)).await.ok().flatten(), Some(1));
    /// while cache.loads_in_flight() > 0 {
    ///     tokio::task::yield_now().await;
    /// }
    /// assert_eq!(cache.get(&"rate".into()).await?, Some(2));
    /// # Ok(()) }
    /// ```
    pub fn refresh_after(mut self, after: Duration) -> Self {
        self.refresh_after = Some(after);
        self
    }

    /// Hands every entry the store removes to `listener`, with its value and cause
    /// ([`RemovalCause`](crate::RemovalCause)), installed on the store at `build()` through
    /// [`Store::install_eviction_listener`]. MemoryStore, GenerationalStore and DiskStore
    /// (removals from its memory tier; not in its larger-than-memory mode) support it;
    /// `build()` fails with [`Error::InvalidConfig`] for a store that
    /// cannot deliver removals with their values (RedisStore: Redis expires and evicts on the
    /// server and tells clients at most the key — use [`Cache::subscribe`] for keys) and for
    /// a store that already has a listener. See [`EvictionListener`](crate::EvictionListener)
    /// for the delivery guarantees.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use std::sync::{Arc, Mutex};
    /// use strata::{Cache, MemoryStore, RemovalCause};
    ///
    /// let evicted = Arc::new(Mutex::new(Vec::new()));
    /// let log = evicted.clone();
    /// let cache = Cache::builder()
    ///     .store(MemoryStore::<String, String>::builder().max_capacity(1).build()?)
    ///     .eviction_listener(move |key, value, cause| log.lock().unwrap().push((key, value, cause)))
    ///     .build()
    ///     .await?;
    /// cache.put("a".into(), "first".into(), None).await?;
    /// cache.put("b".into(), "second".into(), None).await?; // capacity 1: "a" is evicted
    /// let first = ("a".to_string(), "first".to_string(), RemovalCause::Size);
    /// assert_eq!(*evicted.lock().unwrap(), [first]);
    /// # Ok(()) }
    /// ```
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(K, V, crate::RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.eviction_listener = Some(Listener(Arc::new(listener)));
        self
    }

    /// Expires entries `idle` after their last read or write (with a TTL, at whichever
    /// deadline comes first), in the store: `build()` replaces the store by
    /// [`Store::with_time_to_idle`], as `.namespace(..)` does with [`Store::with_namespace`].
    /// MemoryStore and GenerationalStore support it (as their builders' `time_to_idle`) and
    /// return a new, empty store (so give one without entries); DiskStore supports it too
    /// (as [`DiskBuilder::time_to_idle`](crate::DiskBuilder::time_to_idle), an idle entry
    /// leaving the disk as well) and keeps the namespace's entries, except in its
    /// larger-than-memory mode. `build()` fails with [`Error::InvalidConfig`] for a store that
    /// does not support it (a remote store has no idle expiry).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use std::time::Duration;
    /// use strata::{Cache, ManualClock, MemoryStore};
    ///
    /// let time = ManualClock::new();
    /// let cache = Cache::builder()
    ///     .store(MemoryStore::<String, u32>::builder().clock(time.clock()).build()?)
    ///     .time_to_idle(Duration::from_secs(60))
    ///     .build()
    ///     .await?;
    /// cache.put("a".into(), 1, None).await?;
    /// time.advance(Duration::from_secs(59));
    /// assert_eq!(cache.get(&"a".into()).await?, Some(1)); // read: idle again from here
    /// time.advance(Duration::from_secs(60));
    /// assert_eq!(cache.get(&"a".into()).await?, None);
    /// # Ok(()) }
    /// ```
    pub fn time_to_idle(mut self, idle: Duration) -> Self {
        self.time_to_idle = Some(idle);
        self
    }

    /// The clock for negative entries, dump deadlines and rate windows (use the store's clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// A warmer run in the background at start and every `interval`; failures are retried with
    /// back-off and never block start-up.
    pub fn warmer(self, warmer: impl Warmer<K, V>, interval: Duration) -> Self
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        self.add_warmer(warmer, interval, false)
    }

    /// A warmer that `build()` waits for: it must succeed once within `warm_timeout`.
    pub fn required_warmer(self, warmer: impl Warmer<K, V>, interval: Duration) -> Self
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        self.add_warmer(warmer, interval, true)
    }

    fn add_warmer(mut self, warmer: impl Warmer<K, V>, interval: Duration, required: bool) -> Self
    where
        K: Send + 'static,
        V: Send + 'static,
    {
        self.warmers.push(WarmerSpec {
            warmer: Arc::new(warmer),
            interval,
            required,
        });
        self
    }

    /// How long `build()` waits for each required warmer's first success.
    pub fn warm_timeout(mut self, timeout: Duration) -> Self {
        self.warm_timeout = timeout;
        self
    }

    /// Back-off for a failing warmer: `initial` after the first failure, doubling up to `max`.
    pub fn warmer_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff { initial, max };
        self
    }

    /// Cluster-wide single flight and negative caching: on a miss, one node across every
    /// process sharing this Redis runs the loader while the others wait for its value (notified
    /// on a Redis channel, not polling), or take over when its lease lapses (it crashed or was
    /// killed); a write through any node's cache clears every node's remembered absence of the
    /// key. The local single flight stays the first stage, so one process asks once. Give it a
    /// lease TTL above your slowest load (a slower load lets a second node load too). Works over
    /// a [`RedisStore`](crate::RedisStore) or a [`ReplicatedStore`](crate::ReplicatedStore)
    /// (take the service from its remote store); see the `cache` module docs for the protocol.
    ///
    /// ```no_run
    /// # async fn demo() -> strata::Result<()> {
    /// use std::time::Duration;
    /// use strata::{Cache, Load, RedisStore};
    ///
    /// let store = RedisStore::<String, String>::builder()
    ///     .url("redis://127.0.0.1:6379/")
    ///     .build()
    ///     .await?;
    /// let leases = store.distributed_fetch(Duration::from_secs(10)).await?;
    /// let cache = Cache::builder()
    ///     .store(store)
    ///     .negative_ttl(Duration::from_secs(60))
    ///     .distributed_fetch(leases)
    ///     .build()
    ///     .await?;
    /// // Run on every node: the loader runs once across all of them.
    /// let report = cache
    ///     .fetch("report:2026".to_string(), |_| async {
    ///         Ok::<_, std::io::Error>(Load::Commit("expensive".to_string()))
    ///     })
    ///     .await;
    /// # let _ = report;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn distributed_fetch(mut self, leases: crate::redis::DistributedFetch) -> Self
    where
        K: crate::codec::Key,
    {
        self.distributed = Some(Distributed {
            leases: leases.service(),
            encode: |key: &K, prefix: &[u8]| key.namespaced(prefix),
            decode: |bytes: &[u8]| K::decode_key(bytes).ok(),
        });
        self
    }

    fn validate(&self) -> Result<()> {
        check_ttl(self.ttl)?;
        check_ttl(self.negative_ttl)?;
        if self.load_timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::config("load_timeout", "must be greater than zero"));
        }
        if let Some(after) = self.refresh_after {
            let Some(ttl) = self.ttl else {
                return Err(Error::config(
                    "refresh_after",
                    "needs a default TTL (`.ttl(..)`): an entry's age is derived from its \
                     remaining TTL",
                ));
            };
            if after.is_zero() || after >= ttl {
                return Err(Error::config(
                    "refresh_after",
                    "must be greater than zero and shorter than the default TTL (entries \
                     would expire before they are refreshed)",
                ));
            }
            if self.distributed.is_some() {
                return Err(Error::config(
                    "refresh_after",
                    "cannot be combined with `distributed_fetch` yet (a background reload \
                     takes no cluster-wide lease): drop one of the two",
                ));
            }
        }
        if self.warm_timeout.is_zero() {
            return Err(Error::config("warm_timeout", "must be greater than zero"));
        }
        if self.backoff.initial.is_zero() || self.backoff.max < self.backoff.initial {
            return Err(Error::config(
                "warmer_backoff",
                "initial must be > 0 and max >= initial",
            ));
        }
        if self.warmers.iter().any(|w| w.interval.is_zero()) {
            return Err(Error::config(
                "warmer",
                "the interval must be greater than zero",
            ));
        }
        Ok(())
    }

    /// Validates the options, starts the warmers and waits for the required ones.
    ///
    /// Fails with [`Error::InvalidConfig`] (no store, zero timeouts, warmers without a tokio
    /// runtime), [`Error::InvalidTtl`], [`Error::InvalidNamespace`], or [`Error::Timeout`] naming
    /// a required warmer that did not succeed in time (with its last error).
    pub async fn build(self) -> Result<Cache<K, V, S>>
    where
        K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
        V: Clone + Send + Sync + 'static,
        S: Store<K, V> + 'static,
    {
        self.validate()?;
        let store = self
            .store
            .ok_or_else(|| Error::config("store", "a Cache needs a store: call `.store(..)`"))?;
        let store = match &self.namespace {
            Some(name) => store.with_namespace(&Namespace::new(name)?)?,
            None => store,
        };
        let store = match self.time_to_idle {
            Some(idle) => store
                .with_time_to_idle(idle)
                .map_err(|e| refused("time_to_idle", e))?,
            None => store,
        };
        if let Some(Listener(listener)) = self.eviction_listener {
            store
                .install_eviction_listener(listener)
                .map_err(|e| refused("eviction_listener", e))?;
        }
        let cache = Cache::from_parts(Parts {
            store,
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
            stats: self.stats,
            load_timeout: self.load_timeout,
            refresh_after: self.refresh_after,
            clock: self.clock,
            warmers: self.warmers,
            backoff: self.backoff,
            distributed: self.distributed,
        })?;
        cache.start_warmers(self.warm_timeout).await?;
        Ok(cache)
    }
}

/// The error for a store that does not support a Cache option the store must carry out.
fn refused(option: &'static str, e: Error) -> Error {
    let reason = match option {
        "eviction_listener" => {
            "this store cannot hand over removed values (a remote store expires and evicts on \
             its server); use a local store, or `Cache::subscribe` for the keys"
        }
        _ => {
            "this store has no idle expiry; use MemoryStore or GenerationalStore, or build the \
             store with its own `time_to_idle`"
        }
    };
    match e {
        Error::Unsupported { .. } => Error::config(option, reason),
        other => other,
    }
}
