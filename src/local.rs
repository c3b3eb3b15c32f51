//! What the two in-memory stores ([`crate::MemoryStore`], [`crate::GenerationalStore`]) share:
//! how a write, a removal and a clear are counted and announced, and their async [`crate::Store`]
//! methods over their sync ones. One copy, so the two stores' semantics cannot drift apart.

use crate::{
    events::{EventBus, EventKind},
    stats::{Counter as Stat, StatsRecorder},
};

/// How an entry's deadline relates to its TTL in a store with `time_to_idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleCap {
    /// No TTL, or no `time_to_idle`: the deadline is the only one.
    Free,
    /// The deadline is the TTL deadline, reached before the idle one: reads no longer move it.
    Capped,
    /// The TTL deadline is later than the idle deadline and kept beside the table.
    SideTtl,
}

/// The deadline a write gives an entry: with `time_to_idle`, whichever of the TTL deadline and
/// `now + tti` comes first (moka's semantics).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Due {
    /// The deadline the entry expires at (Unix ms, 0 for never).
    pub deadline: u64,
    /// Where its TTL deadline lives.
    pub cap: IdleCap,
    /// The TTL deadline the write asked for (0 for none).
    pub ttl: u64,
}

impl Due {
    /// The deadline of an entry written `now` with TTL deadline `ttl` (0: none), in a store
    /// whose idle time is `tti` milliseconds.
    #[inline]
    pub(crate) fn at(tti: Option<u64>, now: u64, ttl: u64) -> Due {
        let (deadline, cap) = match tti.map(|tti| now.saturating_add(tti)) {
            None => (ttl, IdleCap::Free),
            Some(idle) if ttl == 0 => (idle, IdleCap::Free),
            Some(idle) if ttl <= idle => (ttl, IdleCap::Capped),
            Some(idle) => (idle, IdleCap::SideTtl),
        };
        Due { deadline, cap, ttl }
    }

    /// The deadline a read at `idle` (now + tti) moves an entry with `deadline` and `cap` to,
    /// its TTL deadline being `side_ttl` if kept aside; `None` if it stays.
    #[inline]
    pub(crate) fn on_read(
        deadline: u64,
        cap: IdleCap,
        side_ttl: Option<u64>,
        idle: u64,
    ) -> Option<(u64, IdleCap)> {
        let moved = match (cap, side_ttl) {
            (IdleCap::Capped, _) => return None,
            (_, Some(ttl)) if ttl <= idle => (ttl, IdleCap::Capped),
            _ => (idle, cap),
        };
        (moved.0 > deadline).then_some(moved)
    }
}

/// What a write found under its key, reported after the lock is released.
pub(crate) enum Replaced<V> {
    /// No entry.
    Nothing,
    /// A live entry, with its value.
    Live(V),
    /// An expired entry not yet removed, with its value.
    Expired(V),
}

impl<V> Replaced<V> {
    /// What replacing `old` (if any) replaced, given whether `old` had expired.
    pub(crate) fn of(old: Option<V>, expired: bool) -> Self {
        match old {
            None => Replaced::Nothing,
            Some(value) if expired => Replaced::Expired(value),
            Some(value) => Replaced::Live(value),
        }
    }
}

/// The counters and the event bus of one in-memory store, borrowed to report what happened.
pub(crate) struct Report<'a, K> {
    pub stats: &'a StatsRecorder,
    pub events: &'a EventBus<K>,
}

impl<K: Clone> Report<'_, K> {
    /// A write done: an update over a live entry, else a new entry (and the expired entry it
    /// replaced, if any, counted and announced as expired). `key` is `None` when nobody listens.
    /// Inline: without a subscriber it is one count, and a call would cost more than that.
    #[inline]
    pub(crate) fn write<V>(&self, key: Option<&K>, replaced: &Replaced<V>) {
        let (stat, kind) = match replaced {
            Replaced::Live(_) => (Stat::Updates, EventKind::Replace),
            Replaced::Nothing => (Stat::Writes, EventKind::Put),
            Replaced::Expired(_) => {
                self.stats.incr(Stat::Expirations);
                self.emit(key, EventKind::Expired);
                (Stat::Writes, EventKind::Put)
            }
        };
        self.stats.incr(stat);
        self.emit(key, kind);
    }

    /// An entry found expired on access and removed: counted and announced.
    pub(crate) fn expired(&self, key: &K) {
        self.stats.incr(Stat::Expirations);
        self.events.emit(key, EventKind::Expired);
    }

    /// An entry removed on request (`take`/`delete`): a live one is counted as a delete and its
    /// value returned; an expired one goes to `on_expired` and nothing is returned.
    pub(crate) fn taken<V>(
        &self,
        key: &K,
        value: V,
        expired: bool,
        on_expired: impl FnOnce(&K),
    ) -> Option<V> {
        if expired {
            on_expired(key);
            return None;
        }
        self.stats.incr(Stat::Deletes);
        self.events.emit(key, EventKind::Delete);
        Some(value)
    }

    /// The entries a `clear` drained, as `(key, expired)`: each announced as deleted or expired;
    /// the live ones counted as deletes. Returns how many were live.
    pub(crate) fn cleared<'k>(&self, drained: impl IntoIterator<Item = (&'k K, bool)>) -> usize
    where
        K: 'k,
    {
        let mut live = 0;
        for (key, expired) in drained {
            live += usize::from(!expired);
            let kind = if expired {
                EventKind::Expired
            } else {
                EventKind::Delete
            };
            self.events.emit(key, kind);
        }
        self.stats.add(Stat::Deletes, live as u64);
        live
    }

    #[inline]
    fn emit(&self, key: Option<&K>, kind: EventKind) {
        if let Some(key) = key {
            self.events.emit(key, kind);
        }
    }
}

/// The async [`crate::Store`] methods that an in-memory store answers with its sync inherent
/// methods of the same name, each as a ready future. Used inside `impl Store<K, V> for $store`;
/// the store's own impl adds what differs (namespace, `replace`, `touch`, `get_with_ttl`).
macro_rules! sync_store_methods {
    ($store:ident) => {
        fn subscribe_events(&self) -> Option<$crate::Events<K>> {
            Some($store::subscribe(self))
        }

        fn store_stats(&self) -> Option<$crate::Stats> {
            Some($store::stats(self))
        }

        fn put(
            &self,
            key: K,
            value: V,
            ttl: Option<::std::time::Duration>,
        ) -> impl ::std::future::Future<Output = $crate::Result<()>> + Send {
            ::std::future::ready($store::put(self, key, value, ttl))
        }

        fn get(
            &self,
            key: &K,
        ) -> impl ::std::future::Future<Output = $crate::Result<Option<V>>> + Send {
            ::std::future::ready(Ok($store::get(self, key)))
        }

        // `inline(always)`: under `Cache::get` the store's answer is then handed over in
        // registers, not returned through memory by a call with its own saved registers (an
        // awaited `Cache::get` over a MemoryStore: 212 → 195 instructions per hit,
        // `benches/compare/getcost.rs`).
        #[inline(always)]
        fn get_now(&self, key: &K) -> Option<$crate::Result<Option<V>>> {
            Some(Ok($store::get(self, key)))
        }

        fn delete(
            &self,
            key: &K,
        ) -> impl ::std::future::Future<Output = $crate::Result<bool>> + Send {
            ::std::future::ready(Ok($store::delete(self, key)))
        }

        fn keys(&self) -> impl ::std::future::Future<Output = $crate::Result<Vec<K>>> + Send {
            ::std::future::ready(Ok($store::keys(self)))
        }

        fn contains(
            &self,
            key: &K,
        ) -> impl ::std::future::Future<Output = $crate::Result<bool>> + Send {
            ::std::future::ready(Ok($store::contains(self, key)))
        }

        fn take(
            &self,
            key: &K,
        ) -> impl ::std::future::Future<Output = $crate::Result<Option<V>>> + Send {
            ::std::future::ready(Ok($store::take(self, key)))
        }

        fn put_new(
            &self,
            key: K,
            value: V,
            ttl: Option<::std::time::Duration>,
        ) -> impl ::std::future::Future<Output = $crate::Result<bool>> + Send {
            ::std::future::ready($store::put_new(self, key, value, ttl))
        }

        fn ttl(
            &self,
            key: &K,
        ) -> impl ::std::future::Future<Output = $crate::Result<Option<$crate::Expiry>>> + Send {
            ::std::future::ready(Ok($store::ttl(self, key)))
        }

        fn expire(
            &self,
            key: &K,
            ttl: Option<::std::time::Duration>,
        ) -> impl ::std::future::Future<Output = $crate::Result<bool>> + Send {
            ::std::future::ready($store::expire(self, key, ttl))
        }

        fn persist(
            &self,
            key: &K,
        ) -> impl ::std::future::Future<Output = $crate::Result<bool>> + Send {
            ::std::future::ready(Ok($store::persist(self, key)))
        }

        fn incr_with_ttl(
            &self,
            key: &K,
            delta: i64,
            ttl_if_new: Option<::std::time::Duration>,
        ) -> impl ::std::future::Future<Output = $crate::Result<V>> + Send
        where
            V: $crate::Counter + Clone,
            K: ::std::fmt::Debug,
        {
            ::std::future::ready($store::incr_with_ttl(self, key, delta, ttl_if_new))
        }

        fn compare_and_set(
            &self,
            key: K,
            expected: Option<V>,
            new: V,
            ttl: Option<::std::time::Duration>,
        ) -> impl ::std::future::Future<Output = $crate::Result<bool>> + Send
        where
            V: PartialEq,
        {
            ::std::future::ready($store::compare_and_set(self, key, expected, new, ttl))
        }

        fn keys_with_prefix(
            &self,
            prefix: &str,
        ) -> impl ::std::future::Future<Output = $crate::Result<Vec<K>>> + Send
        where
            K: $crate::codec::Key,
        {
            ::std::future::ready(Ok($store::keys_with_prefix(self, prefix)))
        }

        fn count(&self) -> impl ::std::future::Future<Output = $crate::Result<usize>> + Send {
            ::std::future::ready(Ok($store::count(self)))
        }

        fn clear(&self) -> impl ::std::future::Future<Output = $crate::Result<usize>> + Send {
            ::std::future::ready(Ok($store::clear(self)))
        }
    };
}
pub(crate) use sync_store_methods;
