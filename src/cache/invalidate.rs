//! The writer's side of "writes during a load win" (see `fetch.rs`): before a cache write or
//! delete reaches the store, it marks the key's in-flight load as overtaken, then waits out a
//! leader that is committing at that moment.
//!
//! Why that is enough: a leader checks the mark and writes its value while holding the key's
//! commit lock. A leader that checks after our mark does not commit. A leader that checked
//! before our mark holds the lock until its commit has landed, and we take (and release) that
//! lock after marking, so our store write lands after its commit. No lock is held across our
//! own store write.

use std::{fmt::Debug, hash::Hash, sync::atomic::Ordering};

use super::cache::Cache;
use crate::store::Store;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    /// Marks a load of `key` in flight as overtaken; call before the store write. With no
    /// load in flight anywhere this is one atomic read (a load registered after it began
    /// started after the caller changed its data source, so it reads the new data).
    pub(super) async fn overtake_load(&self, key: &K) {
        if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
            return;
        }
        let marked = {
            let flights = self.inner.flights.lock();
            let flight = flights.get(key);
            flight
                .map(|f| f.stale.store(true, Ordering::SeqCst))
                .is_some()
        };
        if marked {
            drop(self.inner.commit_locks.lock(key).await);
        }
    }

    /// [`overtake_load`](Self::overtake_load) for each of `keys`.
    pub(super) async fn overtake_loads<'k>(&self, keys: impl Iterator<Item = &'k K>)
    where
        K: 'k,
    {
        for key in keys {
            self.overtake_load(key).await;
        }
    }

    /// Marks every load in flight as overtaken and waits out every committing leader (`clear`).
    pub(super) async fn overtake_all_loads(&self) {
        if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
            return;
        }
        for flight in self.inner.flights.lock().values() {
            flight.stale.store(true, Ordering::SeqCst);
        }
        drop(self.inner.commit_locks.lock_all().await);
    }
}
