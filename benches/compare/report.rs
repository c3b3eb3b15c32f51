//! Collecting rows and chart bars, printing the table. Throughput comparisons are measured by
//! `contest.rs`; this file only records and prints what they (and exact counts) produce.

use std::time::Duration;

/// One row: strata's figure, optionally a peer's, and the unit.
pub struct Row {
    pub section: String,
    pub label: String,
    pub strata: f64,
    pub peer: Option<(String, f64)>,
    pub unit: &'static str,
    /// True when bigger is better (ops/s, hit ratio); false for bytes, latency.
    pub higher_is_better: bool,
}

/// The median of per-round ratios ours / peer and their min–max (see `contest.rs`); for a row
/// with no peer (a time measured in rounds, `failover.rs`), the median of its per-round values
/// and their min–max, in the row's unit.
#[derive(Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// One library's bar in a group of a chart.
pub struct Bar {
    pub library: String,
    pub ours: bool,
    pub value: f64,
    /// Printed above the bar (strata's bars: strata / fastest peer).
    pub ratio: Option<f64>,
}

/// One group of bars (one workload) in a panel of a chart.
pub struct Bars {
    /// File stem of the chart (`throughput_memory` → `.png` and `.svg`).
    pub chart: &'static str,
    pub title: String,
    /// A chart with several panels (hit ratio: one per access pattern); empty for one.
    pub panel: String,
    /// The group's caption under the x axis; `\n` breaks a line.
    pub group: String,
    pub unit: &'static str,
    pub bars: Vec<Bar>,
}

/// A row and, when it was timed in rounds, the spread of its per-round ratios.
pub struct Entry {
    pub row: Row,
    pub spread: Option<Spread>,
}

impl Entry {
    /// strata / peer: the median of per-round ratios when timed, else the exact quotient.
    pub fn ratio(&self) -> Option<f64> {
        let exact = self.row.peer.as_ref().map(|(_, p)| self.row.strata / p);
        self.spread.map(|s| s.median).or(exact)
    }
}

pub struct Report {
    pub quick: bool,
    /// A debug build run by `cargo test` (the bench target has `test = true`): every section runs
    /// at a thousandth of its quick size, to prove the harness still runs and emits every row.
    pub smoke: bool,
    /// `--out DIR`: where to write `results.md` and the SVG plots.
    pub out: Option<std::path::PathBuf>,
    pub rounds: usize,
    /// Wall time each entrant of a contest runs per round.
    pub slice: Duration,
    filters: Vec<String>,
    entries: Vec<Entry>,
    bars: Vec<Bars>,
}

impl Report {
    pub fn from_args() -> Self {
        let smoke = cfg!(debug_assertions);
        let mut quick = smoke || std::env::var_os("STRATA_BENCH_QUICK").is_some();
        let mut filters = Vec::new();
        let mut out = std::env::var_os("STRATA_BENCH_OUT").map(std::path::PathBuf::from);
        let (mut rounds, mut slice_ms) = (None, None);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--out" => out = args.next().map(std::path::PathBuf::from),
                "--rounds" => rounds = args.next().and_then(|a| a.parse().ok()),
                "--slice-ms" => slice_ms = args.next().and_then(|a| a.parse().ok()),
                "--bench" => {}
                a if a.starts_with("--") => {}
                a => filters.push(a.to_string()),
            }
        }
        Report {
            quick,
            smoke,
            out,
            // Two rounds even in a smoke run, so the rotation of the order is exercised.
            rounds: rounds.unwrap_or(if smoke {
                2
            } else if quick {
                3
            } else {
                5
            }),
            slice: Duration::from_millis(slice_ms.unwrap_or(if smoke {
                2
            } else if quick {
                300
            } else {
                1000
            })),
            filters,
            entries: Vec::new(),
            bars: Vec::new(),
        }
    }

    /// A size: `full` in a full run, `quick` with `--quick`, a thousandth of `quick` (at least 64)
    /// in a smoke run.
    pub fn n(&self, full: usize, quick: usize) -> usize {
        if self.smoke {
            (quick / 1000).max(64)
        } else if self.quick {
            quick
        } else {
            full
        }
    }

    /// How many times smaller than a full run this one is: 1, 4 (`--quick`) or 1000 (smoke).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // used by the Redis sections only
    pub fn scale(&self) -> usize {
        if self.smoke {
            1000
        } else if self.quick {
            4
        } else {
            1
        }
    }

    /// Every row recorded so far.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Sections that added no row (a smoke run fails on any).
    pub fn sections_without_rows<'a>(&self, sections: &[&'a str]) -> Vec<&'a str> {
        let has = |s: &str| self.entries.iter().any(|e| e.row.section == s);
        sections
            .iter()
            .copied()
            .filter(|s| self.wants(s) && !has(s))
            .collect()
    }

    /// True if `section` was asked for (no filter: every section).
    pub fn wants(&self, section: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| section.contains(f.as_str()))
    }

    /// Records a row; a full or `--quick` run also prints it at once (a smoke run stays quiet
    /// unless it fails, so `cargo test` prints nothing for a passing check).
    pub fn add(&mut self, row: Row) {
        self.push(Entry { row, spread: None });
    }

    /// Records a row timed in rounds, with the spread of its per-round ratios.
    pub fn add_measured(&mut self, row: Row, spread: Spread) {
        self.push(Entry {
            row,
            spread: Some(spread),
        });
    }

    /// Records one group of bars for the charts.
    pub fn add_bars(&mut self, bars: Bars) {
        self.bars.push(bars);
    }

    fn push(&mut self, entry: Entry) {
        if !self.smoke {
            Self::print_entry(&entry);
        }
        self.entries.push(entry);
    }

    pub fn print_entry(entry: &Entry) {
        let row = &entry.row;
        let peer = row.peer.as_ref().map(|(n, p)| {
            let ratio = entry
                .ratio()
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_default();
            let spread = entry
                .spread
                .map(|s| format!(" ({:.2}-{:.2})", s.min, s.max))
                .unwrap_or_default();
            format!("{n} {} ratio {ratio}{spread}", fmt_num(*p, row.unit))
        });
        let values = entry.spread.filter(|_| row.peer.is_none()).map(|s| {
            let (min, max) = (fmt_num(s.min, row.unit), fmt_num(s.max, row.unit));
            format!("(min {min}, max {max})")
        });
        eprintln!(
            "  {:<10} {:<48} strata {:>14} {}",
            row.section,
            row.label,
            fmt_num(row.strata, row.unit),
            peer.or(values).unwrap_or_default()
        );
    }

    /// Prints the full table as Markdown on stdout (and, with `--out DIR`, writes it to
    /// `DIR/results.md` with the SVG plots beside it).
    pub fn finish(&self) {
        if self.smoke {
            return;
        }
        let table = self.table();
        print!("{table}");
        if let Some(dir) = &self.out {
            let written = crate::plot::write(dir, &self.bars)
                .and_then(|()| Ok(std::fs::write(dir.join("results.md"), &table)?));
            match written {
                Ok(()) => eprintln!("wrote {}/results.md and the charts", dir.display()),
                Err(e) => eprintln!("could not write the report to {}: {e}", dir.display()),
            }
        }
    }

    fn table(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "| section | workload | strata | peer | peer value | strata/peer | min–max | better |"
        );
        let _ = writeln!(t, "|---|---|---:|---|---:|---:|---:|---|");
        for e in &self.entries {
            let _ = writeln!(t, "{}", Self::table_row(e));
        }
        t
    }

    fn table_row(e: &Entry) -> String {
        let r = &e.row;
        let (peer, value, ratio, verdict) = match (&r.peer, e.ratio()) {
            (Some((name, p)), Some(ratio)) => {
                let ahead = if r.higher_is_better {
                    ratio >= 1.0
                } else {
                    ratio <= 1.0
                };
                (
                    name.clone(),
                    fmt_num(*p, r.unit),
                    format!("{ratio:.2}"),
                    if ahead { "strata" } else { "peer" },
                )
            }
            _ => ("-".into(), "-".into(), "-".into(), "-"),
        };
        let spread = match (e.spread, &r.peer) {
            (Some(s), Some(_)) => format!("{:.2}–{:.2}", s.min, s.max),
            (Some(s), None) => format!("{}–{}", fmt_num(s.min, r.unit), fmt_num(s.max, r.unit)),
            (None, _) => "-".into(),
        };
        format!(
            "| {} | {} | {} | {peer} | {value} | {ratio} | {spread} | {verdict} |",
            r.section,
            r.label,
            fmt_num(r.strata, r.unit),
        )
    }
}

pub fn fmt_num(v: f64, unit: &str) -> String {
    match unit {
        "ops/s" if v >= 1e6 => format!("{:.2} M ops/s", v / 1e6),
        "ops/s" if v >= 1e3 => format!("{:.1} k ops/s", v / 1e3),
        "keys/s" if v >= 1e3 => format!("{:.1} k keys/s", v / 1e3),
        "%" => format!("{v:.2} %"),
        "us/op" => format!("{v:.2} us/op"),
        _ => format!("{v:.1} {unit}"),
    }
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// Ops per second of `ops` operations that took `elapsed`.
#[cfg_attr(not(feature = "disk"), allow(dead_code))]
pub fn rate(ops: u64, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64()
}
