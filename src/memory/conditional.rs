//! MemoryStore's conditional writes: `incr_with_ttl`, `replace` and `compare_and_set`, each one step under the
//! key's shard write lock, so no other writer (a `delete`, an expiry seen by `put_new`, another
//! counter) can come between the check and the write. Also `keys_with_prefix`.

use std::{
    hash::{BuildHasher, Hash},
    time::Duration,
};

use hashbrown::hash_table::Entry;

use super::{
    prefix::PrefixFilter,
    shard::{Shard, Slot},
    store::MemoryStore,
};
use crate::{
    codec::Key,
    error::{Error, Result},
    local::Replaced,
    store::Counter,
    time::deadline_at,
};

impl<K, V, S> MemoryStore<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    S: BuildHasher + Send + Sync + 'static,
{
    /// Atomically adds `delta` to the integer under `key` and returns the new value. A counter
    /// this call creates (the key missing or expired) gets `ttl_if_new`; a live one keeps its
    /// TTL. Fails for a zero TTL and on overflow (the counter is then unchanged).
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{Expiry, ManualClock, MemoryStore};
    ///
    /// let time = ManualClock::new();
    /// let store = MemoryStore::<String, u32>::builder().clock(time.clock()).build()?;
    /// let minute = Some(Duration::from_secs(60));
    /// let key = "failed_logins:ada".to_string();
    /// assert_eq!(store.incr_with_ttl(&key, 1, minute)?, 1);
    /// time.advance(Duration::from_secs(30));
    /// assert_eq!(store.incr_with_ttl(&key, 1, minute)?, 2); // the first TTL still runs
    /// assert_eq!(store.ttl(&key), Some(Expiry::In(Duration::from_secs(30))));
    /// time.advance(Duration::from_secs(30));
    /// assert_eq!(store.get(&key), None); // no permanent lock-out
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn incr_with_ttl(&self, key: &K, delta: i64, ttl_if_new: Option<Duration>) -> Result<V>
    where
        V: Counter,
        K: std::fmt::Debug,
    {
        let now = self.now();
        let deadline = deadline_at(now, ttl_if_new)?;
        let hash = self.hash(key);
        let mut shard = self.shard(hash).write();
        let (next, replaced) = self.add_in(&mut shard, hash, key, delta, now, deadline)?;
        let created = !matches!(replaced, Replaced::Live(_));
        let deadline = if created { deadline } else { 0 };
        shard.schedule(hash, deadline, self.rehash());
        drop(shard);
        self.after_write(Some(key), replaced, deadline);
        Ok(next)
    }

    /// The counter step of `incr_with_ttl`, under the shard lock the caller holds.
    fn add_in(
        &self,
        shard: &mut Shard<K, V>,
        hash: u64,
        key: &K,
        delta: i64,
        now: u64,
        deadline: u64,
    ) -> Result<(V, Replaced<V>)>
    where
        V: Counter,
        K: std::fmt::Debug,
    {
        let overflow = || Error::Overflow {
            key: format!("{key:?}"),
        };
        let new_slot = |value: V| Slot {
            key: key.clone(),
            value,
            deadline,
        };
        match shard
            .table
            .entry(hash, |s| s.key == *key, self.rehash_slot())
        {
            Entry::Occupied(mut o) if !o.get().is_expired(|| now) => {
                let slot = o.get_mut();
                slot.value = slot.value.add(delta).ok_or_else(overflow)?;
                Ok((slot.value.clone(), Replaced::Live(slot.value.clone())))
            }
            Entry::Occupied(mut o) => {
                let value = V::zero().add(delta).ok_or_else(overflow)?;
                let old = std::mem::replace(o.get_mut(), new_slot(value.clone()));
                Ok((value, Replaced::Expired(old.value)))
            }
            Entry::Vacant(v) => {
                let value = V::zero().add(delta).ok_or_else(overflow)?;
                v.insert(new_slot(value.clone()));
                Ok((value, Replaced::Nothing))
            }
        }
    }

    /// Writes `value` and `ttl` under `key` only if it has a live entry (Redis `SET .. XX`);
    /// true if written. Atomic: a key deleted or expired before this call stays gone.
    ///
    /// ```
    /// use strata::MemoryStore;
    ///
    /// let store = MemoryStore::<String, String>::new();
    /// assert!(!store.replace("session:1".into(), "ada".into(), None)?);
    /// assert_eq!(store.get("session:1"), None);
    /// store.put("session:1".into(), "ada".into(), None)?;
    /// assert!(store.replace("session:1".into(), "grace".into(), None)?);
    /// assert_eq!(store.get("session:1").as_deref(), Some("grace"));
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn replace(&self, key: K, value: V, ttl: Option<Duration>) -> Result<bool> {
        let now = self.now();
        let deadline = deadline_at(now, ttl)?;
        let hash = self.hash(&key);
        let mut shard = self.shard(hash).write();
        let Some(slot) = shard.table.find_mut(hash, |s| s.key == key) else {
            return Ok(false);
        };
        if slot.is_expired(|| now) {
            return Ok(false);
        }
        let old = std::mem::replace(&mut slot.value, value);
        slot.deadline = deadline;
        shard.schedule(hash, deadline, self.rehash());
        drop(shard);
        self.after_write(Some(&key), Replaced::Live(old), deadline);
        Ok(true)
    }

    /// Writes `new` and `ttl` under `key` only if its live value is `expected` (`None`: only if
    /// it has no live entry); true if written. Atomic: the comparison and the write happen under
    /// the key's shard write lock. An expired entry counts as no entry.
    ///
    /// ```
    /// use strata::MemoryStore;
    ///
    /// let store = MemoryStore::<String, i64>::new();
    /// assert!(store.compare_and_set("tat".into(), None, 10, None)?);
    /// assert!(!store.compare_and_set("tat".into(), Some(9), 20, None)?);
    /// assert!(store.compare_and_set("tat".into(), Some(10), 20, None)?);
    /// assert_eq!(store.get("tat"), Some(20));
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn compare_and_set(
        &self,
        key: K,
        expected: Option<V>,
        new: V,
        ttl: Option<Duration>,
    ) -> Result<bool>
    where
        V: PartialEq,
    {
        let now = self.now();
        let deadline = deadline_at(now, ttl)?;
        let hash = self.hash(&key);
        let event_key = self.inner.events.is_active().then(|| key.clone());
        let slot = Slot {
            key,
            value: new,
            deadline,
        };
        let mut shard = self.shard(hash).write();
        let Some(replaced) = self.swap_in(&mut shard, hash, slot, expected.as_ref(), now) else {
            return Ok(false);
        };
        shard.schedule(hash, deadline, self.rehash());
        drop(shard);
        self.after_write(event_key.as_ref(), replaced, deadline);
        Ok(true)
    }

    /// The compare-and-write step of `compare_and_set`, under the shard lock the caller holds;
    /// `None` if the live value is not `expected` (nothing changed).
    fn swap_in(
        &self,
        shard: &mut Shard<K, V>,
        hash: u64,
        slot: Slot<K, V>,
        expected: Option<&V>,
        now: u64,
    ) -> Option<Replaced<V>>
    where
        V: PartialEq,
    {
        match shard
            .table
            .entry(hash, |s| s.key == slot.key, self.rehash_slot())
        {
            Entry::Occupied(mut o) => {
                let live = !o.get().is_expired(|| now);
                if live.then_some(&o.get().value) != expected {
                    return None;
                }
                let old = std::mem::replace(o.get_mut(), slot);
                Some(if live {
                    Replaced::Live(old.value)
                } else {
                    Replaced::Expired(old.value)
                })
            }
            Entry::Vacant(v) => expected.is_none().then(|| {
                v.insert(slot);
                Replaced::Nothing
            }),
        }
    }

    /// Every live key whose encoded form ([`Key::encode_key`]) starts with `prefix`. Each shard
    /// is filtered under its read lock; only matching keys are cloned.
    ///
    /// ```
    /// use strata::MemoryStore;
    ///
    /// let store = MemoryStore::<String, u32>::new();
    /// for key in ["user:1:a", "user:1:b", "user:10:a"] {
    ///     store.put(key.to_string(), 0, None)?;
    /// }
    /// let mut keys = store.keys_with_prefix("user:1:");
    /// keys.sort();
    /// assert_eq!(keys, ["user:1:a", "user:1:b"]);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<K>
    where
        K: Key,
    {
        let now = self.now();
        let mut filter = PrefixFilter::new(prefix);
        let mut out = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard.read();
            let live = shard.table.iter().filter(|s| !s.is_expired(|| now));
            out.extend(
                live.filter(|s| filter.matches(&s.key))
                    .map(|s| s.key.clone()),
            );
        }
        out
    }
}
