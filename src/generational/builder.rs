//! `GenerationalStoreBuilder`: options for a `GenerationalStore`, validated at `build()`.

use std::{hash::Hash, marker::PhantomData, sync::Arc, time::Duration};

use super::{
    store::GenerationalStore,
    weigh::{HeapSize, Weigher},
};
use crate::{
    error::{Error, Result},
    events::{RemovalCause, DEFAULT_EVENT_CAPACITY},
    listener::Listener,
    namespace::Namespace,
    time::Clock,
};

/// Builds a [`GenerationalStore`]. Option names and defaults follow Nebulex's Local adapter.
///
/// # Defaults
/// - `gc_interval`: none — generations are pushed only by the limits or by
///   [`GenerationalStore::new_generation`];
/// - `max_size`: none (no entry limit);
/// - `allocated_memory`: none (no byte limit);
/// - `gc_cleanup_min_timeout`: 10 s (clean-up poll period when a limit is reached);
/// - `gc_cleanup_max_timeout`: 10 min (clean-up poll period when the store is empty);
/// - `gc_flush_delay`: 10 s (how long a dropped generation is kept before it is freed);
/// - `partitions`: available parallelism;
/// - `admission`: off (Nebulex's placement: every write goes to the newer generation);
/// - `weigher`: none — an entry weighs its inline size only (see [`Self::weigh_heap`]);
/// - `eviction_listener`: none (removals are only counted and sent as events);
/// - `time_to_idle`: none (entries expire only by their TTL);
/// - `namespace`: `"cache"`; `clock`: [`Clock::system`]; `stats`: on; `event_capacity`: 4096.
///
/// ```
/// use std::time::Duration;
/// use strata::GenerationalStore;
///
/// let store = GenerationalStore::<String, String>::builder()
///     .gc_interval(Duration::from_secs(3600))
///     .max_size(100_000)
///     .allocated_memory(64 << 20)
///     .weigh_heap()
///     .build()?;
/// assert!(GenerationalStore::<u64, u64>::builder().max_size(0).build().is_err());
/// # drop(store);
/// # Ok::<(), strata::Error>(())
/// ```
#[must_use]
pub struct GenerationalStoreBuilder<K, V> {
    types: PhantomData<fn() -> (K, V)>,
    pub(super) opts: Options,
    namespace: Result<Namespace>,
    clock: Clock,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
}

impl<K, V> std::fmt::Debug for GenerationalStoreBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationalStoreBuilder")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// The validated options, shared by a store and the namespaces made from it.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub gc_interval: Option<Duration>,
    pub max_size: Option<u64>,
    pub allocated_memory: Option<u64>,
    pub gc_cleanup_min_timeout: Duration,
    pub gc_cleanup_max_timeout: Duration,
    pub gc_flush_delay: Duration,
    pub partitions: usize,
    pub stats: bool,
    pub event_capacity: usize,
    pub admission: bool,
    pub tti: Option<Duration>,
}

/// Everything `from_parts` needs.
pub(crate) struct Parts<K, V> {
    pub opts: Options,
    pub namespace: Namespace,
    pub clock: Clock,
    pub weigher: Option<Weigher<K, V>>,
    pub listener: Option<Listener<K, V>>,
}

fn default_partitions() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get())
}

impl<K, V> GenerationalStoreBuilder<K, V> {
    pub(super) fn new() -> Self {
        GenerationalStoreBuilder {
            types: PhantomData,
            opts: Options {
                gc_interval: None,
                max_size: None,
                allocated_memory: None,
                gc_cleanup_min_timeout: Duration::from_secs(10),
                gc_cleanup_max_timeout: Duration::from_secs(600),
                gc_flush_delay: Duration::from_secs(10),
                partitions: default_partitions(),
                stats: true,
                event_capacity: DEFAULT_EVENT_CAPACITY,
                admission: false,
                tti: None,
            },
            namespace: Ok(Namespace::default()),
            clock: Clock::system(),
            weigher: None,
            listener: None,
        }
    }

    /// Pushes a new generation every `interval` (Nebulex `:gc_interval`). An unread entry then
    /// lives at most about `2 × interval`.
    pub fn gc_interval(mut self, interval: Duration) -> Self {
        self.opts.gc_interval = Some(interval);
        self
    }

    /// The most entries across both generations (Nebulex `:max_size`). Enforced on the write
    /// path, not only by the poll: see [`GenerationalStore`]'s "Limits" section.
    pub fn max_size(mut self, entries: u64) -> Self {
        self.opts.max_size = Some(entries);
        self
    }

    /// The most bytes across both generations (Nebulex `:allocated_memory`): each entry's inline
    /// size plus what the weigher says its key and value own on the heap.
    pub fn allocated_memory(mut self, bytes: u64) -> Self {
        self.opts.allocated_memory = Some(bytes);
        self
    }

    /// The clean-up poll period when a limit is reached (Nebulex `:gc_cleanup_min_timeout`).
    pub fn gc_cleanup_min_timeout(mut self, timeout: Duration) -> Self {
        self.opts.gc_cleanup_min_timeout = timeout;
        self
    }

    /// The clean-up poll period when the store is empty (Nebulex `:gc_cleanup_max_timeout`).
    pub fn gc_cleanup_max_timeout(mut self, timeout: Duration) -> Self {
        self.opts.gc_cleanup_max_timeout = timeout;
        self
    }

    /// How long a dropped generation is kept before the background thread frees it (Nebulex
    /// `:gc_flush_delay`). Zero frees it at the thread's next wake-up.
    pub fn gc_flush_delay(mut self, delay: Duration) -> Self {
        self.opts.gc_flush_delay = delay;
        self
    }

    /// Number of partitions (shards), each with its own lock.
    pub fn partitions(mut self, partitions: usize) -> Self {
        self.opts.partitions = partitions;
        self
    }

    /// TinyLFU admission (Einziger et al.), for a better hit ratio under a `max_size` or
    /// `allocated_memory` limit (not in Nebulex). A small sketch counts reads per key. A write
    /// of a *new* key goes to the older generation, at the back of its partition's eviction
    /// queue; when the store is over its limit, the new key is compared with the entry first in
    /// line, and the one read less often lately goes (a tie keeps the old entry; a candidate
    /// read 6 times or more still wins once in 128, as in Caffeine, so keeping a victim looking
    /// hot cannot lock keys out). A key that loses stays readable until the next eviction in its
    /// partition, which takes it first. A read moves an older entry to the newer generation;
    /// once that holds half the limit, the next write moves it whole to the back of the older
    /// one, least read first, instead of dropping the older generation. So one-off keys and
    /// scans cannot flush the keys that are read often, and a loop longer than the store keeps
    /// hitting the part it holds. While the store's hit ratio recovers from a lasting drop (a
    /// moved hot set) the sketch forgets faster and the newer generation, which still holds the
    /// old hot keys, moves to the older one at each step. A thread whose reads all missed
    /// through more than 64 admission tests in a row in one partition is taken for a scan: its
    /// new keys are rejected, however often read, until it hits again (a thread that writes
    /// without reading, or a store with `stats(false)`, is never taken for one). An explicit
    /// [`GenerationalStore::new_generation`] (or the GC's) still drops the older generation,
    /// keeping its frequently read entries. Costs a few relaxed atomic writes per read, 16 bytes
    /// of sketch per entry of capacity (128 KiB at least, so the keys a small store never holds
    /// do not saturate it) and an 8-byte hash per older entry in the eviction queue. Without a
    /// limit it has no effect.
    ///
    /// ```
    /// use strata::GenerationalStore;
    ///
    /// let store = GenerationalStore::builder().max_size(3).partitions(1).admission(true).build()?;
    /// for k in 0..3u64 {
    ///     store.put(k, k, None)?;
    /// }
    /// for _ in 0..5 {
    ///     store.get(&0); // key 0 is read often
    /// }
    /// for k in 10..100u64 {
    ///     store.put(k, k, None)?; // one-off keys: each stays readable until the next one
    ///     assert!(store.contains(&k));
    /// }
    /// assert_eq!(store.get(&0), Some(0));
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn admission(mut self, enabled: bool) -> Self {
        self.opts.admission = enabled;
        self
    }

    /// Heap bytes an entry owns, added to its inline size for `allocated_memory`. Keep it cheap
    /// and pure: it runs on every write, outside the partition lock.
    ///
    /// ```
    /// use strata::GenerationalStore;
    ///
    /// let store = GenerationalStore::<String, Vec<u8>>::builder()
    ///     .allocated_memory(1024 * 1024)
    ///     .weigher(|key: &String, value: &Vec<u8>| key.capacity() + value.capacity())
    ///     .build()?;
    /// store.put("blob".to_string(), vec![0; 4096], None)?;
    /// assert!(store.memory() >= 4096 + 4, "the heap bytes the weigher reports count");
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> usize + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Weighs keys and values by [`HeapSize`] (strings count their capacity, vectors their
    /// elements, ...).
    pub fn weigh_heap(self) -> Self
    where
        K: HeapSize + 'static,
        V: HeapSize + 'static,
    {
        self.weigher(|k: &K, v: &V| k.heap_size() + v.heap_size())
    }

    /// The namespace (validated at `build()`).
    pub fn namespace(mut self, namespace: impl AsRef<str>) -> Self {
        self.namespace = Namespace::new(namespace);
        self
    }

    /// The clock for TTLs and for the GC timers (a [`crate::ManualClock`] in tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Count hits, misses, writes, evictions (on by default).
    pub fn stats(mut self, enabled: bool) -> Self {
        self.opts.stats = enabled;
        self
    }

    /// Events buffered per subscriber before the oldest are dropped.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.opts.event_capacity = capacity;
        self
    }

    /// Hands every entry this store removes to `listener`, with its value and why it left
    /// ([`RemovalCause::Generation`] for a dropped generation, `Size` for a limit's small
    /// batches, `Expired`, `Replaced`, `Explicit`). Unlike [events](crate::Events), none is
    /// dropped; see [`EvictionListener`](crate::EvictionListener) for when and on which thread
    /// it runs. With a listener, a dropped generation is handed over entry by entry under its
    /// partition's lock instead of being freed later by the GC thread.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use strata::{GenerationalStore, RemovalCause};
    ///
    /// let removed = Arc::new(Mutex::new(Vec::new()));
    /// let log = removed.clone();
    /// let store = GenerationalStore::<String, u32>::builder()
    ///     .eviction_listener(move |key, value, cause| log.lock().unwrap().push((key, value, cause)))
    ///     .build()?;
    /// store.put("a".to_string(), 1, None)?;
    /// store.new_generation(true);
    /// store.new_generation(true); // "a" was not read: dropped with its generation
    /// assert_eq!(*removed.lock().unwrap(), [("a".to_string(), 1, RemovalCause::Generation)]);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(K, V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Listener(Arc::new(listener)));
        self
    }

    /// Expires an entry `idle` after its last read or write (moka's `time_to_idle`); with a
    /// TTL, at whichever deadline comes first. `get` and `touch` count as reads, every write
    /// of the key (`put`, `replace`, `incr`, `expire`, …) as a write; `contains`, `ttl` and
    /// `keys` only look. Expired entries are removed on access and by the purge (cause
    /// [`RemovalCause::Expired`]). Reads then take the partition's write lock (they move the
    /// entry's deadline), as a hit in the older generation does. No cost per entry; an entry
    /// with a TTL later than its idle deadline keeps it in a side map (about 16 bytes).
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{GenerationalStore, ManualClock};
    ///
    /// let time = ManualClock::new();
    /// let store = GenerationalStore::<String, u32>::builder()
    ///     .clock(time.clock())
    ///     .time_to_idle(Duration::from_secs(60))
    ///     .build()?;
    /// store.put("session".to_string(), 1, None)?;
    /// time.advance(Duration::from_secs(50));
    /// assert_eq!(store.get("session"), Some(1)); // read: idle for another 60 s from here
    /// time.advance(Duration::from_secs(60));
    /// assert_eq!(store.get("session"), None);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn time_to_idle(mut self, idle: Duration) -> Self {
        self.opts.tti = Some(idle);
        self
    }

    /// Validates the options and builds the store (and starts its GC thread if a timer or a
    /// limit is set).
    pub fn build(self) -> Result<GenerationalStore<K, V>>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        self.opts.validate()?;
        Ok(GenerationalStore::from_parts(Parts {
            opts: self.opts,
            namespace: self.namespace?,
            clock: self.clock,
            weigher: self.weigher,
            listener: self.listener,
        }))
    }
}

impl Options {
    pub(super) fn validate(&self) -> Result<()> {
        let positive = |option, d: Duration| match d.is_zero() {
            true => Err(Error::config(option, "must be greater than zero")),
            false => Ok(()),
        };
        if let Some(interval) = self.gc_interval {
            positive("gc_interval", interval)?;
        }
        if self.tti.is_some_and(|d| d.as_millis() == 0) {
            return Err(Error::config(
                "time_to_idle",
                "must be at least 1 ms; leave it unset for no idle expiry",
            ));
        }
        if self.max_size == Some(0) {
            return Err(Error::config(
                "max_size",
                "must be at least 1 entry; leave it unset for no limit",
            ));
        }
        if self.allocated_memory == Some(0) {
            return Err(Error::config(
                "allocated_memory",
                "must be at least 1 byte; leave it unset for no limit",
            ));
        }
        positive("gc_cleanup_min_timeout", self.gc_cleanup_min_timeout)?;
        positive("gc_cleanup_max_timeout", self.gc_cleanup_max_timeout)?;
        if self.gc_cleanup_min_timeout > self.gc_cleanup_max_timeout {
            let reason = format!(
                "gc_cleanup_min_timeout ({:?}) must not exceed gc_cleanup_max_timeout ({:?})",
                self.gc_cleanup_min_timeout, self.gc_cleanup_max_timeout
            );
            return Err(Error::config("gc_cleanup_min_timeout", reason));
        }
        match self.partitions {
            0 => Err(Error::config("partitions", "must be at least 1")),
            n if n > 1 << 16 => Err(Error::config("partitions", "must be at most 65536")),
            _ if self.event_capacity == 0 => {
                Err(Error::config("event_capacity", "must be at least 1"))
            }
            _ => Ok(()),
        }
    }

    /// True when a timer or a limit needs the background thread from the start.
    pub fn needs_gc_thread(&self) -> bool {
        self.gc_interval.is_some() || self.has_limits()
    }

    pub fn has_limits(&self) -> bool {
        self.max_size.is_some() || self.allocated_memory.is_some()
    }
}
