//! DiskStore: reopen time, async put against MemoryStore put, sync put with 1 and 8 writers
//! (group commit), and bytes on disk per entry. Small entries: u64 → u64.
//! `STRATA_DISK_PARTS=async,sync,reopen` (any subset) runs only those parts.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use strata::{DiskDb, DiskStore, MemoryStore, Store, Writes};

use crate::{
    contest::{self, Contest, Deadline, Entrant, Slice, CHUNK},
    report::{median, rate, Report, Row},
    workload::scramble,
};

const TTL: Option<Duration> = Some(Duration::from_secs(3600));

fn runtime() -> tokio::runtime::Runtime {
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
        let disk = Entrant::ours("strata DiskStore async", move || -> Slice<'_> {
            let dir = tempfile::tempdir().expect("scratch dir");
            let db = open(dir.path(), Writes::Async);
            let disk = store(&db);
            Box::new(move |slice| {
                let rate = put_rate(rt, &disk, slice, drain.then_some(&db));
                // Close the store before deleting its directory: the other way round, the
                // close waits its full flush timeout (2 s) for files that are gone.
                drop((disk, db));
                drop(dir);
                rate
            })
        });
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
            entrants: vec![disk, memory],
        };
        contest::run(report, contest);
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

pub fn run(report: &mut Report) {
    let rt = runtime();
    // `STRATA_DISK_PARTS=reopen,async` runs only those parts (all by default).
    let parts = std::env::var("STRATA_DISK_PARTS").unwrap_or_default();
    let wants = |part: &str| parts.is_empty() || parts.split(',').any(|p| p == part);
    if wants("async") {
        async_put(report, &rt);
    }
    if wants("sync") {
        sync_put(report, &rt);
    }
    if wants("reopen") {
        reopen(report, &rt);
    }
}
