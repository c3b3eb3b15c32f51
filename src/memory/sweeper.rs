//! The background sweeper: one thread per store, parked until the earliest deadline. The
//! schedule and its wake-up protocol are shared with the disk store's compact tier
//! (`crate::sweeper`); a round here purges what the deadline index says is due and rests not
//! at all.

use std::{
    hash::{BuildHasher, Hash},
    sync::Arc,
};

use super::store::{Inner, MemoryStore};
use crate::{
    sweeper::{self, Round, Schedule, Swept},
    time::Clock,
};

impl<K, V, S> MemoryStore<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Makes sure the sweeper wakes by `deadline` (0 = no deadline: nothing to do).
    #[inline]
    pub(super) fn wake_sweeper_for(&self, deadline: u64) {
        let inner = &self.inner;
        inner.schedule.wake_for(deadline, || {
            sweeper::start(inner.me.clone(), &inner.clock, "store")
        });
    }
}

impl<K, V, S> Swept for Inner<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn clock(&self) -> &Clock {
        &self.clock
    }

    fn sweep(this: &Arc<Self>, _now: u64) -> Round {
        let store = MemoryStore {
            inner: this.clone(),
        };
        store.purge_expired();
        Round {
            next: store.next_deadline(),
            rest_ms: 0,
        }
    }
}
