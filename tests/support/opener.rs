//! Store openers shared by the conformance suites (`conformance.rs`, `conformance_idle.rs`):
//! a local store in `namespace` on the context's clock, with the suite's own options applied
//! to the builder. Each suite's `open` says only what differs.

use std::hash::Hash;

use strata::{
    Cache, CacheBuilder, GenerationalStore, GenerationalStoreBuilder, MemoryStore,
    MemoryStoreBuilder,
};

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

/// A `Cache` in `namespace` over a default MemoryStore on `ctx`'s clock, built with `options`.
pub async fn cache_over_memory<K, V>(
    ctx: &Ctx,
    namespace: &str,
    options: impl FnOnce(CacheBuilder<K, V, MemoryStore<K, V>>) -> CacheBuilder<K, V, MemoryStore<K, V>>,
) -> Cache<K, V, MemoryStore<K, V>>
where
    K: Key + std::fmt::Debug,
    V: Value,
{
    // The store keeps its default namespace: the Cache's namespace is the one under test.
    let store = MemoryStore::builder()
        .clock(ctx.clock())
        .build()
        .expect("valid options");
    let builder = Cache::builder().store(store).namespace(namespace);
    options(builder).build().await.expect("valid cache options")
}

/// A DiskStore for `namespace` in the one `DiskDb` every store of the case shares (opened on
/// first use in `ctx`'s directory, on its clock, with `options`).
#[cfg(feature = "disk")]
pub fn disk<K, V>(
    ctx: &Ctx,
    namespace: &str,
    options: impl FnOnce(strata::DiskDbBuilder) -> strata::DiskDbBuilder,
) -> strata::DiskStore<K, V>
where
    K: strata::Key,
    V: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    let db = ctx.shared(|| {
        let builder = strata::DiskDb::builder().dir(ctx.dir()).clock(ctx.clock());
        options(builder).open().expect("open the data directory")
    });
    db.store(namespace).expect("open the namespace")
}
