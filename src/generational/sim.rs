//! The hit-ratio bench's admission columns (`benches/compare/hitratio.rs`: same traces, same
//! capacities, same read-through loop) with the hasher's seed pinned, to compare policy changes
//! without a release build of the bench. Ignored: run with
//! `cargo test --all-features --lib --config 'profile.dev.package.strata.opt-level=3' -- --ignored
//! --nocapture hit_ratio_sim`; `SIM_SEEDS=1,2,3` picks the seeds, `SIM_ONLY='shifting|scan @1'`
//! the columns whose name holds one of those texts, `SIM_PEERS=1` adds quick_cache and moka.

use super::GenerationalStore;

#[allow(dead_code)]
#[path = "../../benches/compare/workload.rs"]
mod workload;

use workload::traces;

/// Percent of `trace` read-through hits: `get`, and `put` on a miss.
fn hit_ratio(trace: &[u64], get: impl Fn(u64) -> bool, put: impl Fn(u64)) -> f64 {
    let hits = trace.iter().filter(|&&k| get(k) || (put(k), false).1);
    100.0 * hits.count() as f64 / trace.len() as f64
}

fn admission(cap: usize, seed: u64, trace: &[u64]) -> f64 {
    super::store::HASHER_SEED.set(Some(seed));
    let store: GenerationalStore<u64, u64> = GenerationalStore::builder()
        .max_size(cap as u64)
        .admission(true)
        .build()
        .expect("valid options");
    super::store::HASHER_SEED.set(None);
    hit_ratio(
        trace,
        |k| store.get(&k).is_some(),
        |k| store.put(k, k, None).expect("no TTL"),
    )
}

fn peers(cap: usize, trace: &[u64]) -> (f64, f64) {
    let quick = quick_cache::sync::Cache::<u64, u64>::new(cap);
    let q = hit_ratio(trace, |k| quick.get(&k).is_some(), |k| quick.insert(k, k));
    let moka = moka::sync::Cache::<u64, u64>::new(cap as u64);
    let m = hit_ratio(trace, |k| moka.get(&k).is_some(), |k| moka.insert(k, k));
    (q, m)
}

/// Prints every column's ratio per seed; checks the premise of comparing runs: a pinned seed
/// gives the same count twice.
#[test]
#[ignore = "a hit-ratio simulation for tuning (minutes at opt-level 3)"]
fn hit_ratio_sim() {
    let env = |name: &str| std::env::var(name).ok();
    let seeds: Vec<u64> = env("SIM_SEEDS")
        .unwrap_or_else(|| "1,2,3".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let only = env("SIM_ONLY").unwrap_or_default();
    let with_peers = env("SIM_PEERS").is_some();
    let (n, requests) = (100_000, 3_000_000);
    let mut columns: Vec<(String, usize, Vec<u64>)> = Vec::new();
    let mut add = |name: String, pcts: &[usize], trace: &dyn Fn() -> Vec<u64>| {
        let wanted: Vec<usize> = pcts
            .iter()
            .copied()
            .filter(|pct| {
                let column = format!("{name} @{pct}%");
                only.is_empty() || only.split('|').any(|o| column.contains(o))
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        let t = trace();
        for pct in wanted {
            columns.push((format!("{name} @{pct}%"), n * pct / 100, t.clone()));
        }
    };
    for s in [0.9, 0.99] {
        for scan in [false, true] {
            let name = format!("zipf{s}{}", if scan { "+scan" } else { "" });
            let scan = scan.then_some((100_000, n / 5));
            add(name, &[1, 5, 20], &|| traces::zipf(n, s, requests, scan));
        }
    }
    for pct in [1, 5, 20] {
        let cap = n * pct / 100;
        add("loop".into(), &[pct], &|| {
            traces::looping(cap * 5 / 4, requests)
        });
    }
    add("shifting".into(), &[1, 5, 20], &|| {
        traces::shifting(n, requests, 4)
    });
    if let (Some((_, cap, trace)), Some(&seed)) = (columns.first(), seeds.first()) {
        let twice = [(); 2].map(|()| admission(*cap, seed, trace));
        assert_eq!(twice[0], twice[1], "seed {seed} gave two ratios");
    }
    let mut sum = 0.0;
    for (name, cap, trace) in &columns {
        let ours: Vec<f64> = seeds.iter().map(|&s| admission(*cap, s, trace)).collect();
        let mean = ours.iter().sum::<f64>() / ours.len() as f64;
        sum += mean;
        let each: Vec<String> = ours.iter().map(|r| format!("{r:.2}")).collect();
        let peer = if with_peers {
            let (q, m) = peers(*cap, trace);
            format!(
                "  quick_cache {q:.2} moka {m:.2}  best-ours {:+.2}",
                mean - q.max(m)
            )
        } else {
            String::new()
        };
        println!("{name:<16} mean {mean:.2} [{}]{peer}", each.join(" "));
    }
    println!("sum of means {sum:.2}");
}
