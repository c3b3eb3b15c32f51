//! Store openers shared by the conformance suites (`conformance.rs`, `conformance_idle.rs`):
//! a local store in `namespace` on the context's clock, with the suite's own options applied
//! to the builder. Each suite's `open` says only what differs.

use std::hash::Hash;

use strata::{GenerationalStore, GenerationalStoreBuilder, MemoryStore, MemoryStoreBuilder};

use super::Ctx;

/// What a conformance store's key must be.
pub trait Key: Hash + Eq + Clone + Send + Sync + 'static {}
impl<T: Hash + Eq + Clone + Send + Sync + 'static> Key for T {}

/// What a conformance store's value must be.
pub trait Value: Clone + Send + Sync + 'static {}
impl<T: Clone + Send + Sync + 'static> Value for T {}

/// A MemoryStore in `namespace` on `ctx`'s clock, built with `options`.
pub fn memory<K: Key, V: Value>(
    ctx: &Ctx,
    namespace: &str,
    options: impl FnOnce(MemoryStoreBuilder<K, V>) -> MemoryStoreBuilder<K, V>,
) -> MemoryStore<K, V> {
    let builder = MemoryStore::builder()
        .namespace(namespace)
        .clock(ctx.clock());
    options(builder).build().expect("valid options")
}

/// A GenerationalStore in `namespace` on `ctx`'s clock, built with `options`.
pub fn generational<K: Key, V: Value>(
    ctx: &Ctx,
    namespace: &str,
    options: impl FnOnce(GenerationalStoreBuilder<K, V>) -> GenerationalStoreBuilder<K, V>,
) -> GenerationalStore<K, V> {
    let builder = GenerationalStore::builder()
        .namespace(namespace)
        .clock(ctx.clock());
    options(builder).build().expect("valid options")
}
