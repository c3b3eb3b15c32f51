//! `GenerationalStore`: Nebulex's Local adapter in Rust — two generations, size and memory limits,
//! a query API and key-level transactions.
//!
//! Entries live inline in two hash tables per partition, the *newer* and the *older* generation.
//! Reads hit the newer one; a hit in the older one moves the entry to the newer one. Pushing a new
//! generation turns the newer table into the older one and drops the previous older table whole,
//! which is how the store evicts: no per-entry LRU list, no timer per key. One background thread
//! per store runs the timers (`gc_interval`, the size/memory clean-up poll with its inverse linear
//! back-off, `gc_flush_delay`) and frees dropped generations off the callers' path.
//!
//! Which bounded store to pick: for the best throughput at a size limit, and the hit ratio
//! that is never far from the best, a bounded `MemoryStore` (`max_capacity`, S3-FIFO per shard;
//! at or above moka and quick_cache on 17 or 18 of the 18 columns of
//! `benches/compare/hitratio.rs`). Pick this store when you want Nebulex's model (generations a
//! caller can push, `query`, key-level transactions, a memory limit).
//!
//! Admission or not, with a limit:
//! - `admission(true)` (TinyLFU's candidate-against-victim test, see the builder) when reads
//!   repeat with a skew (Zipf-like keys, sessions, a hot set that moves now and then), when
//!   scans or one-hit keys pass through, or when a loop over more keys than the store holds
//!   is read: in the seed-pinned sim of the bench's traces (`sim.rs`, hasher seeds 1–5) the
//!   store is at or above the best of moka and quick_cache on all 18 columns' means (+0.06 to
//!   +0.60 points, 13–18 points ahead on the loop) and on every seed but one column of one
//!   seed (the moving hot set at 5 % capacity, 0.01 below); BENCHMARKS.md has the release
//!   runs. It costs 16 bytes of sketch per entry of capacity (128 KiB at least), an 8-byte
//!   hash per older entry, a few relaxed writes per read and 0.18–0.28× quick_cache's
//!   throughput where the plain store gets 0.27–0.45×.
//! - Without admission (the default, as in Nebulex) when a key is read mostly soon after it
//!   is written and seldom later (recent keys are the hot ones: the newer generation is then
//!   the right thing to keep, and a new key needs no count to stay), when throughput matters
//!   more than the last points of hit ratio, or with no limit (admission then does nothing).
//!   Without it a scan or a stream of one-hit keys fills the newer generation and pushes the
//!   used entries out (9–15 points below the best peer in that bench).

mod adapt;
mod api;
mod builder;
mod conditional;
mod gc;
mod idle;
mod notify;
mod partition;
mod query;
#[cfg(test)]
mod sim;
mod sketch;
mod store;
mod transaction;
mod weigh;

pub use builder::GenerationalStoreBuilder;
pub use query::{Entry, Query, QueryStream};
pub use store::GenerationalStore;
pub use weigh::HeapSize;
