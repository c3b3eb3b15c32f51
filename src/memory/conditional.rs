//! MemoryStore's conditional writes: `incr_with_ttl`, `replace` and `compare_and_set`, each one step under the
//! key's shard write lock, so no other writer (a `delete`, an expiry seen by `put_new`, another
//! counter) can come between the check and the write. Also `keys_with_prefix`.

use std::{
    hash::{BuildHasher, Hash},
    time::Duration,
};

use hashbrown::hash_table::Entry;

use super::{
    bounded::{admit, reweigh, Evicted},
    idle::{flags, Due},
    prefix::PrefixFilter,
    shard::{Shard, Slot},
    store::{cause_of, MemoryStore},
};
use crate::{
    codec::Key,
    error::{Error, Result},
    events::RemovalCause,
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
        let due = self.due(now, deadline_at(now, ttl_if_new)?);
        let hash = self.hash(key);
        let mut evicted = Vec::new();
        let mut shard = self.shard(hash).write();
        let added = self.add_in(&mut shard, hash, key, delta, &due, &mut evicted);
        self.stage_evicted(hash, &mut evicted);
        let (next, replaced) = match added {
            Ok(added) => added,
            Err(e) => {
                drop(shard);
                self.report_evicted(evicted);
                self.deliver(hash);
                return Err(e);
            }
        };
        let created = !matches!(replaced, Replaced::Live(_));
        let deadline = if created {
            self.note_due(&mut shard, hash, &due);
            due.deadline
        } else {
            self.restart_idle(&mut shard, hash, key, now)
        };
        shard.schedule(hash, deadline, self.rehash());
        drop(shard);
        self.report_evicted(evicted);
        self.deliver(hash);
        self.after_write(Some(key), replaced, deadline);
        Ok(next)
    }

    /// The counter step of `incr_with_ttl`, under the shard lock the caller holds. In a bounded
    /// store a new counter first makes room (a counter always fits: its weight is checked
    /// against the limit like any entry's, and one too heavy is kept anyway, as the caller
    /// needs its value).
    #[allow(clippy::too_many_arguments)]
    fn add_in(
        &self,
        shard: &mut Shard<K, V>,
        hash: u64,
        key: &K,
        delta: i64,
        due: &Due,
        evicted: &mut Evicted<K, V>,
    ) -> Result<(V, Replaced<V>)>
    where
        V: Counter,
        K: std::fmt::Debug,
    {
        let overflow = || Error::Overflow {
            key: format!("{key:?}").into(),
        };
        let new_slot =
            |value: V| Slot::with_flags(key.clone(), value, due.deadline, flags(due.cap));
        let live = shard.table.find(hash, |s| s.key == *key);
        if live.is_none_or(|s| s.is_expired(self.clock())) {
            let weight = self.weigh(key, &V::zero());
            self.make_room(shard, hash, key, weight, evicted);
        }
        shard.keep_size(self.rehash_slot());
        match shard
            .table
            .entry(hash, |s| s.key == *key, self.rehash_slot())
        {
            Entry::Occupied(mut o) if !o.get().is_expired(self.clock()) => {
                let slot = o.get_mut();
                let old = self.weigh(&slot.key, &slot.value);
                let next = slot.value.add(delta).ok_or_else(overflow)?;
                let previous = std::mem::replace(&mut slot.value, next.clone());
                let new = self.weigh(&slot.key, &slot.value);
                reweigh(&mut shard.policy, old, new);
                self.removed(hash, RemovalCause::Replaced, || (key.clone(), previous));
                Ok((next.clone(), Replaced::Live(next)))
            }
            Entry::Occupied(mut o) => {
                let value = V::zero().add(delta).ok_or_else(overflow)?;
                let old = o.get_mut().overwrite(new_slot(value.clone()));
                let new = self.weigh(key, &value);
                reweigh(&mut shard.policy, self.weigh(&old.key, &old.value), new);
                self.removed(hash, RemovalCause::Expired, || (old.key, old.value));
                Ok((value.clone(), Replaced::Expired(value)))
            }
            Entry::Vacant(v) => {
                let value = V::zero().add(delta).ok_or_else(overflow)?;
                let mut slot = new_slot(value.clone());
                admit(&mut shard.policy, hash, &mut slot, self.weigh(key, &value));
                v.insert(slot);
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
        let due = self.due(now, deadline_at(now, ttl)?);
        let hash = self.hash(&key);
        let weight = self.weigh(&key, &value);
        let mut evicted = Vec::new();
        let mut guard = self.shard(hash).write();
        let shard = &mut *guard;
        let found = shard.table.find(hash, |s| s.key == key);
        if found.is_none_or(|s| s.is_expired(self.clock())) {
            return Ok(false);
        }
        if !self.make_room(shard, hash, &key, weight, &mut evicted) {
            evicted.extend(self.drop_unfit(shard, hash, &key));
            self.stage_evicted(hash, &mut evicted);
            self.removed(hash, RemovalCause::Size, || (key.clone(), value));
            drop(guard);
            self.report_evicted(evicted);
            self.deliver(hash);
            self.report_unfit(&key);
            return Ok(true);
        }
        self.stage_evicted(hash, &mut evicted);
        let Some(slot) = shard.table.find_mut(hash, |s| s.key == key) else {
            return Ok(false);
        };
        let old_weight = self.weigh(&slot.key, &slot.value);
        let old = std::mem::replace(&mut slot.value, value);
        slot.set_deadline(due.deadline, flags(due.cap));
        reweigh(&mut shard.policy, old_weight, weight);
        shard.schedule(hash, due.deadline, self.rehash());
        self.note_due(shard, hash, &due);
        self.removed(hash, RemovalCause::Replaced, || (key.clone(), old));
        drop(guard);
        self.report_evicted(evicted);
        self.deliver(hash);
        self.after_write(Some(&key), Replaced::Live(()), due.deadline);
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
        let due = self.due(now, deadline_at(now, ttl)?);
        let hash = self.hash(&key);
        let event_key = self.inner.events.is_active().then(|| key.clone());
        let slot = Slot::with_flags(key, new, due.deadline, flags(due.cap));
        let mut evicted = Vec::new();
        let mut shard = self.shard(hash).write();
        let swapped = self.swap_in(&mut shard, hash, slot, expected.as_ref(), &mut evicted);
        let Some(replaced) = swapped else {
            return Ok(false);
        };
        self.stage_evicted(hash, &mut evicted);
        shard.schedule(hash, due.deadline, self.rehash());
        self.note_due(&mut shard, hash, &due);
        drop(shard);
        self.report_evicted(evicted);
        self.deliver(hash);
        match replaced {
            Some(replaced) => self.after_write(event_key.as_ref(), replaced, due.deadline),
            None => self.report_unfit_key(event_key.as_ref()),
        }
        Ok(true)
    }

    /// The compare-and-write step of `compare_and_set`, under the shard lock the caller holds;
    /// `None` if the live value is not `expected` (nothing changed), `Some(None)` if the new
    /// entry was too heavy to keep (it and the old one are evicted).
    fn swap_in(
        &self,
        shard: &mut Shard<K, V>,
        hash: u64,
        mut slot: Slot<K, V>,
        expected: Option<&V>,
        evicted: &mut Evicted<K, V>,
    ) -> Option<Option<Replaced<()>>>
    where
        V: PartialEq,
    {
        let found = shard.table.find(hash, |s| s.key == slot.key);
        let live = found.filter(|s| !s.is_expired(self.clock()));
        if live.map(|s| &s.value) != expected {
            return None;
        }
        let weight = self.weigh(&slot.key, &slot.value);
        if !self.make_room(shard, hash, &slot.key, weight, evicted) {
            evicted.extend(self.drop_unfit(shard, hash, &slot.key));
            self.stage_evicted(hash, evicted);
            self.removed(hash, RemovalCause::Size, || (slot.key, slot.value));
            return Some(None);
        }
        shard.keep_size(self.rehash_slot());
        match shard
            .table
            .entry(hash, |s| s.key == slot.key, self.rehash_slot())
        {
            Entry::Occupied(mut o) => {
                let expired = o.get().is_expired(self.clock());
                let old = o.get_mut().overwrite(slot);
                reweigh(&mut shard.policy, self.weigh(&old.key, &old.value), weight);
                let cause = cause_of(expired, RemovalCause::Replaced);
                self.removed(hash, cause, || (old.key, old.value));
                Some(Some(Replaced::of(Some(()), expired)))
            }
            Entry::Vacant(v) => {
                admit(&mut shard.policy, hash, &mut slot, weight);
                v.insert(slot);
                Some(Some(Replaced::Nothing))
            }
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
        let mut filter = PrefixFilter::new(prefix);
        let mut out = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard.read();
            let live = shard.table.iter().filter(|s| !s.is_expired(self.clock()));
            out.extend(
                live.filter(|s| filter.matches(&s.key))
                    .map(|s| s.key.clone()),
            );
        }
        out
    }
}
