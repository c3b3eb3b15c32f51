//! `ReplicatedStore`: the read and write paths over a local tier and the remote truth.

use std::{
    fmt,
    future::Future,
    marker::PhantomData,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use super::{
    builder::ReplicatedStoreBuilder,
    commit::Committer,
    invalidation::{BoxFuture, Handler, Hub},
    keybytes::key_bytes,
    link::Guard,
    message::{Keys, Op},
    stats::ReplicationStats,
    Stripes,
};
use crate::{
    codec::Key,
    error::{Error, Result},
    namespace::Namespace,
    store::{BatchWrite, Counter, Expiry, GcraStep, Store},
    time::{check_ttl, Clock, UnixMillis},
};

/// What every clone of one namespace's store shares.
pub(super) struct Inner<K, V, L, R> {
    pub local: L,
    pub remote: R,
    pub hub: Arc<Hub>,
    pub namespace: Namespace,
    pub channel: String,
    pub clock: Clock,
    pub stale_for: Duration,
    pub local_ttl: Option<Duration>,
    pub warm: bool,
    pub stripes: Stripes,
    /// The group commit of this store's puts and deletes.
    pub commits: Committer<K, V>,
    pub types: PhantomData<fn() -> (K, V)>,
}

/// A store replicated across nodes: each node keeps a local tier `L` (a
/// [`MemoryStore`](crate::MemoryStore), or a disk store) in front of a remote store `R` that holds
/// the truth and the TTLs (a `RedisStore`), kept coherent by invalidations over Redis pub/sub.
///
/// See the [module documentation](crate::replicated) for the consistency model. Cheap to clone.
///
/// Runtimes: the task receiving invalidations runs on the runtime that built the store; if that
/// runtime shuts down, or is kept alive but not driven for 20 s (a current-thread runtime outside
/// `block_on`), the node stops trusting its local tier and the next call resubscribes on its own
/// runtime. The task sending group-committed writes runs on the runtime of the write that
/// started it. If that runtime shuts down, the writes queued for it are sent by a task on their
/// caller's runtime; if it is kept alive but not driven, a background thread hands the queued
/// writes back to their callers once the old task has taken none for 1 s (had a batch in flight
/// for 5 s without running; noticed at most 0.4 s later), and the first to queue again starts a
/// task on its own runtime. Either way the callers whose writes were in
/// the old task's batch get an error saying they may have been applied. The old task, if its
/// runtime runs again, sends nothing it had not yet handed to the connection: it checks that it
/// is still in charge once the connection is ready, right before the hand-over, so a write made
/// again after that error is not overwritten by it. Left open: a batch already handed to the
/// connection is written whenever that connection's driver task runs, so if that task starves
/// with the same runtime (it runs on the runtime that connected it) and a later write timed out
/// and went on a new connection, the batch can still land after it, like any Redis request that
/// timed out; the same if the hand-over itself had to wait (redis-rs queues at most 50 requests
/// per connection), and on a Redis Cluster, whose client may wait for a node's connection after
/// the hand-over. Drive or drop the runtimes a store is used on.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
/// use std::time::Duration;
/// use strata::{MemoryStore, ReplicatedStore, Store};
///
/// # let remote = MemoryStore::<String, String>::new();
/// // In production `remote` is a RedisStore on the same Redis as `url`.
/// let store = ReplicatedStore::builder()
///     .local(MemoryStore::new())
///     .remote(remote)
///     .url("redis://127.0.0.1:6379/")
///     .stale_for(Duration::from_secs(2))
///     .build()
///     .await?;
/// store.put("session:1".to_string(), "ada".to_string(), Some(Duration::from_secs(60))).await?;
/// assert_eq!(store.get(&"session:1".to_string()).await?.as_deref(), Some("ada"));
/// # Ok(()) }
/// ```
pub struct ReplicatedStore<K, V, L, R> {
    pub(super) inner: Arc<Inner<K, V, L, R>>,
}

impl<K, V, L, R> Clone for ReplicatedStore<K, V, L, R> {
    fn clone(&self) -> Self {
        ReplicatedStore {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V, L, R> fmt::Debug for ReplicatedStore<K, V, L, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicatedStore")
            .field("namespace", &self.inner.namespace.as_str())
            .field("hub", &self.inner.hub)
            .field("stale_for", &self.inner.stale_for)
            .finish_non_exhaustive()
    }
}

impl<K, V, L, R> ReplicatedStore<K, V, L, R> {
    /// A builder; `local`, `remote` and `url` (or `sentinel`) are required.
    pub fn builder() -> ReplicatedStoreBuilder<K, V, L, R> {
        ReplicatedStoreBuilder::new()
    }

    /// The local tier (reading it directly bypasses the coherence checks).
    pub fn local(&self) -> &L {
        &self.inner.local
    }

    /// The remote store that holds the truth.
    pub fn remote(&self) -> &R {
        &self.inner.remote
    }

    /// True while this node receives every invalidation (its local tier can be trusted).
    pub fn is_connected(&self) -> bool {
        self.inner.hub.link.is_up()
    }

    /// What this node's invalidation channel has seen so far.
    pub fn replication_stats(&self) -> ReplicationStats {
        ReplicationStats::read(&self.inner.hub)
    }
}

pub(super) fn link_down(context: impl Into<String>) -> Error {
    Error::backend(
        context,
        "the invalidation link to Redis is down; nothing was written, retry once it reconnects",
    )
}

impl<K, V, L, R> Inner<K, V, L, R>
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    fn require_link(&self, op: &str) -> Result<()> {
        if self.hub.link.is_up() {
            return Ok(());
        }
        self.hub.resubscribe();
        // Not the key: it can be a session id.
        Err(link_down(format!("{op} in {}", self.namespace)))
    }

    /// The local TTL for a value whose remote TTL was `remote`, counted from `started`
    /// (taken before the remote call, so the local copy never outlives the remote one);
    /// `None` when there is no time left to cache it.
    pub(super) fn local_ttl(
        &self,
        remote: Expiry,
        started: UnixMillis,
    ) -> Option<Option<Duration>> {
        let elapsed = Duration::from_millis(self.clock.now_ms().saturating_sub(started));
        let left = match remote.remaining() {
            Some(ttl) => Some(ttl.checked_sub(elapsed).filter(|d| !d.is_zero())?),
            None => None,
        };
        Some(match (left, self.local_ttl) {
            (Some(l), Some(cap)) => Some(l.min(cap)),
            (l, cap) => l.or(cap),
        })
    }

    /// Caches `value` locally, then drops it again if an invalidation (or a write on this
    /// node, see [`Stripes::claim`]) raced with the operation: the check comes after the put,
    /// so a change that lands in between is seen.
    pub(super) async fn cache(&self, guard: Guard, key: &K, value: V, ttl: Option<Duration>) {
        let put = self.local.put(key.clone(), value, ttl).await;
        if put.is_err() || !self.stripes.unchanged(guard) {
            self.drop_local(key).await;
        }
    }

    /// Drops the local copy of `key`; a local failure is logged (the copy stays suspect only
    /// until its own TTL, which never outlives the remote one).
    pub(super) async fn drop_local(&self, key: &K) {
        if let Err(e) = self.local.delete(key).await {
            // Not the key: it can be a session id.
            tracing::warn!(namespace = %self.namespace, error = %super::without_key(&e), "could not drop a local copy");
        }
    }

    /// A remote write that failed may still have been applied (a timeout after Redis ran it):
    /// drop every node's copy anyway, best effort, and return the original error.
    async fn settle<T>(&self, key: &K, result: Result<T>) -> Result<T> {
        if result.is_err() {
            let _ = self.changed(key).await;
        }
        result
    }

    /// After a remote change of `key`: drop our copy and tell the other nodes.
    async fn changed(&self, key: &K) -> Result<()> {
        self.changed_here(key).await;
        self.hub
            .publish(&self.channel, Op::Invalidate, &key_bytes(key))
            .await
    }

    /// After a remote change of `key` whose invalidation went out with the write: drop our copy.
    pub(super) async fn changed_here(&self, key: &K) {
        self.stripes.bump(&key_bytes(key));
        self.drop_local(key).await;
    }

    /// Group-committed ([`Committer`]): the remote write goes with the others queued meanwhile
    /// and one invalidation for all of them, in one round trip where the remote store can
    /// (one pipeline on Redis); then the local copy. The fill guard is taken now, before the
    /// write is queued, and claimed after Redis acknowledged it.
    async fn put(self: &Arc<Self>, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        check_ttl(ttl)?;
        self.require_link("PUT")?;
        let bytes = key_bytes(&key);
        let guard = self.stripes.guard(&bytes);
        let write = BatchWrite::Put { key, value, ttl };
        let started = self.clock.now_ms();
        self.commit(write, bytes, guard, started).await.map(|_| ())
    }

    /// Group-committed as [`Inner::put`]: `UNLINK` with the batch, then the local copy dropped.
    async fn delete(self: &Arc<Self>, key: &K) -> Result<bool> {
        self.require_link("DELETE")?;
        let bytes = key_bytes(key);
        let guard = self.stripes.guard(&bytes);
        let write = BatchWrite::Delete(key.clone());
        let started = self.clock.now_ms();
        self.commit(write, bytes, guard, started).await
    }

    /// Local hits, then every local miss read from the remote store in one call (one
    /// `MGET` + `PTTL` pipeline per slot on Redis) and cached as [`Inner::fill`] does.
    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>> {
        if !self.hub.link.is_up() {
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                out.push(self.get_while_down(key).await?);
            }
            return Ok(out);
        }
        let mut out = self.local.get_many(keys).await?;
        let misses: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        if misses.is_empty() {
            return Ok(out);
        }
        let wanted: Vec<K> = misses.iter().map(|&i| keys[i].clone()).collect();
        let found = self.fill_many(&wanted).await?;
        for (i, value) in misses.into_iter().zip(found) {
            out[i] = value;
        }
        Ok(out)
    }

    /// Reads `keys` from the remote store in one call (one `MGET` + `PTTL` pipeline per slot
    /// on Redis) and caches each live one locally as [`Inner::fill`] does: a copy that an
    /// invalidation or a write on this node raced with is dropped, never kept.
    pub(super) async fn fill_many(&self, keys: &[K]) -> Result<Vec<Option<V>>> {
        let guards: Vec<Guard> = keys
            .iter()
            .map(|k| self.stripes.guard(&key_bytes(k)))
            .collect();
        let started = self.clock.now_ms();
        let found = self.remote.get_many_with_ttl(keys).await?;
        let mut out = Vec::with_capacity(keys.len());
        for ((key, guard), item) in keys.iter().zip(guards).zip(found) {
            let Some((value, expiry)) = item else {
                out.push(None);
                continue;
            };
            if let Some(ttl) = self.local_ttl(expiry, started) {
                self.cache(guard, key, value.clone(), ttl).await;
            }
            out.push(Some(value));
        }
        Ok(out)
    }

    async fn get(&self, key: &K) -> Result<Option<V>> {
        if self.hub.link.is_up() {
            if let Some(value) = self.local.get(key).await? {
                return Ok(Some(value));
            }
            return self.fill(key).await;
        }
        self.get_while_down(key).await
    }

    /// A local miss: read the remote value with its TTL and keep a copy.
    pub(super) async fn fill(&self, key: &K) -> Result<Option<V>> {
        let guard = self.stripes.guard(&key_bytes(key));
        let started = self.clock.now_ms();
        let Some((value, expiry)) = self.remote.get_with_ttl(key).await? else {
            return Ok(None);
        };
        if let Some(ttl) = self.local_ttl(expiry, started) {
            self.cache(guard, key, value.clone(), ttl).await;
        }
        Ok(Some(value))
    }

    /// Link down: within `stale_for` of the link's last proof of life a local copy is served
    /// as is (no wait on a Redis that may be gone); otherwise, or without a copy, the remote
    /// answers (or the call fails).
    async fn get_while_down(&self, key: &K) -> Result<Option<V>> {
        self.hub.resubscribe();
        if self.hub.link.stale_ok(self.clock.now_ms(), self.stale_for) {
            if let Some(value) = self.local.get(key).await? {
                return Ok(Some(value));
            }
        }
        self.remote.get(key).await
    }

    /// Forgets every local copy (reconnect, or another node cleared the namespace).
    pub(super) async fn flush_local(&self) {
        self.stripes.bump_all();
        if let Err(e) = self.local.clear().await {
            tracing::warn!(namespace = %self.namespace, error = %super::without_key(&e), "could not flush the local tier");
        }
    }
}

impl<K, V, L, R> Handler for Inner<K, V, L, R>
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    fn invalidate<'a>(&'a self, keys: Keys<'a>) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            for key in keys {
                let Ok(decoded) = K::decode_key(key) else {
                    return false;
                };
                self.stripes.bump(key);
                self.drop_local(&decoded).await;
            }
            true
        })
    }

    fn flush(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.flush_local())
    }

    fn relieve_starved_writer(&self) {
        self.relieve_writer_if_starved();
    }

    fn warm(self: Arc<Self>, epoch: u64) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if self.warm && super::join::warm(&self, epoch).await {
                self.hub.counters.warms.fetch_add(1, Ordering::Relaxed);
            }
        })
    }
}

impl<K, V, L, R> Store<K, V> for ReplicatedStore<K, V, L, R>
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    fn put(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.inner.put(key, value, ttl)
    }

    #[inline]
    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        self.inner.get(key)
    }

    fn delete(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        self.inner.delete(key)
    }

    fn get_many(&self, keys: &[K]) -> impl Future<Output = Result<Vec<Option<V>>>> + Send {
        self.inner.get_many(keys)
    }

    /// Every live key, listed from the remote store (the truth).
    fn keys(&self) -> impl Future<Output = Result<Vec<K>>> + Send {
        self.inner.remote.keys()
    }

    async fn take(&self, key: &K) -> Result<Option<V>> {
        self.inner.require_link("TAKE")?;
        let value = self.inner.remote.take(key).await;
        let value = self.inner.settle(key, value).await?;
        self.inner.changed(key).await?;
        Ok(value)
    }

    async fn put_new(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        check_ttl(ttl)?;
        self.inner.require_link("PUT_NEW")?;
        let written = self.inner.remote.put_new(key.clone(), value, ttl).await;
        let written = self.inner.settle(&key, written).await?;
        if written {
            self.inner.changed(&key).await?;
        }
        Ok(written)
    }

    /// The remaining TTL, read from the remote store (a local copy may hold a shorter one).
    fn ttl(&self, key: &K) -> impl Future<Output = Result<Option<Expiry>>> + Send {
        self.inner.remote.ttl(key)
    }

    fn get_with_ttl(&self, key: &K) -> impl Future<Output = Result<Option<(V, Expiry)>>> + Send {
        self.inner.remote.get_with_ttl(key)
    }

    /// Changes the TTL in the remote store, then drops every node's copy so each rereads the
    /// new TTL (Mnesia's "refresh invalidators on all nodes", without rescanning anything).
    async fn expire(&self, key: &K, ttl: Option<Duration>) -> Result<bool> {
        check_ttl(ttl)?;
        self.inner.require_link("EXPIRE")?;
        let live = self.inner.remote.expire(key, ttl).await;
        let live = self.inner.settle(key, live).await?;
        self.inner.changed(key).await?;
        Ok(live)
    }

    fn persist(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        self.expire(key, None)
    }

    async fn incr(&self, key: &K, delta: i64) -> Result<V>
    where
        V: Counter + Clone,
        K: fmt::Debug,
    {
        self.inner.require_link("INCR")?;
        let value = self.inner.remote.incr(key, delta).await;
        let value = self.inner.settle(key, value).await?;
        self.inner.changed(key).await?;
        Ok(value)
    }

    /// `incr_with_ttl` in the remote store (one atomic step there), then every node's copy is
    /// dropped, as for `incr`.
    async fn incr_with_ttl(&self, key: &K, delta: i64, ttl_if_new: Option<Duration>) -> Result<V>
    where
        V: Counter + Clone,
        K: fmt::Debug,
    {
        check_ttl(ttl_if_new)?;
        self.inner.require_link("INCR")?;
        let value = self
            .inner
            .remote
            .incr_with_ttl(key, delta, ttl_if_new)
            .await;
        let value = self.inner.settle(key, value).await?;
        self.inner.changed(key).await?;
        Ok(value)
    }

    /// `replace` in the remote store (`SET XX`: a key deleted on any node is never revived),
    /// then every node's copy is dropped; the next read here refills from Redis.
    async fn replace(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        check_ttl(ttl)?;
        self.inner.require_link("REPLACE")?;
        let written = self.inner.remote.replace(key.clone(), value, ttl).await;
        let written = self.inner.settle(&key, written).await?;
        if written {
            self.inner.changed(&key).await?;
        }
        Ok(written)
    }

    /// `compare_and_set` in the remote store (one script on Redis, so the comparison is against
    /// the truth, never a local copy), then every node's copy is dropped.
    async fn compare_and_set(
        &self,
        key: K,
        expected: Option<V>,
        new: V,
        ttl: Option<Duration>,
    ) -> Result<bool>
    where
        V: PartialEq,
    {
        check_ttl(ttl)?;
        self.inner.require_link("COMPARE_AND_SET")?;
        let remote = &self.inner.remote;
        let written = remote
            .compare_and_set(key.clone(), expected, new, ttl)
            .await;
        let written = self.inner.settle(&key, written).await?;
        if written {
            self.inner.changed(&key).await?;
        }
        Ok(written)
    }

    /// The GCRA step in the remote store (one script on Redis, against the truth, never a local
    /// copy), then, if it wrote, every node's copy is dropped.
    async fn gcra(
        &self,
        key: &K,
        now_ms: u64,
        interval_ms: u64,
        tolerance_ms: u64,
    ) -> Result<GcraStep>
    where
        V: Counter + PartialEq + Clone,
        K: std::fmt::Debug,
    {
        self.inner.require_link("GCRA")?;
        let remote = &self.inner.remote;
        let step = remote.gcra(key, now_ms, interval_ms, tolerance_ms).await;
        let step = self.inner.settle(key, step).await?;
        if step.allowed {
            self.inner.changed(key).await?;
        }
        Ok(step)
    }

    /// Listed from the remote store (the truth).
    fn keys_with_prefix(&self, prefix: &str) -> impl Future<Output = Result<Vec<K>>> + Send
    where
        K: Key,
    {
        self.inner.remote.keys_with_prefix(prefix)
    }

    fn namespace(&self) -> Namespace {
        self.inner.namespace.clone()
    }

    /// A store over the same local tier kind, remote connection and invalidation channel whose
    /// keys live in `namespace`.
    fn with_namespace(&self, namespace: &Namespace) -> Result<Self> {
        let i = &self.inner;
        let inner = Arc::new(Inner {
            local: i.local.with_namespace(namespace)?,
            remote: i.remote.with_namespace(namespace)?,
            hub: i.hub.clone(),
            namespace: namespace.clone(),
            channel: i.hub.channel(namespace.as_str()),
            clock: i.clock.clone(),
            stale_for: i.stale_for,
            local_ttl: i.local_ttl,
            warm: i.warm,
            stripes: Stripes::default(),
            commits: Committer::default(),
            types: PhantomData,
        });
        Ok(ReplicatedStore::registered(inner))
    }

    fn count(&self) -> impl Future<Output = Result<usize>> + Send {
        self.inner.remote.count()
    }

    /// Clears the remote namespace and every node's local tier.
    async fn clear(&self) -> Result<usize> {
        if !self.inner.hub.link.is_up() {
            self.inner.hub.resubscribe();
            return Err(link_down(format!("CLEAR {}", self.inner.namespace)));
        }
        let removed = self.inner.remote.clear().await?;
        self.inner.flush_local().await;
        self.inner
            .hub
            .publish(&self.inner.channel, Op::Flush, b"")
            .await?;
        Ok(removed)
    }
}

impl<K, V, L, R> ReplicatedStore<K, V, L, R>
where
    K: Key,
    V: Clone + Send + Sync + 'static,
    L: Store<K, V> + 'static,
    R: Store<K, V> + 'static,
{
    /// Wraps `inner` and registers it for its namespace's invalidations.
    pub(super) fn registered(inner: Arc<Inner<K, V, L, R>>) -> Self {
        let weak: std::sync::Weak<dyn Handler> = Arc::downgrade(&inner) as _;
        inner.hub.register(inner.namespace.as_str(), weak);
        ReplicatedStore { inner }
    }
}
