//! The lock around one shard: `parking_lot`'s reader-writer lock.
//!
//! From 2026-12-07 06:10 to 15:00 a hand-written distributed reader-writer lock stood here
//! (each thread counting its reads on a cache line of its own, after Hsieh and Weihl, 1992;
//! unsafe code, with `loom` models). Measured against `parking_lot::RwLock` and crossbeam's
//! `ShardedLock`, each guarding the same 16 hashbrown maps with the `memory` rows' keys and op
//! mix, in one run on a quiet machine (load 0.5–1.0), it was behind `parking_lot` on every
//! cell: 95/5 0.65× (1 thread) and 0.95× (2 threads), 50/50 0.79× and 0.94× (BENCHMARKS.md,
//! "shard lock"). So the well-kept crate's lock is used; the old lock is in the history
//! (88715f3) if a later machine or workload calls for it again.

/// A shard's lock.
pub(crate) type ShardLock<T> = parking_lot::RwLock<T>;
