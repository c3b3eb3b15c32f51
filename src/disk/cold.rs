//! The larger-than-memory mode's reads (`DiskBuilder::memory_capacity`): the memory tier holds
//! a bounded hot set, so what it lacks is read from the engine (and promoted), and listing
//! reads the engine. In the all-in-memory mode every function here answers from memory alone.

use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

use super::{record, store::put_at, DiskStore};
use crate::{
    codec::{decode_value, Key},
    error::Result,
    store::Expiry,
};

impl<K, V> DiskStore<K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// `key`'s live value and deadline (0: never): memory, else (larger than memory) disk.
    /// Writers call it under the key's stripe lock, so what it reads is committed state.
    pub(super) fn lookup(&self, key: &K) -> Result<Option<(V, u64)>> {
        if let Some(compact) = self.compact() {
            return compact.read(key);
        }
        if self.tier_idle().is_some() {
            // The deadline a write keeps is the TTL's, not the idle one memory reports.
            return Ok(self.mem().peek_ttl_deadline(key));
        }
        if let Some((value, expiry)) = self.mem().get_with_ttl(key) {
            return Ok(Some((value, self.deadline_of(expiry))));
        }
        if !self.db.larger_than_memory() {
            return Ok(None);
        }
        self.on_disk(key)
    }

    /// True if `key` has a live entry (see [`DiskStore::lookup`]).
    pub(super) fn is_live(&self, key: &K) -> Result<bool> {
        if self.in_memory(key) {
            return Ok(true);
        }
        Ok(self.db.larger_than_memory() && self.on_disk(key)?.is_some())
    }

    /// True if the memory tier (compact or not) has a live entry under `key`.
    pub(super) fn in_memory(&self, key: &K) -> bool {
        match self.compact() {
            Some(compact) => compact.contains(key),
            None => self.mem().contains(key),
        }
    }

    /// `key`'s live record on disk, decoded. A record that no longer decodes is a miss, as at
    /// open (it stays on disk until it expires, is overwritten or deleted).
    fn on_disk(&self, key: &K) -> Result<Option<(V, u64)>> {
        let Some(rec) = self.db.inner.engine.get(&self.disk_key(key))? else {
            return Ok(None);
        };
        Ok(self.decode_live(&rec))
    }

    /// The value and deadline of a record that is live now and decodes as `V`.
    fn decode_live(&self, rec: &[u8]) -> Option<(V, u64)> {
        let deadline = record::deadline(rec)?;
        if record::is_expired(deadline, self.db.inner.opts.clock.now_ms()) {
            return None;
        }
        match decode_value(record::value(rec), "") {
            Ok(value) => Some((value, deadline)),
            Err(e) => {
                // No key in the message: keys may be session ids.
                tracing::debug!(namespace = %self.namespace, error = %e, "a record on disk does not decode as this store's value type; read as a miss");
                None
            }
        }
    }

    /// `get`: memory; on a miss (larger than memory) the engine, which only ever holds
    /// committed writes, so reading it needs no lock. Promoting what it read does: under the
    /// key's stripe lock no write of the key sits between its commit and its memory update,
    /// so the value promoted is the newest. A stripe busy with a write is not waited for: the
    /// read returns what disk holds and promotes nothing.
    pub(super) fn get_through(&self, key: &K) -> Result<Option<V>> {
        self.check()?;
        if let Some(compact) = self.compact() {
            return compact.get(key);
        }
        if let Some(value) = self.mem().get(key) {
            return Ok(Some(value));
        }
        if !self.db.larger_than_memory() {
            return Ok(None);
        }
        let disk_key = self.disk_key(key);
        let Some(_held) = self.db.try_lock_one(&disk_key) else {
            return Ok(self.on_disk(key)?.map(|(value, _)| value));
        };
        // Promoted or written since the miss above (`contains` counts no second miss).
        if self.mem().contains(key) {
            return Ok(self.mem().get(key));
        }
        let Some((value, deadline)) = self.on_disk(key)? else {
            return Ok(None);
        };
        put_at(self.mem(), key.clone(), value.clone(), deadline, None);
        Ok(Some(value))
    }

    /// `ttl`: the remaining lifetime from memory, else from the record on disk.
    pub(super) fn ttl_through(&self, key: &K) -> Result<Option<Expiry>> {
        self.check()?;
        if let Some(compact) = self.compact() {
            return Ok(compact.ttl(key));
        }
        if let Some(expiry) = self.mem().ttl(key) {
            return Ok(Some(expiry));
        }
        let Some((_, deadline)) = self.lookup(key)? else {
            return Ok(None);
        };
        Ok(Some(match deadline {
            0 => Expiry::Never,
            d => {
                let now = self.db.inner.opts.clock.now_ms();
                Expiry::In(Duration::from_millis(d.saturating_sub(now)))
            }
        }))
    }

    /// Visits the live keys of this namespace whose key bytes start with `prefix`, from the
    /// engine (larger than memory: memory holds only some of them).
    fn scan_live(&self, prefix: &[u8], visit: &mut dyn FnMut(K)) -> Result<()> {
        let mut range = self.prefix.to_vec();
        range.extend_from_slice(prefix);
        self.db.inner.engine.scan(&range, &mut |raw, rec| {
            let key = K::decode_key(&raw[self.prefix.len()..]);
            if let (Ok(key), Some(_)) = (key, self.decode_live(rec)) {
                visit(key);
            }
            Ok(())
        })
    }

    /// Every live key: memory's, or (larger than memory) the engine's.
    pub(super) fn keys_through(&self, prefix: &[u8]) -> Result<Vec<K>> {
        self.check()?;
        let mut keys = Vec::new();
        self.scan_live(prefix, &mut |key| keys.push(key))?;
        Ok(keys)
    }

    /// How many live entries the namespace has (memory's count in the all-in-memory mode).
    pub(super) fn live_count(&self) -> Result<usize> {
        if let Some(compact) = self.compact() {
            return Ok(compact.count());
        }
        if !self.db.larger_than_memory() {
            return Ok(self.mem().count());
        }
        let mut count = 0;
        self.scan_live(b"", &mut |_| count += 1)?;
        Ok(count)
    }
}
