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

use std::sync::Arc;

use parking_lot::Mutex;

use super::{db::Stripes, engine::Op, store::DiskStore, writer::Ops};
use crate::{codec::Key, events::RemovalCause, memory::MemoryStore, Result};

/// Keys the memory tier evicted for size whose delete on disk is not queued yet.
pub(super) type Evicted<K> = Arc<Mutex<Vec<K>>>;

/// Makes `mem` record the keys it evicts for size (before anything is loaded into it).
pub(super) fn record_evictions<K, V>(mem: &MemoryStore<K, V>) -> Result<Evicted<K>>
where
    K: Key,
    V: Clone + Send + Sync + 'static,
{
    let evicted: Evicted<K> = Arc::default();
    let sink = evicted.clone();
    mem.install_listener(Arc::new(move |key, _value, cause| {
        if cause == RemovalCause::Size {
            sink.lock().push(key);
        }
    }))?;
    Ok(evicted)
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
