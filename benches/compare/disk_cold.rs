//! DiskStore's larger-than-memory mode (`memory_capacity`): open time, the latency of reads
//! that miss the hot set (disk) against reads that hit it (memory) in the same process, and
//! the resident memory, for session records (40 B key, 200 B value) far more than the hot set.
//! Measured in a fresh child process, as the session reopen rows are.
//!
//! Counts: 1 k smoke, 100 k quick, 1 M by default; `STRATA_DISK_COLD_N=10000000` for 10 M
//! (the fill writes ~3 GB and takes minutes).

use std::{path::Path, process::Command, time::Instant};

use strata::{DiskDb, DiskStore, Store};

use super::{session_key, session_value, vm_rss_kb, TTL};
use crate::{
    report::{Report, Row},
    workload::scramble,
};

/// Set in the child: the directory to open.
const CHILD: &str = "STRATA_DISK_COLD_CHILD";
/// Set in the child: how many records the directory holds.
const CHILD_N: &str = "STRATA_DISK_COLD_CHILD_N";
/// The child's answer line: `<tag> <open ms> <cold p50 µs> <cold p99 µs> <hot p50 µs>
/// <VmRSS kB before open> <VmRSS kB after the reads>`.
const TAG: &str = "strata-disk-cold";
/// Reads timed per kind.
const READS: u64 = 20_000;

/// Entries the memory tier keeps for `n` records: 1 %, at least 100 and at most 100 k.
fn hot_set(n: u64) -> u64 {
    (n / 100).clamp(100, 100_000)
}

fn open(dir: &Path, n: u64) -> DiskStore<String, String> {
    DiskDb::builder()
        .dir(dir)
        .memory_capacity(hot_set(n))
        .open()
        .expect("open the bench directory")
        .store("sessions")
        .expect("open the namespace")
}

fn count(report: &Report) -> u64 {
    if let Some(n) = std::env::var("STRATA_DISK_COLD_N")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        return n;
    }
    if report.smoke {
        1_000
    } else if report.quick {
        100_000
    } else {
        1_000_000
    }
}

/// Writes `n` session records in commits of 10 k (sync writes, as the mode requires).
fn populate(rt: &tokio::runtime::Runtime, dir: &Path, n: u64) {
    let s = open(dir, n);
    rt.block_on(async {
        for start in (0..n).step_by(10_000) {
            let batch = (start..(start + 10_000).min(n))
                .map(|i| (session_key(i), session_value(i)))
                .collect();
            s.put_many(batch, TTL).await.expect("put_many");
        }
    });
}

/// Median and 99th percentile of `samples` (µs).
fn percentiles(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

/// Times one read of each key (µs).
fn timed_reads(
    rt: &tokio::runtime::Runtime,
    s: &DiskStore<String, String>,
    keys: &[String],
) -> Vec<f64> {
    rt.block_on(async {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let started = Instant::now();
            let found = s.get(key).await.expect("get");
            out.push(started.elapsed().as_secs_f64() * 1e6);
            assert!(found.is_some(), "every record is there");
        }
        out
    })
}

/// In the child: opens cold, times reads of keys spread over all records (disk), then reads
/// of the last ones again (promoted: memory), prints the answer line and exits.
pub fn child_if_asked() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    let n: u64 = std::env::var(CHILD_N)
        .ok()
        .and_then(|n| n.parse().ok())
        .expect("the record count");
    let rt = super::runtime();
    let before = vm_rss_kb().unwrap_or(0);
    let started = Instant::now();
    let s = open(Path::new(&dir), n);
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    let reads = READS.min(n);
    let cold: Vec<String> = (0..reads).map(|i| session_key(scramble(i) % n)).collect();
    let (cold_p50, cold_p99) = percentiles(timed_reads(&rt, &s, &cold));
    let hot = &cold[cold.len() - (hot_set(n) as usize / 2).min(cold.len())..];
    let (hot_p50, _) = percentiles(timed_reads(&rt, &s, hot));
    let after = vm_rss_kb().unwrap_or(0);
    println!("{TAG} {open_ms} {cold_p50} {cold_p99} {hot_p50} {before} {after}");
    drop(s);
    std::process::exit(0)
}

/// Runs the child once: its answer line's numbers.
fn measure(dir: &Path, n: u64) -> Vec<f64> {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let out = Command::new(exe)
        .arg("disk")
        .env(CHILD, dir)
        .env(CHILD_N, n.to_string())
        .output()
        .expect("run the cold-read child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(TAG))
        .unwrap_or_else(|| {
            panic!(
                "the cold-read child answered nothing: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line.split_whitespace()
        .map(|f| f.parse().expect("a number"))
        .collect()
}

pub fn run(report: &mut Report, rt: &tokio::runtime::Runtime) {
    let n = count(report);
    let dir = tempfile::tempdir().expect("scratch dir");
    populate(rt, dir.path(), n);
    let f = measure(dir.path(), n);
    let what = format!(
        "larger than memory, {}k session records, hot set {}k",
        n / 1000,
        hot_set(n) as f64 / 1000.0
    );
    let mut row = |label: &str, value: f64, peer: Option<(String, f64)>, unit| {
        report.add(Row {
            section: "disk".into(),
            label: format!("{what}: {label}"),
            strata: value,
            peer,
            unit,
            higher_is_better: false,
        });
    };
    row("open (cold)", f[0], None, "ms");
    let hot = Some(("hot-set read p50".to_owned(), f[3]));
    row("cold read p50 (disk) vs hot-set read p50", f[1], hot, "µs");
    row("cold read p99 (disk)", f[2], None, "µs");
    row(
        "resident MB after open + reads (VmRSS growth)",
        (f[5] - f[4]) / 1024.0,
        None,
        "MB",
    );
}
