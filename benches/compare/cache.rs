//! The Cache layer: what `Cache::get` and `Cache::fetch` cost over the raw MemoryStore, and
//! `fetch` against moka's `get_with` (its single-flight read-through), one thread, Zipf(0.99).

use std::{future::Future, time::Duration};

use strata::{Cache, Load, MemoryStore};

use crate::{
    report::{interleaved, timed, Report, Row},
    workload::zipf_keys,
};

const KEYS: usize = 100_000;

type U64Cache = Cache<u64, u64, MemoryStore<u64, u64>>;

fn block_on<F: Future>(runtime: &tokio::runtime::Runtime, f: F) -> F::Output {
    runtime.block_on(f)
}

fn filled_cache(runtime: &tokio::runtime::Runtime) -> U64Cache {
    block_on(runtime, async {
        let cache = Cache::builder()
            .store(MemoryStore::<u64, u64>::new())
            .ttl(Duration::from_secs(3600))
            .build()
            .await
            .expect("valid options");
        for k in 0..KEYS as u64 {
            cache.put(k, k, None).await.expect("memory put");
        }
        cache
    })
}

fn cache_gets(runtime: &tokio::runtime::Runtime, cache: &U64Cache, keys: &[u64]) -> f64 {
    timed(keys.len() as u64, || {
        block_on(runtime, async {
            let mut hits = 0u64;
            for k in keys {
                hits += u64::from(cache.get(k).await.ok().flatten().is_some());
            }
            std::hint::black_box(hits);
        })
    })
}

fn cache_fetches(runtime: &tokio::runtime::Runtime, cache: &U64Cache, keys: &[u64]) -> f64 {
    timed(keys.len() as u64, || {
        block_on(runtime, async {
            for &k in keys {
                let v = cache
                    .fetch(
                        k,
                        |k| async move { Ok::<_, std::io::Error>(Load::Commit(k)) },
                    )
                    .await;
                std::hint::black_box(v.ok());
            }
        })
    })
}

fn store_gets(store: &MemoryStore<u64, u64>, keys: &[u64]) -> f64 {
    timed(keys.len() as u64, || {
        let hits = keys.iter().filter(|k| store.get(*k).is_some()).count();
        std::hint::black_box(hits);
    })
}

fn moka_get_with(moka: &moka::sync::Cache<u64, u64>, keys: &[u64]) -> f64 {
    timed(keys.len() as u64, || {
        for &k in keys {
            std::hint::black_box(moka.get_with(k, || k));
        }
    })
}

fn row(label: &str, strata: f64, peer: &str, value: f64) -> Row {
    Row {
        section: "cache".into(),
        label: label.into(),
        strata,
        peer: Some((peer.into(), value)),
        unit: "ops/s",
        higher_is_better: true,
    }
}

pub fn run(report: &mut Report) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let count = report.n(2_000_000, 300_000);
    let keys = zipf_keys(KEYS, 0.99, count, 21);
    let cache = filled_cache(&runtime);
    let store = cache.store().clone();
    let (s, p) = interleaved(
        report.rounds,
        || cache_gets(&runtime, &cache, &keys),
        || store_gets(&store, &keys),
    );
    report.add(row("Cache::get hit 100k 1t", s, "raw MemoryStore::get", p));

    let moka = moka::sync::Cache::new(KEYS as u64 * 2);
    (0..KEYS as u64).for_each(|k| moka.insert(k, k));
    let (s, p) = interleaved(
        report.rounds,
        || cache_fetches(&runtime, &cache, &keys),
        || moka_get_with(&moka, &keys),
    );
    report.add(row("fetch hit 100k 1t", s, "moka get_with", p));

    let misses: Vec<u64> = (0..count as u64).map(|i| i + 1_000_000_000).collect();
    let (s, p) = interleaved(
        report.rounds,
        || {
            let fresh = filled_cache(&runtime);
            cache_fetches(&runtime, &fresh, &misses[..count / 4])
        },
        || {
            let fresh = moka::sync::Cache::new(count as u64);
            moka_get_with(&fresh, &misses[..count / 4])
        },
    );
    report.add(row("fetch miss+load 1t", s, "moka get_with", p));
}
