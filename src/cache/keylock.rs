//! Striped async locks that serialize read-modify-write calls on one key inside a `Cache`.
//!
//! 64 stripes: two keys may share a stripe (and wait for each other briefly), but one key always
//! maps to the same stripe, which is all `get_and_update` needs to be atomic per key.

use std::hash::{BuildHasher, Hash};

use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 64;

pub(crate) struct KeyLocks {
    stripes: Box<[Mutex<()>]>,
    hasher: foldhash::fast::RandomState,
}

impl KeyLocks {
    pub(crate) fn new() -> Self {
        KeyLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Waits for the lock of `key`'s stripe.
    pub(crate) async fn lock<K: Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, ()> {
        self.stripes[self.stripe(key)].lock().await
    }

    /// The stripe `key` maps to.
    pub(crate) fn stripe<K: Hash + ?Sized>(&self, key: &K) -> usize {
        self.hasher.hash_one(key) as usize % STRIPES
    }

    /// Waits for the stripes of every key in `keys`, each once, in stripe order (so two callers
    /// cannot deadlock on each other's stripes). Returns the guards and the stripes they hold,
    /// sorted.
    pub(crate) async fn lock_keys<K: Hash>(
        &self,
        keys: &[K],
    ) -> (Vec<MutexGuard<'_, ()>>, Vec<usize>) {
        let mut held: Vec<usize> = keys.iter().map(|k| self.stripe(k)).collect();
        held.sort_unstable();
        held.dedup();
        let mut guards = Vec::with_capacity(held.len());
        for &stripe in &held {
            guards.push(self.stripes[stripe].lock().await);
        }
        (guards, held)
    }

    /// Waits for every stripe, in stripe order (so two callers of `lock_all` cannot deadlock,
    /// and a holder of one stripe never waits for another).
    pub(crate) async fn lock_all(&self) -> Vec<MutexGuard<'_, ()>> {
        let mut guards = Vec::with_capacity(STRIPES);
        for stripe in self.stripes.iter() {
            guards.push(stripe.lock().await);
        }
        guards
    }
}
