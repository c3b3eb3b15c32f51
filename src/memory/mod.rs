//! `MemoryStore`: the in-memory store with TTL expiry (Pow's `EtsCache`, done for production).
//!
//! Entries live inline in one open-addressing table per shard (hashbrown), each with its deadline
//! as a `u64` of Unix milliseconds (0 = no expiry). Reads take a shard's read lock
//! (`parking_lot`'s; `lock.rs` says why not a hand-written one), and statistics are striped per
//! thread. Every read checks the deadline, so
//! an expired entry is never returned; one background sweeper thread per store (started on the
//! first write with a TTL) removes expired entries at the earliest deadline and emits their
//! `Expired` events. It holds only a weak reference and stops when the store is dropped.
//!
//! Built with `max_capacity` (entries) or `max_weight` + `weigher`, the store is bounded: each
//! shard evicts by S3-FIFO (`policy.rs`, the paper cited there) on writes, under its write lock;
//! reads only set two frequency bits kept in the entry's deadline word (`bounded.rs` holds the
//! limits and the weight bookkeeping every write and removal does; `lean.rs` adapts the policy
//! toward recency while the store's hit ratio recovers from a lasting drop).

mod bounded;
mod builder;
mod conditional;
// Bulk fill and the weak handle serve a DiskStore only.
#[cfg(feature = "disk")]
mod fill;
mod idle;
mod lean;
mod lock;
mod notify;
mod policy;
pub(crate) mod prefix;
mod shard;
mod store;
mod sweeper;

pub use builder::MemoryStoreBuilder;
#[cfg(feature = "disk")]
pub(crate) use fill::Fill;
pub use store::MemoryStore;
#[cfg(feature = "disk")]
pub(crate) use store::WeakMemoryStore;
