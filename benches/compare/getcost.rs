//! A callgrind probe of what one read costs, in instructions, for issue 13's two read goals:
//!
//! - `Cache::get` ≤ 1.2× a raw `MemoryStore::get`: a Cache over a MemoryStore with a 1 h TTL
//!   holding 1 024 u64 keys, 100 000 hits (a full run) of `keys[i & 1023]` through the raw store, through
//!   `Cache::get_now`, through `Cache::get` polled once with no runtime, and awaited in a
//!   `block_on` loop the way the `cache` section's rows do (`contest::sequential_async`: one
//!   `async` block per call) — for the Cache, for the bare store through `Store::get`, and for
//!   the raw sync read inside that same loop (what the loop costs any read).
//! - MemoryStore with TTL against quick_cache on the `memory` section's 95/5 mix at one thread:
//!   the same Zipf(0.99) keys over 1 M resident entries and the same op sequence, `MIX_OPS`
//!   operations each.
//!
//! Each `probe_*` function does its operations and nothing else, so its inclusive instruction
//! count divided by its operation count is the cost per operation. Run it under callgrind,
//! collecting only inside the probes:
//!
//! ```text
//! cargo bench --all-features --bench compare --no-run   # prints the binary's path
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/getcost.cg \
//!     --toggle-collect='compare::getcost::probe_*' target/release/deps/compare-HASH getcost
//! callgrind_annotate --inclusive=yes /tmp/getcost.cg | grep 'getcost::probe_'
//! ```
//!
//! Every store here hashes with a fixed seed (`foldhash::fast::FixedState`): with the default,
//! randomly seeded hasher the seed follows the binary's addresses, and a change anywhere in the
//! binary moved a probe by a few instructions per operation (quick_cache's own gets by 8) through
//! the table's probe lengths alone.
//!
//! Outside callgrind the section just runs the probes once and prints the operation counts.

use std::{future::Future, hint::black_box, time::Duration};

use foldhash::fast::FixedState;
use quick_cache::{sync::DefaultLifecycle, UnitWeighter};
use strata::{Cache, MemoryStore};

use crate::{
    memory::Contender,
    report::Report,
    workload::{op_mix, scramble, zipf_keys},
};

/// Reads per `Cache` probe in a full run (the cost of one is the probe's instructions / reads).
const READS: u64 = 100_000;
/// The Cache probes' keys: few enough to stay in cache, so the count is the code's.
const CACHE_KEYS: u64 = 1024;
const TTL: Duration = Duration::from_secs(3600);

/// Every probe's hasher (see the module docs).
const SEED: FixedState = FixedState::with_seed(0x5eed);

type Memory = MemoryStore<u64, u64, FixedState>;
type U64Cache = Cache<u64, u64, Memory>;
type QuickCache = quick_cache::sync::Cache<u64, u64, UnitWeighter, FixedState>;

/// A MemoryStore with the `memory` section's TTL on every put.
struct Strata(Memory);

impl Contender for Strata {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.0.get(&k).is_some()
    }
    #[inline]
    fn put(&self, k: u64, v: u64) {
        let _ = self.0.put(k, v, Some(TTL));
    }
}

struct Quick(QuickCache);

impl Contender for Quick {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.0.get(&k).is_some()
    }
    #[inline]
    fn put(&self, k: u64, v: u64) {
        self.0.insert(k, v);
    }
}

/// A MemoryStore with the probes' hasher, bounded at `max_capacity` if given.
fn memory(max_capacity: Option<u64>) -> Memory {
    let builder = MemoryStore::builder().hasher(SEED);
    let builder = match max_capacity {
        Some(n) => builder.max_capacity(n),
        None => builder,
    };
    builder.build().expect("valid options")
}

/// quick_cache as the `memory` section builds it (`Cache::new(2 * keys)`), with the probes' hasher.
fn quick(items: usize) -> Quick {
    let lifecycle = DefaultLifecycle::default();
    Quick(QuickCache::with(
        items,
        items as u64,
        UnitWeighter,
        SEED,
        lifecycle,
    ))
}
type Runtime = tokio::runtime::Runtime;

/// The key of read `i`.
#[inline(always)]
fn key(i: u64) -> u64 {
    i & (CACHE_KEYS - 1)
}

/// `op(i).await` for `i` in `0..reads`, inside one `block_on`: the loop of
/// `contest::sequential_async` without its deadline.
#[inline(always)]
fn awaited<F, Fut>(rt: &Runtime, reads: u64, mut op: F)
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()>,
{
    rt.block_on(async {
        for i in 0..reads {
            op(i).await;
        }
    })
}

/// Polls `future` once, with no runtime (a Cache over a MemoryStore never waits).
#[inline(always)]
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

// One function per probe: `#[inline(never)]` and a plain name, so callgrind's
// `--toggle-collect` can find it; each reads its own name first, so the linker cannot fold two
// probes into one function.

#[inline(never)]
fn probe_raw_get(store: &Memory, reads: u64) {
    black_box("probe_raw_get");
    for i in 0..reads {
        black_box(store.get(&key(i)));
    }
}

/// The same sync read inside the awaited loop the `async` probes use: what that loop costs
/// any read by itself.
#[inline(never)]
fn probe_raw_get_in_async_loop(rt: &Runtime, store: &Memory, reads: u64) {
    black_box("probe_raw_get_in_async_loop");
    awaited(rt, reads, |i| async move {
        black_box(store.get(&key(i)));
    });
}

#[inline(never)]
fn probe_cache_get_now(cache: &U64Cache, reads: u64) {
    black_box("probe_cache_get_now");
    for i in 0..reads {
        black_box(cache.get_now(&key(i)).map(Result::ok));
    }
}

#[inline(never)]
fn probe_cache_get_polled(cache: &U64Cache, reads: u64) {
    black_box("probe_cache_get_polled");
    for i in 0..reads {
        black_box(poll_once(cache.get(&key(i))));
    }
}

#[inline(never)]
fn probe_store_get_awaited(rt: &Runtime, store: &Memory, reads: u64) {
    black_box("probe_store_get_awaited");
    awaited(rt, reads, |i| async move {
        let got = strata::Store::get(store, &key(i)).await;
        black_box(got.ok());
    });
}

#[inline(never)]
fn probe_cache_get_awaited(rt: &Runtime, cache: &U64Cache, reads: u64) {
    black_box("probe_cache_get_awaited");
    awaited(rt, reads, |i| async move {
        black_box(cache.get(&key(i)).await.ok());
    });
}

/// The `memory` section's mix loop (`Mix::run`) for one thread, without its deadline.
#[inline(always)]
fn mix<C: Contender>(c: &C, keys: &[u64], ops: &[bool]) {
    let mut hits = 0u64;
    for (i, (&k, &get)) in keys.iter().zip(ops).enumerate() {
        if get {
            hits += u64::from(c.get(k));
        } else {
            c.put(k, i as u64);
        }
    }
    black_box(hits);
}

#[inline(never)]
fn probe_memory_mix_95_ttl(s: &Strata, keys: &[u64], ops: &[bool]) {
    black_box("probe_memory_mix_95_ttl");
    mix(s, keys, ops);
}

#[inline(never)]
fn probe_bounded_mix_95_ttl(s: &Strata, keys: &[u64], ops: &[bool]) {
    black_box("probe_bounded_mix_95_ttl");
    mix(s, keys, ops);
}

#[inline(never)]
fn probe_quick_mix_95(q: &Quick, keys: &[u64], ops: &[bool]) {
    black_box("probe_quick_mix_95");
    mix(q, keys, ops);
}

fn filled<C: Contender>(c: C, n: usize) -> C {
    (0..n as u64).for_each(|i| c.put(scramble(i), i));
    c
}

pub fn run(report: &mut Report) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let cache: U64Cache = rt.block_on(async {
        let cache = Cache::builder()
            .store(memory(None))
            .ttl(TTL)
            .build()
            .await
            .expect("valid options");
        for k in 0..CACHE_KEYS {
            cache.put(k, k, None).await.expect("memory put");
        }
        cache
    });
    let store = cache.store().clone();
    let reads = report.n(READS as usize, READS as usize) as u64;
    probe_raw_get(&store, reads);
    probe_raw_get_in_async_loop(&rt, &store, reads);
    probe_cache_get_now(&cache, reads);
    probe_cache_get_polled(&cache, reads);
    probe_store_get_awaited(&rt, &store, reads);
    probe_cache_get_awaited(&rt, &cache, reads);
    assert_eq!(cache.stats().misses, 0, "every Cache probe read hits");

    // The `memory` section's 95/5 one-thread mix: its keys, op sequence and fill.
    let n_keys = report.n(1_000_000, 1_000_000);
    let mix_ops = report.n(1_000_000, 1_000_000);
    let keys = zipf_keys(n_keys, 0.99, mix_ops, 7);
    let ops = op_mix(mix_ops, 95, 11);
    let s = filled(Strata(memory(None)), n_keys);
    probe_memory_mix_95_ttl(&s, &keys, &ops);
    drop(s);
    let s = filled(Strata(memory(Some(2 * n_keys as u64))), n_keys);
    probe_bounded_mix_95_ttl(&s, &keys, &ops);
    drop(s);
    let q = filled(quick(2 * n_keys), n_keys);
    probe_quick_mix_95(&q, &keys, &ops);
    if !report.smoke {
        println!("getcost: {reads} reads per Cache probe_*, {mix_ops} ops per *_mix_95 probe");
    }
}
