//! # strata — one cache contract, five stores
//!
//! strata is a caching toolkit for Rust services: pick a **store** (where entries live) and use it
//! directly or behind a `Cache` (what you do with them). Every store keeps the same small
//! [`Store`] contract — Pow's `put`/`get`/`delete`/`keys` plus provided methods — so moving from
//! memory to disk to Redis is one line.
//!
//! ## Modules
//! - [`store`]: the [`Store`] trait, [`Expiry`] and [`Counter`].
//! - `cache`: [`Cache`], the Cachex-grade API over any store — `fetch` with single flight,
//!   negative caching, [`Warmer`]s, events, stats, `dump`/`load` — and [`RateLimiter`].
//! - `memory`: [`MemoryStore`], sharded in-memory store with TTL expiry (Pow's `EtsCache`).
//! - `redis` (feature `redis`): `RedisStore`, entries in Redis or Redis Cluster over one
//!   multiplexed connection that reconnects by itself (Pow's Redix backend).
//! - `disk` (feature `disk`, default): [`DiskStore`] and [`DiskDb`], a memory tier backed by an
//!   embedded engine on disk that survives restarts and `kill -9` (Pow's `MnesiaCache`, one node).
//! - `generational`: [`GenerationalStore`], two generations with size and memory limits, a
//!   [`Query`] API and key-level transactions (Nebulex's Local adapter).
//! - [`replicated`] (feature `redis`): [`ReplicatedStore`], a local tier per node in front of
//!   Redis as the shared truth, kept coherent by pub/sub invalidations (Pow's multi-node
//!   `MnesiaCache` + `Unsplit`).
//! - [`codec`]: keys and values to bytes for stores that leave the process (versioned header,
//!   MessagePack or JSON, bounded decoding).
//! - `time`: [`Clock`] and [`ManualClock`], injected into every store so expiry is tested by
//!   moving time, not by sleeping.
//! - `namespace`: [`Namespace`] validation (`sessions:abc` keys).
//! - `events`: [`Event`]s with a [`RemovalCause`], for subscribers (best effort, keys only).
//! - `listener`: the [`EvictionListener`] a local store hands every removed entry to, with its
//!   value and cause, never dropped (moka's `eviction_listener`).
//! - `stats`: [`Stats`] counters, striped per thread.
//! - `ratio_watch` (internal): a store watching its own hit ratio for a lasting drop, which the
//!   bounded MemoryStore's lean and the GenerationalStore's adaptive aging both act on.
//! - `error`: the one [`Error`] enum.
//! - `sessions` (feature `sessions`, on by default): `StrataSessionStore`, a tower-sessions
//!   `SessionStore` over any store, so a web app's sessions survive restarts and span nodes.
//!
//! ## Consistency
//! Every guarantee the docs make — per store and for `Cache`, sessions and decoders — is listed
//! with the test that forces its bad case in [`consistency`]. In short: every store is
//! linearizable per key and never returns an expired entry; DiskStore shows a write only after
//! its commit succeeded and refuses work after a fatal engine failure; a `Cache::fetch` never
//! overwrites a write made during its load; a signed-out session never comes back.
//!
//! ```
//! use std::time::Duration;
//! use strata::MemoryStore;
//!
//! let store = MemoryStore::builder().build()?;
//! store.put("session:1".to_string(), "ada".to_string(), Some(Duration::from_secs(30)))?;
//! assert_eq!(store.get("session:1").as_deref(), Some("ada"));
//! # Ok::<(), strata::Error>(())
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cache;
pub mod codec;
#[doc = include_str!("consistency.md")]
pub mod consistency {}
#[cfg(feature = "disk")]
mod disk;
mod error;
mod events;
mod generational;
mod lane;
mod listener;
mod local;
mod memory;
mod namespace;
mod ratio_watch;
mod redact;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub mod replicated;
#[cfg(feature = "sessions")]
pub mod sessions;
mod stats;
pub mod store;
mod sweeper;
mod time;

pub use cache::{
    Cache, CacheBuilder, FetchError, Load, LoadSummary, RateDecision, RateLimiter, Transaction,
    Update, Warmer, DUMP_VERSION,
};
pub use codec::{Format, Key};
/// Fault injection for the disk store's tests (hidden: a test utility, not an API).
#[cfg(feature = "disk")]
#[doc(hidden)]
pub use disk::{decode_stored_record, Faults};
#[cfg(feature = "disk")]
pub use disk::{
    DiskBuilder, DiskDb, DiskDbBuilder, DiskStore, DiskStoreBuilder, ForDb, ForStore, OnCorrupt,
    OpenSummary, RawRecord, Writes,
};
pub use error::{
    BackendError, BoxError, CorruptError, DataDirError, DecodeError, EncodeError, Error,
    InvalidConfigError, InvalidDumpError, InvalidNamespaceError, IoError, LoaderError,
    LostCommitsError, NewerFormatError, NotReplicatedError, Result, TimeoutError,
    TooManyNamespacesError, UnavailableError,
};
pub use events::{Event, EventBus, EventKind, Events, RemovalCause};
pub use generational::{
    Entry as QueryEntry, GenerationalStore, GenerationalStoreBuilder, HeapSize, Query, QueryStream,
};
pub use listener::EvictionListener;
pub use memory::{MemoryStore, MemoryStoreBuilder};
pub use namespace::{split_stored_key, Namespace, DEFAULT_NAMESPACE};
pub use redact::redact_url;
/// strata's own RESP2 connection driver, a measured prototype for the `compare` bench (issue
/// 16 item 1); not a stable API.
#[cfg(feature = "redis")]
#[doc(hidden)]
pub use redis::driver as redis_driver;
#[cfg(feature = "redis")]
pub use redis::{DistributedFetch, RedisStore, RedisStoreBuilder};
#[cfg(feature = "redis")]
pub use replicated::{ReplicatedStore, ReplicatedStoreBuilder, ReplicationStats};
pub use stats::{Counter as StatCounter, Stats, StatsRecorder};
pub use store::{BatchWrite, Counter, Expiry, GcraStep, Notice, Store};
pub use time::{check_ttl, Clock, ManualClock, UnixMillis};

/// The README's snippets, compiled and run as doctests so they cannot rot.
#[cfg(all(doctest, feature = "redis", feature = "disk", feature = "sessions"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
