//! A callgrind probe of what one put costs, in instructions: MemoryStore (unbounded, and bounded
//! with room to spare, as in the `memory` throughput rows) against quick_cache, each for fresh
//! inserts and for overwrites with the same TTL (`quick_cache` has no TTL; its puts are its
//! inserts). Wall-clock ratios on a shared 2-core machine are noise; instruction counts are not.
//!
//! Each `probe_*` function does `OPS` puts of u64 keys on one thread and nothing else, so its
//! inclusive instruction count divided by `OPS` is the cost per put. Run it under callgrind,
//! collecting only inside the probes:
//!
//! ```text
//! cargo bench --all-features --bench compare --no-run   # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/putcost.cg \
//!     --toggle-collect='compare::putcost::probe_*' target/release/deps/compare-HASH putcost
//! callgrind_annotate --inclusive=yes /tmp/putcost.cg | grep 'putcost::probe_'
//! ```
//!
//! Outside callgrind the section just runs the probes once (a few ms) and prints `OPS`.

use std::{hint::black_box, time::Duration};

use strata::MemoryStore;

use crate::{report::Report, workload::scramble};

/// Puts per probe (the cost per put is the probe's instructions / `OPS`).
const OPS: usize = 200_000;
const TTL: Option<Duration> = Some(Duration::from_secs(3600));

type Quick = quick_cache::sync::Cache<u64, u64>;

fn keys(n: usize) -> Vec<u64> {
    (0..n as u64).map(scramble).collect()
}

fn memory() -> MemoryStore<u64, u64> {
    MemoryStore::builder().build().expect("valid options")
}

/// Bounded at twice the keys, as the throughput rows are: puts never evict.
fn bounded(n: usize) -> MemoryStore<u64, u64> {
    let store = MemoryStore::builder().max_capacity(2 * n as u64);
    store.build().expect("valid options")
}

/// One probe per store and kind of put: `#[inline(never)]` and a plain name, so callgrind's
/// `--toggle-collect` can find it. Each reads its own name first, so no two bodies are the
/// same and the linker cannot fold two probes into one function (it did, without it).
macro_rules! probes {
    ($($name:ident($store:ident: $ty:ty, $key:ident) $put:block)*) => {$(
        #[inline(never)]
        fn $name($store: &$ty, keys: &[u64]) {
            black_box(stringify!($name));
            for &$key in keys {
                $put
            }
        }
    )*};
}

probes! {
    probe_memory_insert_ttl(s: MemoryStore<u64, u64>, k) { let _ = s.put(k, k, TTL); }
    probe_memory_overwrite_ttl(s: MemoryStore<u64, u64>, k) { let _ = s.put(k, !k, TTL); }
    probe_memory_insert(s: MemoryStore<u64, u64>, k) { let _ = s.put(k, k, None); }
    probe_memory_overwrite(s: MemoryStore<u64, u64>, k) { let _ = s.put(k, !k, None); }
    probe_bounded_insert_ttl(s: MemoryStore<u64, u64>, k) { let _ = s.put(k, k, TTL); }
    probe_bounded_overwrite_ttl(s: MemoryStore<u64, u64>, k) { let _ = s.put(k, !k, TTL); }
    probe_bounded_insert(s: MemoryStore<u64, u64>, k) { let _ = s.put(k, k, None); }
    probe_bounded_overwrite(s: MemoryStore<u64, u64>, k) { let _ = s.put(k, !k, None); }
    probe_quick_insert(q: Quick, k) { q.insert(k, k); }
    probe_quick_overwrite(q: Quick, k) { q.insert(k, !k); }
}

/// Fresh inserts of every key into `store`, then one overwrite of each.
fn both(store: &MemoryStore<u64, u64>, keys: &[u64], probes: [Probe; 2]) {
    let [insert, overwrite] = probes;
    insert(store, keys);
    overwrite(store, keys);
    black_box(store.get(&keys[0]));
}

type Probe = fn(&MemoryStore<u64, u64>, &[u64]);

pub fn run(report: &mut Report) {
    let n = report.n(OPS, OPS);
    let keys = keys(n);
    both(
        &memory(),
        &keys,
        [probe_memory_insert_ttl, probe_memory_overwrite_ttl],
    );
    both(
        &memory(),
        &keys,
        [probe_memory_insert, probe_memory_overwrite],
    );
    both(
        &bounded(n),
        &keys,
        [probe_bounded_insert_ttl, probe_bounded_overwrite_ttl],
    );
    both(
        &bounded(n),
        &keys,
        [probe_bounded_insert, probe_bounded_overwrite],
    );
    let quick = Quick::new(2 * n);
    probe_quick_insert(&quick, &keys);
    probe_quick_overwrite(&quick, &keys);
    black_box(quick.get(&keys[0]));
    if !report.smoke {
        println!("putcost: {n} puts per probe_* function (instructions / {n} = per put)");
    }
}
