//! MemoryStore against moka and quick_cache: Zipf(0.99) over 1M u64 keys, all resident.

use std::time::Duration;

use strata::MemoryStore;

use crate::{
    contest::{self, Contest, Entrant},
    report::{Report, Row},
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

/// A MemoryStore bounded at `capacity` entries (S3-FIFO), at the same capacity as the peers.
fn strata_bounded(ttl: Option<Duration>, capacity: usize) -> Strata {
    let store = MemoryStore::builder()
        .max_capacity(capacity as u64)
        .build()
        .expect("valid options");
    Strata(store, ttl)
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

/// A get/put workload: one pre-generated key sequence per thread and one op sequence
/// (`true` = get), replayed from the start (wrapping) in every slice.
pub struct Mix<'a> {
    pub keys: &'a [Vec<u64>],
    pub ops: Vec<bool>,
}

impl Mix<'_> {
    /// Replays the mix on `threads` threads against `c` for one slice; returns total ops/s.
    pub fn run(&self, c: &dyn Contender, threads: usize, slice: Duration) -> f64 {
        contest::threads(threads, slice, |t, deadline| {
            let (keys, ops) = (&self.keys[t], &self.ops[..]);
            let (mut j, mut hits) = (0, 0u64);
            let done = deadline.count(|i| {
                if ops[j] {
                    hits += u64::from(c.get(keys[j]));
                } else {
                    c.put(keys[j], i);
                }
                // A wrap instead of `i % len`: no division on the hot path.
                j += 1;
                if j == keys.len().min(ops.len()) {
                    j = 0;
                }
            });
            std::hint::black_box(hits);
            done
        })
    }

    /// An entrant that builds `make()`, puts every one of `n_keys` keys, and replays the mix.
    pub fn entrant<'m, C: Contender + 'static>(
        &'m self,
        name: &str,
        ours: bool,
        n_keys: usize,
        threads: usize,
        make: impl Fn() -> C + 'm,
    ) -> Entrant<'m> {
        let fresh = move || -> contest::Slice<'m> {
            let c = make();
            fill(&c, n_keys);
            Box::new(move |slice| self.run(&c, threads, slice))
        };
        if ours {
            Entrant::ours(name, fresh)
        } else {
            Entrant::peer(name, fresh)
        }
    }
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
        let (b, bb) = crate::alloc::retained_bytes(|| {
            let b = strata_bounded(ttl.then_some(TTL), n);
            fill_n(&b);
            b
        });
        for (peer, bytes) in [("moka", mb), ("quick_cache", qb)] {
            for (who, ours) in [("", sb), (" [bounded]", bb)] {
                report.add(Row {
                    section: "memory".into(),
                    label: format!("bytes/entry {label} ({n} entries){who}"),
                    strata: per(ours),
                    peer: Some((peer.into(), per(bytes))),
                    unit: "B",
                    higher_is_better: false,
                });
            }
        }
        drop((s, m, q, b));
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

/// Per-thread Zipf(0.99) key sequences over `n_keys` keys, for two threads.
pub fn thread_keys(report: &Report, n_keys: usize) -> Vec<Vec<u64>> {
    let per_thread = report.n(2_000_000, 500_000);
    (0..2)
        .map(|t| zipf_keys(n_keys, 0.99, per_thread, 7 + t))
        .collect()
}

/// `95/5`, 2 → "95/5 get/put\n2 threads".
pub fn group(mix: &str, threads: usize) -> String {
    let s = if threads == 1 { "" } else { "s" };
    format!("{mix} get/put\n{threads} thread{s}")
}

const TITLE: &str = "MemoryStore vs peers, Zipf 0.99 over 1M u64 keys, all resident";

fn throughput(report: &mut Report) {
    let n_keys = report.n(1_000_000, 1_000_000);
    let keys = thread_keys(report, n_keys);
    for (read_pct, mix) in [(95, "95/5"), (50, "50/50")] {
        let mix_ops = Mix {
            keys: &keys,
            ops: op_mix(keys[0].len(), read_pct, 11),
        };
        for ttl in [true, false] {
            let ttl_label = if ttl { "ttl" } else { "no ttl" };
            for threads in [1, 2] {
                let w = &mix_ops;
                let contest = Contest {
                    section: "memory",
                    label: format!("zipf0.99 1M {mix} {threads}t {ttl_label}"),
                    chart: "throughput_memory",
                    title: TITLE,
                    group: format!(
                        "{}\n{}",
                        group(mix, threads),
                        if ttl { "TTL on" } else { "no TTL" }
                    ),
                    entrants: vec![
                        w.entrant("strata MemoryStore", true, n_keys, threads, move || {
                            strata(ttl.then_some(TTL))
                        }),
                        w.entrant("strata bounded", true, n_keys, threads, move || {
                            strata_bounded(ttl.then_some(TTL), n_keys * 2)
                        }),
                        w.entrant("moka", false, n_keys, threads, move || moka(ttl, n_keys)),
                        w.entrant("quick_cache", false, n_keys, threads, move || quick(n_keys)),
                        w.entrant("mini-moka", false, n_keys, threads, move || {
                            mini_moka(ttl, n_keys)
                        }),
                    ],
                };
                contest::run(report, contest);
            }
        }
    }
}

pub fn run(report: &mut Report) {
    bytes_per_entry(report);
    bytes_per_entry_strings(report);
    throughput(report);
}
