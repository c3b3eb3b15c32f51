//! What the optional Cache features cost a MemoryStore: `time_to_idle` (reads move the
//! deadline) and an `eviction_listener` (every overwrite hands the old value over), each
//! against the same store without the feature, in the same run (`memory`'s Zipf 0.99 mixes).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use strata::MemoryStore;

use crate::{
    contest::{self, Contest},
    memory::{group, thread_keys, Mix, Strata},
    report::Report,
    workload::op_mix,
};

const TTL: Duration = Duration::from_secs(3600);
const IDLE: Duration = Duration::from_secs(1800);

fn plain() -> Strata {
    Strata(
        MemoryStore::builder().build().expect("valid options"),
        Some(TTL),
    )
}

fn idle() -> Strata {
    let store = MemoryStore::builder()
        .time_to_idle(IDLE)
        .build()
        .expect("valid options");
    Strata(store, Some(TTL))
}

fn listened() -> Strata {
    let heard = Arc::new(AtomicU64::new(0));
    let store = MemoryStore::builder()
        .eviction_listener(move |_, _, _| {
            heard.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .expect("valid options");
    Strata(store, Some(TTL))
}

pub fn run(report: &mut Report) {
    let n_keys = report.n(1_000_000, 1_000_000);
    let keys = thread_keys(report, n_keys);
    for (read_pct, mix) in [(95, "95/5"), (50, "50/50")] {
        let w = Mix {
            keys: &keys,
            ops: op_mix(keys[0].len(), read_pct, 11),
        };
        for threads in [1, 2] {
            let w = &w;
            contest::run(
                report,
                Contest {
                    section: "features",
                    label: format!("zipf0.99 1M {mix} {threads}t ttl"),
                    chart: "throughput_features",
                    title: "MemoryStore with time_to_idle / an eviction listener vs without",
                    group: group(mix, threads),
                    entrants: vec![
                        w.entrant("time_to_idle", true, n_keys, threads, idle),
                        w.entrant("eviction_listener", true, n_keys, threads, listened),
                        w.entrant("MemoryStore (neither)", false, n_keys, threads, plain),
                    ],
                },
            );
        }
    }
}
