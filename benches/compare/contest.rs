//! The one throughput harness. Every rate comparison (memory, generational, cache, disk, redis)
//! runs through [`run`], so every row is measured the same way:
//!
//! - **rotating order**: round `r` runs the entrants starting from the `r`-th, so no library
//!   always runs first (on a warm or a cold machine, before or after a neighbour's build);
//! - **a fresh instance per entrant per round**, built and filled outside the timed slice, so no
//!   one inherits a table grown, warmed or fragmented by an earlier run;
//! - **equal time slices**: each entrant works for the same wall time and reports what it got
//!   done, so a slow library is not measured over a longer (noisier) window than a fast one;
//! - **the median of per-round ratios** (ours / peer, each round's pair measured back to back
//!   under the same machine load), with the min–max of those ratios as the spread.

use std::time::{Duration, Instant};

use crate::report::{median, Bar, Bars, Report, Row, Spread};

/// Runs one entrant's fresh instance for a time slice and returns its ops/s.
pub type Slice<'a> = Box<dyn FnOnce(Duration) -> f64 + 'a>;

/// One library (or one configuration of strata) in a contest.
pub struct Entrant<'a> {
    /// Shown in the table's peer column and the chart legend.
    pub name: String,
    /// strata's side: ratios are `ours / peer` for every ours × peer pair.
    pub ours: bool,
    /// Builds and fills a fresh instance (untimed) and returns the slice that measures it.
    pub fresh: Box<dyn FnMut() -> Slice<'a> + 'a>,
}

impl<'a> Entrant<'a> {
    /// strata's side of the comparison.
    pub fn ours(name: impl Into<String>, fresh: impl FnMut() -> Slice<'a> + 'a) -> Self {
        Entrant {
            name: name.into(),
            ours: true,
            fresh: Box::new(fresh),
        }
    }

    /// A peer strata is compared against.
    pub fn peer(name: impl Into<String>, fresh: impl FnMut() -> Slice<'a> + 'a) -> Self {
        Entrant {
            name: name.into(),
            ours: false,
            fresh: Box::new(fresh),
        }
    }
}

/// One workload, one row per ours × peer pair, one group of bars in a chart.
pub struct Contest<'a> {
    pub section: &'static str,
    /// The workload as the table names it (`zipf0.99 1M 95/5 1t ttl`).
    pub label: String,
    /// Where its bars go: the chart's file stem and title, and this group's caption.
    pub chart: &'static str,
    pub title: &'static str,
    pub group: String,
    pub entrants: Vec<Entrant<'a>>,
}

/// Runs `contest` for `report.rounds` rounds and records its rows and bars.
pub fn run(report: &mut Report, mut contest: Contest<'_>) {
    let rates = rounds(&mut contest.entrants, report.rounds, report.slice);
    let names: Vec<(&str, bool)> = contest
        .entrants
        .iter()
        .map(|e| (e.name.as_str(), e.ours))
        .collect();
    let several_ours = names.iter().filter(|(_, ours)| *ours).count() > 1;
    for (o, &(ours_name, _)) in names.iter().enumerate().filter(|(_, e)| e.1) {
        for (p, &(peer_name, _)) in names.iter().enumerate().filter(|(_, e)| !e.1) {
            let label = if several_ours {
                format!("{} [{ours_name}]", contest.label)
            } else {
                contest.label.clone()
            };
            let row = Row {
                section: contest.section.into(),
                label,
                strata: median(rates[o].clone()),
                peer: Some((peer_name.to_string(), median(rates[p].clone()))),
                unit: "ops/s",
                higher_is_better: true,
            };
            report.add_measured(row, spread(&rates[o], &rates[p]));
        }
    }
    report.add_bars(bars(&contest, &names, &rates));
}

/// `rates[entrant][round]`: each round starts at a different entrant and builds every one fresh.
fn rounds(entrants: &mut [Entrant<'_>], rounds: usize, slice: Duration) -> Vec<Vec<f64>> {
    let n = entrants.len();
    let mut rates = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for i in (0..n).map(|k| (k + round) % n) {
            let measure = (entrants[i].fresh)();
            rates[i].push(measure(slice));
        }
    }
    rates
}

/// Median and min–max of the per-round ratios `ours[r] / peer[r]`.
pub fn spread(ours: &[f64], peer: &[f64]) -> Spread {
    let ratios: Vec<f64> = ours.iter().zip(peer).map(|(o, p)| o / p).collect();
    let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Spread {
        median: median(ratios),
        min,
        max,
    }
}

/// The contest's bars: each entrant's median rate; on strata's bars the median per-round ratio
/// against the fastest peer (by median rate).
fn bars(contest: &Contest<'_>, names: &[(&str, bool)], rates: &[Vec<f64>]) -> Bars {
    let medians: Vec<f64> = rates.iter().map(|r| median(r.clone())).collect();
    let fastest_peer = (0..names.len())
        .filter(|&i| !names[i].1)
        .max_by(|&a, &b| medians[a].total_cmp(&medians[b]));
    let bars = names
        .iter()
        .enumerate()
        .map(|(i, &(name, ours))| Bar {
            library: name.to_string(),
            ours,
            value: medians[i],
            ratio: fastest_peer
                .filter(|_| ours)
                .map(|p| spread(&rates[i], &rates[p]).median),
        })
        .collect();
    Bars {
        chart: contest.chart,
        title: contest.title.to_string(),
        panel: String::new(),
        group: contest.group.clone(),
        unit: "ops/s",
        bars,
    }
}

/// The end of a time slice. Workers check it every [`CHUNK`] operations, so the clock read
/// costs nothing measurable and a slice overshoots by at most one chunk.
#[derive(Clone, Copy)]
pub struct Deadline(Instant);

/// Operations between two deadline checks on a hot path.
pub const CHUNK: u64 = 1024;

impl Deadline {
    pub fn after(slice: Duration) -> Self {
        Deadline(Instant::now() + slice)
    }

    pub fn reached(&self) -> bool {
        Instant::now() >= self.0
    }

    /// Calls `op(i)` for i = 0, 1, 2, … until the deadline; returns how many calls were made.
    pub fn count(&self, mut op: impl FnMut(u64)) -> u64 {
        let mut done = 0;
        while !self.reached() {
            for i in done..done + CHUNK {
                op(i);
            }
            done += CHUNK;
        }
        done
    }
}

/// `threads` threads, released together, each running `work(thread, deadline)` (which returns
/// its op count) for `slice`; returns total ops/s over the wall time until the last one ends.
pub fn threads(
    threads: usize,
    slice: Duration,
    work: impl Fn(usize, Deadline) -> u64 + Sync,
) -> f64 {
    let start = std::sync::Barrier::new(threads + 1);
    let (work, start) = (&work, &start);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    start.wait();
                    work(t, Deadline::after(slice))
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        let ops: u64 = workers
            .into_iter()
            .map(|w| w.join().expect("bench worker"))
            .sum();
        ops as f64 / began.elapsed().as_secs_f64()
    })
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis sections only
/// `tasks` tokio tasks each calling `one(task, i)` for i = 0, 1, … until the slice ends; returns
/// total ops/s. For async operations (microseconds each) the deadline is checked every call.
pub fn tasks<F, Fut>(rt: &tokio::runtime::Runtime, tasks: usize, slice: Duration, one: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let one = std::sync::Arc::new(one);
    rt.block_on(async {
        let began = Instant::now();
        let deadline = Deadline::after(slice);
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let one = one.clone();
                tokio::spawn(async move {
                    let mut done = 0;
                    while !deadline.reached() {
                        one(t, done).await;
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut ops = 0u64;
        for h in handles {
            ops += h.await.expect("bench task");
        }
        ops as f64 / began.elapsed().as_secs_f64()
    })
}

/// ops/s of `op(i).await` called in sequence on `rt` until the slice ends (the deadline is
/// checked every [`CHUNK`] calls, as on the sync paths, since a hit is a ready future).
pub fn sequential_async<F, Fut>(rt: &tokio::runtime::Runtime, slice: Duration, mut op: F) -> f64
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    rt.block_on(async {
        let began = Instant::now();
        let deadline = Deadline::after(slice);
        let mut done = 0;
        while !deadline.reached() {
            for i in done..done + CHUNK {
                op(i).await;
            }
            done += CHUNK;
        }
        done as f64 / began.elapsed().as_secs_f64()
    })
}

/// ops/s of `op(i)` called on this thread until the slice ends.
pub fn sequential(slice: Duration, op: impl FnMut(u64)) -> f64 {
    let began = Instant::now();
    let ops = Deadline::after(slice).count(op);
    ops as f64 / began.elapsed().as_secs_f64()
}
