//! `Cache`: the store operations with a namespace, a default TTL and stats, plus Cachex's
//! `update`, `get_and_update`, `refresh` and `touch`.

use std::{
    collections::HashMap, fmt::Debug, future::Future, hash::Hash, sync::Arc, time::Duration,
};

use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::{
    builder::CacheBuilder,
    fetch::Flight,
    get::Get,
    keylock::KeyLocks,
    lease::{ClusterFetch, Distributed},
    warmer::{Backoff, WarmerSpec},
};
use crate::{
    error::{Error, Result},
    events::Events,
    memory::MemoryStore,
    namespace::Namespace,
    stats::{Counter as Stat, Stats, StatsRecorder},
    store::{Counter, Expiry, Store},
    time::Clock,
};

/// What a [`Cache::get_and_update`] function decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update<V> {
    /// Write this value, keeping the entry's remaining TTL (the default TTL for a new key).
    Commit(V),
    /// Leave the entry as it is.
    Ignore,
    /// Delete the entry.
    Delete,
}

/// A cache over a [`Store`]: namespace, default TTL, `fetch` with single flight, negative
/// caching, warmers, events, stats, dump/load. Cheap to clone (one `Arc`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
/// use std::time::Duration;
/// use strata::{Cache, MemoryStore};
///
/// let cache = Cache::builder()
///     .store(MemoryStore::<String, u32>::new())
///     .ttl(Duration::from_secs(60))
///     .build()
///     .await?;
/// cache.put("visits".into(), 1, None).await?; // no TTL given: the default applies
/// assert!(cache.update(&"visits".into(), 2).await?); // keeps the TTL
/// assert_eq!(cache.get(&"visits".into()).await?, Some(2));
/// assert_eq!(cache.stats().hits, 1);
/// # Ok(()) }
/// ```
pub struct Cache<K, V, S> {
    pub(super) inner: Arc<Inner<K, V, S>>,
}

impl<K, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V, S> Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.inner.namespace)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

pub(super) struct Inner<K, V, S> {
    pub store: S,
    pub namespace: Namespace,
    pub ttl: Option<Duration>,
    pub negative_ttl: Option<Duration>,
    pub load_timeout: Option<Duration>,
    /// A fetch hit older than this starts a background reload (`refresh.rs`).
    pub refresh_after: Option<Duration>,
    pub clock: Clock,
    pub stats: StatsRecorder,
    pub negatives: Option<MemoryStore<K, ()>>,
    pub flights: Mutex<HashMap<K, Flight<V>>>,
    /// How many loads are in flight (writers skip the `flights` lock when none are).
    pub in_flight: std::sync::atomic::AtomicUsize,
    /// Serializes a leader's commit with writers that overtook its load (see `fetch.rs`).
    pub commit_locks: KeyLocks,
    pub locks: KeyLocks,
    pub warmers: Vec<WarmerSpec<K, V>>,
    pub backoff: Backoff,
    pub tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The cluster-wide stage of `fetch`, when enabled (`lease.rs`).
    pub cluster: Option<ClusterFetch<K>>,
}

impl<K, V, S> Drop for Inner<K, V, S> {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

pub(super) struct Parts<K, V, S> {
    pub store: S,
    pub ttl: Option<Duration>,
    pub negative_ttl: Option<Duration>,
    pub stats: bool,
    pub load_timeout: Option<Duration>,
    pub refresh_after: Option<Duration>,
    pub clock: Clock,
    pub warmers: Vec<WarmerSpec<K, V>>,
    pub backoff: Backoff,
    pub distributed: Option<Distributed<K>>,
}

impl<K, V> Cache<K, V, ()> {
    /// A builder with the defaults (see [`CacheBuilder`]).
    pub fn builder() -> CacheBuilder<K, V, ()> {
        CacheBuilder::new()
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    pub(super) fn from_parts(parts: Parts<K, V, S>) -> Result<Self> {
        let negatives = match parts.negative_ttl {
            Some(_) => Some(
                MemoryStore::<K, ()>::builder()
                    .clock(parts.clock.clone())
                    .stats(false)
                    .build()?,
            ),
            None => None,
        };
        let namespace = parts.store.namespace();
        let cluster = parts
            .distributed
            .map(|d| ClusterFetch::new(d, namespace.prefix(), negatives.clone()));
        let inner = Inner {
            namespace,
            store: parts.store,
            ttl: parts.ttl,
            negative_ttl: parts.negative_ttl,
            load_timeout: parts.load_timeout,
            refresh_after: parts.refresh_after,
            clock: parts.clock,
            stats: StatsRecorder::new(parts.stats),
            negatives,
            flights: Mutex::new(HashMap::new()),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            commit_locks: KeyLocks::new(),
            locks: KeyLocks::new(),
            warmers: parts.warmers,
            backoff: parts.backoff,
            tasks: Mutex::new(Vec::new()),
            cluster,
        };
        Ok(Cache {
            inner: Arc::new(inner),
        })
    }

    /// The store underneath (writes to it bypass the cache's stats and key locks).
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The namespace of this cache's keys.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.namespace
    }

    /// The default TTL, if any.
    pub fn default_ttl(&self) -> Option<Duration> {
        self.inner.ttl
    }

    /// How many loads run now: `fetch` and `fetch_many` leaders and background refreshes
    /// ([`CacheBuilder::refresh_after`]). A gauge for monitoring, and what a test waits on to
    /// know a background refresh has settled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{Cache, MemoryStore};
    /// let cache = Cache::builder().store(MemoryStore::<String, u32>::new()).build().await?;
    /// assert_eq!(cache.loads_in_flight(), 0);
    /// # Ok(()) }
    /// ```
    pub fn loads_in_flight(&self) -> usize {
        self.inner
            .in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn ttl_or_default(&self, ttl: Option<Duration>) -> Option<Duration> {
        ttl.or(self.inner.ttl)
    }

    pub(super) fn count(&self, stat: Stat, n: u64) {
        self.inner.stats.add(stat, n);
    }

    /// Forgets a cached absence, because the key now has a value. Writers call it after
    /// [`overtake_load`](Self::overtake_load): a leader that remembers an absence does so under
    /// the commit lock that call waits out, so the absence is forgotten after it is remembered
    /// (test `an_absence_remembered_during_a_write_never_outlives_it`).
    ///
    /// With a distributed fetch the write is first announced to every node, which forget
    /// their absences of the key too (`lease.rs`); an announcement that fails fails the write
    /// before it reaches the store.
    pub(super) async fn forget_absence(&self, key: &K) -> Result<()> {
        if let Some(negatives) = &self.inner.negatives {
            negatives.delete(key);
        }
        if let Some(cluster) = &self.inner.cluster {
            cluster.leases.announce(&cluster.stored_key(key)).await?;
        }
        Ok(())
    }

    /// The live value under `key` (a hit or a miss in the stats).
    ///
    /// A read the store answers at once ([`Cache::get_now`]: memory, or the memory tier of a
    /// disk store) is answered on the first poll without another future inside; any other read
    /// awaits [`Store::get`]. Either way, like any future, nothing is read until it is polled,
    /// and a read that fails or is cancelled counts nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{Cache, MemoryStore};
    /// let cache = Cache::builder().store(MemoryStore::<String, u32>::new()).build().await?;
    /// cache.put("a".into(), 1, None).await?;
    /// assert_eq!(cache.get(&"a".into()).await?, Some(1));
    /// assert_eq!(cache.get(&"b".into()).await?, None);
    /// assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
    /// # Ok(()) }
    /// ```
    #[inline]
    pub fn get<'c, 'k>(
        &'c self,
        key: &'k K,
    ) -> impl Future<Output = Result<Option<V>>> + Send + use<'c, 'k, K, V, S> {
        Get::new(self, key, Self::get_waiting)
    }

    /// [`Cache::get`] without a future, where the store can answer at once
    /// ([`Store::get_now`]): `Some` is what `get` would have returned, counted the same way;
    /// `None` (a store that has to wait, such as Redis) counts nothing, and the read is left to
    /// `get`. Usable outside an async context.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{Cache, MemoryStore};
    /// let cache = Cache::builder().store(MemoryStore::<String, u32>::new()).build().await?;
    /// cache.put("a".into(), 1, None).await?;
    /// assert_eq!(cache.get_now(&"a".into()).transpose()?, Some(Some(1)));
    /// assert_eq!(cache.stats().hits, 1);
    /// # Ok(()) }
    /// ```
    // `inline(always)`: see `Get::poll` (src/cache/get.rs), whose fast path this is.
    #[inline(always)]
    pub fn get_now(&self, key: &K) -> Option<Result<Option<V>>> {
        // The store counts the read on the Cache's stats too (`Store::get_now_counting`): a
        // MemoryStore counts both in one lookup of the thread's stats stripe.
        self.inner.store.get_now_counting(key, &self.inner.stats)
    }

    /// `get` through the store's future, for a read [`Cache::get_now`] could not answer.
    async fn get_waiting(&self, key: &K) -> Result<Option<V>> {
        // The read is counted before the lookup and the miss after it (hits = reads − misses),
        // as `MemoryStore::get` does: the count then overlaps the lookup instead of waiting on
        // its result. A read that fails or is cancelled is taken back by the guard.
        let read = self.inner.stats.begin_read();
        let value = self.inner.store.get(key).await?;
        read.settle(value.is_some());
        Ok(value)
    }

    /// The live values of `keys`, in order.
    pub async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>> {
        let values = self.inner.store.get_many(keys).await?;
        let misses = values.iter().filter(|v| v.is_none()).count() as u64;
        self.count(Stat::Reads, values.len() as u64);
        self.count(Stat::Misses, misses);
        Ok(values)
    }

    /// True if `key` has a live entry (a hit or a miss).
    pub async fn contains(&self, key: &K) -> Result<bool> {
        let found = self.inner.store.contains(key).await?;
        self.count(Stat::Reads, 1);
        self.count(Stat::Misses, u64::from(!found));
        Ok(found)
    }

    /// Writes `value`; `ttl: None` means the cache's default TTL.
    pub async fn put(&self, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        self.overtake_load(&key).await;
        self.forget_absence(&key).await?;
        self.inner
            .store
            .put(key, value, self.ttl_or_default(ttl))
            .await?;
        self.count(Stat::Writes, 1);
        Ok(())
    }

    /// Writes `value` only if `key` has no live entry; true if written.
    pub async fn put_new(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        self.overtake_load(&key).await;
        self.forget_absence(&key).await?;
        let ttl = self.ttl_or_default(ttl);
        let written = self.inner.store.put_new(key, value, ttl).await?;
        self.count(Stat::Writes, u64::from(written));
        Ok(written)
    }

    /// Writes `new` only if `key`'s live value is `expected` (`None`: no live entry), with `ttl`
    /// (`None`: the default TTL); true if written ([`Store::compare_and_set`], atomic in the
    /// store). Counts a write.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{Cache, MemoryStore};
    /// let cache = Cache::builder().store(MemoryStore::<String, i64>::new()).build().await?;
    /// assert!(cache.compare_and_set("n".into(), None, 1, None).await?);
    /// assert!(!cache.compare_and_set("n".into(), Some(0), 2, None).await?);
    /// assert!(cache.compare_and_set("n".into(), Some(1), 2, None).await?);
    /// # Ok(()) }
    /// ```
    pub async fn compare_and_set(
        &self,
        key: K,
        expected: Option<V>,
        new: V,
        ttl: Option<Duration>,
    ) -> Result<bool>
    where
        V: PartialEq,
    {
        self.overtake_load(&key).await;
        self.forget_absence(&key).await?;
        let ttl = self.ttl_or_default(ttl);
        let store = &self.inner.store;
        let written = store.compare_and_set(key, expected, new, ttl).await?;
        self.count(Stat::Writes, u64::from(written));
        Ok(written)
    }

    /// Writes every entry with one TTL (`None`: the default).
    pub async fn put_many(&self, entries: Vec<(K, V)>, ttl: Option<Duration>) -> Result<()> {
        self.overtake_loads(entries.iter().map(|(k, _)| k)).await;
        for (k, _) in &entries {
            self.forget_absence(k).await?;
        }
        let n = entries.len() as u64;
        let ttl = self.ttl_or_default(ttl);
        self.inner.store.put_many(entries, ttl).await?;
        self.count(Stat::Writes, n);
        Ok(())
    }

    /// Removes `key` (and any cached absence); true if a live entry was removed.
    pub async fn delete(&self, key: &K) -> Result<bool> {
        self.overtake_load(key).await;
        self.forget_absence(key).await?;
        let removed = self.inner.store.delete(key).await?;
        self.count(Stat::Deletes, u64::from(removed));
        Ok(removed)
    }

    /// Deletes every key in `keys`; how many live entries were removed.
    pub async fn delete_many(&self, keys: &[K]) -> Result<usize> {
        self.overtake_loads(keys.iter()).await;
        for k in keys {
            self.forget_absence(k).await?;
        }
        let removed = self.inner.store.delete_many(keys).await?;
        self.count(Stat::Deletes, removed as u64);
        Ok(removed)
    }

    /// Removes `key` and returns its value.
    pub async fn take(&self, key: &K) -> Result<Option<V>> {
        self.overtake_load(key).await;
        let value = self.inner.store.take(key).await?;
        self.count(Stat::Reads, 1);
        self.count(Stat::Misses, u64::from(value.is_none()));
        self.count(Stat::Deletes, u64::from(value.is_some()));
        Ok(value)
    }

    /// Every live key.
    pub async fn keys(&self) -> Result<Vec<K>> {
        self.inner.store.keys().await
    }

    /// How many live entries there are.
    pub async fn len(&self) -> Result<usize> {
        self.inner.store.count().await
    }

    /// True when there are no live entries.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Deletes every entry (and every cached absence); how many entries were removed.
    pub async fn clear(&self) -> Result<usize> {
        self.overtake_all_loads().await;
        if let Some(negatives) = &self.inner.negatives {
            negatives.clear();
        }
        let removed = self.inner.store.clear().await?;
        self.count(Stat::Deletes, removed as u64);
        Ok(removed)
    }

    /// The remaining lifetime of `key`, or `None` if it has no live entry.
    pub async fn ttl(&self, key: &K) -> Result<Option<Expiry>> {
        self.inner.store.ttl(key).await
    }

    /// Gives `key` a new TTL counted from now (`None`: never expire); true if it was live.
    pub async fn expire(&self, key: &K, ttl: Option<Duration>) -> Result<bool> {
        let live = self.inner.store.expire(key, ttl).await?;
        self.count(Stat::Updates, u64::from(live));
        Ok(live)
    }

    /// Removes `key`'s TTL; true if it was live.
    pub async fn persist(&self, key: &K) -> Result<bool> {
        let live = self.inner.store.persist(key).await?;
        self.count(Stat::Updates, u64::from(live));
        Ok(live)
    }

    /// Restarts `key`'s TTL (Cachex `refresh`): the entry gets the cache's **default TTL** again,
    /// counted from now. Stores keep a deadline, not the TTL an entry was written with, so the
    /// default TTL stands for it; without a default TTL, refresh leaves the entry as it is. True
    /// if the key was live.
    pub async fn refresh(&self, key: &K) -> Result<bool> {
        let live = match self.inner.ttl {
            Some(ttl) => self.inner.store.expire(key, Some(ttl)).await?,
            None => self.inner.store.contains(key).await?,
        };
        self.count(Stat::Updates, u64::from(live));
        Ok(live)
    }

    /// Marks `key` as used without changing when it expires (Cachex `touch`); true if live.
    pub async fn touch(&self, key: &K) -> Result<bool> {
        let live = self.inner.store.touch(key).await?;
        self.count(Stat::Updates, u64::from(live));
        Ok(live)
    }

    /// Replaces the value of a live `key`, keeping its remaining TTL (Cachex `update`); false
    /// (and nothing written) if the key is missing.
    pub async fn update(&self, key: &K, value: V) -> Result<bool> {
        let outcome = self
            .get_and_update(key, |old| match old {
                Some(_) => Update::Commit(value),
                None => Update::Ignore,
            })
            .await;
        outcome.map(|v| v.is_some())
    }

    /// Reads `key`, lets `f` decide, and writes the result, keeping the remaining TTL (a new key
    /// gets the default TTL). Returns the value now in the cache. Counts an update (or a write
    /// for a new key), not a hit or a miss.
    ///
    /// Atomic per key with respect to every other `get_and_update`, `update`, `incr` and
    /// `decr` on this cache (a striped async key lock); a writer that bypasses these calls (a
    /// plain `put`, another process) can still interleave.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{Cache, MemoryStore, Update};
    /// let cache = Cache::builder().store(MemoryStore::<String, Vec<u32>>::new()).build().await?;
    /// let key = "recent".to_string();
    /// for id in [7, 8] {
    ///     cache
    ///         .get_and_update(&key, |old| {
    ///             let mut ids = old.unwrap_or_default();
    ///             ids.push(id);
    ///             Update::Commit(ids)
    ///         })
    ///         .await?;
    /// }
    /// assert_eq!(cache.get(&key).await?, Some(vec![7, 8]));
    /// # Ok(()) }
    /// ```
    pub async fn get_and_update<F>(&self, key: &K, f: F) -> Result<Option<V>>
    where
        F: FnOnce(Option<V>) -> Update<V> + Send,
    {
        let _guard = self.inner.locks.lock(key).await;
        self.update_under_lock(key, f).await
    }

    /// `get_and_update` for a caller that holds `key`'s stripe lock.
    pub(super) async fn update_under_lock<F>(&self, key: &K, f: F) -> Result<Option<V>>
    where
        F: FnOnce(Option<V>) -> Update<V> + Send,
    {
        let old = self.inner.store.get(key).await?;
        let existed = old.is_some();
        match f(old.clone()) {
            Update::Ignore => Ok(old),
            Update::Delete => self.delete(key).await.map(|_| None),
            Update::Commit(value) => self.commit_update(key, value, existed).await,
        }
    }

    async fn commit_update(&self, key: &K, value: V, existed: bool) -> Result<Option<V>> {
        let ttl = match existed {
            true => self.remaining_ttl(key).await?,
            false => self.inner.ttl,
        };
        self.overtake_load(key).await;
        self.forget_absence(key).await?;
        self.inner
            .store
            .put(key.clone(), value.clone(), ttl)
            .await?;
        self.count(if existed { Stat::Updates } else { Stat::Writes }, 1);
        Ok(Some(value))
    }

    /// The TTL to keep when rewriting a live key; a store that cannot tell gets the default.
    async fn remaining_ttl(&self, key: &K) -> Result<Option<Duration>> {
        match self.inner.store.ttl(key).await {
            Ok(Some(expiry)) => Ok(expiry.remaining()),
            // Expired between the read and now: a millisecond keeps the write from living on.
            Ok(None) => Ok(Some(Duration::from_millis(1))),
            Err(Error::Unsupported { .. }) => Ok(self.inner.ttl),
            Err(e) => Err(e),
        }
    }

    /// Adds `delta` to the counter under `key` (a missing key counts from zero with the default
    /// TTL) and returns the new value; an existing TTL is kept. One atomic store call
    /// ([`Store::incr_with_ttl`]), so a counter that expires between two calls is re-created
    /// with the default TTL, never without one. Counts a write.
    pub async fn incr(&self, key: &K, delta: i64) -> Result<V>
    where
        V: Counter,
    {
        self.incr_with_ttl(key, delta, None).await
    }

    /// [`Cache::incr`] with the TTL a counter this call creates gets (`None`: the cache's
    /// default TTL); a live counter keeps its own TTL.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use std::time::Duration;
    /// use strata::{Cache, MemoryStore};
    /// let cache = Cache::builder().store(MemoryStore::<String, u32>::new()).build().await?;
    /// let key = "failed_logins:ada".to_string();
    /// let window = Some(Duration::from_secs(900));
    /// assert_eq!(cache.incr_with_ttl(&key, 1, window).await?, 1);
    /// assert_eq!(cache.incr_with_ttl(&key, 1, window).await?, 2);
    /// assert!(cache.ttl(&key).await?.and_then(|e| e.remaining()).is_some());
    /// # Ok(()) }
    /// ```
    pub async fn incr_with_ttl(
        &self,
        key: &K,
        delta: i64,
        ttl_if_new: Option<Duration>,
    ) -> Result<V>
    where
        V: Counter,
    {
        let _guard = self.inner.locks.lock(key).await;
        self.incr_under_lock(key, delta, ttl_if_new).await
    }

    /// `incr_with_ttl` for a caller that holds `key`'s stripe lock.
    pub(super) async fn incr_under_lock(
        &self,
        key: &K,
        delta: i64,
        ttl_if_new: Option<Duration>,
    ) -> Result<V>
    where
        V: Counter,
    {
        self.overtake_load(key).await;
        self.forget_absence(key).await?;
        let ttl = self.ttl_or_default(ttl_if_new);
        let value = self.inner.store.incr_with_ttl(key, delta, ttl).await?;
        self.count(Stat::Writes, 1);
        Ok(value)
    }

    /// Writes `value` only if `key` has a live entry (Redis `SET .. XX`), replacing its value
    /// and TTL (`None`: the default TTL); true if written. A key deleted or expired before the
    /// call stays gone. Counts an update.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{Cache, MemoryStore};
    /// let cache = Cache::builder().store(MemoryStore::<String, String>::new()).build().await?;
    /// assert!(!cache.replace("s:1".into(), "ada".into(), None).await?);
    /// cache.put("s:1".into(), "ada".into(), None).await?;
    /// assert!(cache.replace("s:1".into(), "grace".into(), None).await?);
    /// assert_eq!(cache.get(&"s:1".into()).await?.as_deref(), Some("grace"));
    /// # Ok(()) }
    /// ```
    pub async fn replace(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        self.overtake_load(&key).await;
        let ttl = self.ttl_or_default(ttl);
        let written = self.inner.store.replace(key.clone(), value, ttl).await?;
        if written {
            self.forget_absence(&key).await?;
        }
        self.count(Stat::Updates, u64::from(written));
        Ok(written)
    }

    /// Every live key whose encoded form starts with `prefix` ([`Store::keys_with_prefix`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{Cache, MemoryStore};
    /// let cache = Cache::builder().store(MemoryStore::<String, u32>::new()).build().await?;
    /// cache.put("user:1:a".into(), 1, None).await?;
    /// cache.put("user:10:a".into(), 2, None).await?;
    /// assert_eq!(cache.keys_with_prefix("user:1:").await?, ["user:1:a"]);
    /// # Ok(()) }
    /// ```
    pub async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<K>>
    where
        K: crate::codec::Key,
    {
        self.inner.store.keys_with_prefix(prefix).await
    }

    /// Subtracts `delta` from the counter under `key`; see [`Cache::incr`].
    pub async fn decr(&self, key: &K, delta: i64) -> Result<V>
    where
        V: Counter,
    {
        let negated = delta.checked_neg().ok_or_else(|| Error::Overflow {
            key: format!("{key:?}").into(),
        })?;
        self.incr(key, negated).await
    }

    /// A snapshot of the counters. `evictions` and `expirations` come from the store when it
    /// reports them ([`Store::store_stats`](crate::Store::store_stats)); the rest are counted by the cache.
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.stats.snapshot();
        if let Some(store) = self.inner.store.store_stats() {
            stats.evictions += store.evictions;
            stats.expirations += store.expirations;
        }
        stats
    }

    /// Sets the cache's own counters back to zero (the store's are its own).
    pub fn reset_stats(&self) {
        self.inner.stats.reset();
    }

    /// Subscribes to the store's events: key and cause (put, replace, delete, expired, evicted,
    /// generation). A slow subscriber loses its oldest events instead of blocking writers.
    /// [`Error::Unsupported`] if the store cannot report events.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{Cache, EventKind, MemoryStore};
    /// let cache = Cache::builder().store(MemoryStore::<String, u32>::new()).build().await?;
    /// let mut events = cache.subscribe()?;
    /// cache.put("a".into(), 1, None).await?;
    /// cache.delete(&"a".into()).await?;
    /// assert_eq!(events.recv().await.map(|e| e.kind), Some(EventKind::Put));
    /// assert_eq!(events.recv().await.map(|e| e.kind), Some(EventKind::Delete));
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self) -> Result<Events<K>> {
        self.inner
            .store
            .subscribe_events()
            .ok_or(Error::Unsupported {
                operation: "subscribe",
            })
    }
}
