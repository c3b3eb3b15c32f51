//! Export of a cache's stats through the `metrics` facade (feature `metrics`).

use std::{fmt::Debug, hash::Hash};

use super::cache::Cache;
use crate::store::Store;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + Debug + 'static,
    V: Clone + Send + Sync + 'static,
    S: Store<K, V> + 'static,
{
    /// Publishes the current stats to the installed `metrics` recorder: counters
    /// `strata_cache_{hits,misses,writes,updates,deletes,evictions,expirations,loads,load_errors}`
    /// and the gauge `strata_cache_load_seconds`, each labelled with `namespace`. Call it on a
    /// timer (or before each scrape); counters are set to their absolute values.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> strata::Result<()> {
    /// use strata::{Cache, MemoryStore};
    /// let cache = Cache::builder().store(MemoryStore::<u64, u64>::new()).build().await?;
    /// cache.export_metrics(); // a no-op until a recorder (e.g. Prometheus) is installed
    /// # Ok(()) }
    /// ```
    pub fn export_metrics(&self) {
        let stats = self.stats();
        let ns = self.namespace().as_str().to_owned();
        let counters = [
            ("strata_cache_hits", stats.hits),
            ("strata_cache_misses", stats.misses),
            ("strata_cache_writes", stats.writes),
            ("strata_cache_updates", stats.updates),
            ("strata_cache_deletes", stats.deletes),
            ("strata_cache_evictions", stats.evictions),
            ("strata_cache_expirations", stats.expirations),
            ("strata_cache_loads", stats.loads),
            ("strata_cache_load_errors", stats.load_errors),
        ];
        for (name, value) in counters {
            metrics::counter!(name, "namespace" => ns.clone()).absolute(value);
        }
        metrics::gauge!("strata_cache_load_seconds", "namespace" => ns)
            .set(stats.load_time.as_secs_f64());
    }
}
