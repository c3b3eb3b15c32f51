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
//! caller can push, `query`, key-level transactions, a memory limit); turn on `admission(true)`
//! there (TinyLFU's candidate-against-victim test, see the builder): without it a scan or a
//! stream of one-hit wonders fills the newer generation and pushes the used entries out (9–15
//! points below the best peer in that bench); with it the store is at or above the best peer on
//! 16 of the 18 columns in a seed-pinned sim of the same traces (`sim.rs`, means of 3 hasher
//! seeds; 0.08 and 0.21 points below on Zipf 0.99 with a scan at 20 % capacity and a moving hot
//! set at 5 %) and on 15 and 16 of 18 in two release runs of the bench after the changes of
//! 2026-12-07 02:00–03:20, before the sketch's counters stopped at 7 (0.12–0.25 points below on
//! the others there: the same two, and the moving hot set at 20 % in one; the hasher's seed
//! moves a column by up to ±0.3), and 10–18 points ahead on the loop, at 0.36–0.43× of
//! quick_cache's throughput (BENCHMARKS.md). So for the hit ratio alone, the bounded
//! `MemoryStore` is still the pick; this one when its model is.

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
