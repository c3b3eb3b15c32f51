//! A `Cache` is itself a `Store`, so anything written against the `Store` contract (the
//! tower-sessions adapter, a `ReplicatedStore` tier, your own code) can run through a Cache and
//! get its namespace, default TTL, stats and events.

use std::{fmt::Debug, future::Future, hash::Hash, time::Duration};

use super::cache::Cache;
use crate::{
    error::Result,
    store::{Counter, Expiry, Store},
};

impl<K, V, S> Store<K, V> for Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    /// Writes through the cache: `None` means the cache's default TTL (as in [`Cache::put`]).
    fn put(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send {
        Cache::put(self, key, value, ttl)
    }

    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        Cache::get(self, key)
    }

    fn get_now(&self, key: &K) -> Option<Result<Option<V>>> {
        Cache::get_now(self, key)
    }

    fn delete(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        Cache::delete(self, key)
    }

    fn keys(&self) -> impl Future<Output = Result<Vec<K>>> + Send {
        Cache::keys(self)
    }

    fn contains(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        Cache::contains(self, key)
    }

    fn take(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        Cache::take(self, key)
    }

    fn put_new(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        Cache::put_new(self, key, value, ttl)
    }

    fn get_many(&self, keys: &[K]) -> impl Future<Output = Result<Vec<Option<V>>>> + Send {
        Cache::get_many(self, keys)
    }

    fn delete_many(&self, keys: &[K]) -> impl Future<Output = Result<usize>> + Send {
        Cache::delete_many(self, keys)
    }

    fn ttl(&self, key: &K) -> impl Future<Output = Result<Option<Expiry>>> + Send {
        Cache::ttl(self, key)
    }

    fn expire(&self, key: &K, ttl: Option<Duration>) -> impl Future<Output = Result<bool>> + Send {
        Cache::expire(self, key, ttl)
    }

    fn persist(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        Cache::persist(self, key)
    }

    fn touch(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        Cache::touch(self, key)
    }

    fn incr(&self, key: &K, delta: i64) -> impl Future<Output = Result<V>> + Send
    where
        V: Counter + Clone,
        K: Debug,
    {
        Cache::incr(self, key, delta)
    }

    fn incr_with_ttl(
        &self,
        key: &K,
        delta: i64,
        ttl_if_new: Option<Duration>,
    ) -> impl Future<Output = Result<V>> + Send
    where
        V: Counter + Clone,
        K: Debug,
    {
        Cache::incr_with_ttl(self, key, delta, ttl_if_new)
    }

    fn replace(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        Cache::replace(self, key, value, ttl)
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
        Cache::compare_and_set(self, key, expected, new, ttl)
    }

    fn keys_with_prefix(&self, prefix: &str) -> impl Future<Output = Result<Vec<K>>> + Send
    where
        K: crate::codec::Key,
    {
        Cache::keys_with_prefix(self, prefix)
    }

    fn count(&self) -> impl Future<Output = Result<usize>> + Send {
        Cache::len(self)
    }

    fn clear(&self) -> impl Future<Output = Result<usize>> + Send {
        Cache::clear(self)
    }

    fn namespace(&self) -> crate::Namespace {
        Cache::namespace(self).clone()
    }
}
