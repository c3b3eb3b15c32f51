//! DiskStore: reopen time, async put against MemoryStore put, sync put with 1 and 8 writers
//! (group commit), and bytes on disk per entry. Small entries: u64 → u64.
//! Session-like records (40 B key, 200 B value, async writes): reopen time and the resident
//! memory (VmRSS) of a fresh process after reopening them.
//! Limits: sync puts over a larger-than-memory disk limit, and gets with `time_to_idle`, each
//! against the same store without.
//! Async put CPU: user + sys time per put of every thread (the caller, the writer, fjall's
//! workers, the close), against MemoryStore put's: the measure that decides the async put's
//! ratio on a loaded machine, where the writer's CPU is taken from the caller's.
//! `STRATA_DISK_PARTS=async,cpu,sync,reopen,sessions,cold,limits` (any subset) runs only those
//! parts.

use std::{
    path::Path,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use strata::{DiskDb, DiskStore, MemoryStore, Store, Writes};

use crate::{
    contest::{self, Contest, Deadline, Entrant, Slice, CHUNK},
    cpu::{process_ms, this_thread_ms, threads_ms},
    report::{median, rate, Report, Row},
    workload::scramble,
};

pub(super) const TTL: Option<Duration> = Some(Duration::from_secs(3600));

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn open(dir: &Path, writes: Writes) -> DiskDb {
    DiskDb::builder()
        .dir(dir)
        .writes(writes)
        .open()
        .expect("open the bench directory")
}

fn store(db: &DiskDb) -> DiskStore<u64, u64> {
    db.store("bench").expect("open the namespace")
}

/// Fills a fresh directory with `n` live entries and closes it cleanly.
fn populate(rt: &tokio::runtime::Runtime, dir: &Path, n: u64) {
    let db = open(dir, Writes::Async);
    let s = store(&db);
    rt.block_on(async {
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            let entries = chunk.iter().map(|&i| (scramble(i), i)).collect();
            s.put_many(entries, TTL).await.expect("put");
        }
        db.flush().await.expect("flush");
    });
}

/// Milliseconds to open the directory and load the namespace into memory.
fn reopen_ms(dir: &Path, n: u64) -> f64 {
    let started = Instant::now();
    let db = open(dir, Writes::Sync);
    let s = store(&db);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(db.load_summary().live as u64, n, "every entry reloaded");
    drop((s, db));
    ms
}

fn reopen(report: &mut Report, rt: &tokio::runtime::Runtime) {
    let sizes: &[u64] = if report.smoke {
        &[1_000]
    } else if report.quick {
        &[10_000, 100_000]
    } else {
        &[100_000, 1_000_000]
    };
    for &n in sizes {
        let dir = tempfile::tempdir().expect("scratch dir");
        populate(rt, dir.path(), n);
        let runs: Vec<f64> = (0..report.rounds)
            .map(|_| reopen_ms(dir.path(), n))
            .collect();
        report.add(Row {
            section: "disk".into(),
            label: format!("reopen {}k live u64 entries (open+load)", n / 1000),
            strata: median(runs),
            peer: None,
            unit: "ms",
            higher_is_better: false,
        });
        let db = open(dir.path(), Writes::Sync);
        let _ = db.compact();
        let bytes = db.disk_usage().expect("disk usage");
        report.add(Row {
            section: "disk".into(),
            label: format!(
                "disk bytes/entry, {}k u64 entries (journal incl.)",
                n / 1000
            ),
            strata: bytes as f64 / n as f64,
            peer: None,
            unit: "B",
            higher_is_better: false,
        });
    }
}

/// Puts fresh keys through the Store trait for one slice; returns ops/s (with `drain`, the
/// slice's puts count only once the writer has committed them all).
fn put_rate<S: Store<u64, u64>>(
    rt: &tokio::runtime::Runtime,
    s: &S,
    slice: Duration,
    drain: Option<&DiskDb>,
) -> f64 {
    rt.block_on(async {
        let started = Instant::now();
        let deadline = Deadline::after(slice);
        let mut done = 0;
        while !deadline.reached() {
            for i in done..done + CHUNK {
                s.put(scramble(i), i, TTL).await.expect("put");
            }
            done += CHUNK;
        }
        if let Some(db) = drain {
            db.flush().await.expect("flush");
        }
        rate(done, started.elapsed())
    })
}

fn async_put(report: &mut Report, rt: &tokio::runtime::Runtime) {
    for drain in [false, true] {
        // The builder's default memory tier (compact) and the other one, raced in one contest.
        let disk = |name: &'static str, compact: Option<bool>| {
            Entrant::ours(name, move || -> Slice<'_> {
                let dir = tempfile::tempdir().expect("scratch dir");
                let mut builder = DiskDb::builder().dir(dir.path()).writes(Writes::Async);
                if let Some(compact) = compact {
                    builder = builder.compact_memory(compact);
                }
                let db = builder.open().expect("open the bench directory");
                let disk = store(&db);
                Box::new(move |slice| {
                    let rate = put_rate(rt, &disk, slice, drain.then_some(&db));
                    // Close the store before deleting its directory: the other way round, the
                    // close waits its full flush timeout (2 s) for files that are gone.
                    drop((disk, db));
                    drop(dir);
                    rate
                })
            })
        };
        let memory = Entrant::peer("MemoryStore put", move || -> Slice<'_> {
            let mem = MemoryStore::<u64, u64>::new();
            Box::new(move |slice| put_rate(rt, &mem, slice, None))
        });
        let (label, group) = if drain {
            (
                "async put, incl. writer drain, u64",
                "async put\nincl. writer drain",
            )
        } else {
            (
                "async put (returns when queued), u64",
                "async put\n(returns when queued)",
            )
        };
        let contest = Contest {
            section: "disk",
            label: label.into(),
            chart: "throughput_disk",
            title: "DiskStore async put vs MemoryStore put, u64 -> u64, TTL on, 1 task",
            group: group.into(),
            entrants: vec![
                disk("strata DiskStore async, compact tier (default)", None),
                disk("strata DiskStore async, compact_memory(false)", Some(false)),
                memory,
            ],
        };
        contest::run(report, contest);
    }
}

/// CPU per put (µs, user + sys of every thread) of `n` async puts of fresh keys through the
/// Store trait into a fresh directory, writer drain and close included, with the share of
/// the putting thread, the writer thread and fjall's workers (measured before the close).
fn async_put_cpu_once(rt: &tokio::runtime::Runtime, n: u64) -> [f64; 4] {
    let dir = tempfile::tempdir().expect("scratch dir");
    let (total, caller) = (process_ms(), this_thread_ms());
    let db = open(dir.path(), Writes::Async);
    let disk = store(&db);
    rt.block_on(async {
        for i in 0..n {
            disk.put(scramble(i), i, TTL).await.expect("put");
        }
        db.flush().await.expect("flush");
    });
    let caller = this_thread_ms() - caller;
    let threads = threads_ms();
    let of = |prefix: &str| -> f64 {
        threads
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, ms)| ms)
            .sum()
    };
    let (writer, fjall) = (of("strata-disk"), of("fjall"));
    drop((disk, db));
    let total = process_ms() - total;
    drop(dir);
    [total, caller, writer, fjall].map(|ms| ms * 1e3 / n as f64)
}

/// CPU per put (µs) of `n` puts of fresh keys into a fresh MemoryStore.
fn memory_put_cpu_once(rt: &tokio::runtime::Runtime, n: u64) -> f64 {
    let total = process_ms();
    let mem = MemoryStore::<u64, u64>::new();
    rt.block_on(async {
        for i in 0..n {
            Store::put(&mem, scramble(i), i, TTL).await.expect("put");
        }
    });
    drop(mem);
    (process_ms() - total) * 1e3 / n as f64
}

fn async_put_cpu(report: &mut Report, rt: &tokio::runtime::Runtime) {
    let n = report.n(1_000_000, 200_000) as u64;
    let (mut disk, mut memory) = (Vec::new(), Vec::new());
    for _ in 0..report.rounds {
        disk.push(async_put_cpu_once(rt, n));
        memory.push(memory_put_cpu_once(rt, n));
    }
    let part = |i: usize| median(disk.iter().map(|d| d[i]).collect());
    let label = |what: &str| format!("async put CPU per op, {what}, {}k u64", n / 1000);
    report.add(Row {
        section: "disk".into(),
        label: label("every thread, incl. drain and close"),
        strata: part(0),
        peer: Some(("MemoryStore put".into(), median(memory))),
        unit: "us/op",
        higher_is_better: false,
    });
    for (i, what) in [
        (1, "putting thread"),
        (2, "writer thread"),
        (3, "fjall workers, before close"),
    ] {
        report.add(Row {
            section: "disk".into(),
            label: label(what),
            strata: part(i),
            peer: None,
            unit: "us/op",
            higher_is_better: false,
        });
    }
}

fn sync_put(report: &mut Report, rt: &tokio::runtime::Runtime) {
    let per_writer = report.n(10_000, 2_000) as u64;
    for writers in [1u64, 8] {
        let dir = tempfile::tempdir().expect("scratch dir");
        let db = open(dir.path(), Writes::Sync);
        let s = Arc::new(store(&db));
        let runs: Vec<f64> = (0..report.rounds)
            .map(|round| {
                rt.block_on(async {
                    let started = Instant::now();
                    let tasks: Vec<_> = (0..writers)
                        .map(|w| {
                            let s = s.clone();
                            tokio::spawn(async move {
                                for i in 0..per_writer {
                                    let k = scramble((round as u64) << 40 | w << 32 | i);
                                    s.put(k, i, TTL).await.expect("put");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("writer task");
                    }
                    rate(writers * per_writer, started.elapsed())
                })
            })
            .collect();
        report.add(Row {
            section: "disk".into(),
            label: format!("sync put (durable vs kill -9), {writers} writer(s)"),
            strata: median(runs),
            peer: None,
            unit: "ops/s",
            higher_is_better: true,
        });
    }
}

/// Sync puts of fresh keys, larger than memory (hot set 1 000): with a disk limit of 10 000
/// entries (FIFO, so past the fill every put also deletes the oldest entry: a second commit)
/// against the same store without a limit.
fn limited_put(report: &mut Report, rt: &tokio::runtime::Runtime) {
    let entrant = |limit: Option<u64>| {
        move || -> Slice<'_> {
            let dir = tempfile::tempdir().expect("scratch dir");
            let mut builder = DiskDb::builder()
                .dir(dir.path())
                .writes(Writes::Sync)
                .memory_capacity(1_000);
            if let Some(limit) = limit {
                builder = builder.max_capacity(limit);
            }
            let db = builder.open().expect("open the bench directory");
            let disk = store(&db);
            Box::new(move |slice| {
                let rate = put_rate(rt, &disk, slice, None);
                drop((disk, db));
                drop(dir);
                rate
            })
        }
    };
    let contest = Contest {
        section: "disk",
        label: "sync put over a disk limit (larger than memory, max_capacity 10k), u64".into(),
        chart: "throughput_disk",
        title: "DiskStore sync put, larger than memory: with a disk limit vs without",
        group: "sync put\nover a disk limit".into(),
        entrants: vec![
            Entrant::ours("strata DiskStore, disk limit", entrant(Some(10_000))),
            Entrant::peer("DiskStore, no limit", entrant(None)),
        ],
    };
    contest::run(report, contest);
}

/// Reads of 10 000 live keys from a DiskStore with `time_to_idle` (each read moves the idle
/// deadline) against one without.
fn idle_get(report: &mut Report, rt: &tokio::runtime::Runtime) {
    const KEYS: u64 = 10_000;
    let entrant = |idle: Option<Duration>| {
        move || -> Slice<'_> {
            let dir = tempfile::tempdir().expect("scratch dir");
            let mut builder = DiskDb::builder().dir(dir.path()).writes(Writes::Async);
            if let Some(idle) = idle {
                builder = builder.time_to_idle(idle);
            }
            let db = builder.open().expect("open the bench directory");
            let disk = store(&db);
            rt.block_on(async {
                let entries = (0..KEYS).map(|i| (scramble(i), i)).collect();
                disk.put_many(entries, TTL).await.expect("fill");
            });
            Box::new(move |slice| {
                let rate = rt.block_on(async {
                    let started = Instant::now();
                    let deadline = Deadline::after(slice);
                    let mut done = 0;
                    while !deadline.reached() {
                        for i in done..done + CHUNK {
                            let hit = disk.get(&scramble(i % KEYS)).await.expect("get");
                            std::hint::black_box(hit);
                        }
                        done += CHUNK;
                    }
                    rate(done, started.elapsed())
                });
                drop((disk, db));
                drop(dir);
                rate
            })
        }
    };
    let contest = Contest {
        section: "disk",
        label: "get, 10k live u64 keys, time_to_idle 1 h vs none".into(),
        chart: "throughput_disk",
        title: "DiskStore get with time_to_idle vs without",
        group: "get\nwith time_to_idle".into(),
        entrants: vec![
            Entrant::ours(
                "strata DiskStore, time_to_idle",
                entrant(Some(Duration::from_secs(3600))),
            ),
            Entrant::peer("DiskStore, no idle", entrant(None)),
        ],
    };
    contest::run(report, contest);
}

/// Reads of 100 000 live session records (40 B key, 200 B `String` value) from a DiskStore
/// with a compact memory tier (each read decodes the value) against the default tier (each
/// read clones it).
fn session_get(report: &mut Report, rt: &tokio::runtime::Runtime) {
    let keys: u64 = if report.smoke { 1_000 } else { 100_000 };
    let reads: Vec<String> = (0..keys).map(|i| session_key(scramble(i) % keys)).collect();
    let reads = &reads;
    let entrant = |compact: bool| {
        move || -> Slice<'_> {
            let dir = tempfile::tempdir().expect("scratch dir");
            let db = DiskDb::builder()
                .dir(dir.path())
                .writes(Writes::Async)
                .compact_memory(compact)
                .open()
                .expect("open the bench directory");
            let s: DiskStore<String, String> = db.store("sessions").expect("open the namespace");
            rt.block_on(async {
                for chunk in (0..keys).collect::<Vec<_>>().chunks(10_000) {
                    let entries = chunk
                        .iter()
                        .map(|&i| (session_key(i), session_value(i)))
                        .collect();
                    s.put_many(entries, TTL).await.expect("fill");
                }
            });
            Box::new(move |slice| {
                let started = Instant::now();
                let deadline = Deadline::after(slice);
                let mut done = 0;
                while !deadline.reached() {
                    for i in done..done + CHUNK {
                        let key = &reads[(i % keys) as usize];
                        let hit = s.get_now(key).expect("answers now").expect("get");
                        std::hint::black_box(hit);
                    }
                    done += CHUNK;
                }
                let rate = rate(done, started.elapsed());
                drop((s, db));
                drop(dir);
                rate
            })
        }
    };
    let contest = Contest {
        section: "disk",
        label: format!(
            "get, {}k session records (40 B key, 200 B value), compact tier vs default",
            keys / 1000
        ),
        chart: "throughput_disk",
        title: "DiskStore get, compact memory tier vs default",
        group: "get\ncompact tier".into(),
        entrants: vec![
            Entrant::ours("strata DiskStore, compact tier", entrant(true)),
            Entrant::peer("DiskStore, default tier", entrant(false)),
        ],
    };
    contest::run(report, contest);
}

#[path = "disk_cold.rs"]
mod cold;

/// Set in the child process that reopens the session records: their directory.
const SESSIONS_CHILD: &str = "STRATA_DISK_SESSIONS_CHILD";
/// How many records the child must find.
const SESSIONS_N: &str = "STRATA_DISK_SESSIONS_N";
/// Set (to anything) when the child must reopen with a compact memory tier.
const SESSIONS_COMPACT: &str = "STRATA_DISK_SESSIONS_COMPACT";
/// The child's answer line: `<tag> <reopen ms> <VmRSS kB before> <VmRSS kB after> <CPU ms>
/// <RssAnon kB before> <RssAnon kB after>`, the CPU time being what the reopen used (user +
/// sys, every thread). RssAnon leaves out the file-backed pages (the code the reopen ran for
/// the first time in this process: ~5 MB of this binary, the same for any entry count).
const SESSIONS_TAG: &str = "strata-disk-sessions";

/// A 40-byte session id.
pub(super) fn session_key(i: u64) -> String {
    format!(
        "session:{:032x}",
        u128::from(scramble(i)) << 64 | u128::from(i)
    )
}

/// A 200-byte session record.
pub(super) fn session_value(i: u64) -> String {
    format!("{i:0>200}")
}

/// The process's resident set (VmRSS) in kB; `None` where /proc is not there.
pub(super) fn vm_rss_kb() -> Option<u64> {
    status_kb("VmRSS:")
}

/// The `field` line of /proc/self/status, in kB.
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Writes `n` session records one async put at a time, then closes the directory.
fn populate_sessions(rt: &tokio::runtime::Runtime, dir: &Path, n: u64) {
    let db = open(dir, Writes::Async);
    let s: DiskStore<String, String> = db.store("sessions").expect("open the namespace");
    rt.block_on(async {
        for i in 0..n {
            s.put(session_key(i), session_value(i), TTL)
                .await
                .expect("put");
        }
        db.flush().await.expect("flush");
    });
}

/// In the child process: reopens the records, prints the answer line and exits, so the
/// resident set is that of a process that did nothing but reopen them.
fn sessions_child(dir: &str) -> ! {
    let n: u64 = std::env::var(SESSIONS_N)
        .ok()
        .and_then(|n| n.parse().ok())
        .expect("the record count");
    let before = vm_rss_kb().unwrap_or(0);
    let anon_before = status_kb("RssAnon:").unwrap_or(0);
    let cpu_before = process_ms();
    let started = Instant::now();
    let db = DiskDb::builder()
        .dir(dir)
        .writes(Writes::Async)
        .compact_memory(std::env::var_os(SESSIONS_COMPACT).is_some())
        .open()
        .expect("open the bench directory");
    let s: DiskStore<String, String> = db.store("sessions").expect("open the namespace");
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let cpu = process_ms() - cpu_before;
    assert_eq!(db.load_summary().live as u64, n, "every record reloaded");
    let after = vm_rss_kb().unwrap_or(0);
    let anon_after = status_kb("RssAnon:").unwrap_or(0);
    println!("{SESSIONS_TAG} {ms} {before} {after} {cpu} {anon_before} {anon_after}");
    drop((s, db));
    std::process::exit(0)
}

/// The session-record counts to reopen: 1 k in the smoke run, 100 k quick, 100 k and 1 M by
/// default; `STRATA_DISK_SESSIONS=100000,1000000,3000000` picks them (3 M takes minutes to
/// fill).
fn session_sizes(report: &Report) -> Vec<u64> {
    if let Ok(list) = std::env::var("STRATA_DISK_SESSIONS") {
        return list
            .split(',')
            .map(|n| n.trim().parse().expect("STRATA_DISK_SESSIONS: counts"))
            .collect();
    }
    if report.smoke {
        vec![1_000]
    } else if report.quick {
        vec![100_000]
    } else {
        vec![100_000, 1_000_000]
    }
}

/// Reopen time and resident memory after reopening session records, measured in a fresh
/// child process (this process's heap still holds whatever earlier rows freed).
fn sessions(report: &mut Report, rt: &tokio::runtime::Runtime) {
    for n in session_sizes(report) {
        sessions_of(report, rt, n);
    }
    session_get(report, rt);
}

fn sessions_of(report: &mut Report, rt: &tokio::runtime::Runtime, n: u64) {
    let dir = tempfile::tempdir().expect("scratch dir");
    populate_sessions(rt, dir.path(), n);
    if std::env::var_os("STRATA_DISK_SESSIONS_KEEP").is_some() {
        // For an A/B of two builds on the same records: run the child directly on this copy
        // (`STRATA_DISK_SESSIONS_CHILD=<copy> STRATA_DISK_SESSIONS_N=<n> compare disk`).
        let copy = std::env::temp_dir().join(format!("strata-sessions-{n}"));
        let status = Command::new("cp")
            .arg("-a")
            .arg(dir.path())
            .arg(&copy)
            .status();
        eprintln!("session records kept in {} ({status:?})", copy.display());
    }
    for compact in [false, true] {
        sessions_rows(report, dir.path(), n, compact);
    }
}

/// The rows of `n` session records reopened with the compact memory tier (the default) or the
/// one that keeps keys and values as they are (`compact_memory(false)`).
fn sessions_rows(report: &mut Report, dir: &Path, n: u64, compact: bool) {
    let runs: Vec<(f64, f64, f64, f64)> = (0..report.rounds.min(3))
        .map(|_| sessions_reopen(dir, n, compact))
        .collect();
    let ms = median(runs.iter().map(|r| r.0).collect());
    let rss = median(runs.iter().map(|r| r.1).collect());
    let cpu = median(runs.iter().map(|r| r.2).collect());
    let anon = median(runs.iter().map(|r| r.3).collect());
    // The compact tier is the default since 2026-12-07 (jd); the other row is the opt-out.
    let tier = if compact {
        ", compact tier (default)"
    } else {
        ", compact_memory(false)"
    };
    let label = |what: &str| {
        format!(
            "{what}, {}k session records (40 B key, 200 B value){tier}",
            n / 1000
        )
    };
    report.add(Row {
        section: "disk".into(),
        label: label("reopen (open+load)"),
        strata: ms,
        peer: None,
        unit: "ms",
        higher_is_better: false,
    });
    report.add(Row {
        section: "disk".into(),
        label: label("reopen CPU (user+sys, every thread)"),
        strata: cpu,
        peer: None,
        unit: "ms",
        higher_is_better: false,
    });
    report.add(Row {
        section: "disk".into(),
        label: label("resident bytes/entry after reopen (VmRSS growth)"),
        strata: rss * 1024.0 / n as f64,
        peer: None,
        unit: "B",
        higher_is_better: false,
    });
    report.add(Row {
        section: "disk".into(),
        label: label("anonymous resident bytes/entry after reopen (RssAnon growth, no code pages)"),
        strata: anon * 1024.0 / n as f64,
        peer: None,
        unit: "B",
        higher_is_better: false,
    });
}

/// Runs one child reopen: (reopen ms, VmRSS growth in kB, CPU ms, RssAnon growth in kB).
fn sessions_reopen(dir: &Path, n: u64, compact: bool) -> (f64, f64, f64, f64) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let mut child = Command::new(exe);
    child
        .arg("disk")
        .env(SESSIONS_CHILD, dir)
        .env(SESSIONS_N, n.to_string());
    if compact {
        child.env(SESSIONS_COMPACT, "1");
    } else {
        child.env_remove(SESSIONS_COMPACT);
    }
    let out = child.output().expect("run the reopen child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(SESSIONS_TAG))
        .unwrap_or_else(|| {
            panic!(
                "the reopen child answered nothing: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let fields: Vec<f64> = line
        .split_whitespace()
        .map(|f| f.parse().expect("a number"))
        .collect();
    (
        fields[0],
        fields[2] - fields[1],
        fields[3],
        fields[5] - fields[4],
    )
}

pub fn run(report: &mut Report) {
    if let Ok(dir) = std::env::var(SESSIONS_CHILD) {
        sessions_child(&dir);
    }
    cold::child_if_asked();
    let rt = runtime();
    // `STRATA_DISK_PARTS=reopen,async` runs only those parts (all by default).
    let parts = std::env::var("STRATA_DISK_PARTS").unwrap_or_default();
    let wants = |part: &str| parts.is_empty() || parts.split(',').any(|p| p == part);
    if wants("async") {
        async_put(report, &rt);
    }
    if wants("cpu") {
        async_put_cpu(report, &rt);
    }
    if wants("sync") {
        sync_put(report, &rt);
    }
    if wants("reopen") {
        reopen(report, &rt);
    }
    if wants("sessions") {
        sessions(report, &rt);
    }
    if wants("cold") {
        cold::run(report, &rt);
    }
    if wants("limits") {
        limited_put(report, &rt);
        idle_get(report, &rt);
    }
}
