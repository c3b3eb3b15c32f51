//! The `Cache` facade: what you do with entries, over any [`crate::Store`].
//!
//! A [`Cache`] wraps a store with Cachex's API: a namespace and a default TTL, `fetch` with one
//! loader call per key however many tasks wait (single flight), negative caching, warmers that
//! never block start-up unless told to, events, stats, `dump`/`load` to a file, and `update`,
//! `get_and_update`, `refresh` and `touch`. [`RateLimiter`] counts requests over any store, so
//! limits kept in Redis are shared by every node.
//!
//! Files: `builder.rs` (options, validated at `build()`), `cache.rs` (store operations with
//! stats), `get.rs` (the future of `Cache::get`: the store's answer at once where it has one),
//! `fetch.rs` (single flight), `fetch_many.rs` (a batch
//! loader over the same flights), `refresh.rs` (refresh-ahead), `lease.rs` (its cluster-wide stage), `keylock.rs` (per-key
//! async locks), `transaction.rs` (several keys locked for one block), `as_store.rs` (a
//! Cache is a `Store` too), `warmer.rs`, `dump.rs`, `rate_limit.rs`, `metrics.rs`.
//! Events and store counters come from the store's own `Store::subscribe_events` and
//! `Store::store_stats`: this module never names a concrete store.

mod as_store;
mod builder;
#[allow(clippy::module_inception)]
mod cache;
mod dump;
mod fetch;
mod fetch_many;
mod get;
mod invalidate;
mod keylock;
mod lease;
#[cfg(feature = "metrics")]
mod metrics;
mod rate_limit;
mod refresh;
mod transaction;
mod warmer;

pub use builder::CacheBuilder;
pub use cache::{Cache, Update};
pub use dump::{LoadSummary, DUMP_VERSION};
pub use fetch::{FetchError, Load};
#[cfg_attr(not(feature = "redis"), allow(unused_imports))]
pub(crate) use lease::{AbsenceHandler, BoxFuture, Holder, Leases, Notice, Outcome};
pub use rate_limit::{RateDecision, RateLimiter};
pub use transaction::Transaction;
pub use warmer::Warmer;
