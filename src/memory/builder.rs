//! `MemoryStoreBuilder`: options for a `MemoryStore`, validated at `build()`.

use std::{
    hash::{BuildHasher, Hash},
    marker::PhantomData,
};

use super::store::{DefaultHasher, MemoryStore};
use crate::{
    error::{Error, Result},
    events::DEFAULT_EVENT_CAPACITY,
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
/// - `hasher`: foldhash, randomly seeded (use `std`'s `RandomState` for attacker-chosen keys).
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
}

pub(super) struct Parts<S> {
    pub namespace: Namespace,
    pub shards: usize,
    pub clock: Clock,
    pub stats: bool,
    pub event_capacity: usize,
    pub hasher: S,
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
        }
    }

    pub(super) fn validated_parts(self) -> Parts<DefaultHasher> {
        Parts {
            namespace: Namespace::default(),
            shards: default_shards(),
            clock: self.clock,
            stats: self.stats,
            event_capacity: self.event_capacity,
            hasher: self.hasher,
        }
    }
}

impl<K, V, S> MemoryStoreBuilder<K, V, S> {
    /// The namespace (validated at `build()`).
    pub fn namespace(mut self, namespace: impl AsRef<str>) -> Self {
        self.namespace = Namespace::new(namespace);
        self
    }

    /// Number of shards (rounded up to a power of two). More shards, less lock contention.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The clock used for expiry (a [`crate::ManualClock`] in tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Count hits, misses and writes (on by default; costs a relaxed add on a per-thread stripe).
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
        }
    }

    /// Validates the options and builds the store.
    pub fn build(self) -> Result<MemoryStore<K, V, S>>
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
        Ok(MemoryStore::from_parts(Parts {
            namespace: self.namespace?,
            shards,
            clock: self.clock,
            stats: self.stats,
            event_capacity: self.event_capacity,
            hasher: self.hasher,
        }))
    }
}
