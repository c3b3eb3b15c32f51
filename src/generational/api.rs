//! The async [`Store`] impl of `GenerationalStore`, over its sync methods.

use std::{
    future::{ready, Future},
    hash::Hash,
    time::Duration,
};

use super::store::GenerationalStore;
use crate::{error::Result, namespace::Namespace, store::Store};

impl<K, V> Store<K, V> for GenerationalStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static,
    V: Clone + Send + Sync + 'static,
{
    crate::local::sync_store_methods!(GenerationalStore);

    fn namespace(&self) -> Namespace {
        GenerationalStore::namespace(self).clone()
    }

    /// A new, empty GenerationalStore with the same options: in memory, each store is its own
    /// namespace.
    fn with_namespace(&self, namespace: &Namespace) -> Result<Self> {
        Ok(self.sibling(namespace.clone()))
    }

    fn install_eviction_listener(&self, listener: crate::EvictionListener<K, V>) -> Result<()> {
        self.install_listener(listener)
    }

    fn with_time_to_idle(&self, idle: Duration) -> Result<Self> {
        self.with_idle(idle)
    }

    fn touch(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        ready(Ok(GenerationalStore::touch(self, key)))
    }

    fn replace(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        ready(GenerationalStore::replace(self, &key, value, ttl))
    }
}
