//! The bounded all-in-memory mode (`DiskBuilder::max_capacity`): the memory tier is a bounded
//! [`MemoryStore`] (S3-FIFO), and every entry it evicts for size is deleted on disk too, so an
//! evicted entry is gone after a restart as well.
//!
//! The memory tier's listener only records the evicted key (it runs under a write's stripe
//! lock, or on the writer thread, where nothing may wait). The write call that caused the
//! eviction then *settles* it once its own stripes are free: under the evicted key's stripe
//! lock, which every writer of that key holds while it queues its op and applies it to memory,
//! it queues the delete only if memory still has no live entry. A put of the same key after the
//! eviction is therefore either already in memory (no delete: its record stays on disk) or
//! queued after the delete (test `a_put_after_an_eviction_is_not_deleted_by_it`). A delete
//! that never got queued (a cancelled call, a failed store) leaves the record on disk over the
//! limit; the next open loads it into the bounded tier, which evicts again and deletes it.

use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::{db::Stripes, engine::Op, idle::IdleHook, store::DiskStore, writer::Ops};
use crate::{
    codec::Key, events::RemovalCause, listener::EvictionListener, memory::MemoryStore, Error,
    Result,
};

/// Keys the memory tier evicted for size whose delete on disk is not queued yet.
pub(super) type Evicted<K> = Arc<Mutex<Vec<K>>>;

/// The user's eviction listener in this mode, installed later than the tier's own.
pub(super) type Forward<K, V> = Arc<OnceLock<EvictionListener<K, V>>>;

/// Makes `mem` record the keys it evicts for size (before anything is loaded into it) and, with
/// `idle` (`time_to_idle`), the keys it expires, handing those to the idle settler
/// (`disk::idle`); and hand every removal to the user's listener once one is installed (the
/// tier has one slot). A key is recorded and the settler poked before the user's listener
/// hears of the removal.
pub(super) fn record_evictions<K, V>(
    mem: &MemoryStore<K, V>,
    idle: Option<(IdleHook, Arc<[u8]>)>,
) -> Result<(Evicted<K>, Forward<K, V>)>
where
    K: Key,
    V: Clone + Send + Sync + 'static,
{
    let evicted: Evicted<K> = Arc::default();
    let forward: Forward<K, V> = Arc::default();
    let (sink, user, weak) = (evicted.clone(), forward.clone(), mem.downgrade());
    mem.install_listener(Arc::new(move |key: K, value, cause| {
        match (cause, &idle) {
            (RemovalCause::Size, _) => sink.lock().push(key.clone()),
            (RemovalCause::Expired, Some((hook, prefix))) => {
                let was_empty = {
                    let mut list = sink.lock();
                    list.push(key.clone());
                    list.len() == 1
                };
                // A list that was not empty has a settle under way or queued: it drains it.
                if was_empty {
                    hook.poke(weak.clone(), sink.clone(), prefix.clone());
                }
            }
            _ => {}
        }
        if let Some(user) = user.get() {
            user(key, value, cause);
        }
    }))?;
    Ok((evicted, forward))
}

/// The deletes for the keys evicted while a namespace was loading (nothing else runs yet).
pub(super) fn evicted_at_load<K: Key, V>(
    mem: &MemoryStore<K, V>,
    evicted: &Evicted<K>,
    prefix: &[u8],
) -> Vec<Op>
where
    V: Clone + Send + Sync + 'static,
{
    let keys = std::mem::take(&mut *evicted.lock());
    keys.into_iter()
        .filter(|key| !mem.contains(key))
        .map(|key| Op::Delete {
            key: key.namespaced(prefix),
        })
        .collect()
}

impl<K, V> DiskStore<K, V>
where
    K: Key,
    V: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Queues the disk delete of every key the memory tier evicted (see the module docs). Call
    /// it with no stripe held. A failure to queue means the store is unavailable, which the
    /// next call reports; the records stay on disk until the next open evicts them again.
    pub(super) async fn settle_evictions(&self) {
        let Some(evicted) = self.evicted() else {
            return;
        };
        loop {
            let Some(key) = evicted.lock().pop() else {
                return;
            };
            let dk = self.disk_key(&key);
            let _held = self.db.lock_here(Stripes::of(&dk)).await;
            if self.mem().contains(&key) {
                continue;
            }
            let delete = Ops::One(Op::Delete { key: dk });
            if self.db.inner.writer.submit(delete, false, None).is_err() {
                return;
            }
        }
    }
}

impl<K, V> DiskStore<K, V>
where
    K: Key,
    V: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// `Store::install_eviction_listener`: the memory tier holds every live entry (unless
    /// larger than memory), so its removals are the store's.
    pub(super) fn install_listener(&self, listener: EvictionListener<K, V>) -> Result<()> {
        self.check_current()?;
        if self.db.larger_than_memory() {
            // A delete of an entry only on disk would never reach a memory-tier listener.
            return Err(Error::Unsupported {
                operation: "install_eviction_listener with memory_capacity",
            });
        }
        if let Some(compact) = self.compact() {
            // It decodes each removed record's key and value for the listener.
            return compact.install_listener(listener);
        }
        let Some(forward) = self.forward() else {
            return self.mem().install_listener(listener);
        };
        forward.set(listener).map_err(|_| {
            Error::config(
                "eviction_listener",
                "this store already has one: give a single listener that does both jobs",
            )
        })
    }
}
