//! MemoryStore's shard lock (`src/memory/lock.rs`, compiled into this bench from its source)
//! against `crossbeam_utils::sync::ShardedLock` and `parking_lot::RwLock` (the lock it
//! replaced), each guarding the same table: 16 shards (MemoryStore's default on 2 cores) of
//! hashbrown maps with foldhash, filled with the `memory` rows' 1M keys and replaying their
//! Zipf 0.99 keys and op mixes (95/5 and 50/50 get/put, 1 and 2 threads) through `contest.rs`.
//! Everything but the lock is the same code, so the ratios are the locks'.
//!
//! The probes measure instructions per get and per overwrite on one thread, noise-free under
//! callgrind:
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/shardlock.cg \
//!     --toggle-collect='compare::shardlock::probe_*' target/release/deps/compare-HASH shardlock
//! callgrind_annotate --inclusive=yes /tmp/shardlock.cg | grep 'shardlock::probe_'
//! ```

use std::{hash::BuildHasher, hint::black_box, sync::PoisonError};

use crossbeam_utils::sync::ShardedLock;

use crate::{
    contest::{self, Contest},
    memory::{group, thread_keys, Contender, Mix},
    report::Report,
    workload::{op_mix, scramble},
};

#[path = "../../src/memory/lock.rs"]
#[allow(unsafe_code)]
// Checked as a test target, the bench also compiles the lock's unit tests (the lib runs them).
#[cfg_attr(test, allow(dead_code, unused_imports))]
mod lock;

type Map = hashbrown::HashMap<u64, u64, foldhash::fast::FixedState>;

/// Shards per table (MemoryStore's default for 2 CPUs).
const SHARDS: usize = 16;

/// A reader-writer lock as the table uses it.
pub trait Lock: Send + Sync + 'static {
    fn new(map: Map) -> Self;
    fn read<R>(&self, f: impl FnOnce(&Map) -> R) -> R;
    fn write<R>(&self, f: impl FnOnce(&mut Map) -> R) -> R;
}

impl Lock for lock::ShardLock<Map> {
    fn new(map: Map) -> Self {
        lock::ShardLock::new(map)
    }
    #[inline]
    fn read<R>(&self, f: impl FnOnce(&Map) -> R) -> R {
        f(&self.read())
    }
    #[inline]
    fn write<R>(&self, f: impl FnOnce(&mut Map) -> R) -> R {
        f(&mut self.write())
    }
}

impl Lock for ShardedLock<Map> {
    fn new(map: Map) -> Self {
        ShardedLock::new(map)
    }
    #[inline]
    fn read<R>(&self, f: impl FnOnce(&Map) -> R) -> R {
        f(&self.read().unwrap_or_else(PoisonError::into_inner))
    }
    #[inline]
    fn write<R>(&self, f: impl FnOnce(&mut Map) -> R) -> R {
        f(&mut self.write().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Lock for parking_lot::RwLock<Map> {
    fn new(map: Map) -> Self {
        parking_lot::RwLock::new(map)
    }
    #[inline]
    fn read<R>(&self, f: impl FnOnce(&Map) -> R) -> R {
        f(&self.read())
    }
    #[inline]
    fn write<R>(&self, f: impl FnOnce(&mut Map) -> R) -> R {
        f(&mut self.write())
    }
}

/// [`SHARDS`] maps, each behind its own `L`, a key's shard picked by the top bits of its hash.
pub struct Table<L> {
    hasher: foldhash::fast::FixedState,
    shards: Box<[L]>,
}

impl<L: Lock> Table<L> {
    fn new() -> Self {
        let hasher = foldhash::fast::FixedState::with_seed(7);
        let shards = (0..SHARDS)
            .map(|_| L::new(Map::with_hasher(hasher.clone())))
            .collect();
        Table { hasher, shards }
    }

    #[inline]
    fn shard(&self, k: u64) -> &L {
        let hash = self.hasher.hash_one(k);
        &self.shards[(hash >> (64 - SHARDS.trailing_zeros())) as usize]
    }
}

impl<L: Lock> Contender for Table<L> {
    #[inline]
    fn get(&self, k: u64) -> bool {
        self.shard(k).read(|m| m.get(&k).is_some())
    }
    #[inline]
    fn put(&self, k: u64, v: u64) {
        self.shard(k).write(|m| m.insert(k, v));
    }
}

type Ours = Table<lock::ShardLock<Map>>;
type Crossbeam = Table<ShardedLock<Map>>;
type ParkingLot = Table<parking_lot::RwLock<Map>>;

/// One probe per lock and operation: `#[inline(never)]` and a plain name for callgrind's
/// `--toggle-collect`; each reads its own name first so the linker cannot fold two into one.
macro_rules! probes {
    ($($name:ident($table:ident: $ty:ty, $key:ident) $op:block)*) => {$(
        #[inline(never)]
        fn $name($table: &$ty, keys: &[u64]) {
            black_box(stringify!($name));
            for &$key in keys {
                $op
            }
        }
    )*};
}

probes! {
    probe_ours_get(t: Ours, k) { black_box(t.get(k)); }
    probe_crossbeam_get(t: Crossbeam, k) { black_box(t.get(k)); }
    probe_parking_lot_get(t: ParkingLot, k) { black_box(t.get(k)); }
    probe_ours_put(t: Ours, k) { t.put(k, !k); }
    probe_crossbeam_put(t: Crossbeam, k) { t.put(k, !k); }
    probe_parking_lot_put(t: ParkingLot, k) { t.put(k, !k); }
}

/// Operations per probe (instructions / `OPS` = per operation).
const OPS: usize = 200_000;

fn probes(report: &Report) {
    let n = report.n(OPS, OPS);
    let keys: Vec<u64> = (0..n as u64).map(scramble).collect();
    let fill = |t: &dyn Contender| keys.iter().for_each(|&k| t.put(k, k));
    let ours = Ours::new();
    fill(&ours);
    probe_ours_get(&ours, &keys);
    probe_ours_put(&ours, &keys);
    let crossbeam = Crossbeam::new();
    fill(&crossbeam);
    probe_crossbeam_get(&crossbeam, &keys);
    probe_crossbeam_put(&crossbeam, &keys);
    let parking_lot = ParkingLot::new();
    fill(&parking_lot);
    probe_parking_lot_get(&parking_lot, &keys);
    probe_parking_lot_put(&parking_lot, &keys);
    if !report.smoke {
        println!(
            "shardlock: {n} gets or overwrites per probe_* function (instructions / {n} = per op)"
        );
    }
}

const TITLE: &str = "Shard locks around the same 16 maps, Zipf 0.99 over 1M u64 keys";

fn throughput(report: &mut Report) {
    let n_keys = report.n(1_000_000, 1_000_000);
    let keys = thread_keys(report, n_keys);
    for (read_pct, mix) in [(95, "95/5"), (50, "50/50")] {
        let w = &Mix {
            keys: &keys,
            ops: op_mix(keys[0].len(), read_pct, 11),
        };
        for threads in [1, 2] {
            let contest = Contest {
                section: "shardlock",
                label: format!("zipf0.99 1M {mix} {threads}t"),
                chart: "throughput_shardlock",
                title: TITLE,
                group: group(mix, threads),
                entrants: vec![
                    w.entrant("strata ShardLock", true, n_keys, threads, Ours::new),
                    w.entrant(
                        "crossbeam ShardedLock",
                        false,
                        n_keys,
                        threads,
                        Crossbeam::new,
                    ),
                    w.entrant(
                        "parking_lot RwLock",
                        false,
                        n_keys,
                        threads,
                        ParkingLot::new,
                    ),
                ],
            };
            contest::run(report, contest);
        }
    }
}

pub fn run(report: &mut Report) {
    probes(report);
    throughput(report);
}
