//! `Cache::transaction` (Cachex `transaction/3`): run a block of cache operations with a set of
//! keys locked against other transactions and against `update`, `get_and_update` and `incr` on
//! the same keys.
//!
//! The locks are the cache's striped key locks (`keylock.rs`), taken in stripe order so two
//! transactions never deadlock. They are held by the `transaction` call itself, so they are
//! released however the block ends: `Ok`, `Err`, a panic (the task unwinds and drops the call)
//! or cancellation (the call's future is dropped). Inside the block, the [`Transaction`] handle
//! reads and writes without taking the locks it already holds.
//!
//! Like every `Cache` lock, this serialises callers of this `Cache` value (and its clones); a
//! plain `put` on the cache, a write straight to the store or another process is not locked out.

use std::{
    fmt::Debug,
    future::Future,
    hash::Hash,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use super::cache::{Cache, Update};
use crate::{
    error::{Error, Result},
    store::{Counter, Store},
};

/// The handle a [`Cache::transaction`] block works through. Cheap to clone; usable only until the
/// `transaction` call returns (later calls fail with [`Error::TransactionEnded`]).
pub struct Transaction<K, V, S> {
    cache: Cache<K, V, S>,
    /// The lock stripes this transaction holds, sorted.
    held: Arc<[usize]>,
    open: Arc<AtomicBool>,
}

impl<K, V, S> Clone for Transaction<K, V, S> {
    fn clone(&self) -> Self {
        Transaction {
            cache: self.cache.clone(),
            held: self.held.clone(),
            open: self.open.clone(),
        }
    }
}

impl<K, V, S> Debug for Transaction<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("stripes", &self.held.len())
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Marks the transaction ended when the `transaction` call returns or is dropped.
struct EndOnDrop(Arc<AtomicBool>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    /// Runs `block` with `keys` locked (Cachex `transaction/3`): other transactions on any of
    /// these keys, and `update`, `get_and_update`, `incr`/`decr` on them, wait until it ends.
    /// Returns what `block` returns. The locks are released when the call ends, whether `block`
    /// returns `Ok`, returns `Err`, panics, or the call is cancelled.
    ///
    /// The locks live in this `Cache` value (shared by its clones), whatever the store: over
    /// Redis, a transaction in another process, a plain `put` or a write made straight to the
    /// store is not locked out.
    ///
    /// `block` receives a [`Transaction`] to read and write through; use it (not the cache) inside
    /// the block, since the cache's own `update` on a locked key would wait for this transaction.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{Cache, MemoryStore};
    ///
    /// let cache = Cache::builder().store(MemoryStore::<String, i64>::new()).build().await?;
    /// cache.put("alice".into(), 100, None).await?;
    /// cache.put("bob".into(), 0, None).await?;
    /// // Move 30 from alice to bob: no other transaction sees one side without the other.
    /// let (alice, bob) = ("alice".to_string(), "bob".to_string());
    /// let moved = cache
    ///     .transaction(&[alice.clone(), bob.clone()], |tx| async move {
    ///         let from = tx.get(&alice).await?.unwrap_or(0);
    ///         if from < 30 {
    ///             return Ok(false);
    ///         }
    ///         tx.put(alice, from - 30, None).await?;
    ///         tx.incr(&bob, 30).await?;
    ///         Ok(true)
    ///     })
    ///     .await?;
    /// assert!(moved);
    /// assert_eq!(cache.get(&"bob".into()).await?, Some(30));
    /// # Ok(()) }
    /// ```
    pub async fn transaction<T, F, Fut>(&self, keys: &[K], block: F) -> Result<T>
    where
        F: FnOnce(Transaction<K, V, S>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let (_guards, held) = self.inner.locks.lock_keys(keys).await;
        let open = Arc::new(AtomicBool::new(true));
        let _end = EndOnDrop(open.clone());
        let tx = Transaction {
            cache: self.clone(),
            held: held.into(),
            open,
        };
        block(tx).await
    }
}

impl<K, V, S> Transaction<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    /// The live value under `key` (counted as a hit or a miss, as [`Cache::get`]).
    pub async fn get(&self, key: &K) -> Result<Option<V>> {
        self.ensure_open()?;
        self.cache.get(key).await
    }

    /// Writes `value` under `key` (`None`: the cache's default TTL), as [`Cache::put`].
    pub async fn put(&self, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        self.ensure_open()?;
        self.cache.put(key, value, ttl).await
    }

    /// Deletes `key`; true if a live entry was removed, as [`Cache::delete`].
    pub async fn delete(&self, key: &K) -> Result<bool> {
        self.ensure_open()?;
        self.cache.delete(key).await
    }

    /// Reads `key`, lets `f` decide, writes the result, as [`Cache::get_and_update`]; without
    /// waiting for a lock this transaction holds.
    pub async fn get_and_update<F>(&self, key: &K, f: F) -> Result<Option<V>>
    where
        F: FnOnce(Option<V>) -> Update<V> + Send,
    {
        self.ensure_open()?;
        match self.holds(key) {
            true => self.cache.update_under_lock(key, f).await,
            false => self.cache.get_and_update(key, f).await,
        }
    }

    /// Adds `delta` to the counter under `key`, as [`Cache::incr`]; without waiting for a lock
    /// this transaction holds.
    pub async fn incr(&self, key: &K, delta: i64) -> Result<V>
    where
        V: Counter,
    {
        self.ensure_open()?;
        match self.holds(key) {
            true => self.cache.incr_under_lock(key, delta, None).await,
            false => self.cache.incr(key, delta).await,
        }
    }

    /// True if this transaction holds the lock stripe of `key`.
    fn holds(&self, key: &K) -> bool {
        let stripe = self.cache.inner.locks.stripe(key);
        self.held.binary_search(&stripe).is_ok()
    }

    fn ensure_open(&self) -> Result<()> {
        match self.open.load(Ordering::Acquire) {
            true => Ok(()),
            false => Err(Error::TransactionEnded),
        }
    }
}
