//! GenerationalStore against moka and quick_cache: throughput on the memory section's Zipf(0.99)
//! workload, and hit ratio at equal capacity (Zipf(0.9), and Zipf with periodic cold scans).

use std::sync::Arc;

use strata::GenerationalStore;

use crate::{
    memory::{run_mix, Contender, Moka, Quick},
    report::{interleaved, Report, Row},
    workload::{op_mix, scramble, zipf_keys, Rng, Zipf},
};

pub struct Generational(pub GenerationalStore<u64, u64>);
impl Contender for Generational {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.0.get(&k).is_some()
    }
    #[inline]
    fn put(&self, k: u64, v: u64) {
        let _ = self.0.put(k, v, None);
    }
}

fn generational(capacity: usize, admission: bool) -> Generational {
    let store = GenerationalStore::builder()
        .max_size(capacity as u64)
        .admission(admission)
        .build()
        .expect("valid options");
    Generational(store)
}

fn moka(capacity: usize) -> Moka {
    Moka(moka::sync::Cache::new(capacity as u64))
}

fn quick(capacity: usize) -> Quick {
    Quick(quick_cache::sync::Cache::new(capacity))
}

fn throughput(report: &mut Report) {
    let n_keys = report.n(1_000_000, 1_000_000);
    let per_thread = report.n(2_000_000, 500_000);
    let keys: Arc<Vec<Vec<u64>>> = Arc::new(
        (0..2)
            .map(|t| zipf_keys(n_keys, 0.99, per_thread, 7 + t))
            .collect(),
    );
    // Capacity for every key: all resident, as in the memory section (generations still turn
    // over: a new one whenever the newer generation reaches half of max_size).
    let ours: Arc<dyn Contender> = Arc::new(generational(n_keys * 2, false));
    let peers: Vec<(&str, Arc<dyn Contender>)> = vec![
        ("moka", Arc::new(moka(n_keys * 2))),
        ("quick_cache", Arc::new(quick(n_keys * 2))),
    ];
    for c in std::iter::once(&ours).chain(peers.iter().map(|(_, p)| p)) {
        (0..n_keys as u64).for_each(|i| c.put(scramble(i), i));
    }
    let admitted: Arc<dyn Contender> = Arc::new(generational(n_keys * 2, true));
    (0..n_keys as u64).for_each(|i| admitted.put(scramble(i), i));
    for (read_pct, mix) in [(95, "95/5"), (50, "50/50")] {
        let ops = Arc::new(op_mix(per_thread, read_pct, 11));
        let contenders = [("", &ours), (" admission", &admitted)];
        for (name, peer) in &peers {
            for (variant, ours) in contenders {
                if !variant.is_empty() && *name != "moka" {
                    continue;
                }
                for threads in [1, 2] {
                    let (s, p) = interleaved(
                        report.rounds,
                        || run_mix(ours, &keys, &ops, threads),
                        || run_mix(peer, &keys, &ops, threads),
                    );
                    report.add(Row {
                        section: "generational".into(),
                        label: format!("zipf0.99 1M {mix} {threads}t{variant}"),
                        strata: s,
                        peer: Some((name.to_string(), p)),
                        unit: "ops/s",
                        higher_is_better: true,
                    });
                }
            }
        }
    }
}

/// A read-through trace: Zipf(s) requests over `n` keys; with `scan`, every `period` requests a
/// one-pass scan over `len` cold keys (never requested otherwise) is inserted.
fn trace(n: usize, s: f64, requests: usize, scan: Option<(usize, usize)>) -> Vec<u64> {
    let zipf = Zipf::new(n, s);
    let mut rng = Rng::new(42);
    let mut out = Vec::with_capacity(requests);
    let mut cold = n as u64;
    while out.len() < requests {
        if let Some((period, len)) = scan {
            if !out.is_empty() && out.len() % period == 0 {
                out.extend((0..len as u64).map(|i| scramble(cold + i)));
                cold += len as u64;
            }
        }
        out.push(scramble(zipf.sample(&mut rng)));
    }
    out
}

/// Hit ratio in percent of `trace` through `c`: a get, and a put on a miss.
fn hit_ratio(c: &dyn Contender, trace: &[u64]) -> f64 {
    let hits = trace
        .iter()
        .filter(|&&k| {
            let hit = c.get(k);
            if !hit {
                c.put(k, k);
            }
            hit
        })
        .count();
    100.0 * hits as f64 / trace.len() as f64
}

fn hit_ratios(report: &mut Report) {
    let n = if report.smoke { 10_000 } else { 100_000 };
    let requests = report.n(3_000_000, 1_000_000);
    let workloads = [
        ("zipf0.9", trace(n, 0.9, requests, None)),
        (
            "zipf0.9+scan",
            trace(n, 0.9, requests, Some((100_000, n / 5))),
        ),
    ];
    for (name, keys) in &workloads {
        for pct in [1, 5, 20] {
            let cap = n * pct / 100;
            let ours = hit_ratio(&generational(cap, false), keys);
            let admitted = hit_ratio(&generational(cap, true), keys);
            let peers: [(&str, Box<dyn Contender>); 2] = [
                ("moka", Box::new(moka(cap))),
                ("quick_cache", Box::new(quick(cap))),
            ];
            for (peer, c) in peers {
                let peer_ratio = hit_ratio(&*c, keys);
                report.add(Row {
                    section: "generational".into(),
                    label: format!("hit ratio {name} 100k keys cap {pct}%"),
                    strata: ours,
                    peer: Some((peer.to_string(), peer_ratio)),
                    unit: "%",
                    higher_is_better: true,
                });
                report.add(Row {
                    section: "generational".into(),
                    label: format!("hit ratio {name} 100k keys cap {pct}% admission"),
                    strata: admitted,
                    peer: Some((peer.to_string(), peer_ratio)),
                    unit: "%",
                    higher_is_better: true,
                });
            }
        }
    }
}

pub fn run(report: &mut Report) {
    hit_ratios(report);
    if std::env::var_os("STRATA_BENCH_HIT_ONLY").is_none() {
        throughput(report);
    }
}
