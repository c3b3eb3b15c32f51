//! The `DiskStore` handle: reads from the memory tier, writes to it and to the engine in the
//! same order.
//!
//! Every write takes a per-key stripe lock, applies itself to the memory tier and queues its op
//! for the writer thread before releasing it, so the engine sees the writes to one key in the
//! order memory applied them; a sync write then waits (outside the lock) for its commit.

use std::{future::Future, sync::Arc, time::Duration};

use serde::{de::DeserializeOwned, Serialize};

use super::{
    builder::DiskStoreBuilder,
    db::DiskDb,
    engine::Op,
    record,
    writer::{self, Ack},
};
use crate::{
    codec::Key,
    error::Result,
    events::Events,
    memory::MemoryStore,
    namespace::Namespace,
    stats::Stats,
    store::{Counter, Expiry, Store},
};

/// The memory tier of one namespace, shared by every handle on it.
pub(super) struct Tier<K, V> {
    pub mem: MemoryStore<K, V>,
    pub undecodable: usize,
}

impl<K, V> Clone for Tier<K, V> {
    fn clone(&self) -> Self {
        Tier {
            mem: self.mem.clone(),
            undecodable: self.undecodable,
        }
    }
}

/// A persistent store: every live entry in memory for reads, every write also on disk (Pow's
/// MnesiaCache, on one node). See the `disk` module docs for the guarantees.
///
/// ```
/// use std::time::Duration;
/// use strata::{DiskStore, Store};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = DiskStore::<String, u64>::builder()
///     .dir(dir.path())
///     .namespace("credentials")
///     .open()?;
/// store.put("user:1".into(), 7, Some(Duration::from_secs(3600))).await?;
/// assert_eq!(store.get(&"user:1".into()).await?, Some(7));
/// # Ok(()) }
/// ```
pub struct DiskStore<K, V> {
    db: DiskDb,
    namespace: Namespace,
    prefix: Arc<[u8]>,
    tier: Tier<K, V>,
}

impl<K, V> Clone for DiskStore<K, V> {
    fn clone(&self) -> Self {
        DiskStore {
            db: self.db.clone(),
            namespace: self.namespace.clone(),
            prefix: self.prefix.clone(),
            tier: self.tier.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for DiskStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("dir", &self.db.dir())
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl<K, V> DiskStore<K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// A builder for a store over its own directory (see [`DiskDb`] for many namespaces).
    pub fn builder() -> DiskStoreBuilder<K, V> {
        DiskStoreBuilder::new()
    }

    pub(super) fn new(db: DiskDb, namespace: Namespace, tier: Tier<K, V>) -> Self {
        DiskStore {
            prefix: namespace.prefix().into(),
            db,
            namespace,
            tier,
        }
    }

    /// The directory this store lives in, to open other namespaces or flush.
    pub fn db(&self) -> &DiskDb {
        &self.db
    }

    /// How many entries of this namespace were on disk but did not decode as `K`/`V` when it
    /// was opened (a type changed between releases). Reads of them miss; they stay on disk.
    pub fn undecodable(&self) -> usize {
        self.tier.undecodable
    }

    /// Subscribes to the memory tier's events (put, replace, delete, expired).
    pub fn subscribe(&self) -> Events<K> {
        self.tier.mem.subscribe()
    }

    /// A snapshot of the memory tier's counters.
    pub fn stats(&self) -> Stats {
        self.tier.mem.stats()
    }

    fn mem(&self) -> &MemoryStore<K, V> {
        &self.tier.mem
    }

    fn disk_key(&self, key: &K) -> Vec<u8> {
        key.namespaced(&self.prefix)
    }

    /// The op that writes `value` under `key` on disk.
    fn put_op(&self, key: &K, value: &V, deadline: u64) -> Result<Op> {
        record::put_op(
            &self.prefix,
            key,
            value,
            deadline,
            self.db.inner.opts.format,
        )
    }

    fn deadline(&self, ttl: Option<Duration>) -> Result<u64> {
        self.db.inner.opts.clock.entry_deadline(ttl)
    }

    /// Runs `apply` under `stripe` (the key's lock, see [`DiskDb::stripe`]) and queues the op
    /// it returns.
    fn locked<R>(
        &self,
        stripe: &parking_lot::Mutex<()>,
        apply: impl FnOnce() -> Result<(R, Option<Op>)>,
    ) -> Result<(R, Option<Ack>)> {
        let _stripe = stripe.lock();
        let (result, op) = apply()?;
        let ack = match op {
            Some(op) => self.db.inner.writer.send_one(op, self.db.sync_writes())?,
            None => None,
        };
        Ok((result, ack))
    }

    /// Writes `value` under `key`.
    async fn put_inner(&self, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        let deadline = self.deadline(ttl)?;
        let op = self.put_op(&key, &value, deadline)?;
        let (_, ack) = self.locked(self.db.stripe(op.key()), || {
            self.mem().put(key, value, ttl)?;
            Ok(((), Some(op)))
        })?;
        finish(ack).await
    }

    async fn delete_inner(&self, key: &K) -> Result<bool> {
        Ok(self.remove(key).await?.is_some())
    }

    async fn remove(&self, key: &K) -> Result<Option<V>> {
        let dk = self.disk_key(key);
        let (taken, ack) = self.locked(self.db.stripe(&dk), || {
            // Deleted on disk even when memory had nothing: the record may be one that no
            // longer decodes, and deleting it is how a user gets rid of it.
            Ok((self.mem().take(key), Some(Op::Delete { key: dk })))
        })?;
        finish(ack).await?;
        Ok(taken)
    }

    async fn put_new_inner(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        let deadline = self.deadline(ttl)?;
        let op = self.put_op(&key, &value, deadline)?;
        let (written, ack) = self.locked(self.db.stripe(op.key()), || {
            let written = self.mem().put_new(key, value, ttl)?;
            Ok((written, written.then_some(op)))
        })?;
        finish(ack).await?;
        Ok(written)
    }

    async fn expire_inner(&self, key: &K, ttl: Option<Duration>) -> Result<bool> {
        let deadline = self.deadline(ttl)?;
        let dk = self.disk_key(key);
        let (changed, ack) = self.locked(self.db.stripe(&dk), || {
            let Some(value) = self.mem().get(key) else {
                return Ok((false, None));
            };
            let op = self.put_op(key, &value, deadline)?;
            let changed = self.mem().expire(key, ttl)?;
            Ok((changed, changed.then_some(op)))
        })?;
        finish(ack).await?;
        Ok(changed)
    }

    async fn incr_inner(&self, key: &K, delta: i64) -> Result<V>
    where
        V: Counter,
    {
        let dk = self.disk_key(key);
        let (value, ack) = self.locked(self.db.stripe(&dk), || {
            let value = self.mem().incr(key, delta)?;
            let op = match self.mem().ttl(key) {
                Some(expiry) => self.put_op(key, &value, self.deadline_of(expiry))?,
                // Expired between the two calls: nothing live to persist.
                None => Op::Delete { key: dk },
            };
            Ok((value, Some(op)))
        })?;
        finish(ack).await?;
        Ok(value)
    }

    fn deadline_of(&self, expiry: Expiry) -> u64 {
        match expiry {
            Expiry::Never => 0,
            Expiry::In(left) => self
                .db
                .inner
                .opts
                .clock
                .now_ms()
                .saturating_add(crate::time::ttl_ms(left)),
        }
    }

    async fn clear_inner(&self) -> Result<usize> {
        let (removed, ack) = {
            let _all = self.db.lock_all();
            let removed = self.mem().clear();
            let prefix = self.prefix.to_vec();
            let ack = self
                .db
                .inner
                .writer
                .send(vec![Op::DeletePrefix { prefix }], self.db.sync_writes())?;
            (removed, ack)
        };
        finish(ack).await?;
        Ok(removed)
    }

    async fn put_many_inner(&self, entries: Vec<(K, V)>, ttl: Option<Duration>) -> Result<()> {
        let deadline = self.deadline(ttl)?;
        let mut last = None;
        for (key, value) in entries {
            let op = self.put_op(&key, &value, deadline)?;
            let _stripe = self.db.stripe(op.key()).lock();
            self.mem().put(key, value, ttl)?;
            last = self.db.inner.writer.send_one(op, self.db.sync_writes())?;
        }
        // The queue is FIFO: the last job's commit covers every earlier one.
        finish(last).await
    }

    async fn delete_many_inner(&self, keys: &[K]) -> Result<usize> {
        let mut removed = 0;
        let mut last = None;
        for key in keys {
            let dk = self.disk_key(key);
            let _stripe = self.db.stripe(&dk).lock();
            removed += usize::from(self.mem().delete(key));
            last = self
                .db
                .inner
                .writer
                .send_one(Op::Delete { key: dk }, self.db.sync_writes())?;
        }
        finish(last).await?;
        Ok(removed)
    }
}

async fn finish(ack: Option<Ack>) -> Result<()> {
    match ack {
        Some(ack) => writer::wait(ack).await,
        None => Ok(()),
    }
}

impl<K, V> Store<K, V> for DiskStore<K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn namespace(&self) -> Namespace {
        self.namespace.clone()
    }

    /// The store of `namespace` in the same directory (shares the lock, engine and writer).
    fn with_namespace(&self, namespace: &Namespace) -> Result<Self> {
        self.db.store(namespace.as_str())
    }

    fn put(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.put_inner(key, value, ttl)
    }

    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        std::future::ready(Ok(self.mem().get(key)))
    }

    fn delete(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        self.delete_inner(key)
    }

    fn keys(&self) -> impl Future<Output = Result<Vec<K>>> + Send {
        std::future::ready(Ok(self.mem().keys()))
    }

    fn contains(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(Ok(self.mem().contains(key)))
    }

    fn take(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        self.remove(key)
    }

    fn put_new(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.put_new_inner(key, value, ttl)
    }

    fn put_many(
        &self,
        entries: Vec<(K, V)>,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send
    where
        V: 'static,
        K: 'static,
    {
        self.put_many_inner(entries, ttl)
    }

    fn delete_many(&self, keys: &[K]) -> impl Future<Output = Result<usize>> + Send {
        self.delete_many_inner(keys)
    }

    fn ttl(&self, key: &K) -> impl Future<Output = Result<Option<Expiry>>> + Send {
        std::future::ready(Ok(self.mem().ttl(key)))
    }

    fn expire(&self, key: &K, ttl: Option<Duration>) -> impl Future<Output = Result<bool>> + Send {
        self.expire_inner(key, ttl)
    }

    fn persist(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        self.expire_inner(key, None)
    }

    fn incr(&self, key: &K, delta: i64) -> impl Future<Output = Result<V>> + Send
    where
        V: Counter + Clone,
        K: std::fmt::Debug,
    {
        self.incr_inner(key, delta)
    }

    fn count(&self) -> impl Future<Output = Result<usize>> + Send {
        std::future::ready(Ok(self.mem().count()))
    }

    fn clear(&self) -> impl Future<Output = Result<usize>> + Send {
        self.clear_inner()
    }
}
