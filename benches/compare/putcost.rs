//! A callgrind probe of what one put and one get cost, in instructions: MemoryStore (unbounded,
//! and bounded with room to spare, as in the `memory` throughput rows) against quick_cache, each
//! for fresh inserts and for overwrites with the same TTL (`quick_cache` has no TTL; its puts are
//! its inserts), and for gets that hit an entry with a TTL, hit one without, or miss. Wall-clock
//! ratios on a shared 2-core machine are noise; instruction counts are not.
//!
//! Each `probe_*` function does `OPS` puts or gets of u64 keys on one thread and nothing else, so
//! its inclusive instruction count divided by `OPS` is the cost per operation. Run it under
//! callgrind, collecting only inside the probes:
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

/// Operations per probe (the cost of one is the probe's instructions / `OPS`).
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
    probe_memory_get_ttl(s: MemoryStore<u64, u64>, k) { black_box(s.get(&k)); }
    probe_memory_get(s: MemoryStore<u64, u64>, k) { black_box(s.get(&k)); }
    probe_memory_get_miss(s: MemoryStore<u64, u64>, k) { black_box(s.get(&k)); }
    probe_bounded_get_ttl(s: MemoryStore<u64, u64>, k) { black_box(s.get(&k)); }
    probe_bounded_get(s: MemoryStore<u64, u64>, k) { black_box(s.get(&k)); }
    probe_bounded_get_miss(s: MemoryStore<u64, u64>, k) { black_box(s.get(&k)); }
    probe_quick_get(q: Quick, k) { black_box(q.get(&k)); }
    probe_quick_get_miss(q: Quick, k) { black_box(q.get(&k)); }
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
    let all = keys(2 * n);
    // The gets of each store hit every key once, then miss on as many keys never put.
    let (keys, absent) = all.split_at(n);
    let store = memory();
    both(
        &store,
        keys,
        [probe_memory_insert_ttl, probe_memory_overwrite_ttl],
    );
    probe_memory_get_ttl(&store, keys);
    probe_memory_get_miss(&store, absent);
    let store = memory();
    both(&store, keys, [probe_memory_insert, probe_memory_overwrite]);
    probe_memory_get(&store, keys);
    let store = bounded(n);
    both(
        &store,
        keys,
        [probe_bounded_insert_ttl, probe_bounded_overwrite_ttl],
    );
    probe_bounded_get_ttl(&store, keys);
    probe_bounded_get_miss(&store, absent);
    let store = bounded(n);
    both(
        &store,
        keys,
        [probe_bounded_insert, probe_bounded_overwrite],
    );
    probe_bounded_get(&store, keys);
    let quick = Quick::new(2 * n);
    probe_quick_insert(&quick, keys);
    probe_quick_overwrite(&quick, keys);
    probe_quick_get(&quick, keys);
    probe_quick_get_miss(&quick, absent);
    if !report.smoke {
        println!("putcost: {n} puts or gets per probe_* function (instructions / {n} = per op)");
    }
}
