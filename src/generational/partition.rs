//! One partition: the newer and the older generation, each a hash table of inline entries.
//!
//! Invariant: within a partition a key is in at most one generation. Every operation that moves
//! an entry (promotion, rotation) does so under the partition's write lock, so no reader ever
//! sees a key twice or in neither place while it moves.

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicI64, Ordering},
};

use hashbrown::HashTable;

use crate::{local::IdleCap, time::Clock};

/// TTL deadlines kept beside the tables with `time_to_idle`, by entry hash (`idle.rs`).
pub(crate) type Ttls = std::collections::HashMap<u64, u64, foldhash::fast::RandomState>;

/// An entry. `deadline` is Unix milliseconds (0: none); `weight` is its accounted size in bytes.
pub(crate) struct Slot<K, V> {
    pub key: K,
    pub value: V,
    pub deadline: u64,
    pub weight: u32,
    /// With `time_to_idle`: where the TTL deadline lives (`idle.rs`); in the padding.
    pub cap: IdleCap,
}

impl<K, V> Slot<K, V> {
    #[inline]
    pub fn is_expired(&self, now: u64) -> bool {
        self.deadline != 0 && self.deadline <= now
    }

    /// As [`is_expired`](Self::is_expired), reading the clock only for an entry with a deadline,
    /// and then cheaply (see [`Clock::is_due`]).
    #[inline]
    pub fn is_expired_on(&self, clock: &Clock) -> bool {
        self.deadline != 0 && clock.is_due(self.deadline)
    }
}

/// One generation of one partition.
pub(crate) struct Gen<K, V> {
    pub table: HashTable<Slot<K, V>>,
    pub bytes: u64,
}

impl<K, V> Default for Gen<K, V> {
    fn default() -> Self {
        Gen {
            table: HashTable::new(),
            bytes: 0,
        }
    }
}

impl<K, V> Gen<K, V> {
    /// Removes the entry matching `eq` under `hash`.
    #[inline]
    pub fn remove(&mut self, hash: u64, eq: impl FnMut(&Slot<K, V>) -> bool) -> Option<Slot<K, V>> {
        let slot = self.table.find_entry(hash, eq).ok()?.remove().0;
        self.bytes -= u64::from(slot.weight);
        Some(slot)
    }

    /// Inserts `slot` (whose key is known to be absent).
    #[inline]
    pub fn insert_new(&mut self, hash: u64, slot: Slot<K, V>, rehash: impl Fn(&Slot<K, V>) -> u64) {
        self.bytes += u64::from(slot.weight);
        self.table.insert_unique(hash, slot, rehash);
    }
}

/// Both generations of a partition.
pub(crate) struct Partition<K, V> {
    pub newer: Gen<K, V>,
    pub older: Gen<K, V>,
    /// With `time_to_idle` only: TTL deadlines of entries flagged `SideTtl`.
    pub ttls: Ttls,
    /// Admission mode only (`gc.rs`): the older generation's eviction order, by entry hash,
    /// the next victim first. Hashes of entries that left the older generation stay until
    /// they reach the front (or a compaction), and are skipped there.
    pub queue: VecDeque<u64>,
    /// Admission mode only: the hash of the last new key that lost the comparison with the
    /// entry it would displace. It stays readable until the next eviction in this partition,
    /// which takes it first (TinyLFU rejects it at once; a put here is always readable).
    pub rejected: Option<u64>,
    /// Admission mode only: the state of the admission jitter's random numbers.
    pub jitter: u64,
    /// Admission mode only: the judging thread's own hits and misses at this partition's last
    /// admission test, and how many tests in a row followed misses only (`gc.rs`'s scan guard).
    pub scan_seen: (u64, u64),
    pub scan_run: u32,
}

impl<K, V> Default for Partition<K, V> {
    fn default() -> Self {
        Partition {
            newer: Gen::default(),
            older: Gen::default(),
            ttls: Ttls::default(),
            queue: VecDeque::new(),
            rejected: None,
            jitter: 0,
            scan_seen: (u64::MAX, u64::MAX),
            scan_run: 0,
        }
    }
}

/// Which generation a tally change concerns.
#[derive(Clone, Copy)]
pub(crate) enum Which {
    Newer,
    Older,
}

/// Store-wide entry and byte counts per generation, kept exact by updating them under the
/// partition lock of every change. Read without locks by the limit checks.
#[derive(Default)]
pub(crate) struct Tally {
    len: [AtomicI64; 2],
    bytes: [AtomicI64; 2],
}

impl Tally {
    #[inline]
    pub fn add(&self, which: Which, len: i64, bytes: i64) {
        let i = which as usize;
        self.len[i].fetch_add(len, Ordering::Relaxed);
        if bytes != 0 {
            self.bytes[i].fetch_add(bytes, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn slot(&self, which: Which, slot_weight: u32, sign: i64) {
        self.add(which, sign, sign * i64::from(slot_weight));
    }

    /// Entries in `which`.
    #[inline]
    pub fn len(&self, which: Which) -> u64 {
        self.len[which as usize].load(Ordering::Relaxed).max(0) as u64
    }

    /// Bytes in `which`.
    #[inline]
    pub fn bytes(&self, which: Which) -> u64 {
        self.bytes[which as usize].load(Ordering::Relaxed).max(0) as u64
    }

    /// Entries in both generations.
    #[inline]
    pub fn total_len(&self) -> u64 {
        self.len(Which::Newer) + self.len(Which::Older)
    }

    /// Bytes in both generations.
    #[inline]
    pub fn total_bytes(&self) -> u64 {
        self.bytes(Which::Newer) + self.bytes(Which::Older)
    }
}
