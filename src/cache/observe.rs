//! `ObservableStore`: what a store can tell a `Cache` besides its data (events, its own counters).

use std::hash::{BuildHasher, Hash};

use crate::{events::Events, memory::MemoryStore, stats::Stats};

/// Reports a store's events and removal counters to the [`Cache`](crate::Cache) over it.
///
/// A `Cache` needs its store to implement this trait, but every method has a default that
/// reports nothing, so a store without events opts in with one line:
///
/// ```
/// # struct MyStore;
/// impl<K> strata::ObservableStore<K> for MyStore {}
/// ```
///
/// With the defaults, [`Cache::subscribe`](crate::Cache::subscribe) returns
/// [`Error::Unsupported`](crate::Error::Unsupported) and the cache's `evictions` and
/// `expirations` stay at zero (the cache itself cannot see entries leave by TTL or size).
/// [`MemoryStore`] implements both methods.
pub trait ObservableStore<K> {
    /// A new subscription to the store's events, or `None` if it cannot report them.
    fn subscribe_events(&self) -> Option<Events<K>> {
        None
    }

    /// The store's own counters (the cache reads `evictions` and `expirations` from them), or
    /// `None` if it keeps none.
    fn store_stats(&self) -> Option<Stats> {
        None
    }
}

impl<K, V, S> ObservableStore<K> for MemoryStore<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    fn subscribe_events(&self) -> Option<Events<K>> {
        Some(self.subscribe())
    }

    fn store_stats(&self) -> Option<Stats> {
        Some(self.stats())
    }
}

/// Redis keeps no per-key events a client can see cheaply (keyspace notifications are off by
/// default and lossy), so a Cache over Redis counts what passes through it and no more.
#[cfg(feature = "redis")]
impl<K, V> ObservableStore<K> for crate::redis::RedisStore<K, V> {}

/// A DiskStore reports its memory tier's events (put, replace, delete, expired) and counters.
#[cfg(feature = "disk")]
impl<K, V> ObservableStore<K> for crate::disk::DiskStore<K, V>
where
    K: crate::codec::Key,
    V: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn subscribe_events(&self) -> Option<Events<K>> {
        Some(self.subscribe())
    }

    fn store_stats(&self) -> Option<Stats> {
        Some(self.stats())
    }
}

/// A GenerationalStore reports its events (including `Generation` evictions) and counters.
impl<K, V> ObservableStore<K> for crate::generational::GenerationalStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn subscribe_events(&self) -> Option<Events<K>> {
        Some(self.subscribe())
    }

    fn store_stats(&self) -> Option<Stats> {
        Some(self.stats())
    }
}
