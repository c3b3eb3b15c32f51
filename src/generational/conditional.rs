//! GenerationalStore's atomic counter (`incr_with_ttl`), `compare_and_set` and prefix listing. The counter is one
//! step under the key's partition write lock: find (promoting), add or create, so a counter that
//! expires between two calls is re-created with its TTL, never without one.

use std::{hash::Hash, time::Duration};

use super::{
    partition::{Partition, Slot},
    store::{Found, GenerationalStore},
};
use crate::{
    codec::Key,
    error::{Error, Result},
    events::{EventKind, RemovalCause},
    local::Replaced,
    memory::prefix::PrefixFilter,
    stats::Counter as Stat,
    store::Counter,
};

/// What the counter step did, reported after the partition lock is released.
enum Step<K, V> {
    Added(V),
    Created {
        value: V,
        expired: Option<Slot<K, V>>,
    },
}

impl<K, V> GenerationalStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Atomically adds `delta` to the integer under `key` (promoting it) and returns the new
    /// value. A counter this call creates (the key missing or expired) gets `ttl_if_new`; a live
    /// one keeps its TTL. Fails for a zero TTL and on overflow (the counter is then unchanged).
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{GenerationalStore, ManualClock};
    ///
    /// let time = ManualClock::new();
    /// let store = GenerationalStore::<String, u32>::builder().clock(time.clock()).build()?;
    /// let minute = Some(Duration::from_secs(60));
    /// let key = "failed_logins:ada".to_string();
    /// assert_eq!(store.incr_with_ttl(&key, 1, minute)?, 1);
    /// assert_eq!(store.incr_with_ttl(&key, 1, minute)?, 2);
    /// time.advance(Duration::from_secs(60));
    /// assert_eq!(store.get(&key), None); // the counter expired
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn incr_with_ttl(&self, key: &K, delta: i64, ttl_if_new: Option<Duration>) -> Result<V>
    where
        V: Counter,
        K: std::fmt::Debug,
    {
        let due = self.due(self.inner.clock.entry_deadline(ttl_if_new)?);
        let overflow = || Error::Overflow {
            key: format!("{key:?}").into(),
        };
        let fresh = V::zero().add(delta);
        let hash = self.hash(key);
        let index = self.index(hash);
        let probation = self.on_probation();
        let mut p = self.partition(index).write();
        let (value, expired) = match self.step(&mut p, index, hash, key, delta, fresh) {
            None => {
                drop(p);
                self.deliver(index);
                return Err(overflow());
            }
            Some(Step::Added(value)) => {
                drop(p);
                self.deliver(index);
                self.inner.stats.incr(Stat::Updates);
                self.inner.events.emit(key, EventKind::Replace);
                return Ok(value);
            }
            Some(Step::Created { value, expired }) => (value, expired),
        };
        let slot = Slot {
            key: key.clone(),
            value: value.clone(),
            deadline: due.deadline,
            weight: self.weigh(key, &value),
            cap: due.cap,
        };
        self.upsert_in(&mut p, hash, slot, probation);
        self.note_due(&mut p, hash, &due);
        drop(p);
        self.deliver(index);
        if let Some(expired) = expired {
            self.report_expired(&expired.key);
        }
        self.after_write(Some(key), Replaced::<()>::Nothing);
        self.enforce_limits(index, hash);
        Ok(value)
    }

    /// Finds `key` under the held partition lock and adds to a live counter; `None` on overflow
    /// (nothing changed but a promotion, or the removal of an expired entry, which is reported).
    fn step(
        &self,
        p: &mut Partition<K, V>,
        index: usize,
        hash: u64,
        key: &K,
        delta: i64,
        fresh: Option<V>,
    ) -> Option<Step<K, V>>
    where
        V: Counter,
    {
        let now = self.now();
        let mut ttls = std::mem::take(&mut p.ttls);
        let found = self.locate(p, hash, key, now);
        let expired = match found {
            Found::Live(slot, _) => {
                let next = slot.value.add(delta);
                if let Some(next) = &next {
                    let old = std::mem::replace(&mut slot.value, next.clone());
                    self.restart_idle(slot, &mut ttls, hash);
                    self.removed(index, RemovalCause::Replaced, || (slot.key.clone(), old));
                }
                p.ttls = ttls;
                return Some(Step::Added(next?));
            }
            Found::Expired(slot) => {
                p.ttls = std::mem::take(&mut ttls);
                let cause = RemovalCause::Expired;
                self.removed(index, cause, || (slot.key.clone(), slot.value.clone()));
                Some(slot)
            }
            Found::Missing => {
                p.ttls = ttls;
                None
            }
        };
        match fresh {
            Some(value) => Some(Step::Created { value, expired }),
            None => {
                if let Some(slot) = expired {
                    self.report_expired(&slot.key);
                }
                None
            }
        }
    }

    /// Writes `new` and `ttl` under `key` only if its live value is `expected` (`None`: only if
    /// it has no live entry, as [`GenerationalStore::put_new`]); true if written. Atomic: the
    /// comparison and the write happen under the key's partition write lock (the entry is
    /// promoted like any write).
    ///
    /// ```
    /// use strata::GenerationalStore;
    ///
    /// let store = GenerationalStore::<String, i64>::builder().build()?;
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
        let Some(expected) = expected else {
            return self.put_new(key, new, ttl);
        };
        let due = self.due(self.inner.clock.entry_deadline(ttl)?);
        let weight = self.weigh(&key, &new);
        let index = self.index(self.hash(&key));
        let written = self.with_live_side(&key, move |slot, ttls, hash| {
            if slot.value != expected {
                return false;
            }
            let old = std::mem::replace(&mut slot.value, new);
            self.removed(index, RemovalCause::Replaced, || (slot.key.clone(), old));
            self.apply_due(slot, ttls, hash, &due);
            slot.weight = weight;
            true
        });
        if written != Some(true) {
            return Ok(false);
        }
        self.inner.stats.incr(Stat::Updates);
        self.inner.events.emit(&key, EventKind::Replace);
        let hash = self.hash(&key);
        self.enforce_limits(self.index(hash), hash);
        Ok(true)
    }

    /// Every live key whose encoded form ([`Key::encode_key`]) starts with `prefix`, from both
    /// generations (not promoted). Each partition is filtered under its read lock; only
    /// matching keys are cloned.
    ///
    /// ```
    /// use strata::GenerationalStore;
    ///
    /// let store = GenerationalStore::<String, u32>::builder().build()?;
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
        for p in self.inner.partitions.iter() {
            let p = p.read();
            let all = p.newer.table.iter().chain(p.older.table.iter());
            let live = all.filter(|s| !s.is_expired(now));
            out.extend(
                live.filter(|s| filter.matches(&s.key))
                    .map(|s| s.key.clone()),
            );
        }
        out
    }
}
