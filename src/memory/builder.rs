//! `MemoryStoreBuilder`: options for a `MemoryStore`, validated at `build()`.

use std::{
    hash::{BuildHasher, Hash},
    marker::PhantomData,
    sync::Arc,
    time::Duration,
};

use super::{
    bounded::{fitted_shards, Limits, Weigher},
    store::{DefaultHasher, MemoryStore},
};
use crate::{
    error::{Error, Result},
    events::{RemovalCause, DEFAULT_EVENT_CAPACITY},
    listener::{EvictionListener, Listener},
    namespace::Namespace,
    time::Clock,
};

/// Builds a [`MemoryStore`].
///
/// # Defaults
/// - `shards`: 4 × available parallelism, rounded up to a power of two, at least 16;
/// - `namespace`: `"cache"` (a label here: every MemoryStore is its own namespace);
/// - `clock`: [`Clock::system`];
/// - `stats`: on;
/// - `event_capacity`: 4096 events buffered per subscriber;
/// - `hasher`: foldhash, randomly seeded (use `std`'s `RandomState` for attacker-chosen keys);
/// - `max_capacity`, `max_weight`: none (unbounded). A bounded store evicts by S3-FIFO (see
///   [`max_capacity`](Self::max_capacity));
/// - `eviction_listener`: none (removals are only counted and sent as events);
/// - `time_to_idle`: none (entries expire only by their TTL).
///
/// ```
/// use strata::MemoryStore;
/// let store = MemoryStore::<u64, u64>::builder().shards(8).stats(false).build()?;
/// assert!(MemoryStore::<u64, u64>::builder().shards(0).build().is_err());
/// # Ok::<(), strata::Error>(())
/// ```
#[must_use]
#[derive(Debug)]
pub struct MemoryStoreBuilder<K, V, S = DefaultHasher> {
    types: PhantomData<fn() -> (K, V)>,
    namespace: Result<Namespace>,
    shards: Option<usize>,
    clock: Clock,
    stats: bool,
    event_capacity: usize,
    hasher: S,
    max_capacity: Option<u64>,
    max_weight: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
    tti: Option<Duration>,
    /// How many entries an unbounded store is about to be filled with (crate-private).
    expected: Option<u64>,
}

pub(super) struct Parts<K, V, S> {
    pub namespace: Namespace,
    pub shards: usize,
    pub clock: Clock,
    pub stats: bool,
    pub event_capacity: usize,
    pub hasher: S,
    pub limits: Limits<K, V>,
    pub listener: Option<EvictionListener<K, V>>,
    pub tti: Option<Duration>,
}

fn default_shards() -> usize {
    let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cpus * 4).next_power_of_two().max(16)
}

impl<K, V> MemoryStoreBuilder<K, V, DefaultHasher> {
    pub(super) fn new() -> Self {
        MemoryStoreBuilder {
            types: PhantomData,
            namespace: Ok(Namespace::default()),
            shards: None,
            clock: Clock::system(),
            stats: true,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            hasher: DefaultHasher::default(),
            max_capacity: None,
            max_weight: None,
            weigher: None,
            listener: None,
            tti: None,
            expected: None,
        }
    }

    pub(super) fn validated_parts(self) -> Parts<K, V, DefaultHasher> {
        Parts {
            namespace: Namespace::default(),
            shards: default_shards(),
            clock: self.clock,
            stats: self.stats,
            event_capacity: self.event_capacity,
            hasher: self.hasher,
            limits: Limits::default(),
            listener: None,
            tti: None,
        }
    }
}

impl<K, V, S> MemoryStoreBuilder<K, V, S> {
    /// The namespace (validated at `build()`).
    pub fn namespace(mut self, namespace: impl AsRef<str>) -> Self {
        self.namespace = Namespace::new(namespace);
        self
    }

    /// Number of shards (rounded up to a power of two). More shards, less lock contention
    /// between writers, and between readers and writers. A store bounded by [`max_capacity`](Self::max_capacity) takes this as a floor and picks
    /// up to twice as many, so each shard's share of the capacity fills its table (hashbrown
    /// tables have a power of two of slots: a share just over half of one size would leave
    /// half the next size empty).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The store is about to be filled with about `entries` entries (a `DiskStore` reopening):
    /// an unbounded store picks its shard count as a bounded one does, so those entries fill
    /// ~73 % of each shard's table instead of anywhere from 44 % to 87 %.
    #[cfg(feature = "disk")]
    pub(crate) fn expected_entries(mut self, entries: usize) -> Self {
        self.expected = Some(entries as u64);
        self
    }

    /// The clock used for expiry (a [`crate::ManualClock`] in tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Count hits, misses and writes (on by default; costs a relaxed add on a per-thread stripe).
    ///
    /// A bounded store ([`max_capacity`](Self::max_capacity) or [`max_weight`](Self::max_weight))
    /// also reads these counts to adapt its eviction policy: after a lasting drop in its hit
    /// ratio (a new hot set) it favours recent keys until the ratio recovers. With
    /// `stats(false)` there are no counts, so it keeps its default, frequency-first setting; on a
    /// workload whose hot set moves that can cost some hit ratio (up to ~0.6 points on the
    /// benchmark's shifting hot set).
    pub fn stats(mut self, enabled: bool) -> Self {
        self.stats = enabled;
        self
    }

    /// Events buffered per subscriber before the oldest are dropped.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// The hasher for keys.
    pub fn hasher<S2: BuildHasher>(self, hasher: S2) -> MemoryStoreBuilder<K, V, S2> {
        MemoryStoreBuilder {
            types: PhantomData,
            namespace: self.namespace,
            shards: self.shards,
            clock: self.clock,
            stats: self.stats,
            event_capacity: self.event_capacity,
            hasher,
            max_capacity: self.max_capacity,
            max_weight: self.max_weight,
            weigher: self.weigher,
            listener: self.listener,
            tti: self.tti,
            expected: self.expected,
        }
    }

    /// Holds at most `entries` entries (moka's and quick_cache's `max_capacity`), evicting by
    /// S3-FIFO: a new entry that is not read again soon is the first to go, so a scan of
    /// one-time keys does not flush the entries that are read often. Evictions are counted in
    /// [`Stats::evictions`](crate::Stats::evictions) and sent as [`EventKind::Evicted`]
    /// (cause [`RemovalCause::Size`]).
    ///
    /// The limit is split evenly over the shards, each evicting on its own; a bounded store
    /// uses at most one shard per 512 entries of capacity, so each shard's policy sees enough
    /// entries to tell hot from cold. Each shard's table grows as it fills, up to the size its
    /// share needs (about 73 % full at capacity), and keeps that size under eviction churn.
    /// Nothing is allocated up front: a store that never fills costs what it holds.
    ///
    /// [`EventKind::Evicted`]: crate::EventKind::Evicted
    /// [`RemovalCause::Size`]: crate::RemovalCause::Size
    ///
    /// ```
    /// use strata::MemoryStore;
    ///
    /// let store = MemoryStore::<u64, u64>::builder().max_capacity(1_000).build()?;
    /// for key in 0..5_000 {
    ///     store.put(key, key, None)?;
    /// }
    /// assert!(store.count() <= 1_000);
    /// assert_eq!(store.stats().evictions, 4_000);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn max_capacity(mut self, entries: u64) -> Self {
        self.max_capacity = Some(entries);
        self
    }

    /// Holds entries of at most `weight` in total, as the [`weigher`](Self::weigher) weighs
    /// them (for example their size in bytes). Needs a weigher. An entry heavier than a shard's
    /// share of the limit (`weight` / shards) is not kept: its write succeeds and the entry is
    /// evicted at once. A bounded-by-weight store uses at most one shard per 64 KiB of weight.
    ///
    /// ```
    /// use strata::MemoryStore;
    ///
    /// let store = MemoryStore::<String, Vec<u8>>::builder()
    ///     .max_weight(64 * 1024)
    ///     .weigher(|key: &String, value: &Vec<u8>| (key.len() + value.len()) as u32)
    ///     .build()?;
    /// store.put("blob".to_string(), vec![0; 1024], None)?;
    /// assert_eq!(store.get("blob").map(|v| v.len()), Some(1024));
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn max_weight(mut self, weight: u64) -> Self {
        self.max_weight = Some(weight);
        self
    }

    /// How much an entry weighs against [`max_weight`](Self::max_weight). It must give the
    /// same weight for the same key and value every time (it is called again on removal).
    /// [`max_weight`](Self::max_weight)'s example gives one weighing keys and values in bytes.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Weigher(Arc::new(weigher)));
        self
    }

    /// Hands every entry this store removes to `listener`, with its value and why it left
    /// (moka's `eviction_listener`). Unlike [events](crate::Events), none is dropped; see
    /// [`EvictionListener`](crate::EvictionListener) for when and on which thread it runs. With
    /// a listener, a read that finds an entry expired removes it at once, so `Expired` arrives
    /// without waiting for the sweeper.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use strata::{MemoryStore, RemovalCause};
    ///
    /// let removed = Arc::new(Mutex::new(Vec::new()));
    /// let log = removed.clone();
    /// let store = MemoryStore::<String, u32>::builder()
    ///     .eviction_listener(move |key, value, cause| log.lock().unwrap().push((key, value, cause)))
    ///     .build()?;
    /// store.put("a".to_string(), 1, None)?;
    /// store.put("a".to_string(), 2, None)?;
    /// store.delete("a");
    /// assert_eq!(
    ///     *removed.lock().unwrap(),
    ///     [("a".to_string(), 1, RemovalCause::Replaced), ("a".to_string(), 2, RemovalCause::Explicit)]
    /// );
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
    /// TTL, at whichever deadline comes first. Reads that extend the deadline: `get`,
    /// `get_with_ttl`; writes: every write of the key (`put`, `replace`, `incr`, `expire`, …).
    /// `contains`, `ttl`, `keys` and `entries` only look. Expired entries are removed by the
    /// sweeper like any other (cause [`RemovalCause::Expired`]). Costs nothing per entry
    /// without a TTL; an entry with a TTL later than its idle deadline keeps that TTL in a side
    /// map of its shard (about 16 bytes). Millisecond precision.
    ///
    /// ```
    /// use std::time::Duration;
    /// use strata::{ManualClock, MemoryStore};
    ///
    /// let time = ManualClock::new();
    /// let store = MemoryStore::<String, u32>::builder()
    ///     .clock(time.clock())
    ///     .time_to_idle(Duration::from_secs(60))
    ///     .build()?;
    /// store.put("session".to_string(), 1, None)?;
    /// time.advance(Duration::from_secs(50));
    /// assert_eq!(store.get("session"), Some(1)); // read: idle for another 60 s from here
    /// time.advance(Duration::from_secs(50));
    /// assert_eq!(store.get("session"), Some(1));
    /// time.advance(Duration::from_secs(60));
    /// assert_eq!(store.get("session"), None); // 60 s without a read
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn time_to_idle(mut self, idle: Duration) -> Self {
        self.tti = Some(idle);
        self
    }

    /// Validates the options and builds the store.
    pub fn build(mut self) -> Result<MemoryStore<K, V, S>>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        S: BuildHasher + Send + Sync + 'static,
    {
        let shards = match self.shards {
            None => default_shards(),
            Some(0) => return Err(Error::config("shards", "must be at least 1")),
            Some(n) if n > 1 << 16 => return Err(Error::config("shards", "must be at most 65536")),
            Some(n) => n.next_power_of_two(),
        };
        if self.event_capacity == 0 {
            return Err(Error::config("event_capacity", "must be at least 1"));
        }
        if self.tti.is_some_and(|d| d.as_millis() == 0) {
            return Err(Error::config(
                "time_to_idle",
                "must be at least 1 ms; leave it unset for no idle expiry",
            ));
        }
        let limits = self.limits()?;
        Ok(MemoryStore::from_parts(Parts {
            namespace: self.namespace?,
            shards: match self.expected {
                Some(entries) if !limits.is_bounded() => {
                    fitted_shards(entries, shards as u64).max(shards as u64) as usize
                }
                _ => limits.shards(shards),
            },
            clock: self.clock,
            stats: self.stats,
            event_capacity: self.event_capacity,
            hasher: self.hasher,
            limits,
            listener: self.listener.map(|l| l.0),
            tti: self.tti,
        }))
    }

    fn limits(&mut self) -> Result<Limits<K, V>> {
        if self.max_capacity == Some(0) {
            return Err(Error::config("max_capacity", "must be at least 1 entry"));
        }
        if self.max_weight == Some(0) {
            return Err(Error::config("max_weight", "must be at least 1"));
        }
        match (self.max_weight, &self.weigher) {
            (Some(_), None) => Err(Error::config(
                "max_weight",
                "needs a weigher: add .weigher(|key, value| size)",
            )),
            (None, Some(_)) => Err(Error::config(
                "weigher",
                "has no effect without .max_weight(..)",
            )),
            _ => Ok(Limits {
                max_entries: self.max_capacity,
                max_weight: self.max_weight,
                weigher: self.weigher.take(),
            }),
        }
    }
}
