//! The query API (Nebulex's `Queryable`): select entries by a predefined query or a predicate,
//! and get them as keys, values, pairs or entries, count them, delete them or stream them.
//!
//! A query looks at one partition at a time, under that partition's lock, and at both of its
//! generations together, so each key is seen once. Queries never promote entries. A predicate
//! runs under the partition's lock: if it panics, the panic propagates, the lock is released
//! (parking_lot guards unlock on unwind) and nothing has been changed — `delete_all` first
//! collects what matches and only then removes it.

use std::{collections::VecDeque, hash::Hash, sync::Arc};

use super::{
    partition::{Partition, Slot, Which},
    store::GenerationalStore,
};
use crate::{
    events::{EventKind, RemovalCause},
    stats::Counter as Stat,
    time::UnixMillis,
};

type Predicate<K, V> = Arc<dyn Fn(&K, &V, Option<UnixMillis>) -> bool + Send + Sync>;

/// Which entries a query selects.
///
/// ```
/// use strata::{GenerationalStore, Query};
///
/// let store = GenerationalStore::<String, u32>::builder().build()?;
/// for (k, v) in [("a", 1), ("b", 20), ("c", 30)] {
///     store.put(k.to_string(), v, None)?;
/// }
/// let big = Query::matching(|_k: &String, v: &u32, _expires| *v > 10);
/// assert_eq!(store.count_all(&big), 2);
/// let mut keys = store.all_keys(&big);
/// keys.sort();
/// assert_eq!(keys, ["b", "c"]);
/// assert_eq!(store.delete_all(&Query::keys_in(vec!["a".to_string()])), 1);
/// # Ok::<(), strata::Error>(())
/// ```
pub struct Query<K, V> {
    kind: Kind<K, V>,
}

impl<K, V> Clone for Query<K, V>
where
    K: Clone,
{
    fn clone(&self) -> Self {
        let kind = match &self.kind {
            Kind::All => Kind::All,
            Kind::Unexpired => Kind::Unexpired,
            Kind::Expired => Kind::Expired,
            Kind::In(keys) => Kind::In(keys.clone()),
            Kind::Where(f) => Kind::Where(f.clone()),
        };
        Query { kind }
    }
}

impl<K: std::fmt::Debug, V> std::fmt::Debug for Query<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::All => f.write_str("Query::all"),
            Kind::Unexpired => f.write_str("Query::unexpired"),
            Kind::Expired => f.write_str("Query::expired"),
            Kind::In(keys) => f.debug_tuple("Query::keys_in").field(keys).finish(),
            Kind::Where(_) => f.write_str("Query::matching(..)"),
        }
    }
}

enum Kind<K, V> {
    All,
    Unexpired,
    Expired,
    In(Vec<K>),
    Where(Predicate<K, V>),
}

impl<K, V> Query<K, V> {
    /// Every entry the store still holds, including expired ones not yet removed (Nebulex `nil`).
    pub fn all() -> Self {
        Query { kind: Kind::All }
    }

    /// Every live entry (Nebulex `:unexpired`).
    pub fn unexpired() -> Self {
        Query {
            kind: Kind::Unexpired,
        }
    }

    /// Every entry whose TTL has run out but that is still held (Nebulex `:expired`); e.g.
    /// `delete_all(&Query::expired())`.
    pub fn expired() -> Self {
        Query {
            kind: Kind::Expired,
        }
    }

    /// The live entries under these keys (Nebulex `{:in, keys}`; here usable by every method).
    pub fn keys_in(keys: Vec<K>) -> Self {
        Query {
            kind: Kind::In(keys),
        }
    }

    /// The live entries for which `predicate(key, value, expires_at)` is true; `expires_at` is
    /// the deadline in Unix milliseconds, `None` for no expiry.
    pub fn matching(
        predicate: impl Fn(&K, &V, Option<UnixMillis>) -> bool + Send + Sync + 'static,
    ) -> Self {
        Query {
            kind: Kind::Where(Arc::new(predicate)),
        }
    }

    fn matches(&self, slot: &Slot<K, V>, now: u64) -> bool
    where
        K: Eq,
    {
        let live = !slot.is_expired(now);
        match &self.kind {
            Kind::All => true,
            Kind::Unexpired => live,
            Kind::Expired => !live,
            Kind::In(keys) => live && keys.contains(&slot.key),
            Kind::Where(f) => live && f(&slot.key, &slot.value, deadline(slot)),
        }
    }
}

fn deadline<K, V>(slot: &Slot<K, V>) -> Option<UnixMillis> {
    (slot.deadline != 0).then_some(slot.deadline)
}

/// One entry as a query returns it (Nebulex's `%Entry{}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// When it expires, in Unix milliseconds; `None` for never.
    pub expires_at: Option<UnixMillis>,
}

impl<K: Clone, V: Clone> Entry<K, V> {
    fn of(slot: &Slot<K, V>) -> Self {
        Entry {
            key: slot.key.clone(),
            value: slot.value.clone(),
            expires_at: deadline(slot),
        }
    }
}

impl<K, V> GenerationalStore<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Calls `visit` on every entry matching `query`, one partition (both generations) at a time.
    fn scan(&self, query: &Query<K, V>, mut visit: impl FnMut(&Slot<K, V>)) {
        let now = self.now();
        if let Kind::In(keys) = &query.kind {
            return self.scan_keys(keys, now, visit);
        }
        for p in self.inner.partitions.iter() {
            let p = p.read();
            let all = p.newer.table.iter().chain(p.older.table.iter());
            all.filter(|s| query.matches(s, now)).for_each(&mut visit);
        }
    }

    /// Looks each key up directly instead of scanning.
    fn scan_keys(&self, keys: &[K], now: u64, mut visit: impl FnMut(&Slot<K, V>)) {
        for key in keys {
            let hash = self.hash(key);
            let p = self.partition(self.index(hash)).read();
            let eq = |s: &Slot<K, V>| s.key == *key;
            let slot = p
                .newer
                .table
                .find(hash, eq)
                .or_else(|| p.older.table.find(hash, eq));
            slot.filter(|s| !s.is_expired(now))
                .into_iter()
                .for_each(&mut visit);
        }
    }

    /// The entries matching `query` (Nebulex `all(query, return: :entry)`).
    pub fn all(&self, query: &Query<K, V>) -> Vec<Entry<K, V>> {
        let mut out = Vec::new();
        self.scan(query, |s| out.push(Entry::of(s)));
        out
    }

    /// The keys of the entries matching `query` (Nebulex's default `return: :key`).
    pub fn all_keys(&self, query: &Query<K, V>) -> Vec<K> {
        let mut out = Vec::new();
        self.scan(query, |s| out.push(s.key.clone()));
        out
    }

    /// The values of the entries matching `query`.
    pub fn all_values(&self, query: &Query<K, V>) -> Vec<V> {
        let mut out = Vec::new();
        self.scan(query, |s| out.push(s.value.clone()));
        out
    }

    /// `(key, value)` of the entries matching `query`.
    pub fn all_pairs(&self, query: &Query<K, V>) -> Vec<(K, V)> {
        let mut out = Vec::new();
        self.scan(query, |s| out.push((s.key.clone(), s.value.clone())));
        out
    }

    /// How many entries match `query`.
    pub fn count_all(&self, query: &Query<K, V>) -> usize {
        let mut n = 0;
        self.scan(query, |_| n += 1);
        n
    }

    /// Deletes the entries matching `query`; returns how many. Live ones count as deletes,
    /// expired ones as expirations.
    pub fn delete_all(&self, query: &Query<K, V>) -> usize {
        if let Kind::In(keys) = &query.kind {
            return keys.iter().filter(|k| self.delete(*k)).count();
        }
        let now = self.now();
        let mut total = 0;
        for index in 0..self.inner.partitions.len() {
            let removed = self.remove_matching(index, query, now);
            self.deliver(index);
            total += removed.len();
            self.report_removed(&removed, now);
        }
        total
    }

    /// Removes the matching entries of one partition: first collects them (a panicking predicate
    /// leaves the partition untouched), then removes them.
    fn remove_matching(&self, index: usize, query: &Query<K, V>, now: u64) -> Vec<Slot<K, V>> {
        let mut p = self.partition(index).write();
        let hits = matching_keys(&p, query, now, |k| self.hash(k));
        let mut out = Vec::with_capacity(hits.len());
        for (hash, key) in hits {
            for which in [Which::Newer, Which::Older] {
                let g = match which {
                    Which::Newer => &mut p.newer,
                    Which::Older => &mut p.older,
                };
                if let Some(slot) = g.remove(hash, |s| s.key == key) {
                    self.inner.tally.slot(which, slot.weight, -1);
                    let cause = if slot.is_expired(now) {
                        RemovalCause::Expired
                    } else {
                        RemovalCause::Explicit
                    };
                    self.removed(index, cause, || (slot.key.clone(), slot.value.clone()));
                    out.push(slot);
                }
            }
        }
        out
    }

    fn report_removed(&self, removed: &[Slot<K, V>], now: u64) {
        let expired = removed.iter().filter(|s| s.is_expired(now)).count();
        self.inner.stats.add(Stat::Expirations, expired as u64);
        self.inner
            .stats
            .add(Stat::Deletes, (removed.len() - expired) as u64);
        for slot in removed {
            let kind = if slot.is_expired(now) {
                EventKind::Expired
            } else {
                EventKind::Delete
            };
            self.inner.events.emit(&slot.key, kind);
        }
    }

    /// Streams the entries matching `query`, `page_size` at a time (Nebulex `stream`, default
    /// page size 20). It holds no lock between pages: it lists one partition's matching keys
    /// under that partition's read lock, then fetches their current entries a page at a time.
    /// Each key is yielded at most once; entries written after their partition was listed may
    /// be missed, entries deleted since are skipped.
    pub fn stream(&self, query: Query<K, V>, page_size: usize) -> QueryStream<K, V> {
        QueryStream {
            store: self.clone(),
            query,
            page_size: page_size.max(1),
            next_partition: 0,
            keys: VecDeque::new(),
            page: VecDeque::new(),
        }
    }
}

/// The `(hash, key)` of every entry of a partition matching `query`.
fn matching_keys<K: Clone + Eq, V>(
    p: &Partition<K, V>,
    query: &Query<K, V>,
    now: u64,
    hash_of: impl Fn(&K) -> u64,
) -> Vec<(u64, K)> {
    let all = p.newer.table.iter().chain(p.older.table.iter());
    let hits = all.filter(|s| query.matches(s, now));
    hits.map(|s| (hash_of(&s.key), s.key.clone())).collect()
}

/// An iterator over a query's entries, fetched a page at a time (see
/// [`GenerationalStore::stream`]).
pub struct QueryStream<K, V> {
    store: GenerationalStore<K, V>,
    query: Query<K, V>,
    page_size: usize,
    next_partition: usize,
    keys: VecDeque<K>,
    page: VecDeque<Entry<K, V>>,
}

impl<K, V> std::fmt::Debug for QueryStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("page_size", &self.page_size)
            .field("next_partition", &self.next_partition)
            .finish_non_exhaustive()
    }
}

impl<K, V> QueryStream<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Lists the next partition's matching keys; false when every partition is done.
    fn list_next_partition(&mut self) -> bool {
        let store = &self.store;
        if self.next_partition >= store.inner.partitions.len() {
            return false;
        }
        let p = store.partition(self.next_partition).read();
        let keys = matching_keys(&p, &self.query, store.now(), |_| 0);
        drop(p);
        self.keys.extend(keys.into_iter().map(|(_, k)| k));
        self.next_partition += 1;
        true
    }

    /// Fetches the current entries of the next page of keys.
    fn fill_page(&mut self) {
        let now = self.store.now();
        let take = self.page_size.min(self.keys.len());
        for key in self.keys.drain(..take) {
            let hash = self.store.hash(&key);
            let p = self.store.partition(self.store.index(hash)).read();
            let eq = |s: &Slot<K, V>| s.key == key;
            let slot = p
                .newer
                .table
                .find(hash, eq)
                .or_else(|| p.older.table.find(hash, eq));
            if let Some(slot) = slot.filter(|s| self.query.matches(s, now)) {
                self.page.push_back(Entry::of(slot));
            }
        }
    }
}

impl<K, V> Iterator for QueryStream<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    type Item = Entry<K, V>;

    fn next(&mut self) -> Option<Entry<K, V>> {
        loop {
            if let Some(entry) = self.page.pop_front() {
                return Some(entry);
            }
            if !self.keys.is_empty() {
                self.fill_page();
            } else if !self.list_next_partition() {
                return None;
            }
        }
    }
}
