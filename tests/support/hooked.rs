//! `Hooked`: a store wrapper that runs a test's hook right after the next store call returns,
//! to pin a race between two calls of one operation (e.g. an entry expiring between a check and
//! a write). Reusable by any test; it forwards every method it overrides to the inner store.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use strata::{Counter, Expiry, Result, Store};

type Hook = Box<dyn FnOnce() + Send>;

/// Wraps a store; see the module docs.
#[derive(Clone)]
pub struct Hooked<S> {
    inner: S,
    hook: Arc<Mutex<Option<Hook>>>,
}

impl<S> Hooked<S> {
    pub fn new(inner: S) -> Self {
        Hooked {
            inner,
            hook: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `hook` once, right after the next store call through this wrapper returns.
    pub fn after_next_call(&self, hook: impl FnOnce() + Send + 'static) {
        *self.hook.lock().unwrap() = Some(Box::new(hook));
    }

    async fn call<T>(&self, call: impl Future<Output = T>) -> T {
        let out = call.await;
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        out
    }
}

impl<K, V, S> Store<K, V> for Hooked<S>
where
    K: Clone + Send + Sync + std::fmt::Debug,
    V: Send + Sync,
    S: Store<K, V>,
{
    async fn put(&self, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        self.call(self.inner.put(key, value, ttl)).await
    }
    async fn get(&self, key: &K) -> Result<Option<V>> {
        self.call(self.inner.get(key)).await
    }
    async fn delete(&self, key: &K) -> Result<bool> {
        self.call(self.inner.delete(key)).await
    }
    async fn keys(&self) -> Result<Vec<K>> {
        self.call(self.inner.keys()).await
    }
    async fn contains(&self, key: &K) -> Result<bool> {
        self.call(self.inner.contains(key)).await
    }
    async fn ttl(&self, key: &K) -> Result<Option<Expiry>> {
        self.call(self.inner.ttl(key)).await
    }
    async fn expire(&self, key: &K, ttl: Option<Duration>) -> Result<bool> {
        self.call(self.inner.expire(key, ttl)).await
    }
    async fn incr(&self, key: &K, delta: i64) -> Result<V>
    where
        V: Counter + Clone,
    {
        self.call(self.inner.incr(key, delta)).await
    }
    async fn incr_with_ttl(&self, key: &K, delta: i64, ttl_if_new: Option<Duration>) -> Result<V>
    where
        V: Counter + Clone,
    {
        self.call(self.inner.incr_with_ttl(key, delta, ttl_if_new))
            .await
    }
}
