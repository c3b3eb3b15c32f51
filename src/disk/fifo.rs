//! The disk limit of the larger-than-memory mode (`DiskBuilder::memory_capacity` with
//! `DiskBuilder::max_capacity`): the memory tier evicts a hot set that the disk keeps, so the
//! disk needs its own limit. It evicts FIFO by insertion: the entry written first (as a new
//! key; an overwrite keeps its place) is deleted first, in memory and on disk, so it is gone
//! after a restart too.
//!
//! [`Fifo`] holds every key on disk (its bytes, once) with the sequence number of its
//! insertion, and a queue of `(sequence, key)` in insertion order. A sync write (the only kind
//! this mode has) updates it in its commit callback, on the writer thread while the write
//! still holds its stripe locks, so the FIFO changes in the order the disk does, per key.
//! After the write returns it *trims*: while there are more keys than the limit it takes the
//! oldest (a queue entry whose sequence is not the key's current one is a deleted or
//! re-inserted key, skipped) and deletes it like any write, under its stripe lock.
//!
//! The disk does not record insertion order: at open the queue is rebuilt in key order from a
//! scan of the namespace's live records (their keys only), and a namespace over its limit
//! (a lowered limit, a trim lost to a crash) is trimmed there. A record that expired stays
//! counted until it is trimmed or the next open drops it, so expired records can make the
//! disk hold fewer live entries than the limit, never more.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use parking_lot::Mutex;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    db::Stripes,
    engine::{Engine, Op},
    record,
    store::DiskStore,
    writer::Ops,
};
use crate::{codec::Key, error::Result};

/// A namespace's keys on disk in insertion order (see the module docs).
#[derive(Default)]
pub(super) struct Fifo {
    /// Every key on disk and the sequence number of its insertion.
    keys: HashMap<Arc<[u8]>, u64>,
    /// `(sequence, key)` in insertion order; stale entries are skipped and swept.
    order: VecDeque<(u64, Arc<[u8]>)>,
    next: u64,
}

/// A namespace's FIFO, shared by its handles.
pub(super) type Shared = Arc<Mutex<Fifo>>;

/// What a committed write changes in the FIFO.
pub(super) enum Change {
    Insert(Vec<u8>),
    Remove(Vec<u8>),
    Clear,
}

/// The changes `ops` make once committed.
pub(super) fn changes(ops: &Ops) -> Vec<Change> {
    let one = |op: &Op| match op {
        Op::Put { .. } => Change::Insert(op.key().to_vec()),
        Op::Delete { key } => Change::Remove(key.clone()),
        Op::DeletePrefix { .. } => Change::Clear,
    };
    match ops {
        Ops::One(op) => vec![one(op)],
        Ops::Many(ops) => ops.iter().map(one).collect(),
    }
}

impl Fifo {
    /// The FIFO of what `engine` holds under `prefix`: every record not expired at `now`, in
    /// key order (insertion order is not on disk).
    pub(super) fn scan(engine: &dyn Engine, prefix: &[u8], now: u64) -> Result<Self> {
        let mut fifo = Fifo::default();
        engine.scan(prefix, &mut |key, rec| {
            let live = record::deadline(rec).is_some_and(|d| !record::is_expired(d, now));
            if live {
                fifo.insert(key);
            }
            Ok(())
        })?;
        Ok(fifo)
    }

    /// Applies a committed write's changes.
    pub(super) fn apply(&mut self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Insert(key) => self.insert(&key),
                Change::Remove(key) => {
                    self.keys.remove(key.as_slice());
                }
                Change::Clear => *self = Fifo::default(),
            }
        }
        if self.order.len() > 2 * self.keys.len() + 1024 {
            let keys = &self.keys;
            self.order.retain(|(seq, key)| keys.get(key) == Some(seq));
        }
    }

    /// Records `key` as inserted now, unless it is already on disk (an overwrite keeps its
    /// place).
    fn insert(&mut self, key: &[u8]) {
        if self.keys.contains_key(key) {
            return;
        }
        let key: Arc<[u8]> = key.into();
        self.next += 1;
        self.keys.insert(key.clone(), self.next);
        self.order.push_back((self.next, key));
    }

    /// The oldest key, taken out, while there are more than `limit`.
    pub(super) fn pop_over(&mut self, limit: u64) -> Option<Arc<[u8]>> {
        while self.keys.len() as u64 > limit {
            let (seq, key) = self.order.pop_front()?;
            if self.keys.get(&key) == Some(&seq) {
                self.keys.remove(&key);
                return Some(key);
            }
        }
        None
    }
}

impl<K, V> DiskStore<K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Deletes the oldest entries while the namespace has more than `max_capacity` on disk
    /// (larger-than-memory mode). Each delete is a write under the key's stripe lock; a
    /// failed one leaves its record, which the next open trims again.
    pub(super) async fn trim_disk(&self) {
        let (Some(fifo), Some(limit)) = (self.fifo(), self.db.inner.opts.max_capacity) else {
            return;
        };
        loop {
            let Some(victim) = fifo.lock().pop_over(limit) else {
                return;
            };
            if self.evict_from_disk(victim.to_vec()).await.is_err() {
                return;
            }
        }
    }

    /// Deletes the record under `disk_key`, and its entry in the memory tier.
    async fn evict_from_disk(&self, disk_key: Vec<u8>) -> Result<()> {
        let key = K::decode_key(&disk_key[self.prefix.len()..]).ok();
        let stripes = Stripes::of(&disk_key);
        self.write_once(stripes, || {
            let apply = move |mem: super::store::Mem<'_, K, V>| {
                if let Some(key) = key {
                    mem.delete(&key);
                }
            };
            Ok(super::store::Decision::one(
                (),
                Op::Delete { key: disk_key },
                apply,
            ))
        })
        .await
    }
}

/// The deletes that bring a FIFO scanned at open down to `limit` (nothing else runs yet).
pub(super) fn trim_at_open(fifo: &mut Fifo, limit: u64) -> Vec<Op> {
    std::iter::from_fn(|| fifo.pop_over(limit))
        .map(|key| Op::Delete { key: key.to_vec() })
        .collect()
}
