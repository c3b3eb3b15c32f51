//! The async [`Store`] impl of `GenerationalStore`, over its sync methods.

use std::{
    future::{ready, Future},
    hash::Hash,
    time::Duration,
};

use super::store::GenerationalStore;
use crate::{
    error::Result,
    namespace::Namespace,
    store::{Counter, Expiry, Store},
};

impl<K, V> Store<K, V> for GenerationalStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn subscribe_events(&self) -> Option<crate::Events<K>> {
        Some(self.subscribe())
    }

    fn store_stats(&self) -> Option<crate::Stats> {
        Some(self.stats())
    }

    fn namespace(&self) -> Namespace {
        GenerationalStore::namespace(self).clone()
    }

    /// A new, empty GenerationalStore with the same options: in memory, each store is its own
    /// namespace.
    fn with_namespace(&self, namespace: &Namespace) -> Result<Self> {
        Ok(self.sibling(namespace.clone()))
    }

    fn put(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send {
        ready(GenerationalStore::put(self, key, value, ttl))
    }

    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        ready(Ok(GenerationalStore::get(self, key)))
    }

    fn delete(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        ready(Ok(GenerationalStore::delete(self, key)))
    }

    fn keys(&self) -> impl Future<Output = Result<Vec<K>>> + Send {
        ready(Ok(GenerationalStore::keys(self)))
    }

    fn contains(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        ready(Ok(GenerationalStore::contains(self, key)))
    }

    fn take(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        ready(Ok(GenerationalStore::take(self, key)))
    }

    fn put_new(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        ready(GenerationalStore::put_new(self, key, value, ttl))
    }

    fn ttl(&self, key: &K) -> impl Future<Output = Result<Option<Expiry>>> + Send {
        ready(Ok(GenerationalStore::ttl(self, key)))
    }

    fn expire(&self, key: &K, ttl: Option<Duration>) -> impl Future<Output = Result<bool>> + Send {
        ready(GenerationalStore::expire(self, key, ttl))
    }

    fn persist(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        ready(Ok(GenerationalStore::persist(self, key)))
    }

    fn touch(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        ready(Ok(GenerationalStore::touch(self, key)))
    }

    fn incr_with_ttl(
        &self,
        key: &K,
        delta: i64,
        ttl_if_new: Option<Duration>,
    ) -> impl Future<Output = Result<V>> + Send
    where
        V: Counter + Clone,
        K: std::fmt::Debug,
    {
        ready(GenerationalStore::incr_with_ttl(
            self, key, delta, ttl_if_new,
        ))
    }

    fn replace(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        ready(GenerationalStore::replace(self, &key, value, ttl))
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
        ready(GenerationalStore::compare_and_set(
            self, key, expected, new, ttl,
        ))
    }

    fn keys_with_prefix(&self, prefix: &str) -> impl Future<Output = Result<Vec<K>>> + Send
    where
        K: crate::codec::Key,
    {
        ready(Ok(GenerationalStore::keys_with_prefix(self, prefix)))
    }

    fn count(&self) -> impl Future<Output = Result<usize>> + Send {
        ready(Ok(GenerationalStore::count(self)))
    }

    fn clear(&self) -> impl Future<Output = Result<usize>> + Send {
        ready(Ok(GenerationalStore::clear(self)))
    }
}
