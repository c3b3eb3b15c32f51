//! Hit ratio at equal capacity: every bounded strata store (MemoryStore with `max_capacity`,
//! GenerationalStore with and without `admission(true)`) against moka and quick_cache, each
//! built with the same capacity in entries and fed the same read-through trace (a get, and a put
//! on a miss), single-threaded so the result is deterministic for strata.
//!
//! Traces over n = 100k keys (10k in a smoke run): Zipf 0.9 and 0.99 at 1/5/20 % capacity,
//! each with and without a scan of n/5 cold keys every 100k requests; a loop over 1.25x the
//! capacity; a Zipf 0.99 hot set that moves to new keys four times.
//!
//! `STRATA_HITRATIO_ONLY=admission` runs only the contenders whose name holds that text (and
//! prints their ratios without peers), to iterate on one policy in a few minutes.

use strata::MemoryStore;

use crate::{
    generational::generational,
    memory::{Contender, Moka, Quick},
    report::{Bar, Bars, Report, Row},
    workload::traces,
};

/// A bounded MemoryStore, written to without a TTL.
pub struct Bounded(pub MemoryStore<u64, u64>);
impl Contender for Bounded {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.0.get(&k).is_some()
    }
    #[inline]
    fn put(&self, k: u64, v: u64) {
        let _ = self.0.put(k, v, None);
    }
}

pub fn bounded(capacity: usize) -> Bounded {
    let store = MemoryStore::builder()
        .max_capacity(capacity as u64)
        .build()
        .expect("valid options");
    Bounded(store)
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

type Make = fn(usize) -> Box<dyn Contender>;

const OURS: [(&str, Make); 3] = [
    ("strata MemoryStore", |cap| Box::new(bounded(cap))),
    ("strata Generational", |cap| {
        Box::new(generational(cap, false))
    }),
    ("strata Gen. admission", |cap| {
        Box::new(generational(cap, true))
    }),
];

const PEERS: [(&str, Make); 2] = [
    ("moka", |cap| {
        Box::new(Moka(moka::sync::Cache::new(cap as u64)))
    }),
    ("quick_cache", |cap| {
        Box::new(Quick(quick_cache::sync::Cache::new(cap)))
    }),
];

/// The contenders whose name contains `STRATA_HITRATIO_ONLY` (all when unset), to iterate on
/// one policy without running every other (`STRATA_HITRATIO_ONLY=admission`).
fn picked<'a>(contenders: &'a [(&'a str, Make)]) -> impl Iterator<Item = &'a (&'a str, Make)> {
    let only = std::env::var("STRATA_HITRATIO_ONLY").ok();
    let wanted = move |who: &str| only.as_deref().is_none_or(|o| who.contains(o));
    contenders.iter().filter(move |(who, _)| wanted(who))
}

/// One column: every contender on `trace` at `cap` entries; rows ours × peer, one bar group.
fn column(report: &mut Report, name: &str, panel: &str, pct: usize, cap: usize, trace: &[u64]) {
    let ours: Vec<(&str, f64)> = picked(&OURS)
        .map(|(who, make)| (*who, hit_ratio(&*make(cap), trace)))
        .collect();
    let peers: Vec<(&str, f64)> = picked(&PEERS)
        .map(|(who, make)| (*who, hit_ratio(&*make(cap), trace)))
        .collect();
    if peers.is_empty() {
        // Peers filtered out: print ours alone (no row has a peer to compare with).
        ours.iter()
            .for_each(|(who, ratio)| println!("{name} cap {pct}% [{who}] {ratio:.2} %"));
    }
    for &(who, ratio) in &ours {
        for &(peer, peer_ratio) in &peers {
            report.add(Row {
                section: "hitratio".into(),
                label: format!("{name} cap {pct}% [{who}]"),
                strata: ratio,
                peer: Some((peer.to_string(), peer_ratio)),
                unit: "%",
                higher_is_better: true,
            });
        }
    }
    let bars = ours
        .iter()
        .map(|&(who, v)| bar(who, true, v))
        .chain(peers.iter().map(|&(who, v)| bar(who, false, v)))
        .collect();
    report.add_bars(Bars {
        chart: "hit_ratio",
        title: "Hit ratio at equal capacity (read-through, 1 thread)".into(),
        panel: panel.to_string(),
        group: format!("capacity {pct}%"),
        unit: "%",
        bars,
    });
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
    let n = if report.smoke { 10_000 } else { 100_000 };
    let requests = report.n(3_000_000, 1_000_000);
    let scan = Some((100_000.min(requests / 4), n / 5));
    for s in [0.9, 0.99] {
        for (with_scan, scan) in [("", None), ("+scan", scan)] {
            let name = format!("zipf{s}{with_scan} {}k keys", n / 1000);
            let panel = format!("Zipf {s}{with_scan}");
            let trace = traces::zipf(n, s, requests, scan);
            for pct in [1, 5, 20] {
                column(report, &name, &panel, pct, n * pct / 100, &trace);
            }
        }
    }
    for pct in [1, 5, 20] {
        let cap = n * pct / 100;
        let trace = traces::looping(cap * 5 / 4, requests);
        column(report, "loop over 1.25x capacity", "loop", pct, cap, &trace);
    }
    let trace = traces::shifting(n, requests, 4);
    for pct in [1, 5, 20] {
        let name = format!("zipf0.99 hot set shifting 4x {}k keys", n / 1000);
        column(
            report,
            &name,
            "shifting hot set",
            pct,
            n * pct / 100,
            &trace,
        );
    }
}
