//! The `DiskStore` handle: reads from the memory tier, writes to it and to the engine in the
//! same order.
//!
//! Every write takes the stripe locks of its keys, decides on what memory holds, and queues its
//! ops for the writer thread as ONE job (one commit), so the engine sees the writes to one key
//! in the order memory applies them. A sync write's memory update runs after its commit
//! succeeded, and its stripes stay locked until then (see [`DiskStore::write`]).

use std::{
    collections::HashSet,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use serde::{de::DeserializeOwned, Serialize};

use super::{
    builder::DiskStoreBuilder,
    compact::Compact,
    db::{DiskDb, Held, Stripes},
    engine::Op,
    record,
    writer::{OnCommit, Ops},
};
use crate::{
    codec::Key,
    error::{Error, Result},
    events::Events,
    memory::MemoryStore,
    namespace::Namespace,
    stats::Stats,
    store::{Counter, Expiry, Store},
};

/// The memory tier of one namespace, shared by every handle on it.
pub(super) struct Tier<K, V> {
    /// The default tier (empty when `compact` is set).
    pub mem: MemoryStore<K, V>,
    /// With `compact_memory`: the tier holding every entry, as encoded records.
    pub compact: Option<Compact<K, V>>,
    pub undecodable: usize,
    /// With `max_capacity`: keys evicted for size whose disk delete is not queued yet.
    pub evicted: Option<super::bounded::Evicted<K>>,
    /// With `max_capacity`: where the tier's own listener forwards to the user's.
    pub forward: Option<super::bounded::Forward<K, V>>,
    /// The memory tier's `time_to_idle`.
    pub tti: Option<Duration>,
    /// Larger than memory with `max_capacity`: the keys on disk in insertion order.
    pub fifo: Option<super::fifo::Shared>,
    /// One clone per handle on the tier (and one in the directory's map), so
    /// `with_time_to_idle` can tell whether another handle would keep the old tier.
    pub handles: Arc<()>,
    /// Set (with every stripe held) once `with_time_to_idle` replaced this tier: a handle
    /// still on it is stale and refuses every call ([`DiskStore::check`]).
    pub retired: Arc<AtomicBool>,
}

impl<K, V> Clone for Tier<K, V> {
    fn clone(&self) -> Self {
        Tier {
            mem: self.mem.clone(),
            compact: self.compact.clone(),
            undecodable: self.undecodable,
            evicted: self.evicted.clone(),
            forward: self.forward.clone(),
            tti: self.tti,
            fifo: self.fifo.clone(),
            handles: self.handles.clone(),
            retired: self.retired.clone(),
        }
    }
}

/// A persistent store: every live entry in memory for reads, every write also on disk (Pow's
/// MnesiaCache, on one node). See the `disk` module docs for the guarantees.
///
/// ```
/// use std::time::Duration;
/// use strata::{DiskStore, Store};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = DiskStore::<String, u64>::builder()
///     .dir(dir.path())
///     .namespace("credentials")
///     .open()?;
/// store.put("user:1".into(), 7, Some(Duration::from_secs(3600))).await?;
/// assert_eq!(store.get(&"user:1".into()).await?, Some(7));
/// # Ok(()) }
/// ```
pub struct DiskStore<K, V> {
    pub(super) db: DiskDb,
    pub(super) namespace: Namespace,
    pub(super) prefix: Arc<[u8]>,
    tier: Tier<K, V>,
}

impl<K, V> Clone for DiskStore<K, V> {
    fn clone(&self) -> Self {
        DiskStore {
            db: self.db.clone(),
            namespace: self.namespace.clone(),
            prefix: self.prefix.clone(),
            tier: self.tier.clone(),
        }
    }
}

impl<K, V> std::fmt::Debug for DiskStore<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("dir", &self.db.dir())
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl<K, V> DiskStore<K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// A builder for a store over its own directory (see [`DiskDb`] for many namespaces).
    pub fn builder() -> DiskStoreBuilder<K, V> {
        DiskStoreBuilder::new()
    }

    pub(super) fn new(db: DiskDb, namespace: Namespace, tier: Tier<K, V>) -> Self {
        DiskStore {
            prefix: namespace.prefix().into(),
            db,
            namespace,
            tier,
        }
    }

    /// Fails if the directory is unavailable, or if this handle went stale: `with_time_to_idle`
    /// replaced its memory tier (a write through it would reach the disk and a tier nobody
    /// reads).
    #[inline]
    pub(super) fn check(&self) -> Result<()> {
        self.db.check()?;
        self.check_current()
    }

    /// Fails if this handle went stale (see [`DiskStore::check`]): a listener installed or a
    /// swap made through it would act on a tier nobody reads.
    #[inline]
    pub(super) fn check_current(&self) -> Result<()> {
        if self.tier.retired.load(Ordering::Acquire) {
            return Err(Error::Closed {
                reason: format!(
                    "this handle on {} was replaced by the one `with_time_to_idle` returned, which holds its entries now: use that one",
                    self.namespace
                )
                .into(),
            });
        }
        Ok(())
    }

    /// The directory this store lives in, to open other namespaces or flush.
    pub fn db(&self) -> &DiskDb {
        &self.db
    }

    /// How many entries of this namespace were on disk but did not decode as `K`/`V` when it
    /// was opened (a type changed between releases). Reads of them miss; they stay on disk.
    pub fn undecodable(&self) -> usize {
        self.tier.undecodable
    }

    /// Subscribes to the memory tier's events (put, replace, delete, expired).
    pub fn subscribe(&self) -> Events<K> {
        match self.compact() {
            Some(compact) => compact.subscribe(),
            None => self.tier.mem.subscribe(),
        }
    }

    /// A snapshot of the memory tier's counters.
    pub fn stats(&self) -> Stats {
        match self.compact() {
            Some(compact) => compact.stats(),
            None => self.tier.mem.stats(),
        }
    }

    /// Removes every entry of the memory tier whose deadline has passed now, sending their
    /// `Expired` events; returns how many were removed. Each memory tier (default or
    /// [`compact_memory`](crate::DiskBuilder::compact_memory)) has a sweeper thread doing this
    /// on its own; a test on a [`ManualClock`](crate::ManualClock) may call it to sweep at a
    /// chosen moment. Their records on disk go as the sweeper's do: at the engine's next
    /// compaction or the next open, or, with [`time_to_idle`](crate::DiskBuilder::time_to_idle)
    /// (whose expiry deletes on disk), by a delete queued right away.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{DiskStore, ManualClock, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let time = ManualClock::new();
    /// let store = DiskStore::<String, u64>::builder()
    ///     .dir(dir.path())
    ///     .clock(time.clock())
    ///     .compact_memory(true)
    ///     .open()?;
    /// store.put("a".into(), 1, Some(Duration::from_secs(1))).await?;
    /// time.advance(Duration::from_secs(2));
    /// store.purge_expired(); // or the sweeper did
    /// assert_eq!(store.stats().expirations, 1);
    /// # Ok(()) }
    /// ```
    pub fn purge_expired(&self) -> usize {
        match self.compact() {
            Some(compact) => compact.purge_expired(),
            None => self.tier.mem.purge_expired(),
        }
    }

    /// The default memory tier (empty with `compact_memory`: see [`DiskStore::compact`]).
    pub(super) fn mem(&self) -> &MemoryStore<K, V> {
        &self.tier.mem
    }

    /// The compact memory tier, with `compact_memory`.
    pub(super) fn compact(&self) -> Option<&Compact<K, V>> {
        self.tier.compact.as_ref()
    }

    /// What a write's memory update runs on.
    fn tiers(&self) -> Mem<'_, K, V> {
        Mem {
            plain: &self.tier.mem,
            compact: self.tier.compact.as_ref(),
        }
    }

    pub(super) fn evicted(&self) -> Option<&super::bounded::Evicted<K>> {
        self.tier.evicted.as_ref()
    }

    pub(super) fn forward(&self) -> Option<&super::bounded::Forward<K, V>> {
        self.tier.forward.as_ref()
    }

    pub(super) fn fifo(&self) -> Option<&super::fifo::Shared> {
        self.tier.fifo.as_ref()
    }

    pub(super) fn tier(&self) -> &Tier<K, V> {
        &self.tier
    }

    pub(super) fn tier_idle(&self) -> Option<Duration> {
        self.tier.tti
    }

    pub(super) fn disk_key(&self, key: &K) -> Vec<u8> {
        key.namespaced(&self.prefix)
    }

    /// The op that writes `value` under `key` on disk.
    fn put_op(&self, key: &K, value: &V, deadline: u64) -> Result<Op> {
        record::put_op(
            &self.prefix,
            key,
            value,
            deadline,
            self.db.inner.opts.format,
        )
    }

    fn deadline(&self, ttl: Option<Duration>) -> Result<u64> {
        self.db.inner.opts.clock.entry_deadline(ttl)
    }

    /// The deadline of a write with `ttl` made now, and for an async write the coarse time it
    /// was worked out from, which the memory tier's update then takes as now instead of
    /// reading the clock twice more (a sync write's update runs after its commit and reads
    /// the clock then).
    fn deadline_read(&self, ttl: Option<Duration>) -> Result<(u64, Option<u64>)> {
        if self.db.sync_writes() {
            return Ok((self.deadline(ttl)?, None));
        }
        let now = self.db.inner.opts.clock.coarse_ms();
        Ok((crate::time::deadline_at(now, ttl)?, Some(now)))
    }

    /// The memory tier's update writing `value` under `key` until `deadline`. A compact tier
    /// takes a copy of the value `op` encoded for the disk instead of encoding it again.
    fn put_later(&self, key: K, value: V, op: &Op, deadline: u64) -> impl Apply<K, V> {
        self.put_later_read(key, value, op, (deadline, None))
    }

    /// [`put_later`](Self::put_later) with the coarse time `deadline` was worked out from,
    /// if the update runs at once (see [`deadline_read`](Self::deadline_read)).
    fn put_later_read(
        &self,
        key: K,
        value: V,
        op: &Op,
        (deadline, now): (u64, Option<u64>),
    ) -> impl Apply<K, V> {
        let encoded = self.encoded_for_compact(op);
        move |mem: Mem<'_, K, V>| match encoded {
            Some(encoded) => mem.put_encoded(&key, &encoded, deadline, now),
            None => mem.put_at(key, value, deadline, now),
        }
    }

    /// With a compact tier, the value and key bytes `op` (a put) encoded, to write into it.
    fn encoded_for_compact(&self, op: &Op) -> Option<record::Encoded> {
        self.compact()?;
        record::Encoded::of(op, self.prefix.len())
    }

    /// Runs one write: `decide` looks at memory (under `stripes`, the stripe locks of every key
    /// the write touches) and returns the result, the ops and the memory update.
    ///
    /// Sync: the update runs on the writer thread once the commit succeeded, and the stripes
    /// stay locked until then, so no reader sees a write that can still fail and the next
    /// writer of the key decides on committed state; a failed commit drops the update unrun.
    /// Async: queued first (a full or failed queue refuses the write before memory sees it),
    /// then applied to memory at once, before the stripes unlock. Nothing awaits between the
    /// lock and the unlock, so the stripes are borrowed and the update is neither boxed nor
    /// given a handle of its own: an async put allocates only its op's buffer. An async write
    /// of one key whose stripe is free runs straight through, without polling a nested future.
    async fn write<R, A: Apply<K, V>>(
        &self,
        stripes: Stripes,
        decide: impl FnOnce() -> Result<Decision<R, A>>,
    ) -> Result<R> {
        let result = match self.db.try_lock_here(&stripes) {
            Some(held) => self.write_held(&held, decide),
            None => self.write_once(stripes, decide).await,
        };
        // With `max_capacity`, what this write evicted is deleted on disk now that its own
        // stripes are free (see `disk::bounded`, and `disk::fifo` when larger than memory).
        if self.evicted().is_some() {
            self.settle_evictions().await;
        }
        if self.fifo().is_some() {
            self.trim_disk().await;
        }
        result
    }

    pub(super) async fn write_once<R, A: Apply<K, V>>(
        &self,
        stripes: Stripes,
        decide: impl FnOnce() -> Result<Decision<R, A>>,
    ) -> Result<R> {
        if self.db.sync_writes() {
            return self.write_sync(stripes, decide).await;
        }
        let held = self.db.lock_here(stripes).await;
        self.write_held(&held, decide)
    }

    /// An async write under its stripes (`_held`): queued, then applied to memory.
    #[inline]
    fn write_held<R, A: Apply<K, V>>(
        &self,
        _held: &Held<'_>,
        decide: impl FnOnce() -> Result<Decision<R, A>>,
    ) -> Result<R> {
        self.check()?;
        let (result, ops, apply) = match decide()? {
            Decision::Nothing(result) => return Ok(result),
            Decision::Write { result, ops, apply } => (result, ops, apply),
        };
        self.db.inner.writer.submit(ops, false, None)?;
        apply(self.tiers());
        Ok(result)
    }

    /// [`DiskStore::write`] for `Writes::Sync`: the stripe guards travel with the update.
    async fn write_sync<R, A: Apply<K, V>>(
        &self,
        stripes: Stripes,
        decide: impl FnOnce() -> Result<Decision<R, A>>,
    ) -> Result<R> {
        let guards = self.db.lock_owned(stripes).await;
        self.check()?;
        let (result, ops, apply) = match decide()? {
            Decision::Nothing(result) => return Ok(result),
            Decision::Write { result, ops, apply } => (result, ops, apply),
        };
        let (mem, compact) = (self.mem().clone(), self.tier.compact.clone());
        // Larger than memory with a disk limit: the FIFO follows the disk, per key in commit
        // order (the stripes are still held).
        let fifo = self
            .fifo()
            .map(|fifo| (fifo.clone(), super::fifo::changes(&ops)));
        let on_commit: OnCommit = Box::new(move || {
            apply(Mem {
                plain: &mem,
                compact: compact.as_ref(),
            });
            if let Some((fifo, changes)) = fifo {
                fifo.lock().apply(changes);
            }
            drop(guards);
        });
        let writer = &self.db.inner.writer;
        if let Some(ack) = writer.submit(ops, true, Some(on_commit))? {
            writer.wait(ack).await?;
        }
        Ok(result)
    }

    /// Writes `value` under `key`.
    async fn put_inner(&self, key: K, value: V, ttl: Option<Duration>) -> Result<()> {
        let (deadline, now) = self.deadline_read(ttl)?;
        let op = self.put_op(&key, &value, deadline)?;
        let stripes = Stripes::of(op.key());
        self.write(stripes, || {
            let apply = self.put_later_read(key, value, &op, (deadline, now));
            Ok(Decision::one((), op, apply))
        })
        .await
    }

    async fn delete_inner(&self, key: &K) -> Result<bool> {
        Ok(self.remove(key).await?.is_some())
    }

    async fn remove(&self, key: &K) -> Result<Option<V>> {
        let dk = self.disk_key(key);
        self.write(Stripes::of(&dk), || {
            let owned = key.clone();
            // Deleted on disk even when memory had nothing: the record may be one that no
            // longer decodes, and deleting it is how a user gets rid of it.
            let apply = move |mem: Mem<'_, K, V>| mem.delete(&owned);
            let live = self.lookup(key)?.map(|(value, _)| value);
            Ok(Decision::one(live, Op::Delete { key: dk }, apply))
        })
        .await
    }

    /// Writes `value` if `key`'s liveness is `want_live` (put_new: absent; replace: present).
    async fn put_if(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
        want_live: bool,
    ) -> Result<bool> {
        let deadline = self.deadline(ttl)?;
        let op = self.put_op(&key, &value, deadline)?;
        self.write(Stripes::of(op.key()), || {
            if self.is_live(&key)? != want_live {
                return Ok(Decision::none(false));
            }
            let apply = self.put_later(key, value, &op, deadline);
            Ok(Decision::one(true, op, apply))
        })
        .await
    }

    /// Writes `new` if `key`'s live value is `expected` (`None`: no live entry). The check and
    /// the commit happen under the key's stripe lock, which every writer of the key holds, so
    /// nothing can change the value between the two.
    async fn compare_and_set_inner(
        &self,
        key: K,
        expected: Option<V>,
        new: V,
        ttl: Option<Duration>,
    ) -> Result<bool>
    where
        V: PartialEq,
    {
        let deadline = self.deadline(ttl)?;
        let op = self.put_op(&key, &new, deadline)?;
        self.write(Stripes::of(op.key()), || {
            if self.lookup(&key)?.map(|(value, _)| value) != expected {
                return Ok(Decision::none(false));
            }
            let apply = self.put_later(key, new, &op, deadline);
            Ok(Decision::one(true, op, apply))
        })
        .await
    }

    async fn expire_inner(&self, key: &K, ttl: Option<Duration>) -> Result<bool> {
        let deadline = self.deadline(ttl)?;
        self.write(Stripes::of(&self.disk_key(key)), || {
            let Some((value, _)) = self.lookup(key)? else {
                return Ok(Decision::none(false));
            };
            let op = self.put_op(key, &value, deadline)?;
            let apply = self.put_later(key.clone(), value, &op, deadline);
            Ok(Decision::one(true, op, apply))
        })
        .await
    }

    /// Adds `delta` to the counter under `key`; a counter this call creates expires after
    /// `ttl_if_new`, an existing one keeps its deadline.
    async fn incr_inner(&self, key: &K, delta: i64, ttl_if_new: Option<Duration>) -> Result<V>
    where
        V: Counter,
    {
        let new_deadline = self.deadline(ttl_if_new)?;
        self.write(Stripes::of(&self.disk_key(key)), || {
            let (current, deadline) = self.lookup(key)?.unwrap_or((V::zero(), new_deadline));
            let value = current.add(delta).ok_or_else(|| Error::Overflow {
                key: format!("{key:?}").into(),
            })?;
            let op = self.put_op(key, &value, deadline)?;
            let apply = self.put_later(key.clone(), value.clone(), &op, deadline);
            Ok(Decision::one(value, op, apply))
        })
        .await
    }

    pub(super) fn deadline_of(&self, expiry: Expiry) -> u64 {
        match expiry {
            Expiry::Never => 0,
            Expiry::In(left) => self
                .db
                .inner
                .opts
                .clock
                .now_ms()
                .saturating_add(crate::time::ttl_ms(left)),
        }
    }

    /// Removes the namespace: one commit (a prefix delete), all stripes held.
    async fn clear_inner(&self) -> Result<usize> {
        self.write(Stripes::All, || {
            let op = Op::DeletePrefix {
                prefix: self.prefix.to_vec(),
            };
            let apply = |mem: Mem<'_, K, V>| mem.clear();
            Ok(Decision::one(self.live_count()?, op, apply))
        })
        .await
    }

    /// Writes every entry in ONE commit: all are applied or none.
    async fn put_many_inner(&self, entries: Vec<(K, V)>, ttl: Option<Duration>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let deadline = self.deadline(ttl)?;
        let ops = entries
            .iter()
            .map(|(key, value)| self.put_op(key, value, deadline))
            .collect::<Result<Vec<Op>>>()?;
        let stripes = Stripes::of_all(ops.iter().map(Op::key));
        let encoded: Option<Vec<record::Encoded>> =
            ops.iter().map(|op| self.encoded_for_compact(op)).collect();
        self.write(stripes, || {
            let apply = move |mem: Mem<'_, K, V>| match encoded {
                Some(encoded) => {
                    for ((key, _), encoded) in entries.iter().zip(encoded) {
                        mem.put_encoded(key, &encoded, deadline, None);
                    }
                }
                None => {
                    for (key, value) in entries {
                        mem.put_at(key, value, deadline, None);
                    }
                }
            };
            Ok(Decision::many((), ops, apply))
        })
        .await
    }

    /// Deletes every key in ONE commit: all are applied or none.
    async fn delete_many_inner(&self, keys: &[K]) -> Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        let ops: Vec<Op> = keys
            .iter()
            .map(|key| Op::Delete {
                key: self.disk_key(key),
            })
            .collect();
        let stripes = Stripes::of_all(ops.iter().map(Op::key));
        self.write(stripes, || {
            let mut live = HashSet::new();
            for key in keys {
                if self.is_live(key)? {
                    live.insert(key);
                }
            }
            let keys = keys.to_vec();
            let apply = move |mem: Mem<'_, K, V>| {
                for key in &keys {
                    mem.delete(key);
                }
            };
            Ok(Decision::many(live.len(), ops, apply))
        })
        .await
    }

    /// Live keys of this namespace whose encoded bytes start with `prefix`: a prefix range of
    /// the engine (O(matches)), each confirmed live in the memory tier (which also drops
    /// expired entries and records that no longer decode). Async writes are flushed first so
    /// the engine has everything memory has.
    async fn keys_with_prefix_inner(&self, prefix: &str) -> Result<Vec<K>> {
        self.check()?;
        if self.db.larger_than_memory() {
            return self.keys_through(prefix.as_bytes());
        }
        if !self.db.sync_writes() {
            self.db.flush().await?;
        }
        let mut range = self.prefix.to_vec();
        range.extend_from_slice(prefix.as_bytes());
        let mut keys = Vec::new();
        self.db.inner.engine.scan(&range, &mut |raw, _| {
            if let Ok(key) = K::decode_key(&raw[self.prefix.len()..]) {
                if self.in_memory(&key) {
                    keys.push(key);
                }
            }
            Ok(())
        })?;
        Ok(keys)
    }
}

/// A memory-tier update: run at once by an async write, once the commit succeeded by a sync
/// one.
pub(super) trait Apply<K, V>: FnOnce(Mem<'_, K, V>) + Send + 'static {}

impl<K, V, F: FnOnce(Mem<'_, K, V>) + Send + 'static> Apply<K, V> for F {}

/// The memory tier a write's update runs on: the default one, or the compact one if the
/// store has it (the default one is then empty).
pub(super) struct Mem<'a, K, V> {
    pub plain: &'a MemoryStore<K, V>,
    pub compact: Option<&'a Compact<K, V>>,
}

impl<K, V> Mem<'_, K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Puts `value` under `key` until `deadline` (see [`put_at`]; `now`: the coarse time an
    /// async put worked its deadline out from, if it did).
    pub(super) fn put_at(&self, key: K, value: V, deadline: u64, now: Option<u64>) {
        let Some(compact) = self.compact else {
            return put_at(self.plain, key, value, deadline, now);
        };
        if let Err(e) = compact.put(&key, &value, deadline) {
            tracing::error!(error = %e, "could not apply a committed disk write to the memory tier");
        }
    }

    /// Puts the value `encoded` (as on disk, with `key`'s bytes) under `key` until `deadline`
    /// in the compact tier, the only tier that keeps encoded values (`now`: as for
    /// [`put_at`](Self::put_at)).
    pub(super) fn put_encoded(
        &self,
        key: &K,
        encoded: &record::Encoded,
        deadline: u64,
        now: Option<u64>,
    ) {
        if let Some(compact) = self.compact {
            compact.put_bytes(key, encoded.key(), encoded.value(), deadline, now);
        }
    }

    /// Removes `key`.
    pub(super) fn delete(&self, key: &K) {
        match self.compact {
            Some(compact) => drop(compact.remove(key)),
            None => drop(self.plain.take(key)),
        }
    }

    /// Removes everything.
    pub(super) fn clear(&self) {
        match self.compact {
            Some(compact) => drop(compact.clear()),
            None => drop(self.plain.clear()),
        }
    }
}

/// What a write decided: nothing to write, or its result, its ops and its memory update.
pub(super) enum Decision<R, A> {
    Nothing(R),
    Write { result: R, ops: Ops, apply: A },
}

impl<R, A> Decision<R, A> {
    fn none(result: R) -> Self {
        Decision::Nothing(result)
    }

    pub(super) fn one(result: R, op: Op, apply: A) -> Self {
        Decision::Write {
            result,
            ops: Ops::One(op),
            apply,
        }
    }

    fn many(result: R, ops: Vec<Op>, apply: A) -> Self {
        Decision::Write {
            result,
            ops: Ops::Many(ops),
            apply,
        }
    }
}

/// Puts `value` under `key` in memory until the absolute `deadline` (0: never), the same
/// deadline the record on disk carries; an already-passed deadline removes the key. `now`: the
/// coarse time an async put just read to work out `deadline` (no clock is read then), or
/// `None` to read the clock.
pub(super) fn put_at<K: Key, V: Clone + Send + Sync + 'static>(
    mem: &MemoryStore<K, V>,
    key: K,
    value: V,
    deadline: u64,
    now: Option<u64>,
) {
    let written = match now {
        Some(now) => mem.put_until_read(key, value, deadline, now),
        None => mem.put_until(key, value, deadline, mem.clock().now_ms()),
    };
    if let Err(e) = written {
        tracing::error!(error = %e, "could not apply a committed disk write to the memory tier");
    }
}

impl<K, V> Store<K, V> for DiskStore<K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn subscribe_events(&self) -> Option<crate::Events<K>> {
        Some(self.subscribe())
    }

    fn store_stats(&self) -> Option<crate::Stats> {
        Some(self.stats())
    }

    fn install_eviction_listener(&self, listener: crate::EvictionListener<K, V>) -> Result<()> {
        self.install_listener(listener)
    }

    fn namespace(&self) -> Namespace {
        self.namespace.clone()
    }

    /// The store of `namespace` in the same directory (shares the lock, engine and writer).
    fn with_namespace(&self, namespace: &Namespace) -> Result<Self> {
        self.db.store(namespace.as_str())
    }

    /// This namespace of the same directory, its entries kept, with a memory tier that
    /// expires them `idle` after their last read or write (see
    /// [`DiskBuilder::time_to_idle`](crate::DiskBuilder::time_to_idle) for what reaches the
    /// disk). The tier is rebuilt, so this must be the namespace's only open handle (the
    /// handle it is called on then goes stale: every later read, write,
    /// `install_eviction_listener` or `with_time_to_idle` through it, or a clone of it, is
    /// [`Error::Closed`]; its `subscribe`, `stats` and `purge_expired` see the replaced tier,
    /// empty and silent; use the one returned); counters start at zero,
    /// an installed eviction listener follows.
    /// A store already idling after `idle` is returned as it is, one idling after another
    /// time is refused, and so is the larger-than-memory mode.
    fn with_time_to_idle(&self, idle: Duration) -> Result<Self> {
        self.with_idle(idle)
    }

    fn put(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.put_inner(key, value, ttl)
    }

    fn get(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        std::future::ready(self.get_through(key))
    }

    fn get_now(&self, key: &K) -> Option<Result<Option<V>>> {
        self.get_from_memory(key)
    }

    fn delete(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        self.delete_inner(key)
    }

    fn keys(&self) -> impl Future<Output = Result<Vec<K>>> + Send {
        let keys = if self.db.larger_than_memory() {
            self.keys_through(b"")
        } else if let Some(compact) = self.compact() {
            self.check().and_then(|()| compact.keys())
        } else {
            self.check().map(|()| self.mem().keys())
        };
        std::future::ready(keys)
    }

    fn contains(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        std::future::ready(self.check().and_then(|()| self.is_live(key)))
    }

    fn take(&self, key: &K) -> impl Future<Output = Result<Option<V>>> + Send {
        self.remove(key)
    }

    fn put_new(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.put_if(key, value, ttl, false)
    }

    fn put_many(
        &self,
        entries: Vec<(K, V)>,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<()>> + Send
    where
        V: 'static,
        K: 'static,
    {
        self.put_many_inner(entries, ttl)
    }

    fn delete_many(&self, keys: &[K]) -> impl Future<Output = Result<usize>> + Send {
        self.delete_many_inner(keys)
    }

    fn ttl(&self, key: &K) -> impl Future<Output = Result<Option<Expiry>>> + Send {
        std::future::ready(self.ttl_through(key))
    }

    fn expire(&self, key: &K, ttl: Option<Duration>) -> impl Future<Output = Result<bool>> + Send {
        self.expire_inner(key, ttl)
    }

    fn persist(&self, key: &K) -> impl Future<Output = Result<bool>> + Send {
        self.expire_inner(key, None)
    }

    fn incr_with_ttl(
        &self,
        key: &K,
        delta: i64,
        ttl_if_new: Option<Duration>,
    ) -> impl Future<Output = Result<V>> + Send
    where
        V: Counter + Clone,
        K: std::fmt::Debug,
    {
        self.incr_inner(key, delta, ttl_if_new)
    }

    fn replace(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send {
        self.put_if(key, value, ttl, true)
    }

    fn compare_and_set(
        &self,
        key: K,
        expected: Option<V>,
        new: V,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<bool>> + Send
    where
        V: PartialEq,
    {
        self.compare_and_set_inner(key, expected, new, ttl)
    }

    fn keys_with_prefix(&self, prefix: &str) -> impl Future<Output = Result<Vec<K>>> + Send
    where
        K: Key,
    {
        self.keys_with_prefix_inner(prefix)
    }

    fn count(&self) -> impl Future<Output = Result<usize>> + Send {
        std::future::ready(self.check().and_then(|()| self.live_count()))
    }

    fn clear(&self) -> impl Future<Output = Result<usize>> + Send {
        self.clear_inner()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        future::Future,
        pin::pin,
        task::{Context, Poll, Waker},
    };

    use super::*;
    use crate::Writes;

    fn async_store(dir: &std::path::Path) -> (DiskDb, DiskStore<String, u64>) {
        let db = DiskDb::builder()
            .dir(dir)
            .writes(Writes::Async)
            .open()
            .unwrap();
        let store = db.store("t").unwrap();
        (db, store)
    }

    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn an_async_put_whose_stripe_is_free_is_done_on_its_first_poll() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = async_store(dir.path());
        {
            let put = pin!(store.put("k".into(), 1, None));
            assert!(matches!(poll_once(put), Poll::Ready(Ok(()))));
        }
        assert_eq!(store.get_now(&"k".into()).unwrap().unwrap(), Some(1));
        drop((store, db));
        let (_db, store) = async_store(dir.path());
        assert_eq!(store.get_now(&"k".into()).unwrap().unwrap(), Some(1));
    }

    #[tokio::test]
    async fn an_async_put_whose_stripe_is_held_waits_for_it_and_writes_nothing_before() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = async_store(dir.path());
        let key = "k".to_string();
        let held = db.lock_here(Stripes::of(&store.disk_key(&key))).await;
        {
            let mut put = pin!(store.put(key.clone(), 1, None));
            assert!(poll_once(put.as_mut()).is_pending());
            assert!(poll_once(put.as_mut()).is_pending());
            assert_eq!(store.get_now(&key).unwrap().unwrap(), None);
            assert_eq!(db.queued_ops(), 0);
            drop(held);
            put.await.unwrap();
        }
        assert_eq!(store.get_now(&key).unwrap().unwrap(), Some(1));
        db.flush().await.unwrap();
        drop((store, db));
        let (_db, store) = async_store(dir.path());
        assert_eq!(store.get_now(&key).unwrap().unwrap(), Some(1));
    }
}
