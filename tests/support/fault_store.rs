//! `FaultStore`: the one fault-injecting store wrapper of the test suite. It forwards every
//! method it overrides to the inner store (so the inner store's atomic versions are used) and,
//! at a chosen call of a chosen operation, can
//! - park the call before it touches the store, or after it returned from it (the gap between a
//!   read and the write that depends on it), until the test releases it ([`FaultStore::park`]),
//! - fail the call with `Error::Backend`, touching nothing ([`FaultStore::fail_nth`]),
//! - run a one-shot hook right before or right after it ([`FaultStore::arm`]),
//!
//! so a test pins an interleaving ("this save's index write lands after that revoke", "the key
//! expires right here") without sleeping. It never answers `Store::get_now` (the default
//! `None`), so a `Cache` over it always reads through the awaited `get`: the slow read path.
//!
//! ```ignore
//! let index = FaultStore::new(MemoryStore::new());
//! let mut parked = index.park_next(Op::Put);
//! let save = tokio::spawn(async move { sessions.save(&record).await });
//! parked.reached().await;          // the save is now inside `put`, before it writes
//! sessions.revoke_all("ada").await?;
//! parked.release();                // let the put go on
//! ```

use std::{
    fmt::Debug,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use strata::{Counter, Error, Events, Expiry, Key, Namespace, Result, Stats, Store};
use tokio::sync::oneshot;

/// The operations a [`FaultStore`] can park, fail or hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Put,
    PutNew,
    Replace,
    Get,
    GetMany,
    Contains,
    Delete,
    DeleteMany,
    Take,
    Keys,
    KeysWithPrefix,
    Ttl,
    Expire,
    Incr,
    IncrWithTtl,
    CompareAndSet,
}

/// Where a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// Before the operation reaches the inner store.
    Before(Op),
    /// After the operation has returned from the inner store.
    After(Op),
}

type Hook = Box<dyn FnOnce() + Send>;

/// A parked call's two ends: it says it arrived, then waits for the release.
struct Trap {
    at: At,
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// What is armed: at most one trap, failures by operation (calls still to let through before
/// failing one), and hooks with the points each may fire at.
#[derive(Default)]
struct Armed {
    trap: Option<Trap>,
    failures: Vec<(Op, usize)>,
    hooks: Vec<(Vec<At>, Hook)>,
}

/// Wraps a store; see the module docs. Clones share what is armed.
#[derive(Clone)]
pub struct FaultStore<S> {
    inner: S,
    armed: Arc<Mutex<Armed>>,
}

/// A call parked in a [`FaultStore`].
pub struct Parked {
    reached: Option<oneshot::Receiver<()>>,
    release: oneshot::Sender<()>,
}

impl Parked {
    /// Waits until the trapped call has arrived (and is waiting, before touching the store).
    pub async fn reached(&mut self) {
        if let Some(reached) = self.reached.take() {
            reached.await.expect("the fault store dropped the trap");
        }
    }

    /// Lets the trapped call go on.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

impl<S> FaultStore<S> {
    pub fn new(inner: S) -> Self {
        FaultStore {
            inner,
            armed: Arc::default(),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Parks the next call of `op` before it touches the store ([`park`](Self::park) at
    /// `At::Before(op)`).
    pub fn park_next(&self, op: Op) -> Parked {
        self.park(At::Before(op))
    }

    /// Parks the next call that reaches `at` (one call only) until [`Parked::release`].
    pub fn park(&self, at: At) -> Parked {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        self.armed.lock().unwrap().trap = Some(Trap {
            at,
            reached: reached_tx,
            release: release_rx,
        });
        Parked {
            reached: Some(reached_rx),
            release: release_tx,
        }
    }

    /// Makes the `n`th next call of `op` (1: the next one) fail with `Error::Backend`,
    /// touching nothing; the calls before it go through.
    pub fn fail_nth(&self, op: Op, n: usize) {
        assert!(n >= 1, "calls are counted from 1");
        self.armed.lock().unwrap().failures.push((op, n - 1));
    }

    /// Makes the next call of `op` fail ([`fail_nth`](Self::fail_nth) with 1).
    pub fn fail_next(&self, op: Op) {
        self.fail_nth(op, 1);
    }

    /// Runs `hook` once, at the first of `points` reached.
    pub fn arm(&self, points: &[At], hook: impl FnOnce() + Send + 'static) {
        let hook: Hook = Box::new(hook);
        self.armed
            .lock()
            .unwrap()
            .hooks
            .push((points.to_vec(), hook));
    }

    /// True while some hook has not fired.
    pub fn armed(&self) -> bool {
        !self.armed.lock().unwrap().hooks.is_empty()
    }

    /// Runs the hooks due at `at`, outside the lock (a hook may arm another).
    fn fire(&self, at: At) {
        let due: Vec<Hook> = {
            let hooks = &mut self.armed.lock().unwrap().hooks;
            let (due, keep) = hooks
                .drain(..)
                .partition(|(points, _)| points.contains(&at));
            *hooks = keep;
            due.into_iter().map(|(_, hook)| hook).collect()
        };
        due.into_iter().for_each(|hook| hook());
    }

    /// True if this call of `op` is the one armed to fail (counting it down otherwise).
    fn fails(&self, op: Op) -> bool {
        let failures = &mut self.armed.lock().unwrap().failures;
        let Some(i) = failures.iter().position(|(o, _)| *o == op) else {
            return false;
        };
        match failures[i].1 {
            0 => {
                failures.remove(i);
                true
            }
            ref mut left => {
                *left -= 1;
                false
            }
        }
    }

    /// Waits here if the trap is set at `at`, then runs the hooks due at `at`.
    async fn reach(&self, at: At) {
        let trap = {
            let slot = &mut self.armed.lock().unwrap().trap;
            match slot {
                Some(t) if t.at == at => slot.take(),
                _ => None,
            }
        };
        if let Some(trap) = trap {
            let _ = trap.reached.send(());
            let _ = trap.release.await;
        }
        self.fire(at);
    }

    /// One call of `op`: fail, park or hook as armed, then run it. `call` builds the inner
    /// store's future only after the `Before` point (the in-memory stores do their work when
    /// the future is built, not when it is polled).
    async fn around<T, F>(&self, op: Op, call: impl FnOnce() -> F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        if self.fails(op) {
            return Err(Error::backend(
                "an injected fault",
                format!("{op:?} failed"),
            ));
        }
        self.reach(At::Before(op)).await;
        let out = call().await;
        self.reach(At::After(op)).await;
        out
    }
}

impl<K, V, S> Store<K, V> for FaultStore<S>
where
    S: Store<K, V>,
    K: Clone + Send + Sync,
    V: Send + Sync,
{
    async fn put(&self, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        self.around(Op::Put, || self.inner.put(key, value, ttl))
            .await
    }

    async fn put_new(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        self.around(Op::PutNew, || self.inner.put_new(key, value, ttl))
            .await
    }

    async fn replace(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        self.around(Op::Replace, || self.inner.replace(key, value, ttl))
            .await
    }

    async fn get(&self, key: &K) -> Result<Option<V>> {
        self.around(Op::Get, || self.inner.get(key)).await
    }

    async fn get_many(&self, keys: &[K]) -> Result<Vec<Option<V>>> {
        self.around(Op::GetMany, || self.inner.get_many(keys)).await
    }

    async fn contains(&self, key: &K) -> Result<bool> {
        self.around(Op::Contains, || self.inner.contains(key)).await
    }

    async fn delete(&self, key: &K) -> Result<bool> {
        self.around(Op::Delete, || self.inner.delete(key)).await
    }

    async fn delete_many(&self, keys: &[K]) -> Result<usize> {
        self.around(Op::DeleteMany, || self.inner.delete_many(keys))
            .await
    }

    async fn take(&self, key: &K) -> Result<Option<V>> {
        self.around(Op::Take, || self.inner.take(key)).await
    }

    async fn keys(&self) -> Result<Vec<K>> {
        self.around(Op::Keys, || self.inner.keys()).await
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<K>>
    where
        K: Key,
    {
        let call = || self.inner.keys_with_prefix(prefix);
        self.around(Op::KeysWithPrefix, call).await
    }

    async fn ttl(&self, key: &K) -> Result<Option<Expiry>> {
        self.around(Op::Ttl, || self.inner.ttl(key)).await
    }

    async fn expire(&self, key: &K, ttl: Option<Duration>) -> Result<bool> {
        self.around(Op::Expire, || self.inner.expire(key, ttl))
            .await
    }

    async fn incr(&self, key: &K, delta: i64) -> Result<V>
    where
        V: Counter + Clone,
        K: Debug,
    {
        self.around(Op::Incr, || self.inner.incr(key, delta)).await
    }

    async fn incr_with_ttl(&self, key: &K, delta: i64, ttl_if_new: Option<Duration>) -> Result<V>
    where
        V: Counter + Clone,
        K: Debug,
    {
        let call = || self.inner.incr_with_ttl(key, delta, ttl_if_new);
        self.around(Op::IncrWithTtl, call).await
    }

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
        let call = || self.inner.compare_and_set(key, expected, new, ttl);
        self.around(Op::CompareAndSet, call).await
    }

    fn subscribe_events(&self) -> Option<Events<K>> {
        self.inner.subscribe_events()
    }

    fn store_stats(&self) -> Option<Stats> {
        self.inner.store_stats()
    }

    fn namespace(&self) -> Namespace {
        self.inner.namespace()
    }

    fn install_eviction_listener(&self, listener: strata::EvictionListener<K, V>) -> Result<()> {
        self.inner.install_eviction_listener(listener)
    }

    /// The inner store with `time_to_idle`, still wrapped (and sharing what is armed).
    fn with_time_to_idle(&self, idle: Duration) -> Result<Self> {
        Ok(FaultStore {
            inner: self.inner.with_time_to_idle(idle)?,
            armed: self.armed.clone(),
        })
    }
}
