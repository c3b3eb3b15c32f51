//! A store wrapper that parks one chosen operation until the test releases it, or fails it: the
//! tool for forcing an interleaving ("this save's index write happens after that revoke")
//! without sleeps, and for a backend that errors at a chosen call.
//!
//! ```ignore
//! let index = Pausing::new(MemoryStore::new());
//! let mut parked = index.park_next(Op::Put);
//! let save = tokio::spawn(async move { sessions.save(&record).await });
//! parked.reached().await;          // the save is now inside `put`, before it writes
//! sessions.revoke_all("ada").await?;
//! parked.release();                // let the put go on
//! ```

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use strata::{Error, Expiry, Key, Namespace, Result, Store};
use tokio::sync::oneshot;

/// The operations [`Pausing`] can park.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Put,
    Replace,
    Get,
    /// After a `get` has read the inner store, before its value is returned: the gap between
    /// a read and the write that depends on it.
    AfterGet,
    Delete,
}

struct Trap {
    op: Op,
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

/// `inner` with a trap for the next call of one operation. Forwards every method it overrides
/// (so the inner store's atomic versions are used), parking first if the trap matches.
#[derive(Clone)]
pub struct Pausing<S> {
    inner: S,
    trap: Arc<Mutex<Option<Trap>>>,
    fail: Arc<Mutex<Option<Op>>>,
}

/// A call parked in a [`Pausing`] store.
pub struct Parked {
    reached: Option<oneshot::Receiver<()>>,
    release: oneshot::Sender<()>,
}

impl Parked {
    /// Waits until the trapped call has arrived (and is waiting, before touching the store).
    pub async fn reached(&mut self) {
        if let Some(reached) = self.reached.take() {
            reached.await.expect("the pausing store dropped the trap");
        }
    }

    /// Lets the trapped call go on.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

impl<S> Pausing<S> {
    pub fn new(inner: S) -> Self {
        Pausing {
            inner,
            trap: Arc::new(Mutex::new(None)),
            fail: Arc::new(Mutex::new(None)),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Parks the next call of `op` (one call only) until [`Parked::release`].
    pub fn park_next(&self, op: Op) -> Parked {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.trap.lock().unwrap() = Some(Trap {
            op,
            reached: reached_tx,
            release: release_rx,
        });
        Parked {
            reached: Some(reached_rx),
            release: release_tx,
        }
    }

    /// Makes the next call of `op` (one call only) fail with `Error::Backend`, touching nothing.
    pub fn fail_next(&self, op: Op) {
        *self.fail.lock().unwrap() = Some(op);
    }

    async fn checkpoint(&self, op: Op) -> Result<()> {
        let fail = {
            let mut slot = self.fail.lock().unwrap();
            if *slot == Some(op) {
                slot.take()
            } else {
                None
            }
        };
        if fail.is_some() {
            return Err(Error::backend(
                "an injected fault",
                format!("{op:?} failed"),
            ));
        }
        let trap = {
            let mut slot = self.trap.lock().unwrap();
            match slot.as_ref() {
                Some(t) if t.op == op => slot.take(),
                _ => None,
            }
        };
        if let Some(trap) = trap {
            let _ = trap.reached.send(());
            let _ = trap.release.await;
        }
        Ok(())
    }
}

impl<K, V, S> Store<K, V> for Pausing<S>
where
    S: Store<K, V>,
    K: Clone + Send + Sync,
    V: Send + Sync,
{
    async fn put(&self, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        self.checkpoint(Op::Put).await?;
        self.inner.put(key, value, ttl).await
    }

    async fn get(&self, key: &K) -> Result<Option<V>> {
        self.checkpoint(Op::Get).await?;
        let value = self.inner.get(key).await?;
        self.checkpoint(Op::AfterGet).await?;
        Ok(value)
    }

    async fn delete(&self, key: &K) -> Result<bool> {
        self.checkpoint(Op::Delete).await?;
        self.inner.delete(key).await
    }

    fn keys(&self) -> impl Future<Output = Result<Vec<K>>> + Send {
        self.inner.keys()
    }

    async fn replace(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        self.checkpoint(Op::Replace).await?;
        self.inner.replace(key, value, ttl).await
    }

    fn put_new(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.inner.put_new(key, value, ttl)
    }

    fn compare_and_set(
        &self,
        key: K,
        expected: Option<V>,
        new: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send
    where
        V: PartialEq,
    {
        self.inner.compare_and_set(key, expected, new, ttl)
    }

    async fn take(&self, key: &K) -> Result<Option<V>> {
        self.checkpoint(Op::Delete).await?;
        self.inner.take(key).await
    }

    fn get_many(&self, keys: &[K]) -> impl Future<Output = Result<Vec<Option<V>>>> + Send {
        self.inner.get_many(keys)
    }

    fn delete_many(&self, keys: &[K]) -> impl Future<Output = Result<usize>> + Send {
        self.inner.delete_many(keys)
    }

    fn ttl(&self, key: &K) -> impl Future<Output = Result<Option<Expiry>>> + Send {
        self.inner.ttl(key)
    }

    fn keys_with_prefix(&self, prefix: &str) -> impl Future<Output = Result<Vec<K>>> + Send
    where
        K: Key,
    {
        self.inner.keys_with_prefix(prefix)
    }

    fn namespace(&self) -> Namespace {
        self.inner.namespace()
    }
}
