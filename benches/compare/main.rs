//! `cargo bench --bench compare [-- --quick] [-- FILTER...]`: strata against its peers, side by
//! side in one process and one run, printing medians and the ratio strata/peer per row.
//!
//! Built in debug (`cargo test` runs this target: `test = true` in Cargo.toml) it is a smoke run:
//! every section at a thousandth of its `--quick` size, failing if a section emits no row, so the
//! harness can't rot. Timings from a debug build mean nothing and are not checked.
//!
//! Each section lives in its own file and registers itself in `main` below. Every throughput
//! comparison goes through `contest.rs`: the contenders' order rotates each round, each one is
//! built and filled fresh, each runs for the same wall-time slice, and a row reports the median
//! of per-round ratios strata / peer with their min–max.
//!
//! Flags: `--quick` (3 rounds of 300 ms slices instead of 5 of 1 s, smaller fills), `--rounds N`,
//! `--slice-ms N`, `--out DIR` (writes `results.md` and PNG + SVG charts), and section names
//! (`memory generational`) to run only those.

mod alloc;
mod cache;
mod contest;
#[cfg(any(feature = "disk", feature = "redis"))]
mod cpu;
#[cfg(feature = "disk")]
mod disk;
mod failover;
mod features;
mod generational;
mod getcost;
mod hitratio;
mod memory;
mod plot;
mod putcost;
mod redis;
/// The tests' Sentinel set-up (one master, one replica, three sentinels), for `failover`.
#[cfg(feature = "redis")]
#[path = "../../tests/support/redis_sentinel.rs"]
#[allow(dead_code)]
mod redis_sentinel;
/// The tests' `redis-server` helper, shared with the Redis sections.
#[cfg(feature = "redis")]
#[path = "../../tests/support/redis_server.rs"]
#[allow(dead_code)]
mod redis_server;
mod replcost;
mod replicated;
mod report;
#[cfg(all(feature = "sessions", feature = "disk"))]
mod sessions;
mod workload;

use report::Report;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn main() {
    let mut report = Report::from_args();
    if report.wants("memory") {
        memory::run(&mut report);
    }
    if report.wants("putcost") {
        putcost::run(&mut report);
    }
    if report.wants("getcost") {
        getcost::run(&mut report);
    }
    if report.wants("redis") {
        redis::run(&mut report);
    }
    if report.wants("cache") {
        cache::run(&mut report);
    }
    #[cfg(feature = "disk")]
    if report.wants("disk") {
        disk::run(&mut report);
    }
    if report.wants("generational") {
        generational::run(&mut report);
    }
    if report.wants("features") {
        features::run(&mut report);
    }
    if report.wants("hitratio") {
        hitratio::run(&mut report);
    }
    if report.wants("replicated") {
        replicated::run(&mut report);
    }
    if report.wants("replcost") {
        replcost::run(&mut report);
    }
    if report.wants("failover") {
        failover::run(&mut report);
    }
    #[cfg(all(feature = "sessions", feature = "disk"))]
    if report.wants("sessions") {
        sessions::run(&mut report);
    }
    report.finish();
    if report.smoke {
        let sections = [
            "memory",
            "generational",
            "hitratio",
            "cache",
            "disk",
            "redis",
            "replicated",
            "failover",
        ];
        #[cfg(all(feature = "sessions", feature = "disk"))]
        let sections = [&sections[..], &["sessions"]].concat();
        let missing = report.sections_without_rows(&sections);
        if !missing.is_empty() {
            eprintln!("smoke run: no rows from {missing:?}; rows that were emitted:");
            for entry in report.entries() {
                report::Report::print_entry(entry);
            }
            std::process::exit(1);
        }
    }
}
