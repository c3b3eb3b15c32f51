//! GenerationalStore against moka and quick_cache: throughput on the memory section's Zipf(0.99)
//! workload (hit ratios at equal capacity: `hitratio.rs`).

use strata::GenerationalStore;

use crate::{
    contest::{self, Contest},
    memory::{group, thread_keys, Contender, Mix, Moka, Quick},
    report::Report,
    workload::op_mix,
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

pub fn generational(capacity: usize, admission: bool) -> Generational {
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

/// Hit ratios are in the `hitratio` section, with every bounded strata store in one table.
pub fn run(report: &mut Report) {
    throughput(report);
}
