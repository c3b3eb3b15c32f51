//! GenerationalStore against moka and quick_cache: throughput on the memory section's Zipf(0.99)
//! workload, and hit ratio at equal capacity (Zipf(0.9), and Zipf with periodic cold scans).

use strata::GenerationalStore;

use crate::{
    contest::{self, Contest},
    memory::{group, thread_keys, Contender, Mix, Moka, Quick},
    report::{Bar, Bars, Report, Row},
    workload::{op_mix, scramble, Rng, Zipf},
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

const TITLE: &str = "GenerationalStore vs peers, Zipf 0.99 over 1M u64 keys, all resident";

fn throughput(report: &mut Report) {
    let n_keys = report.n(1_000_000, 1_000_000);
    let keys = thread_keys(report, n_keys);
    // Capacity for every key: all resident, as in the memory section (generations still turn
    // over: a new one whenever the newer generation reaches half of max_size).
    let cap = n_keys * 2;
    for (read_pct, mix) in [(95, "95/5"), (50, "50/50")] {
        let w = Mix {
            keys: &keys,
            ops: op_mix(keys[0].len(), read_pct, 11),
        };
        for threads in [1, 2] {
            let ours = |admission| move || generational(cap, admission);
            let contest = Contest {
                section: "generational",
                label: format!("zipf0.99 1M {mix} {threads}t"),
                chart: "throughput_generational",
                title: TITLE,
                group: group(mix, threads),
                entrants: vec![
                    w.entrant("strata Generational", true, n_keys, threads, ours(false)),
                    w.entrant("strata Gen. admission", true, n_keys, threads, ours(true)),
                    w.entrant("moka", false, n_keys, threads, move || moka(cap)),
                    w.entrant("quick_cache", false, n_keys, threads, move || quick(cap)),
                ],
            };
            contest::run(report, contest);
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
        ("zipf0.9", "Zipf 0.9", trace(n, 0.9, requests, None)),
        (
            "zipf0.9+scan",
            "Zipf 0.9 + a scan of n/5 cold keys every 100k requests",
            trace(n, 0.9, requests, Some((100_000, n / 5))),
        ),
    ];
    for (name, panel, keys) in &workloads {
        for pct in [1, 5, 20] {
            let cap = n * pct / 100;
            let ours = hit_ratio(&generational(cap, false), keys);
            let admitted = hit_ratio(&generational(cap, true), keys);
            let peers: [(&str, Box<dyn Contender>); 2] = [
                ("moka", Box::new(moka(cap))),
                ("quick_cache", Box::new(quick(cap))),
            ];
            let mut bars = vec![bar("strata Generational", true, ours)];
            bars.push(bar("strata Gen. admission", true, admitted));
            for (peer, c) in peers {
                let peer_ratio = hit_ratio(&*c, keys);
                bars.push(bar(peer, false, peer_ratio));
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
            report.add_bars(Bars {
                chart: "hit_ratio",
                title: format!(
                    "Hit ratio at equal capacity, {}k keys, {}k requests",
                    n / 1000,
                    requests / 1000
                ),
                panel: panel.to_string(),
                group: format!("capacity {pct}%"),
                unit: "%",
                bars,
            });
        }
    }
}

fn bar(library: &str, ours: bool, value: f64) -> Bar {
    Bar {
        library: library.into(),
        ours,
        value,
        ratio: None,
    }
}

pub fn run(report: &mut Report) {
    hit_ratios(report);
    if std::env::var_os("STRATA_BENCH_HIT_ONLY").is_none() {
        throughput(report);
    }
}
