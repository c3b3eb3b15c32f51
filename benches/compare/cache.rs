//! The Cache layer: what `Cache::get`, `Cache::get_now` and `Cache::fetch` cost over the raw
//! MemoryStore, and `fetch` against moka's `get_with` (its single-flight read-through), one
//! thread, Zipf(0.99).

use std::time::Duration;

use strata::{Cache, Load, MemoryStore};

use crate::{
    contest::{self, sequential, sequential_async, Contest, Entrant, Slice},
    report::Report,
    workload::zipf_keys,
};

const TITLE: &str = "Cache layer, one thread, Zipf 0.99 over 100k u64 keys";

type U64Cache = Cache<u64, u64, MemoryStore<u64, u64>>;
type Runtime = tokio::runtime::Runtime;

/// A Cache holding keys `0..n`.
fn filled_cache(rt: &Runtime, n: usize) -> U64Cache {
    rt.block_on(async {
        let cache = Cache::builder()
            .store(MemoryStore::<u64, u64>::new())
            .ttl(Duration::from_secs(3600))
            .build()
            .await
            .expect("valid options");
        for k in 0..n as u64 {
            cache.put(k, k, None).await.expect("memory put");
        }
        cache
    })
}

fn filled_moka(n: usize) -> moka::sync::Cache<u64, u64> {
    let moka = moka::sync::Cache::new(n as u64 * 2);
    (0..n as u64).for_each(|k| moka.insert(k, k));
    moka
}

/// The Zipf key of call `i` (the sequence has a power-of-two length: a mask, not a division).
fn key(keys: &[u64], i: u64) -> u64 {
    keys[i as usize & (keys.len() - 1)]
}

async fn fetch(cache: &U64Cache, k: u64) {
    let loader = |k| async move { Ok::<_, std::io::Error>(Load::Commit(k)) };
    std::hint::black_box(cache.fetch(k, loader).await.ok());
}

/// A miss on every call: keys nobody loaded yet.
fn miss(i: u64) -> u64 {
    i + 1_000_000_000
}

/// The peer of every `Cache::get` contest: the Cache's own MemoryStore, read directly.
fn raw_get<'a>(rt: &'a Runtime, n: usize, keys: &'a [u64]) -> Entrant<'a> {
    Entrant::peer("raw MemoryStore::get", move || -> Slice<'a> {
        let store = filled_cache(rt, n).store().clone();
        Box::new(move |slice| {
            sequential(slice, |i| {
                std::hint::black_box(store.get(&key(keys, i)));
            })
        })
    })
}

fn get_contest<'a>(rt: &'a Runtime, n: usize, keys: &'a [u64]) -> Contest<'a> {
    let ours = Entrant::ours("strata Cache::get", move || -> Slice<'a> {
        let cache = filled_cache(rt, n);
        Box::new(move |slice| {
            sequential_async(rt, slice, |i| {
                let cache = &cache;
                async move {
                    std::hint::black_box(cache.get(&key(keys, i)).await.ok());
                }
            })
        })
    });
    let raw = raw_get(rt, n, keys);
    let raw_awaited = raw_get_awaited(rt, n, keys);
    // The same lookup through the async `Store` trait, without the Cache: separates what the
    // async call costs from what the Cache's bookkeeping costs.
    let through_trait = Entrant::peer("MemoryStore via async Store::get", move || -> Slice<'a> {
        let store = filled_cache(rt, n).store().clone();
        Box::new(move |slice| {
            sequential_async(rt, slice, |i| {
                let store = &store;
                async move {
                    let got = strata::Store::get(store, &key(keys, i)).await;
                    std::hint::black_box(got.ok());
                }
            })
        })
    });
    contest(
        "Cache::get hit 100k 1t",
        "get hit",
        vec![ours, raw, through_trait, raw_awaited],
    )
}

/// The peer of the raw read inside `sequential_async`'s loop (one `async` block awaited per
/// call, the shape of every `Cache::get` entrant): what that loop costs any read, so the ratio
/// against it is the Cache's own cost.
fn raw_get_awaited<'a>(rt: &'a Runtime, n: usize, keys: &'a [u64]) -> Entrant<'a> {
    Entrant::peer(
        "raw MemoryStore::get in the awaited loop",
        move || -> Slice<'a> {
            let store = filled_cache(rt, n).store().clone();
            Box::new(move |slice| {
                sequential_async(rt, slice, |i| {
                    let store = &store;
                    async move {
                        std::hint::black_box(store.get(&key(keys, i)));
                    }
                })
            })
        },
    )
}

/// `Cache::get` and the raw read with the answer used the same way on both sides (its value,
/// or 0 for a miss or an error, handed to `black_box` as one u64), where the rows above hand
/// `black_box` different types: the raw `Option<u64>` in two registers, the Cache's
/// `Result::ok()`, an `Option<Option<u64>>` that the compiler copies with one 16-byte load
/// from two 8-byte stores of the awaited answer (a store-to-load forwarding stall on every
/// read, which instruction counts do not show).
fn value_get_contest<'a>(rt: &'a Runtime, n: usize, keys: &'a [u64]) -> Contest<'a> {
    let ours = Entrant::ours("strata Cache::get, value read", move || -> Slice<'a> {
        let cache = filled_cache(rt, n);
        Box::new(move |slice| {
            sequential_async(rt, slice, |i| {
                let cache = &cache;
                async move {
                    let got = cache.get(&key(keys, i)).await;
                    std::hint::black_box(got.map_or(0, |v| v.unwrap_or(0)));
                }
            })
        })
    });
    let raw = Entrant::peer("raw MemoryStore::get, value read", move || -> Slice<'a> {
        let store = filled_cache(rt, n).store().clone();
        Box::new(move |slice| {
            sequential(slice, |i| {
                std::hint::black_box(store.get(&key(keys, i)).unwrap_or(0));
            })
        })
    });
    let raw_awaited = Entrant::peer(
        "raw MemoryStore::get, value read, in the awaited loop",
        move || -> Slice<'a> {
            let store = filled_cache(rt, n).store().clone();
            Box::new(move |slice| {
                sequential_async(rt, slice, |i| {
                    let store = &store;
                    async move {
                        std::hint::black_box(store.get(&key(keys, i)).unwrap_or(0));
                    }
                })
            })
        },
    );
    contest(
        "Cache::get hit, value read, 100k 1t",
        "get hit, value read",
        vec![ours, raw, raw_awaited],
    )
}

/// Polls `future` once, with no runtime (a Cache over a MemoryStore never waits). Left to
/// LLVM, which keeps it out of line: the `Get` is built in the caller's memory and read back
/// with one 16-byte load of two 8-byte stores, a forwarding stall on every read (row
/// `Cache::get polled`; [`poll_once_inlined`] is the same without the call).
fn poll_once<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

/// [`poll_once`] inlined into the loop, as `benches/compare/getcost.rs` polls.
#[inline(always)]
fn poll_once_inlined<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

/// The same two calls outside a runtime's `block_on` loop: what the Cache adds to a lookup, with
/// no executor around it.
fn polled_get_contest<'a>(rt: &'a Runtime, n: usize, keys: &'a [u64]) -> Contest<'a> {
    let ours = Entrant::ours("strata Cache::get, polled once", move || -> Slice<'a> {
        let cache = filled_cache(rt, n);
        Box::new(move |slice| {
            sequential(slice, |i| {
                std::hint::black_box(poll_once(cache.get(&key(keys, i))));
            })
        })
    });
    let raw = raw_get(rt, n, keys);
    contest(
        "Cache::get polled, hit 100k 1t",
        "get hit, polled",
        vec![ours, raw],
    )
}

/// [`polled_get_contest`] with the poll inlined into the loop ([`poll_once_inlined`]).
fn inlined_poll_contest<'a>(rt: &'a Runtime, n: usize, keys: &'a [u64]) -> Contest<'a> {
    let ours = Entrant::ours(
        "strata Cache::get, polled once inlined",
        move || -> Slice<'a> {
            let cache = filled_cache(rt, n);
            Box::new(move |slice| {
                sequential(slice, |i| {
                    std::hint::black_box(poll_once_inlined(cache.get(&key(keys, i))));
                })
            })
        },
    );
    let raw = raw_get(rt, n, keys);
    contest(
        "Cache::get polled inlined, hit 100k 1t",
        "get hit, polled inlined",
        vec![ours, raw],
    )
}

/// The Cache's sync read ([`Cache::get_now`]) against the raw store: what the Cache's own
/// bookkeeping costs, with no future at all.
fn get_now_contest<'a>(rt: &'a Runtime, n: usize, keys: &'a [u64]) -> Contest<'a> {
    let ours = Entrant::ours("strata Cache::get_now", move || -> Slice<'a> {
        let cache = filled_cache(rt, n);
        Box::new(move |slice| {
            sequential(slice, |i| {
                std::hint::black_box(cache.get_now(&key(keys, i)).map(Result::ok));
            })
        })
    });
    let raw = raw_get(rt, n, keys);
    contest(
        "Cache::get_now hit 100k 1t",
        "get hit, sync",
        vec![ours, raw],
    )
}

fn fetch_contest<'a>(rt: &'a Runtime, n: usize, keys: &'a [u64], hit: bool) -> Contest<'a> {
    let pick = move |i| if hit { key(keys, i) } else { miss(i) };
    let ours = Entrant::ours("strata Cache::fetch", move || -> Slice<'a> {
        let cache = filled_cache(rt, n);
        Box::new(move |slice| sequential_async(rt, slice, |i| fetch(&cache, pick(i))))
    });
    let moka = Entrant::peer("moka get_with", move || -> Slice<'a> {
        let moka = filled_moka(n);
        Box::new(move |slice| {
            sequential(slice, |i| {
                let k = pick(i);
                std::hint::black_box(moka.get_with(k, || k));
            })
        })
    });
    let (label, group) = if hit {
        ("fetch hit 100k 1t", "fetch, hit")
    } else {
        ("fetch miss+load 1t", "fetch, miss + load")
    };
    contest(label, group, vec![ours, moka])
}

fn contest<'a>(label: &str, group: &str, entrants: Vec<Entrant<'a>>) -> Contest<'a> {
    Contest {
        section: "cache",
        label: label.into(),
        chart: "throughput_cache",
        title: TITLE,
        group: group.into(),
        entrants,
    }
}

pub fn run(report: &mut Report) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // 100k keys (100 in a smoke run: each entrant of each round fills its own cache).
    let n = report.n(100_000, 100_000);
    let count = report.n(2_000_000, 300_000).next_power_of_two();
    let keys = zipf_keys(n, 0.99, count, 21);
    contest::run(report, get_contest(&rt, n, &keys));
    contest::run(report, value_get_contest(&rt, n, &keys));
    contest::run(report, polled_get_contest(&rt, n, &keys));
    contest::run(report, inlined_poll_contest(&rt, n, &keys));
    contest::run(report, get_now_contest(&rt, n, &keys));
    contest::run(report, fetch_contest(&rt, n, &keys, true));
    contest::run(report, fetch_contest(&rt, n, &keys, false));
}
