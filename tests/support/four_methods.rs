//! A store with only the four required `Store` methods, over a MemoryStore: it has none of the
//! capabilities a store declares (eviction listener, `time_to_idle`, events, stats), so a
//! `Cache` must refuse to build over it with those options. (`FaultStore` forwards them to
//! the store it wraps, so it cannot stand in for a store without them.)

use std::{future::Future, hash::Hash, time::Duration};

use strata::{MemoryStore, Result, Store};

pub struct FourMethods<K, V>(pub MemoryStore<K, V>);

impl<K, V> Store<K, V> for FourMethods<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn put(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(self.0.put(key, value, ttl))
    }

    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        std::future::ready(Ok(self.0.get(key)))
    }

    fn delete(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(Ok(self.0.delete(key)))
    }

    fn keys(&self) -> impl Future<Output = Result<Vec<K>>> + Send {
        std::future::ready(Ok(self.0.keys()))
    }
}
