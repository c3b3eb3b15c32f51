//! MemoryStore against moka and quick_cache: Zipf(0.99) over 1M u64 keys, all resident.

use std::{sync::Arc, time::Duration};

use strata::MemoryStore;

use crate::{
    report::{interleaved, timed, Report, Row},
    workload::{op_mix, scramble, zipf_keys},
};

const TTL: Duration = Duration::from_secs(3600);

/// The two operations every contender is measured on.
pub trait Contender: Send + Sync {
    fn get(&self, k: u64) -> bool;
    fn put(&self, k: u64, v: u64);
}

/// A peer cache: `get` and `insert`, nothing else to configure per call.
macro_rules! peer {
    ($($name:ident: $ty:ty),* $(,)?) => {$(
        pub struct $name(pub $ty);
        impl Contender for $name {
            #[inline]
            fn get(&self, k: u64) -> bool {
                self.0.get(&k).is_some()
            }
            #[inline]
            fn put(&self, k: u64, v: u64) {
                self.0.insert(k, v);
            }
        }
    )*};
}

peer! {
    Moka: moka::sync::Cache<u64, u64>,
    Quick: quick_cache::sync::Cache<u64, u64>,
    MiniMoka: mini_moka::sync::Cache<u64, u64>,
}

pub struct Strata(pub MemoryStore<u64, u64>, pub Option<Duration>);
impl Contender for Strata {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.0.get(&k).is_some()
    }
    #[inline]
    fn put(&self, k: u64, v: u64) {
        let _ = self.0.put(k, v, self.1);
    }
}

fn strata(ttl: Option<Duration>) -> Strata {
    Strata(MemoryStore::builder().build().expect("valid options"), ttl)
}

fn moka(ttl: bool, keys: usize) -> Moka {
    let b = moka::sync::Cache::builder().max_capacity(keys as u64 * 2);
    Moka(if ttl {
        b.time_to_live(TTL).build()
    } else {
        b.build()
    })
}

fn mini_moka(ttl: bool, keys: usize) -> MiniMoka {
    let b = mini_moka::sync::Cache::builder().max_capacity(keys as u64 * 2);
    MiniMoka(if ttl {
        b.time_to_live(TTL).build()
    } else {
        b.build()
    })
}

fn quick(keys: usize) -> Quick {
    Quick(quick_cache::sync::Cache::new(keys * 2))
}

fn fill(c: &dyn Contender, keys: usize) {
    for i in 0..keys as u64 {
        c.put(scramble(i), i);
    }
}

/// Runs `threads` threads over pre-generated keys and ops; returns total ops/s.
pub fn run_mix(
    c: &Arc<dyn Contender>,
    keys: &Arc<Vec<Vec<u64>>>,
    ops: &Arc<Vec<bool>>,
    threads: usize,
) -> f64 {
    let per = keys[0].len() as u64;
    timed(per * threads as u64, || {
        std::thread::scope(|s| {
            for t in 0..threads {
                let (c, keys, ops) = (c.clone(), keys.clone(), ops.clone());
                s.spawn(move || {
                    let mut hits = 0u64;
                    for (i, &k) in keys[t].iter().enumerate() {
                        if ops[i] {
                            hits += u64::from(c.get(k));
                        } else {
                            c.put(k, i as u64);
                        }
                    }
                    std::hint::black_box(hits);
                });
            }
        });
    })
}

/// Bytes per entry at 1M u64 -> u64 entries, counted by the global allocator.
fn bytes_per_entry(report: &mut Report) {
    let n = report.n(1_000_000, 200_000);
    let per = |bytes: isize| bytes as f64 / n as f64;
    let fill_n = |c: &dyn Contender| (0..n as u64).for_each(|i| c.put(scramble(i), i));
    let rows: [(&str, bool); 2] = [("u64->u64 with ttl", true), ("u64->u64 no ttl", false)];
    for (label, ttl) in rows {
        let (s, sb) = crate::alloc::retained_bytes(|| {
            let s = strata(ttl.then_some(TTL));
            fill_n(&s);
            s
        });
        let (m, mb) = crate::alloc::retained_bytes(|| {
            let m = moka(ttl, n);
            fill_n(&m);
            m.0.run_pending_tasks();
            m
        });
        let (q, qb) = crate::alloc::retained_bytes(|| {
            let q = Quick(quick_cache::sync::Cache::new(n));
            fill_n(&q);
            q
        });
        for (peer, bytes) in [("moka", mb), ("quick_cache", qb)] {
            report.add(Row {
                section: "memory".into(),
                label: format!("bytes/entry {label} ({n} entries)"),
                strata: per(sb),
                peer: Some((peer.into(), per(bytes))),
                unit: "B",
                higher_is_better: false,
            });
        }
        drop((s, m, q));
    }
}

/// Bytes per entry at 1M `String` keys -> 64-byte `String` values, TTL on, for both in-memory
/// strata stores against moka and quick_cache.
fn bytes_per_entry_strings(report: &mut Report) {
    let n = report.n(1_000_000, 200_000);
    let key = |i: usize| format!("session:{:016x}", scramble(i as u64));
    let value = || "v".repeat(64);
    let (s, sb) = crate::alloc::retained_bytes(|| {
        let s: MemoryStore<String, String> = MemoryStore::builder().build().expect("valid");
        (0..n).for_each(|i| {
            let _ = s.put(key(i), value(), Some(TTL));
        });
        s
    });
    let (g, gb) = crate::alloc::retained_bytes(|| {
        let g: strata::GenerationalStore<String, String> = strata::GenerationalStore::builder()
            .max_size(n as u64 * 2)
            .build()
            .expect("valid");
        (0..n).for_each(|i| {
            let _ = g.put(key(i), value(), Some(TTL));
        });
        g
    });
    let (m, mb) = crate::alloc::retained_bytes(|| {
        let m: moka::sync::Cache<String, String> = moka::sync::Cache::builder()
            .max_capacity(n as u64 * 2)
            .time_to_live(TTL)
            .build();
        (0..n).for_each(|i| m.insert(key(i), value()));
        m.run_pending_tasks();
        m
    });
    let (q, qb) = crate::alloc::retained_bytes(|| {
        let q: quick_cache::sync::Cache<String, String> = quick_cache::sync::Cache::new(n);
        (0..n).for_each(|i| q.insert(key(i), value()));
        q
    });
    let per = |bytes: isize| bytes as f64 / n as f64;
    for (store, ours) in [("MemoryStore", sb), ("GenerationalStore", gb)] {
        for (peer, bytes) in [("moka", mb), ("quick_cache", qb)] {
            report.add(Row {
                section: "memory".into(),
                label: format!("bytes/entry {store} String->64B ttl ({n} entries)"),
                strata: per(ours),
                peer: Some((peer.into(), per(bytes))),
                unit: "B",
                higher_is_better: false,
            });
        }
    }
    drop((s, g, m, q));
}

pub fn run(report: &mut Report) {
    bytes_per_entry(report);
    bytes_per_entry_strings(report);
    let n_keys = report.n(1_000_000, 1_000_000);
    let per_thread = report.n(2_000_000, 500_000);
    let keys: Arc<Vec<Vec<u64>>> = Arc::new(
        (0..2)
            .map(|t| zipf_keys(n_keys, 0.99, per_thread, 7 + t))
            .collect(),
    );
    for (read_pct, mix) in [(95, "95/5"), (50, "50/50")] {
        let ops = Arc::new(op_mix(per_thread, read_pct, 11));
        for ttl in [true, false] {
            let ours: Arc<dyn Contender> = Arc::new(strata(ttl.then_some(TTL)));
            fill(&*ours, n_keys);
            let peers: Vec<(&str, Arc<dyn Contender>)> = vec![
                ("moka", Arc::new(moka(ttl, n_keys))),
                ("quick_cache", Arc::new(quick(n_keys))),
                ("mini-moka", Arc::new(mini_moka(ttl, n_keys))),
            ];
            for (name, peer) in peers {
                if ttl && name == "quick_cache" {
                    // quick_cache has no TTL; compare it against strata with TTLs on anyway (the budget's row).
                }
                fill(&*peer, n_keys);
                for threads in [1, 2] {
                    let (s, p) = interleaved(
                        report.rounds,
                        || run_mix(&ours, &keys, &ops, threads),
                        || run_mix(&peer, &keys, &ops, threads),
                    );
                    let ttl_label = if ttl { "ttl" } else { "no ttl" };
                    report.add(Row {
                        section: "memory".into(),
                        label: format!("zipf0.99 1M {mix} {threads}t {ttl_label}"),
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
