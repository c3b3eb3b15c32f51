//! The compact memory tier ([`DiskBuilder::compact_memory`](crate::DiskBuilder::compact_memory)):
//! each live entry of a namespace is ONE encoded record in its shard's arena, found by its key
//! bytes and decoded on every read.
//!
//! Why: the default tier keeps each `K` and `V` as they are. For a session (a 40-byte `String`
//! key, a 200-byte `String` value) that is two heap chunks (48 + 208 bytes) and a 56-byte table
//! slot: ~357 bytes per entry after a reopen. Here an entry costs its record (its deadline, two
//! varint lengths, the key bytes and the encoded value, as on disk) and an 8-byte offset in a
//! hashbrown table sized at the load for ~80 % occupancy. There is no allocation per entry,
//! so no allocator header or rounding either.
//!
//! A record at `offset` in its shard's arena:
//! `[deadline: u64 LE, 0 = never][key length: varint][value length: varint][key][value]`. Only
//! this module writes arenas; still, every read of one is bounds-checked, and bytes that do not
//! parse or decode are an error or a miss, never a panic.
//!
//! - **Writes** append the new record; the one it replaces (or a removed one) becomes
//!   garbage. Once garbage is a quarter of a shard's arena (and at least [`GARBAGE_MIN`]), the
//!   write compacts the shard under its write lock: the live records are copied into a fresh
//!   arena, so each byte of garbage costs at most three bytes of copying. The pause is one
//!   shard's arena (~1.6 MB for sessions: the load picks the shard count for that).
//! - **Expiry**: reads check the deadline, so an expired entry is never returned; a read that
//!   finds one removes it (as the default tier does). The rest are dropped by a sweep of their
//!   shard, which a write runs once the shard's earliest deadline has passed and an eighth of
//!   its entries were written since the last sweep (so a sweep costs O(1) per write, amortized).
//!   Expired entries nobody reads or writes are dropped by the tier's sweeper thread
//!   (`sweeper`), which scans the shards whose earliest deadline has passed; a sweep that
//!   leaves a quarter of a shard's arena garbage compacts it, so their memory is given back.
//! - **Events** (put, replace, delete, expired) and **stats** are those of the default tier.
//! - **Eviction listener**: while one is installed, every removal (an overwrite, a delete, a
//!   clear, an expiry found by a read, a write or a sweep) decodes the removed record's key
//!   and value under the shard's write lock and queues them on the shard's lane
//!   (`crate::listener`), delivered once the lock is released. Without one, a write pays one
//!   load of the listener slot. Bounded and idle tiers are the default tier's: the builder
//!   picks that tier for them (and refuses them with `compact_memory(true)`).

mod sweeper;

use std::{
    cell::RefCell,
    hash::BuildHasher,
    sync::{Arc, Weak},
};

use hashbrown::{hash_table::Entry, HashTable};
use parking_lot::RwLock;
use serde::{de::DeserializeOwned, Serialize};

use super::{load::RawEntries, record};
use crate::{
    codec::{decode_value, encode_value_into, Format, Key},
    error::{Error, Result},
    events::{EventBus, EventKind, Events, RemovalCause},
    listener::{EvictionListener, ListenerSlot},
    stats::{Counter as Stat, Stats, StatsRecorder},
    store::Expiry,
    sweeper::Schedule,
    time::Clock,
};

/// The hasher of keys' bytes.
type Hasher = foldhash::fast::RandomState;

/// A shard compacts only with at least this much garbage.
const GARBAGE_MIN: usize = 4 * 1024;
/// Entries per shard after a load: 80 % of the 7/8 of 8192 buckets hashbrown fills, so the
/// table costs ~11 bytes per entry and an arena of sessions is ~1.6 MB (the compaction pause).
const LOADED_PER_SHARD: usize = 5_700;
const SHARDS_MIN: usize = 64;
const SHARDS_MAX: usize = 8192;
/// Below this many entries a load fills on the calling thread alone.
const PARALLEL_MIN: usize = 32 * 1024;

/// The compact memory tier of one namespace. Cheap to clone: clones share the entries.
pub(crate) struct Compact<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Compact<K, V> {
    fn clone(&self) -> Self {
        Compact {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K, V> {
    shards: Box<[RwLock<Shard>]>,
    hasher: Hasher,
    clock: Clock,
    format: Format,
    stats: StatsRecorder,
    events: EventBus<K>,
    /// The eviction listener, one delivery lane per shard: a removed record's key and value
    /// are decoded (under the shard's lock, so removals of a key queue in order) only while
    /// one is installed.
    listener: ListenerSlot<K, V>,
    /// When the background sweeper wakes (`crate::sweeper`).
    schedule: Schedule,
    me: Weak<Inner<K, V>>,
}

/// `value`'s bytes, as a compact tier keeps them, decoded.
fn decode<V: DeserializeOwned>(value: &[u8]) -> Result<V> {
    // No key in the error: keys may be session ids.
    decode_value(value, "").map_err(|e| match e {
        Error::Decode(mut e) => {
            e.reason = format!("a value in the compact memory tier: {}", e.reason);
            Error::Decode(e)
        }
        other => other,
    })
}

impl<K: Key, V: DeserializeOwned + Send + Sync + 'static> Inner<K, V> {
    /// Queues the removal of `rec` from shard `lane` for the eviction listener, if one is
    /// installed. Call it under the shard's write lock, and [`ListenerSlot::deliver`] the lane
    /// once it is released. A record whose key or value no longer decodes cannot be handed
    /// over: it is logged (without the key) and skipped.
    #[inline]
    fn removed(&self, lane: usize, rec: &Rec<'_>, cause: RemovalCause) {
        let Some(notifier) = self.listener.notifier() else {
            return;
        };
        match (K::decode_key(rec.key), decode::<V>(rec.value)) {
            (Ok(key), Ok(value)) => notifier.push(lane, key, value, cause),
            _ => tracing::warn!(
                ?cause,
                "a removed entry of the compact memory tier does not decode: the eviction listener does not hear of it"
            ),
        }
    }

    /// True if an eviction listener is installed.
    #[inline]
    fn listening(&self) -> bool {
        self.listener.notifier().is_some()
    }
}

/// One shard: the offsets of its records, by key hash, and the arena holding them.
struct Shard {
    /// Slots ([`slot`]) of the live records, by [`table_hash`].
    table: HashTable<u64>,
    arena: Vec<u8>,
    /// Bytes of the arena no entry points to.
    garbage: usize,
    /// The earliest deadline written since the last sweep (`u64::MAX`: none).
    earliest: u64,
    /// Writes since the last sweep.
    writes: usize,
}

impl Shard {
    fn new() -> Self {
        Shard {
            table: HashTable::new(),
            arena: Vec::new(),
            garbage: 0,
            earliest: u64::MAX,
            writes: 0,
        }
    }
}

/// A record's parts, read from an arena.
#[derive(Clone, Copy)]
struct Rec<'a> {
    deadline: u64,
    key: &'a [u8],
    value: &'a [u8],
    /// The record's whole length in the arena.
    len: usize,
}

impl Rec<'_> {
    fn is_expired(&self, now: u64) -> bool {
        record::is_expired(self.deadline, now)
    }

    /// [`is_expired`](Self::is_expired) now, for reads: the clock is read only for a record
    /// with a deadline, and then cheaply unless the deadline is near (`Clock::is_due`).
    fn is_due(&self, clock: &Clock) -> bool {
        self.deadline != 0 && clock.is_due(self.deadline)
    }
}

/// The record at `offset`, or `None` if the bytes there are not a whole record.
fn parse(arena: &[u8], offset: u64) -> Option<Rec<'_>> {
    let start = usize::try_from(offset).ok()?;
    let all = arena.get(start..)?;
    let deadline = u64::from_le_bytes(all.get(..8)?.try_into().ok()?);
    let (key_len, rest) = read_varint(all.get(8..)?)?;
    let (value_len, rest) = read_varint(rest)?;
    let key = rest.get(..key_len)?;
    let value = rest.get(key_len..key_len.checked_add(value_len)?)?;
    let len = all.len() - rest.len() + key_len + value_len;
    Some(Rec {
        deadline,
        key,
        value,
        len,
    })
}

/// The key bytes of the record at `offset`, if it parses.
fn key_at(arena: &[u8], offset: u64) -> Option<&[u8]> {
    parse(arena, offset).map(|r| r.key)
}

/// Bits of a table slot holding a tag of the key's hash; the rest hold the record's offset
/// (so a shard's arena is addressable up to 1 TiB).
const TAG_BITS: u32 = 24;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

/// A table slot: the record's offset in the arena and a tag of its key's hash, in the 8 bytes
/// an offset alone took. The table hashes slots by their tag ([`table_hash`]), so it grows
/// without reading the arena or hashing a key again (that read and hash was ~14 % of an async
/// disk put's instructions: each resize reads every record, in table order, out of cache).
fn slot(offset: usize, hash: u64) -> u64 {
    ((offset as u64) << TAG_BITS) | (hash & TAG_MASK)
}

/// The offset of the record `slot` points to.
fn offset_of(slot: u64) -> u64 {
    slot >> TAG_BITS
}

/// The hash the table files a key (its full `hash`) or a slot under: its tag, spread over 64
/// bits (the table takes its bucket from the low bits and its control byte from the top 7).
/// Keys whose tags collide share it and are told apart by their bytes, as any collision.
fn table_hash(hash_or_slot: u64) -> u64 {
    (hash_or_slot & TAG_MASK).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The key bytes of the record `slot` points to, if it parses.
fn key_of(arena: &[u8], slot: u64) -> Option<&[u8]> {
    key_at(arena, offset_of(slot))
}

/// Rehashes a slot while the table grows or shrinks.
fn rehash(slot: &u64) -> u64 {
    table_hash(*slot)
}

fn read_varint(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((usize::try_from(value).ok()?, &bytes[i + 1..]));
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Writes `value` as a varint at the start of `dst` (which has room: see [`varint_len`]);
/// returns the rest of `dst`.
fn varint_to(dst: &mut [u8], mut value: usize) -> &mut [u8] {
    let mut at = 0;
    while value >= 0x80 {
        dst[at] = (value as u8) | 0x80;
        value >>= 7;
        at += 1;
    }
    dst[at] = value as u8;
    &mut dst[at + 1..]
}

fn varint_len(value: usize) -> usize {
    (usize::BITS - (value | 1).leading_zeros()).div_ceil(7) as usize
}

/// The length of a record with this key and value.
fn record_len(key: &[u8], value: &[u8]) -> usize {
    8 + varint_len(key.len()) + varint_len(value.len()) + key.len() + value.len()
}

fn write_record(out: &mut Vec<u8>, deadline: u64, key: &[u8], value: &[u8]) {
    out.extend_from_slice(&deadline.to_le_bytes());
    write_varint(out, key.len());
    write_varint(out, value.len());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

thread_local! {
    /// A buffer for the key bytes of a lookup, so a read allocates only its decoded value.
    static KEY_BYTES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `key`'s encoded bytes.
fn with_key_bytes<K: Key, R>(key: &K, f: impl FnOnce(&[u8]) -> R) -> R {
    KEY_BYTES.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            key.encode_key(&mut buf);
            let result = f(&buf);
            if buf.capacity() > 4096 {
                *buf = Vec::new();
            }
            result
        }
        // Only if `f` itself looked a key up (it does not): a buffer of its own.
        Err(_) => {
            let mut buf = Vec::new();
            key.encode_key(&mut buf);
            f(&buf)
        }
    })
}

/// What a removal found.
enum Removed {
    Nothing,
    Live,
    Expired,
}

impl Shard {
    fn find(&self, hash: u64, key: &[u8]) -> Option<Rec<'_>> {
        let arena = &self.arena;
        let found = self
            .table
            .find(table_hash(hash), |&s| key_of(arena, s) == Some(key))?;
        parse(arena, offset_of(*found))
    }

    /// Writes a record under `key`; returns the deadline of the record it replaced, if any.
    fn insert(&mut self, hash: u64, key: &[u8], value: &[u8], deadline: u64) -> Option<u64> {
        let new = slot(self.arena.len(), hash);
        write_record(&mut self.arena, deadline, key, value);
        if deadline != 0 {
            self.earliest = self.earliest.min(deadline);
        }
        self.writes += 1;
        let Shard {
            table,
            arena,
            garbage,
            ..
        } = self;
        // One probe finds the key or the place for it.
        match table.entry(table_hash(hash), |&s| key_of(arena, s) == Some(key), rehash) {
            Entry::Occupied(mut found) => {
                let old = parse(arena, offset_of(*found.get()));
                *found.get_mut() = new;
                let old = old?;
                *garbage += old.len;
                Some(old.deadline)
            }
            Entry::Vacant(place) => {
                place.insert(new);
                None
            }
        }
    }

    /// Removes `key`'s record.
    fn remove(&mut self, hash: u64, key: &[u8], now: u64) -> Removed {
        let arena = &self.arena;
        let Ok(entry) = self
            .table
            .find_entry(table_hash(hash), |&s| key_of(arena, s) == Some(key))
        else {
            return Removed::Nothing;
        };
        let (found, _) = entry.remove();
        let Some(rec) = parse(arena, offset_of(found)) else {
            return Removed::Nothing;
        };
        self.garbage += rec.len;
        if rec.is_expired(now) {
            Removed::Expired
        } else {
            Removed::Live
        }
    }

    /// Drops every expired record, handing each to `gone` first; returns their keys' bytes if
    /// `keep` (for events), and how many there were.
    fn sweep(
        &mut self,
        now: u64,
        keep: bool,
        mut gone: impl FnMut(&Rec<'_>),
    ) -> (usize, Vec<Vec<u8>>) {
        let Shard {
            table,
            arena,
            garbage,
            earliest,
            writes,
        } = self;
        let (mut count, mut keys, mut next) = (0, Vec::new(), u64::MAX);
        table.retain(|&mut s| match parse(arena, offset_of(s)) {
            Some(rec) if rec.is_expired(now) => {
                count += 1;
                gone(&rec);
                *garbage += rec.len;
                if keep {
                    keys.push(rec.key.to_vec());
                }
                false
            }
            Some(rec) => {
                if rec.deadline != 0 {
                    next = next.min(rec.deadline);
                }
                true
            }
            None => false,
        });
        (*earliest, *writes) = (next, 0);
        (count, keys)
    }

    /// After a write: sweeps if due (handing each expired record to `gone`), then compacts if
    /// a quarter of the arena is garbage.
    fn maintain(
        &mut self,
        now: u64,
        keep: bool,
        gone: impl FnMut(&Rec<'_>),
    ) -> (usize, Vec<Vec<u8>>) {
        let swept = if self.earliest <= now && self.writes.saturating_mul(8) >= self.table.len() {
            self.sweep(now, keep, gone)
        } else {
            (0, Vec::new())
        };
        self.compact_if_wasteful();
        swept
    }

    /// Compacts once garbage is a quarter of the arena (and at least [`GARBAGE_MIN`]).
    fn compact_if_wasteful(&mut self) {
        if self.garbage >= GARBAGE_MIN && self.garbage.saturating_mul(4) >= self.arena.len() {
            self.compact();
        }
    }

    /// Copies the live records into a fresh arena.
    fn compact(&mut self) {
        let Shard {
            table,
            arena,
            garbage,
            ..
        } = self;
        let mut fresh = Vec::with_capacity(arena.len().saturating_sub(*garbage));
        table.retain(|s| match parse(arena, offset_of(*s)) {
            Some(rec) => {
                let start = offset_of(*s) as usize;
                *s = slot(fresh.len(), *s);
                fresh.extend_from_slice(&arena[start..start + rec.len]);
                true
            }
            None => false,
        });
        *arena = fresh;
        *garbage = 0;
        // A table left mostly empty (its entries expired or removed) gives its memory back.
        if table.capacity() / 4 > table.len() {
            table.shrink_to_fit(rehash);
        }
    }
}

impl<K, V> Compact<K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// An empty tier sized for `expected` entries, whose values are written in `format`.
    pub(crate) fn new(clock: Clock, format: Format, expected: usize) -> Self {
        let shards = expected
            .div_ceil(LOADED_PER_SHARD)
            .clamp(SHARDS_MIN, SHARDS_MAX);
        Compact {
            inner: Arc::new_cyclic(|me| Inner {
                shards: (0..shards).map(|_| RwLock::new(Shard::new())).collect(),
                hasher: foldhash::fast::RandomState::default(),
                clock,
                format,
                stats: StatsRecorder::new(true),
                events: EventBus::default(),
                listener: ListenerSlot::new(None, shards),
                schedule: Schedule::default(),
                me: me.clone(),
            }),
        }
    }

    /// Installs the eviction listener; fails if the tier already has one.
    pub(crate) fn install_listener(&self, listener: EvictionListener<K, V>) -> Result<()> {
        self.inner.listener.install(listener)
    }

    /// The eviction listener, for a tier made from this one.
    pub(crate) fn listener(&self) -> Option<EvictionListener<K, V>> {
        self.inner.listener.listener()
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    /// The shard of `hash` (see [`crate::lane::lane_of`]).
    fn lane(&self, hash: u64) -> usize {
        crate::lane::lane_of(hash, self.inner.shards.len())
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        &self.inner.shards[self.lane(hash)]
    }

    fn now(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// The live value under `key` (a counted read). A value that does not decode is an error,
    /// counted as a miss.
    pub(crate) fn get(&self, key: &K) -> Result<Option<V>> {
        Ok(self.read(key)?.map(|(value, _)| value))
    }

    /// The live value under `key` and its deadline (0: never), a counted read.
    pub(crate) fn read(&self, key: &K) -> Result<Option<(V, u64)>> {
        self.inner.stats.incr(Stat::Reads);
        let (found, stale) = with_key_bytes(key, |kb| {
            let hash = self.hash(kb);
            let shard = self.shard(hash).read();
            let Some(rec) = shard.find(hash, kb) else {
                return (Ok(None), false);
            };
            if rec.is_due(&self.inner.clock) {
                return (Ok(None), true);
            }
            (decode(rec.value).map(|v| Some((v, rec.deadline))), false)
        });
        if !matches!(found, Ok(Some(_))) {
            self.inner.stats.incr(Stat::Misses);
        }
        if stale {
            self.expire_on_read(key);
        }
        found
    }

    /// Removes `key`'s entry if it is still expired (a read found it so).
    fn expire_on_read(&self, key: &K) {
        let expired = with_key_bytes(key, |kb| {
            let hash = self.hash(kb);
            let now = self.now();
            let lane = self.lane(hash);
            let mut shard = self.inner.shards[lane].write();
            match shard.find(hash, kb) {
                Some(rec) if rec.is_expired(now) => {
                    self.inner.removed(lane, &rec, RemovalCause::Expired)
                }
                _ => return false,
            }
            shard.remove(hash, kb, now);
            drop(shard);
            self.inner.listener.deliver(lane);
            true
        });
        if expired {
            self.inner.stats.incr(Stat::Expirations);
            self.inner.events.emit(key, EventKind::Expired);
        }
    }

    /// True if `key` has a live entry (not counted).
    pub(crate) fn contains(&self, key: &K) -> bool {
        with_key_bytes(key, |kb| {
            let hash = self.hash(kb);
            let shard = self.shard(hash).read();
            shard
                .find(hash, kb)
                .is_some_and(|r| !r.is_due(&self.inner.clock))
        })
    }

    /// The remaining lifetime of `key`, if it has a live entry (not counted).
    pub(crate) fn ttl(&self, key: &K) -> Option<Expiry> {
        let deadline = with_key_bytes(key, |kb| {
            let hash = self.hash(kb);
            let shard = self.shard(hash).read();
            shard.find(hash, kb).map(|r| r.deadline)
        })?;
        match deadline {
            0 => Some(Expiry::Never),
            d => self.inner.clock.remaining(d).map(Expiry::In),
        }
    }

    /// Writes `value` under `key` until `deadline` (Unix ms, 0: never); a deadline already
    /// passed removes the key instead. Fails only if the value does not encode.
    pub(crate) fn put(&self, key: &K, value: &V, deadline: u64) -> Result<()> {
        let mut encoded = Vec::new();
        encode_value_into(value, self.inner.format, "", &mut encoded)?;
        self.put_encoded(key, &encoded, deadline);
        Ok(())
    }

    /// [`put`](Self::put) of an already encoded value.
    pub(crate) fn put_encoded(&self, key: &K, value: &[u8], deadline: u64) {
        let now = self.now();
        if record::is_expired(deadline, now) {
            self.remove(key);
            return;
        }
        with_key_bytes(key, |kb| self.put_live(key, kb, value, deadline, now));
    }

    /// [`put_encoded`](Self::put_encoded) with `key`'s bytes (`kb`, as
    /// [`Key::encode_key`] writes them: a disk put's op holds them already) and, for an async
    /// put, the coarse time its deadline was worked out from (`None`: read the clock).
    pub(crate) fn put_bytes(
        &self,
        key: &K,
        kb: &[u8],
        value: &[u8],
        deadline: u64,
        now: Option<u64>,
    ) {
        let now = now.unwrap_or_else(|| self.now());
        if record::is_expired(deadline, now) {
            self.remove(key);
            return;
        }
        self.put_live(key, kb, value, deadline, now);
    }

    /// Writes a record whose deadline has not passed at `now`.
    fn put_live(&self, key: &K, kb: &[u8], value: &[u8], deadline: u64, now: u64) {
        let (old, swept) = self.write_record(kb, value, deadline, now);
        self.inner.wake_sweeper_for(deadline);
        let stats = &self.inner.stats;
        match old {
            Some(d) if !record::is_expired(d, now) => {
                stats.incr(Stat::Updates);
                self.inner.events.emit(key, EventKind::Replace);
            }
            old => {
                if old.is_some() {
                    stats.incr(Stat::Expirations);
                    self.inner.events.emit(key, EventKind::Expired);
                }
                stats.incr(Stat::Writes);
                self.inner.events.emit(key, EventKind::Put);
            }
        }
        self.inner.announce_expired(swept);
    }

    /// Writes the record under its shard's lock (the listener hears what it replaced and what
    /// the shard's upkeep swept); returns the replaced record's deadline, if any, and the keys
    /// the upkeep swept (for events, if anyone listens).
    fn write_record(
        &self,
        kb: &[u8],
        value: &[u8],
        deadline: u64,
        now: u64,
    ) -> (Option<u64>, Vec<Vec<u8>>) {
        let keep = self.inner.events.is_active();
        let hash = self.hash(kb);
        let lane = self.lane(hash);
        let inner = &*self.inner;
        let mut shard = inner.shards[lane].write();
        let listening = inner.listening();
        if listening {
            if let Some(old) = shard.find(hash, kb) {
                let cause = match old.is_expired(now) {
                    true => RemovalCause::Expired,
                    false => RemovalCause::Replaced,
                };
                inner.removed(lane, &old, cause);
            }
        }
        let old = shard.insert(hash, kb, value, deadline);
        let gone = |rec: &Rec<'_>| inner.removed(lane, rec, RemovalCause::Expired);
        let (count, keys) = shard.maintain(now, keep, gone);
        inner.stats.add(Stat::Expirations, count as u64);
        drop(shard);
        if listening {
            inner.listener.deliver(lane);
        }
        (old, keys)
    }

    /// Removes every entry whose deadline has passed now, sending their `Expired` events;
    /// returns how many were removed. The sweeper thread does this on its own.
    pub(crate) fn purge_expired(&self) -> usize {
        self.inner.purge(self.now()).0
    }

    /// Removes `key`; true if a live entry was removed.
    pub(crate) fn remove(&self, key: &K) -> bool {
        let removed = with_key_bytes(key, |kb| {
            let hash = self.hash(kb);
            let now = self.now();
            let lane = self.lane(hash);
            let mut shard = self.inner.shards[lane].write();
            let listening = self.inner.listening();
            if listening {
                if let Some(rec) = shard.find(hash, kb) {
                    let cause = match rec.is_expired(now) {
                        true => RemovalCause::Expired,
                        false => RemovalCause::Explicit,
                    };
                    self.inner.removed(lane, &rec, cause);
                }
            }
            let removed = shard.remove(hash, kb, now);
            shard.compact_if_wasteful();
            drop(shard);
            if listening {
                self.inner.listener.deliver(lane);
            }
            removed
        });
        match removed {
            Removed::Nothing => false,
            Removed::Expired => {
                self.inner.stats.incr(Stat::Expirations);
                self.inner.events.emit(key, EventKind::Expired);
                false
            }
            Removed::Live => {
                self.inner.stats.incr(Stat::Deletes);
                self.inner.events.emit(key, EventKind::Delete);
                true
            }
        }
    }

    /// Every live key. A key whose bytes no longer decode as `K` is an error.
    pub(crate) fn keys(&self) -> Result<Vec<K>> {
        let now = self.now();
        let mut out = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard.read();
            for &found in shard.table.iter() {
                let Some(rec) = parse(&shard.arena, offset_of(found)) else {
                    return Err(unreadable());
                };
                if !rec.is_expired(now) {
                    out.push(K::decode_key(rec.key).map_err(|reason| {
                        Error::from(crate::DecodeError {
                            key: String::new(),
                            reason: format!("a key in the compact memory tier: {reason}"),
                        })
                    })?);
                }
            }
        }
        Ok(out)
    }

    /// Every live entry, decoded, with its deadline (0: never), not counted as reads: for a
    /// tier made from this one (`Store::with_time_to_idle`). An entry that no longer decodes
    /// is left out, as a load leaves it out.
    pub(crate) fn entries(&self) -> Vec<(K, V, u64)> {
        let now = self.now();
        let mut out = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard.read();
            for &found in shard.table.iter() {
                let Some(rec) = parse(&shard.arena, offset_of(found)) else {
                    continue;
                };
                if rec.is_expired(now) {
                    continue;
                }
                if let (Ok(key), Ok(value)) = (K::decode_key(rec.key), decode::<V>(rec.value)) {
                    out.push((key, value, rec.deadline));
                }
            }
        }
        out
    }

    /// Drops every entry without a trace (no event, counter or listener call): the tier was
    /// replaced by one holding its entries (`DiskDb::retier`), whose own removals the listener
    /// hears, so this one's sweeper must not hand them over again.
    pub(crate) fn retire(&self) {
        for shard in self.inner.shards.iter() {
            *shard.write() = Shard::new();
        }
    }

    /// How many live entries there are.
    pub(crate) fn count(&self) -> usize {
        let now = self.now();
        let live_in = |shard: &RwLock<Shard>| {
            let shard = shard.read();
            let arena = &shard.arena;
            let live = |s: &&u64| parse(arena, offset_of(**s)).is_some_and(|r| !r.is_expired(now));
            shard.table.iter().filter(live).count()
        };
        self.inner.shards.iter().map(live_in).sum()
    }

    /// Deletes everything; returns how many live entries there were.
    pub(crate) fn clear(&self) -> usize {
        let now = self.now();
        let keep = self.inner.events.is_active();
        let mut removed = 0;
        for (lane, shard) in self.inner.shards.iter().enumerate() {
            let mut guard = shard.write();
            let old = std::mem::replace(&mut *guard, Shard::new());
            let listening = self.inner.listening();
            if listening {
                // Queued under the lock, so a removal of a key written after the clear
                // queues after this one.
                for &found in old.table.iter() {
                    if let Some(rec) = parse(&old.arena, offset_of(found)) {
                        let cause = match rec.is_expired(now) {
                            true => RemovalCause::Expired,
                            false => RemovalCause::Explicit,
                        };
                        self.inner.removed(lane, &rec, cause);
                    }
                }
            }
            drop(guard);
            if listening {
                self.inner.listener.deliver(lane);
            }
            for &found in old.table.iter() {
                let Some(rec) = parse(&old.arena, offset_of(found)) else {
                    continue;
                };
                let (kind, stat) = match rec.is_expired(now) {
                    true => (EventKind::Expired, Stat::Expirations),
                    false => (EventKind::Delete, Stat::Deletes),
                };
                removed += usize::from(kind == EventKind::Delete);
                self.inner.stats.incr(stat);
                if keep {
                    if let Ok(key) = K::decode_key(rec.key) {
                        self.inner.events.emit(&key, kind);
                    }
                }
            }
        }
        removed
    }

    /// Subscribes to the tier's events.
    pub(crate) fn subscribe(&self) -> Events<K> {
        self.inner.events.subscribe()
    }

    /// A snapshot of the tier's counters.
    pub(crate) fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }
}

/// One record a load keeps: its key's hash, where its raw record is, and its size here.
struct Loaded {
    hash: u64,
    index: u32,
    /// `u32::MAX`: look it up in [`Gathered::oversize`].
    size: u32,
}

/// What one thread of a load gathered for [`Compact::fill`].
pub(super) struct Gathered {
    items: Vec<Loaded>,
    /// Keys whose canonical bytes (re-encoded from the decoded key) differ from the raw ones,
    /// an integer key written as `007`: by raw index, ascending. Almost always empty.
    canonical: Vec<(u32, Box<[u8]>)>,
    /// The sizes of records of `u32::MAX` bytes or more (a value of ~4 GiB): by raw index,
    /// ascending. Almost always empty.
    oversize: Vec<(u32, usize)>,
}

impl Gathered {
    /// The size in the tier of `item`.
    fn size(&self, item: &Loaded) -> usize {
        if item.size != u32::MAX {
            return item.size as usize;
        }
        match self.oversize.binary_search_by_key(&item.index, |(i, _)| *i) {
            Ok(at) => self.oversize[at].1,
            Err(_) => u32::MAX as usize,
        }
    }

    /// The key bytes of raw record `index`.
    fn key<'a>(&'a self, index: u32, raw_key: &'a [u8]) -> &'a [u8] {
        if self.canonical.is_empty() {
            return raw_key;
        }
        match self.canonical.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => &self.canonical[at].1,
            Err(_) => raw_key,
        }
    }
}

impl<K, V> Compact<K, V>
where
    K: Key,
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// An empty [`Gathered`] with room for `capacity` records (allocated once).
    pub(super) fn gather(&self, capacity: usize) -> Gathered {
        Gathered {
            items: Vec::with_capacity(capacity),
            canonical: Vec::new(),
            oversize: Vec::new(),
        }
    }

    /// Adds raw record `index` (`raw_key`, `rec`), whose key decoded as `key`, to `gathered`.
    /// Call in ascending `index` order.
    pub(super) fn add(
        &self,
        gathered: &mut Gathered,
        index: usize,
        raw_key: &[u8],
        rec: &[u8],
        key: &K,
    ) {
        let index = index as u32;
        let value = record::value(rec);
        with_key_bytes(key, |kb| {
            if kb != raw_key {
                gathered.canonical.push((index, kb.into()));
            }
            let size = record_len(kb, value);
            let small = u32::try_from(size).ok().filter(|&s| s != u32::MAX);
            if small.is_none() {
                gathered.oversize.push((index, size));
            }
            gathered.items.push(Loaded {
                hash: self.hash(kb),
                index,
                size: small.unwrap_or(u32::MAX),
            });
        });
    }

    /// Fills the tier (empty: a namespace being opened) with what `parts` gathered from
    /// `raw`, in three steps, none of which reads `raw` out of order:
    ///
    /// 1. each part's records are tallied per shard (count and bytes), so every shard's arena
    ///    is allocated once, at its final size, and split into one region per part;
    /// 2. each part (a thread each for a big namespace) walks its records in `raw`'s order and
    ///    copies each into its shard's region: reads are sequential and writes are one
    ///    sequential stream per shard (the gather this replaces read `raw` in shard order, a
    ///    cache miss per record: 30 % of a 1 M-session reopen's samples);
    /// 3. each shard's table is sized once and filled by walking its arena (two threads).
    pub(super) fn fill(&self, raw: &RawEntries, parts: Vec<Gathered>) {
        let shards = self.inner.shards.len();
        let total: usize = parts.iter().map(|p| p.items.len()).sum();
        let parallel = total >= PARALLEL_MIN
            && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        // 1. Per part and shard: records and bytes.
        let tallies: Vec<Vec<(usize, usize)>> = parts
            .iter()
            .map(|part| {
                let mut tally = vec![(0usize, 0usize); shards];
                for item in &part.items {
                    let lane = &mut tally[self.lane(item.hash)];
                    lane.0 += 1;
                    lane.1 += part.size(item);
                }
                tally
            })
            .collect();
        let mut arenas: Vec<Vec<u8>> = (0..shards)
            .map(|lane| vec![0u8; tallies.iter().map(|t| t[lane].1).sum()])
            .collect();
        // 2. Each part copies its records into its regions: per shard, the bytes it filled
        // and the earliest deadline among them.
        let placed: Vec<Placed> = {
            let mut regions: Vec<Vec<&mut [u8]>> = (0..parts.len())
                .map(|_| Vec::with_capacity(shards))
                .collect();
            for (lane, arena) in arenas.iter_mut().enumerate() {
                let mut rest = arena.as_mut_slice();
                for (p, tally) in tallies.iter().enumerate() {
                    let (mine, tail) = std::mem::take(&mut rest).split_at_mut(tally[lane].1);
                    regions[p].push(mine);
                    rest = tail;
                }
            }
            let work = parts.iter().zip(regions);
            if parallel {
                std::thread::scope(|scope| {
                    let handles: Vec<_> = work
                        .map(|(part, regions)| scope.spawn(move || self.place(raw, part, regions)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                        .collect()
                })
            } else {
                work.map(|(part, regions)| self.place(raw, part, regions))
                    .collect()
            }
        };
        // 3. Each shard takes its arena and fills its table, walking the records in it (so
        // no note per record is kept: it would stay resident as freed heap).
        let duplicates = parts.iter().any(|p| !p.canonical.is_empty());
        let fill_lanes = |first: usize, arenas: Vec<Vec<u8>>| {
            for (i, arena) in arenas.into_iter().enumerate() {
                let lane = first + i;
                let mut guard = self.inner.shards[lane].write();
                let shard = &mut *guard;
                let base = shard.arena.len();
                if shard.arena.is_empty() {
                    shard.arena = arena;
                } else {
                    shard.arena.extend_from_slice(&arena);
                }
                let count: usize = tallies.iter().map(|t| t[lane].0).sum();
                let hasher = &self.inner.hasher;
                let Shard {
                    table,
                    arena,
                    garbage,
                    earliest,
                    writes,
                } = shard;
                table.reserve(count, rehash);
                let mut start = base;
                for (p, part) in placed.iter().enumerate() {
                    *earliest = (*earliest).min(part.earliest[lane]);
                    let (mut at, end) = (start, start + part.filled[lane]);
                    start += tallies[p][lane].1;
                    while at < end {
                        let Some(rec) = parse(arena, at as u64) else {
                            break;
                        };
                        let hash = hasher.hash_one(rec.key);
                        let new = slot(at, hash);
                        at += rec.len;
                        // Two raw keys with one canonical form (`007` and `7`): the later
                        // wins, as the default tier's load has it.
                        if duplicates || base > 0 {
                            let eq = |&s: &u64| key_of(arena, s) == Some(rec.key);
                            if let Some(found) = table.find_mut(table_hash(hash), eq) {
                                *garbage += parse(arena, offset_of(*found)).map_or(0, |r| r.len);
                                *found = new;
                                continue;
                            }
                        }
                        table.insert_unique(table_hash(hash), new, rehash);
                    }
                }
                *writes = 0;
            }
        };
        if parallel {
            let half = shards / 2;
            let second = arenas.split_off(half);
            std::thread::scope(|scope| {
                let fill_lanes = &fill_lanes;
                let first = scope.spawn(move || fill_lanes(0, arenas));
                fill_lanes(half, second);
                if let Err(panic) = first.join() {
                    std::panic::resume_unwind(panic);
                }
            });
        } else {
            fill_lanes(0, arenas);
        }
        self.inner.stats.add(Stat::Writes, total as u64);
        if let Some(earliest) = self.inner.next_deadline() {
            self.inner.wake_sweeper_for(earliest);
        }
    }

    /// Step 2 of [`fill`](Self::fill) for one part: copies each of its records into
    /// `regions[shard]` (the part's share of that shard's arena) in `raw`'s order.
    fn place(&self, raw: &RawEntries, part: &Gathered, mut regions: Vec<&mut [u8]>) -> Placed {
        let mut filled = vec![0usize; regions.len()];
        let mut earliest = vec![u64::MAX; regions.len()];
        for item in &part.items {
            let lane = self.lane(item.hash);
            let (raw_key, rec) = raw.get(item.index as usize);
            let key = part.key(item.index, raw_key);
            let deadline = record::deadline(rec).unwrap_or(0);
            let (at, size) = (filled[lane], part.size(item));
            // The tally sized the region from these same bytes: it always fits.
            let Some(dst) = regions[lane].get_mut(at..at + size) else {
                continue;
            };
            if !write_record_to(dst, deadline, key, record::value(rec)) {
                continue;
            }
            filled[lane] += size;
            if deadline != 0 {
                earliest[lane] = earliest[lane].min(deadline);
            }
        }
        Placed { filled, earliest }
    }
}

/// What one part of a load put in each shard's arena: how many bytes of its region it filled
/// (records back to back from the region's start) and the earliest deadline among them
/// (`u64::MAX`: none).
struct Placed {
    filled: Vec<usize>,
    earliest: Vec<u64>,
}

/// [`write_record`] into `dst`, which must be exactly the record's length; false (nothing
/// meaningful written) if it is not.
fn write_record_to(dst: &mut [u8], deadline: u64, key: &[u8], value: &[u8]) -> bool {
    if dst.len() != record_len(key, value) {
        return false;
    }
    let (head, rest) = dst.split_at_mut(8);
    head.copy_from_slice(&deadline.to_le_bytes());
    let rest = varint_to(rest, key.len());
    let rest = varint_to(rest, value.len());
    let (k, v) = rest.split_at_mut(key.len());
    k.copy_from_slice(key);
    v.copy_from_slice(value);
    true
}

fn unreadable() -> Error {
    Error::from(crate::DecodeError {
        key: String::new(),
        reason: "a record of the compact memory tier does not parse".into(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ManualClock;

    fn tier(time: &ManualClock) -> Compact<String, String> {
        Compact::new(time.clock(), Format::MessagePack, 0)
    }

    #[test]
    fn records_round_trip_through_the_arena() {
        let mut arena = vec![7u8; 3];
        write_record(&mut arena, 42, b"key", &[1u8; 300]);
        let rec = parse(&arena, 3).unwrap();
        assert_eq!(
            (rec.deadline, rec.key, rec.value.len()),
            (42, &b"key"[..], 300)
        );
        assert_eq!(rec.len, arena.len() - 3);
        assert_eq!(rec.len, record_len(b"key", &[1u8; 300]));
        for n in [0, 1, 127, 128, 16_383, 16_384, usize::MAX] {
            let mut out = Vec::new();
            write_varint(&mut out, n);
            assert_eq!(out.len(), varint_len(n), "{n}");
            assert_eq!(read_varint(&out), Some((n, &[][..])));
        }
    }

    /// The table files records by a 24-bit tag of their key's hash: keys whose tags collide
    /// (here every key: hashes differing only above the tag) are told apart by their bytes,
    /// through growth, overwrites, removals and a compaction.
    #[test]
    fn keys_whose_hash_tags_collide_stay_apart() {
        let mut shard = Shard::new();
        let hash = |i: u64| 0xABCDEF | (i << 32);
        let key = |i: u64| format!("key-{i}").into_bytes();
        for i in 0..1_000 {
            assert_eq!(shard.insert(hash(i), &key(i), &[i as u8], 0), None);
        }
        for i in (0..1_000).step_by(2) {
            assert_eq!(shard.insert(hash(i), &key(i), &[0xFF], 0), Some(0));
        }
        for i in (1..1_000).step_by(4) {
            assert!(matches!(shard.remove(hash(i), &key(i), 0), Removed::Live));
        }
        shard.compact();
        for i in 0..1_000u64 {
            let found = shard.find(hash(i), &key(i)).map(|r| r.value.to_vec());
            let want = match i {
                i if i % 2 == 0 => Some(vec![0xFF]),
                i if i % 4 == 1 => None,
                i => Some(vec![i as u8]),
            };
            assert_eq!(found, want, "key {i}");
        }
    }

    #[test]
    fn garbled_or_cut_records_never_parse_and_never_panic() {
        let mut arena = Vec::new();
        write_record(&mut arena, 1, b"k", b"value");
        for cut in 0..arena.len() {
            assert!(parse(&arena[..cut], 0).is_none(), "cut at {cut}");
        }
        assert!(parse(&arena, arena.len() as u64 + 1).is_none());
        assert!(parse(&arena, u64::MAX).is_none());
        // A length running past the end, and a varint that never ends.
        let mut long = arena.clone();
        long[8] = 0x7f;
        assert!(parse(&long, 0).is_none());
        let mut endless = 1u64.to_le_bytes().to_vec();
        endless.extend([0xff; 16]);
        assert!(parse(&endless, 0).is_none());
    }

    #[test]
    fn a_value_that_does_not_decode_is_an_error_not_a_panic() {
        let time = ManualClock::new();
        let t = tier(&time);
        t.put_encoded(&"k".to_string(), b"\xa7\x01\x01garbage", 0);
        let err = t.get(&"k".to_string()).unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err}");
        assert_eq!(t.stats().misses, 1, "counted as a miss");
        assert!(t.contains(&"k".to_string()), "the entry itself is there");
    }

    #[test]
    fn writes_reads_and_removals() {
        let time = ManualClock::new();
        let t = tier(&time);
        let (a, b) = ("a".to_string(), "b".to_string());
        t.put(&a, &"one".to_string(), 0).unwrap();
        let hour = time.clock().now_ms() + 3_600_000;
        t.put(&b, &"two".to_string(), hour).unwrap();
        assert_eq!(t.get(&a).unwrap().as_deref(), Some("one"));
        assert_eq!(t.read(&b).unwrap(), Some(("two".to_string(), hour)));
        assert_eq!(t.ttl(&a), Some(Expiry::Never));
        t.put(&a, &"uno".to_string(), 0).unwrap();
        assert_eq!(t.get(&a).unwrap().as_deref(), Some("uno"));
        assert_eq!((t.count(), t.stats().writes, t.stats().updates), (2, 2, 1));
        let mut keys = t.keys().unwrap();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        assert!(t.remove(&a) && !t.remove(&a));
        assert_eq!(t.get(&a).unwrap(), None);
        assert_eq!(t.clear(), 1);
        assert_eq!(t.count(), 0);
    }

    #[tokio::test]
    async fn expired_entries_are_hidden_then_swept_by_writes_with_their_events() {
        let time = ManualClock::new();
        let t = tier(&time);
        let mut events = t.subscribe();
        let soon = time.clock().now_ms() + 100;
        for i in 0..100 {
            t.put(&format!("k{i}"), &"v".to_string(), soon).unwrap();
        }
        time.advance(Duration::from_millis(200));
        assert_eq!(t.get(&"k0".to_string()).unwrap(), None, "hidden at once");
        assert_eq!(t.count(), 0);
        assert!(t.keys().unwrap().is_empty());
        // Writes to every shard sweep the rest (each shard has few entries here).
        for i in 0..2_000 {
            t.put(&format!("new{i}"), &"v".to_string(), 0).unwrap();
        }
        let held: usize = t.inner.shards.iter().map(|s| s.read().table.len()).sum();
        assert_eq!(held, 2_000, "every expired record was dropped");
        assert_eq!(t.stats().expirations, 100);
        // The sweeper thread (woken by the advance) may have swept some shards first: it counts
        // a shard's removals under its lock and sends their events after, so they are awaited
        // (a lib run at load 16 drained 98 of 100 at once); the timeout only bounds a failure.
        let mut expired = 0;
        while expired < 100 {
            let next = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
            let event = next.expect("an Expired event for every entry").unwrap();
            expired += usize::from(event.kind == EventKind::Expired);
        }
        while let Some(event) = events.try_recv() {
            assert_ne!(event.kind, EventKind::Expired, "an entry expired twice");
        }
    }

    #[test]
    fn overwrites_compact_the_arena_and_keep_every_value() {
        let time = ManualClock::new();
        let t = tier(&time);
        let value = "x".repeat(200);
        for round in 0..200 {
            for i in 0..200 {
                t.put(&format!("key{i}"), &format!("{round}{value}"), 0)
                    .unwrap();
            }
        }
        let (arena, garbage): (usize, usize) = t
            .inner
            .shards
            .iter()
            .map(|s| (s.read().arena.len(), s.read().garbage))
            .fold((0, 0), |(a, g), (x, y)| (a + x, g + y));
        let record = record_len(b"key100", &[0; 206]);
        let live = 200 * record;
        // Garbage stays under a third of the live bytes or GARBAGE_MIN per shard (plus the
        // record that crossed it), whichever is more: 200 rounds wrote 200 times `live`.
        let shards = t.inner.shards.len();
        let bound = live * 4 / 3 + shards * (GARBAGE_MIN + record);
        assert!(arena <= bound, "arena {arena}, live {live}, bound {bound}");
        assert!(garbage <= arena);
        for i in 0..200 {
            let got = t.get(&format!("key{i}")).unwrap().unwrap();
            assert_eq!(got, format!("199{value}"));
        }
    }

    /// A table left mostly empty by removals gives its memory back when its arena is compacted,
    /// and is rehashed from the records' keys: every entry left is still found, with its value.
    #[test]
    fn a_table_emptied_by_removals_shrinks_and_keeps_every_entry_findable() {
        let time = ManualClock::new();
        let t = tier(&time);
        let value = "x".repeat(100);
        let n = 40_000;
        for i in 0..n {
            t.put(&format!("key{i}"), &format!("{i}{value}"), 0)
                .unwrap();
        }
        let capacity = |t: &Compact<String, String>| -> usize {
            t.inner
                .shards
                .iter()
                .map(|s| s.read().table.capacity())
                .sum()
        };
        let full = capacity(&t);
        assert!(full >= n, "{full}");
        // Remove 99 of every 100 entries: each shard's arena crosses the compaction rule.
        for i in (0..n).filter(|i| i % 100 != 0) {
            assert!(t.remove(&format!("key{i}")));
        }
        let left = capacity(&t);
        let shards = t.inner.shards.len();
        // A compaction shrinks a table whose capacity is over 4x its entries; removals after
        // the last compaction of a shard may leave up to a quarter of its arena as garbage.
        assert!(
            left * 8 <= full,
            "capacity {full} -> {left} for {} entries in {shards} shards",
            n / 100
        );
        for i in 0..n {
            let got = t.get(&format!("key{i}")).unwrap();
            let want = (i % 100 == 0).then(|| format!("{i}{value}"));
            assert_eq!(got, want, "key{i}");
        }
        assert_eq!(t.count(), n / 100);
    }

    #[test]
    fn a_load_sizes_each_shard_once() {
        let time = ManualClock::new();
        let n = 40_000usize;
        let t: Compact<String, String> = Compact::new(time.clock(), Format::MessagePack, n);
        assert_eq!(
            t.inner.shards.len(),
            n.div_ceil(LOADED_PER_SHARD).max(SHARDS_MIN)
        );
        let raw = RawEntries::of((0..n).map(|i| {
            let value =
                crate::codec::encode_value(&format!("v{i}"), Format::MessagePack, "").unwrap();
            let mut rec = value;
            rec.extend_from_slice(&0u64.to_be_bytes());
            (format!("key{i}").into_bytes(), rec)
        }));
        let mut gathered = t.gather(n);
        for i in 0..n {
            let (raw_key, rec) = raw.get(i);
            t.add(&mut gathered, i, raw_key, rec, &format!("key{i}"));
        }
        let parts = vec![gathered];
        t.fill(&raw, parts);
        assert_eq!(t.count(), n);
        assert_eq!(
            t.get(&"key123".to_string()).unwrap().as_deref(),
            Some("v123")
        );
        for shard in t.inner.shards.iter() {
            let shard = shard.read();
            assert_eq!(shard.arena.capacity(), shard.arena.len(), "sized once");
            assert_eq!(shard.garbage, 0);
        }
    }
}
