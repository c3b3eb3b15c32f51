//! Options for opening a data directory, shared by `DiskDb::builder()` and the
//! `DiskStore::builder()` shorthand, validated at `open()`.

use std::{any::Any, marker::PhantomData, path::PathBuf, sync::Arc, time::Duration};

use serde::{de::DeserializeOwned, Serialize};

use super::{db::DiskDb, store::DiskStore};
use crate::{
    codec::{Format, Key},
    error::{Error, Result},
    namespace::Namespace,
    time::Clock,
};

/// When a write call returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Writes {
    /// After the write is committed to the engine's journal in the OS (it survives a crash of
    /// the process, `kill -9` included). Concurrent sync writers share one commit (group
    /// commit). Readers see the write only once its commit succeeded; a failed commit is an
    /// error and never visible. Power loss can still drop the un-fsynced tail: see
    /// `fsync_interval`. The default, as in Pow's MnesiaCache.
    #[default]
    Sync,
    /// As soon as the write is applied in memory and queued for the writer thread (a bounded
    /// queue: a writer blocks while it is full). Readers see it before it is on disk; a crash
    /// loses what was still queued, and a failed commit of queued writes makes the directory
    /// [`Error::Unavailable`](crate::Error::Unavailable).
    Async,
}

/// What to do when the data on disk cannot be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnCorrupt {
    /// Refuse to open with [`Error::Corrupt`] naming the path, or
    /// [`Error::LostCommits`](crate::Error::LostCommits) for a journal that lost acknowledged
    /// commits (the default).
    #[default]
    Fail,
    /// Log a warning, delete the engine's files (and the commit marker) and start empty
    /// (cache data is ephemeral).
    Discard,
}

/// The options, validated.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub dir: PathBuf,
    pub writes: Writes,
    pub open_timeout: Duration,
    pub fsync_interval: Option<Duration>,
    pub on_corrupt: OnCorrupt,
    pub accept_data_loss: bool,
    pub retire_journal_on_close: bool,
    pub clock: Clock,
    pub format: Format,
    pub queue_capacity: usize,
    /// Larger-than-memory mode: the memory tier keeps at most this many entries per namespace.
    pub memory_capacity: Option<u64>,
    /// Bounded all-in-memory mode: at most this many entries per namespace, memory and disk.
    pub max_capacity: Option<u64>,
    /// Every namespace's entries expire this long after their last read or write.
    pub time_to_idle: Option<Duration>,
    /// Bounded all-in-memory mode: at most this much weight per namespace, memory and disk.
    pub max_weight: Option<u64>,
    /// The store builder's weigher (a `WeighFn<K, V>` for its `K`, `V`); none: encoded size.
    pub weigher: Option<AnyWeigher>,
    /// Each namespace's memory tier keeps encoded records (`disk::compact`): `Some` if the
    /// builder said so, `None` for the default (see [`Options::compact_tier`]).
    pub compact_memory: Option<bool>,
    pub faults: Option<super::faults::Faults>,
}

/// How a namespace weighs an entry against `max_weight`.
pub(crate) type WeighFn<K, V> = dyn Fn(&K, &V) -> u32 + Send + Sync;

/// A store builder's weigher with its key and value types erased (the options are not
/// generic); a namespace of those types gets it back, any other weighs by encoded size.
#[derive(Clone)]
pub(crate) struct AnyWeigher(pub Arc<dyn Any + Send + Sync>);

impl std::fmt::Debug for AnyWeigher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Weigher")
    }
}

impl AnyWeigher {
    /// The weigher, if it weighs `K` and `V`.
    pub(crate) fn of<K: 'static, V: 'static>(&self) -> Option<Arc<WeighFn<K, V>>> {
        self.0.downcast_ref::<Arc<WeighFn<K, V>>>().cloned()
    }
}

impl Options {
    /// True if a namespace's memory tier evicts for size (and the disk follows it).
    /// (The all-in-memory mode: larger than memory, the memory tier's evictions stay on disk.)
    pub(crate) fn bounded(&self) -> bool {
        (self.max_capacity.is_some() || self.max_weight.is_some()) && self.memory_capacity.is_none()
    }

    /// True if each namespace's memory tier is the compact one: when asked for, and by
    /// default whenever it supports every option given (all in memory, unbounded, no idle
    /// expiry).
    pub(crate) fn compact_tier(&self) -> bool {
        self.compact_memory.unwrap_or_else(|| {
            self.memory_capacity.is_none()
                && self.max_capacity.is_none()
                && self.max_weight.is_none()
                && self.time_to_idle.is_none()
        })
    }
}

/// Marker: the builder opens a [`DiskDb`] (`DiskDb::builder()`).
#[derive(Debug)]
pub struct ForDb;

/// Marker: the builder opens one [`DiskStore`] (`DiskStore::builder()`).
#[derive(Debug)]
pub struct ForStore<K, V>(PhantomData<fn() -> (K, V)>);

/// Builds a [`DiskDb`].
pub type DiskDbBuilder = DiskBuilder<ForDb>;

/// Builds a [`DiskStore`] over its own [`DiskDb`] (shorthand for one namespace per directory).
pub type DiskStoreBuilder<K, V> = DiskBuilder<ForStore<K, V>>;

/// Options for opening a data directory (Pow's MnesiaCache options, for one node).
///
/// # Defaults
/// - `dir`: `./strata-data` (created if missing; its parent must exist);
/// - `writes`: [`Writes::Sync`];
/// - `open_timeout`: 15 s for locking, loading and purging (MnesiaCache's `:timeout`);
/// - `fsync_interval`: none (sync writes survive a process crash; add an interval for power
///   loss);
/// - `on_corrupt`: [`OnCorrupt::Fail`];
/// - `accept_data_loss`: false (a damaged journal that lost acknowledged commits is
///   [`Error::LostCommits`](crate::Error::LostCommits));
/// - `retire_journal_on_close`: false (the next open replays the journal, up to 64 MB);
/// - `clock`: [`Clock::system`];
/// - `format`: [`Format::MessagePack`];
/// - `queue_capacity`: 1 048 576 queued writes before writers block (memory is only used by
///   what is actually queued: about 100 bytes plus the encoded value per write);
/// - `memory_capacity`: none (every live entry is in memory; see
///   [`DiskBuilder::memory_capacity`] for the larger-than-memory mode);
/// - `max_capacity`: none (no limit on entries; see [`DiskBuilder::max_capacity`]);
/// - `max_weight`: none (no limit on weight; see [`DiskBuilder::max_weight`]); `weigher`
///   (store builder only): the entry's encoded size on disk;
/// - `time_to_idle`: none (entries expire only by their TTL; see
///   [`DiskBuilder::time_to_idle`]);
/// - `compact_memory`: on whenever nothing above asks for a tier that tracks entries one by
///   one (`memory_capacity`, `max_capacity`, `max_weight`, `time_to_idle`): each entry is kept
///   encoded, ~280 bytes per 240-byte session; see [`DiskBuilder::compact_memory`];
/// - `namespace` (store shorthand only): `"cache"`.
///
/// ```
/// use std::time::Duration;
/// use strata::{DiskDb, Writes};
///
/// let dir = tempfile::tempdir()?;
/// let db = DiskDb::builder()
///     .dir(dir.path().join("cache"))
///     .writes(Writes::Async)
///     .fsync_interval(Duration::from_secs(1))
///     .open()?;
/// assert!(DiskDb::builder().open_timeout(Duration::ZERO).open().is_err());
/// # drop(db); Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
#[derive(Debug)]
pub struct DiskBuilder<T = ForDb> {
    opts: Options,
    namespace: Result<Namespace>,
    kind: PhantomData<fn() -> T>,
}

impl<T> DiskBuilder<T> {
    pub(crate) fn new() -> Self {
        DiskBuilder {
            opts: Options {
                dir: PathBuf::from("./strata-data"),
                writes: Writes::Sync,
                open_timeout: Duration::from_secs(15),
                fsync_interval: None,
                on_corrupt: OnCorrupt::Fail,
                accept_data_loss: false,
                retire_journal_on_close: false,
                clock: Clock::system(),
                format: Format::MessagePack,
                queue_capacity: 1 << 20,
                memory_capacity: None,
                max_capacity: None,
                time_to_idle: None,
                max_weight: None,
                weigher: None,
                compact_memory: None,
                faults: None,
            },
            namespace: Ok(Namespace::default()),
            kind: PhantomData,
        }
    }

    /// The data directory (one per node; it is locked while open).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.opts.dir = dir.into();
        self
    }

    /// When write calls return: [`Writes::Sync`] or [`Writes::Async`].
    pub fn writes(mut self, writes: Writes) -> Self {
        self.opts.writes = writes;
        self
    }

    /// How long opening (lock, load, purge) may take before it fails with [`Error::Timeout`].
    /// The one-time move of a directory written by strata before format 2 (see the `disk`
    /// module's "Format") is not counted: the load after it gets the whole timeout.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.opts.open_timeout = timeout;
        self
    }

    /// Fsync the journal at this interval while there are unsynced writes, so at most this much
    /// is lost on power loss or an OS crash.
    pub fn fsync_interval(mut self, interval: Duration) -> Self {
        self.opts.fsync_interval = Some(interval);
        self
    }

    /// What to do with unreadable data: fail (default) or discard and start empty.
    pub fn on_corrupt(mut self, on_corrupt: OnCorrupt) -> Self {
        self.opts.on_corrupt = on_corrupt;
        self
    }

    /// Open a directory whose journal lost acknowledged commits (it was damaged) with what
    /// survived, logging how many commits are missing, instead of failing with
    /// [`Error::LostCommits`](crate::Error::LostCommits). Default: false.
    pub fn accept_data_loss(mut self, accept: bool) -> Self {
        self.opts.accept_data_loss = accept;
        self
    }

    /// Make a clean close leave an empty journal, so the next open does not replay it (a
    /// million entries reopen ~1.6–3.5 s faster). Costs up to 64 MB of padding writes and
    /// ~1.5 s at close, on the closing thread, and relies on an undocumented fjall 3.1
    /// threshold (if it moves, the close logs a warning and the next open replays as usual).
    /// Default: false.
    pub fn retire_journal_on_close(mut self, retire: bool) -> Self {
        self.opts.retire_journal_on_close = retire;
        self
    }

    /// The clock used for expiry (a [`crate::ManualClock`] in tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.opts.clock = clock;
        self
    }

    /// The value format on disk.
    pub fn format(mut self, format: Format) -> Self {
        self.opts.format = format;
        self
    }

    /// Writes (ops) queued for the writer thread before writers block. Async writes return as
    /// soon as they are queued, so this is the burst they absorb at memory speed; past it they
    /// go at the engine's pace.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.opts.queue_capacity = capacity;
        self
    }

    /// Larger-than-memory mode (Mnesia's `disc_only_copies`, foyer's hybrid cache): each
    /// namespace's memory tier holds at most `entries` hot entries (a bounded
    /// [`MemoryStore`](crate::MemoryStore), scan-resistant), the disk holds everything. A read
    /// that misses memory reads the engine and promotes what it finds; `keys`, `count` and
    /// prefix scans read the engine. Opening does not load anything (the tier starts cold) and
    /// does not scan for expired records: reads check every record's deadline, and compaction
    /// drops expired records.
    ///
    /// A read that misses memory waits for a write in flight on the same key stripe (so it
    /// never promotes a value that write is replacing) and does blocking disk I/O on the
    /// calling thread (fjall reads, usually served by the OS page cache).
    ///
    /// Needs [`Writes::Sync`]: an async write still queued would be invisible to a read that
    /// misses memory, so `open()` refuses the combination. The memory tier's events include
    /// its evictions, which in this mode do not remove anything from the store.
    ///
    /// The disk grows without limit unless [`max_capacity`](Self::max_capacity) is set too:
    /// then the disk holds at most that many entries per namespace, evicting FIFO by
    /// insertion (see there).
    ///
    /// ```
    /// use strata::{DiskStore, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = DiskStore::<u64, u64>::builder()
    ///     .dir(dir.path())
    ///     .memory_capacity(100)
    ///     .open()?;
    /// for i in 0..1_000 {
    ///     store.put(i, i, None).await?;
    /// }
    /// assert_eq!(store.get(&3).await?, Some(3), "read from disk, promoted");
    /// assert_eq!(store.count().await?, 1_000);
    /// # Ok(()) }
    /// ```
    pub fn memory_capacity(mut self, entries: u64) -> Self {
        self.opts.memory_capacity = Some(entries);
        self
    }

    /// At most `entries` entries per namespace, in memory **and on disk**: the memory tier is a
    /// bounded [`MemoryStore`](crate::MemoryStore) (S3-FIFO, scan-resistant), and every entry
    /// it evicts for size is deleted on disk as well, so it is gone after a restart too. The
    /// delete is queued by the write that caused the eviction before it returns (as an async
    /// write: a crash may lose it, and the next open evicts the surplus again). A put of the
    /// evicted key after the eviction is never deleted by it. Evictions count in
    /// [`DiskStore::stats`](crate::DiskStore::stats) and show in its events.
    ///
    /// With [`DiskBuilder::memory_capacity`] (larger than memory) it is the limit of the disk,
    /// which keeps what the memory tier evicts from its hot set: past it the entry written
    /// first as a new key (an overwrite keeps its place) is deleted, from memory and disk, by
    /// the write that went over, before it returns; gone after a restart too. The disk does
    /// not record insertion order, so after a restart the queue starts in key order; an open
    /// over the limit (a lowered limit) deletes the surplus. The FIFO keeps every key on disk
    /// in memory (about the key's length plus 80 bytes each); an expired record counts until
    /// it is evicted or the next open drops it. `open()` refuses 0.
    ///
    /// ```
    /// use strata::{DiskStore, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = DiskStore::<u64, u64>::builder()
    ///     .dir(dir.path())
    ///     .max_capacity(100)
    ///     .open()?;
    /// for i in 0..1_000 {
    ///     store.put(i, i, None).await?;
    /// }
    /// assert!(store.count().await? <= 100);
    /// drop(store);
    /// let reopened = DiskStore::<u64, u64>::builder().dir(dir.path()).open()?;
    /// assert!(reopened.count().await? <= 100, "evicted entries are gone on disk too");
    /// # Ok(()) }
    /// ```
    pub fn max_capacity(mut self, entries: u64) -> Self {
        self.opts.max_capacity = Some(entries);
        self
    }

    /// At most `weight` in total per namespace, in memory **and on disk**, as a weigher weighs
    /// the entries (moka's and quick_cache's `max_weight`): by default each entry's encoded
    /// size on disk in bytes (key with its namespace, value, deadline), or what
    /// [`DiskStoreBuilder::weigher`](DiskBuilder::weigher) says. As with
    /// [`max_capacity`](Self::max_capacity), which it combines with, the memory tier evicts
    /// (S3-FIFO) and every entry it evicts is deleted on disk too, so it is gone after a
    /// restart. An entry heavier than a shard's share of the limit (see
    /// [`MemoryStoreBuilder::max_weight`](crate::MemoryStoreBuilder::max_weight)) is not
    /// kept: its write succeeds, and it is evicted at once, on disk too.
    ///
    /// The default weigher encodes the value once more on every weighing (a write and its
    /// removal); give a cheap one on hot paths. Not combinable with
    /// [`memory_capacity`](Self::memory_capacity) (whose disk limit counts entries);
    /// `open()` refuses it, and refuses 0.
    ///
    /// ```
    /// use strata::{DiskStore, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = DiskStore::<u64, String>::builder()
    ///     .dir(dir.path())
    ///     .max_weight(64 * 1024)
    ///     .weigher(|_key, value: &String| value.len() as u32)
    ///     .open()?;
    /// for i in 0..100 {
    ///     store.put(i, "x".repeat(1024), None).await?;
    /// }
    /// assert!(store.count().await? <= 64, "at most 64 KiB of values");
    /// # Ok(()) }
    /// ```
    pub fn max_weight(mut self, weight: u64) -> Self {
        self.opts.max_weight = Some(weight);
        self
    }

    /// Expires every entry `idle` after its last read or write (moka's `time_to_idle`), or at
    /// its TTL deadline if that comes first, in every namespace of the directory. Reads that
    /// extend the idle time and writes that restart it are those of
    /// [`MemoryStoreBuilder::time_to_idle`](crate::MemoryStoreBuilder::time_to_idle).
    ///
    /// - **An entry that idled out is deleted on disk too**, so it does not come back after a
    ///   restart: the memory tier's expiry hands the key to a background thread, which queues
    ///   the delete under the key's stripe lock and only if memory still has no live entry, so
    ///   a write of the key racing the expiry wins. A close deletes what is still pending.
    /// - **The disk does not record reads**: after a restart every entry gets a fresh idle
    ///   window, counted from the open (its TTL deadline still holds).
    /// - Refused with [`memory_capacity`](Self::memory_capacity): an entry only on disk has no
    ///   record of its last read, so it could never idle out.
    /// - An entry that reaches its TTL deadline is deleted on disk at once too (the expiry
    ///   cannot tell the two apart), rather than left to compaction.
    ///
    /// [`Store::with_time_to_idle`](crate::Store::with_time_to_idle) gives one namespace idle
    /// expiry instead (what `Cache::builder().time_to_idle(..)` calls).
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{DiskStore, ManualClock, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let time = ManualClock::new();
    /// let store = DiskStore::<String, u32>::builder()
    ///     .dir(dir.path())
    ///     .clock(time.clock())
    ///     .time_to_idle(Duration::from_secs(60))
    ///     .open()?;
    /// store.put("session".into(), 1, None).await?;
    /// time.advance(Duration::from_secs(50));
    /// assert_eq!(store.get(&"session".into()).await?, Some(1)); // idle again from here
    /// time.advance(Duration::from_secs(60));
    /// assert_eq!(store.get(&"session".into()).await?, None); // and gone on disk too
    /// # Ok(()) }
    /// ```
    pub fn time_to_idle(mut self, idle: Duration) -> Self {
        self.opts.time_to_idle = Some(idle);
        self
    }

    /// Keep each entry in memory as ONE encoded record (key bytes, the value encoded as on
    /// disk, the deadline) in a per-shard arena, decoded on every read, instead of the key and
    /// value as they are. **The default** in the all-in-memory mode when none of
    /// [`memory_capacity`](Self::memory_capacity), [`max_capacity`](Self::max_capacity),
    /// [`max_weight`](Self::max_weight) or [`time_to_idle`](Self::time_to_idle) is set (their
    /// tiers track entries one by one, so with any of them the default is the other tier).
    ///
    /// The trade-off: about 280 bytes per 240-byte session after a reopen instead of ~357 and
    /// no allocation per entry, against a `get` that decodes the value (0.95x the other tier's
    /// `get` for session records; more for a big struct) and an eviction listener that gets
    /// each removed value decoded. `compact_memory(false)` keeps keys and values as they are
    /// (a `get` clones); `compact_memory(true)` insists on the compact tier (`open()` then
    /// refuses the four options above). See BENCHMARKS.md for both tiers' figures.
    ///
    /// Every `Store` operation, prefix matching, conditional writes, counters, TTLs, stats,
    /// events (put, replace, delete, expired) and the eviction listener
    /// (`Store::install_eviction_listener`: key, value and cause of every removal) work as in
    /// the other tier. An expired entry is
    /// never returned; it leaves memory (and its `Expired` event is sent) when a read finds it,
    /// when writes to its shard sweep it, or when the tier's sweeper thread does. Without a
    /// deadline index, the sweeper scans each shard whose earliest deadline has passed and
    /// then rests ~4 µs per entry scanned (at least 64 ms), so an expired entry may stay in
    /// memory (hidden) up to that rest past its deadline: ~4 s at a million entries.
    ///
    /// `Store::with_time_to_idle` (what `Cache::builder().time_to_idle(..)` calls) swaps a
    /// compact tier the builder chose by default for the other tier, idling out, with every
    /// entry and the listener; a tier asked for with `compact_memory(true)` refuses it
    /// ([`Error::InvalidConfig`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{DiskStore, Store};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = DiskStore::<String, String>::builder()
    ///     .dir(dir.path())
    ///     .compact_memory(true)
    ///     .open()?;
    /// let hour = Some(Duration::from_secs(3600));
    /// store.put("session:1".into(), "alice".into(), hour).await?;
    /// assert_eq!(store.get(&"session:1".into()).await?.as_deref(), Some("alice"));
    /// drop(store);
    /// // The other tier: keys and values kept as they are, a `get` clones.
    /// let reopened = DiskStore::<String, String>::builder()
    ///     .dir(dir.path())
    ///     .compact_memory(false)
    ///     .open()?;
    /// assert_eq!(reopened.count().await?, 1);
    /// drop(reopened);
    /// assert!(DiskStore::<String, String>::builder()
    ///     .dir(dir.path())
    ///     .compact_memory(true)
    ///     .max_capacity(10)
    ///     .open()
    ///     .is_err());
    /// # Ok(()) }
    /// ```
    pub fn compact_memory(mut self, compact: bool) -> Self {
        self.opts.compact_memory = Some(compact);
        self
    }

    /// Test hook: commits go through `faults`, which can fail or park them (see
    /// [`Faults`](crate::Faults)). Hidden: for strata's own tests and those of stores built on
    /// it; never set it in production.
    #[doc(hidden)]
    pub fn faults(mut self, faults: super::faults::Faults) -> Self {
        self.opts.faults = Some(faults);
        self
    }

    fn validated(self) -> Result<(Options, Result<Namespace>)> {
        let o = &self.opts;
        if o.open_timeout.is_zero() {
            return Err(Error::config("open_timeout", "must be greater than zero"));
        }
        if o.fsync_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::config(
                "fsync_interval",
                "must be greater than zero; leave it unset for no periodic fsync",
            ));
        }
        if o.queue_capacity == 0 {
            return Err(Error::config("queue_capacity", "must be at least 1"));
        }
        if o.memory_capacity == Some(0) {
            return Err(Error::config(
                "memory_capacity",
                "must be at least 1; leave it unset to keep every entry in memory",
            ));
        }
        if o.memory_capacity.is_some() && o.writes == Writes::Async {
            return Err(Error::config(
                "memory_capacity",
                "needs Writes::Sync: a queued async write would be invisible to a read that misses memory",
            ));
        }
        if o.max_capacity == Some(0) {
            return Err(Error::config(
                "max_capacity",
                "must be at least 1; leave it unset for no limit",
            ));
        }
        if o.max_weight == Some(0) {
            return Err(Error::config(
                "max_weight",
                "must be at least 1; leave it unset for no limit",
            ));
        }
        if o.weigher.is_some() && o.max_weight.is_none() {
            return Err(Error::config(
                "weigher",
                "has no effect without .max_weight(..)",
            ));
        }
        if o.max_weight.is_some() && o.memory_capacity.is_some() {
            return Err(Error::config(
                "max_weight",
                "cannot be combined with memory_capacity (its disk limit, max_capacity, counts entries); pick one",
            ));
        }
        if let Some(idle) = o.time_to_idle {
            super::idle::validate(idle, o.memory_capacity.is_some())?;
        }
        if o.compact_memory == Some(true) {
            let refused = [
                (o.memory_capacity.is_some(), "memory_capacity", "the larger-than-memory mode already keeps only a hot set in memory"),
                (o.max_capacity.is_some(), "max_capacity", "a bounded tier must track each entry for eviction; bound the store or make its tier compact, not both"),
                (o.max_weight.is_some(), "max_weight", "a bounded tier must track each entry for eviction; bound the store or make its tier compact, not both"),
                (o.time_to_idle.is_some(), "time_to_idle", "idle expiry moves each entry's deadline on every read; use TTLs with a compact tier"),
            ];
            if let Some((_, option, why)) = refused.into_iter().find(|(set, ..)| *set) {
                return Err(Error::config(
                    "compact_memory",
                    format!("cannot be combined with {option}: {why}"),
                ));
            }
        }
        if o.dir.as_os_str().is_empty() {
            return Err(Error::config("dir", "must not be empty"));
        }
        Ok((self.opts, self.namespace))
    }
}

impl DiskBuilder<ForDb> {
    /// Validates the options, locks the directory, loads it and purges expired entries of every
    /// namespace. Blocks while loading (call it at start-up, or in `spawn_blocking`).
    pub fn open(self) -> Result<DiskDb> {
        DiskDb::open(self.validated()?.0)
    }
}

impl<K, V> DiskBuilder<ForStore<K, V>>
where
    K: Key,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// The namespace of the store (validated at `open()`).
    pub fn namespace(mut self, namespace: impl AsRef<str>) -> Self {
        self.namespace = Namespace::new(namespace);
        self
    }

    /// How much an entry weighs against [`max_weight`](DiskBuilder::max_weight) (needs it),
    /// instead of its encoded size. It must give the same weight for the same key and value
    /// every time (it is called again on removal). Namespaces of other types opened through
    /// [`DiskStore::db`] weigh by encoded size. [`max_weight`](Self::max_weight)'s example gives
    /// one weighing values in bytes.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        let weigh: Arc<WeighFn<K, V>> = Arc::new(weigher);
        self.opts.weigher = Some(AnyWeigher(Arc::new(weigh)));
        self
    }

    /// Opens the directory as [`DiskDbBuilder::open`] does and returns the store of the
    /// namespace; [`DiskStore::db`] reaches the other namespaces.
    pub fn open(self) -> Result<DiskStore<K, V>> {
        let (opts, namespace) = self.validated()?;
        let namespace = namespace?;
        DiskDb::open(opts)?.store(namespace.as_str())
    }
}
