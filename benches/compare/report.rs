//! Collecting rows, interleaving rounds, printing the table.

use std::time::{Duration, Instant};

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

pub struct Report {
    pub quick: bool,
    /// A debug build run by `cargo test` (the bench target has `test = true`): every section runs
    /// at a thousandth of its quick size, to prove the harness still runs and emits every row.
    pub smoke: bool,
    /// `--out DIR`: where to write `results.md` and the SVG plots.
    pub out: Option<std::path::PathBuf>,
    pub rounds: usize,
    filters: Vec<String>,
    rows: Vec<Row>,
}

impl Report {
    pub fn from_args() -> Self {
        let smoke = cfg!(debug_assertions);
        let mut quick = smoke || std::env::var_os("STRATA_BENCH_QUICK").is_some();
        let mut filters = Vec::new();
        let mut out = std::env::var_os("STRATA_BENCH_OUT").map(std::path::PathBuf::from);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--out" => out = args.next().map(std::path::PathBuf::from),
                "--bench" => {}
                a if a.starts_with("--") => {}
                a => filters.push(a.to_string()),
            }
        }
        Report {
            quick,
            smoke,
            out,
            rounds: if smoke {
                1
            } else if quick {
                3
            } else {
                5
            },
            filters,
            rows: Vec::new(),
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
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Sections that added no row (a smoke run fails on any).
    pub fn sections_without_rows<'a>(&self, sections: &[&'a str]) -> Vec<&'a str> {
        let has = |s: &str| self.rows.iter().any(|r| r.section == s);
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
        if !self.smoke {
            Self::print_row(&row);
        }
        self.rows.push(row);
    }

    pub fn print_row(row: &Row) {
        let ratio = row
            .peer
            .as_ref()
            .map(|(_, p)| format!("{:.2}x", row.strata / p));
        eprintln!(
            "  {:<10} {:<48} strata {:>14} {}",
            row.section,
            row.label,
            fmt_num(row.strata, row.unit),
            row.peer
                .as_ref()
                .map(|(n, p)| format!(
                    "{n} {} ratio {}",
                    fmt_num(*p, row.unit),
                    ratio.clone().unwrap_or_default()
                ))
                .unwrap_or_default()
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
            let written = crate::plot::write(dir, &self.rows)
                .and_then(|()| Ok(std::fs::write(dir.join("results.md"), &table)?));
            match written {
                Ok(()) => eprintln!("wrote {}/results.md and SVG plots", dir.display()),
                Err(e) => eprintln!("could not write the report to {}: {e}", dir.display()),
            }
        }
    }

    fn table(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "| section | workload | strata | peer | peer value | strata/peer | better |"
        );
        let _ = writeln!(t, "|---|---|---:|---|---:|---:|---|");
        for r in &self.rows {
            let (peer, value, ratio, verdict) = match &r.peer {
                Some((name, p)) => {
                    let ratio = r.strata / p;
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
                None => ("-".into(), "-".into(), "-".into(), "-"),
            };
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.section,
                r.label,
                fmt_num(r.strata, r.unit),
                peer,
                value,
                ratio,
                verdict
            );
        }
        t
    }
}

pub fn fmt_num(v: f64, unit: &str) -> String {
    match unit {
        "ops/s" if v >= 1e6 => format!("{:.2} M ops/s", v / 1e6),
        "ops/s" if v >= 1e3 => format!("{:.1} k ops/s", v / 1e3),
        "%" => format!("{v:.2} %"),
        _ => format!("{v:.1} {unit}"),
    }
}

/// Runs `a` and `b` alternately `rounds` times and returns the median of each.
pub fn interleaved(
    rounds: usize,
    mut a: impl FnMut() -> f64,
    mut b: impl FnMut() -> f64,
) -> (f64, f64) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        xs.push(a());
        ys.push(b());
    }
    (median(xs), median(ys))
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// Ops per second of `ops` operations that took `elapsed`.
pub fn rate(ops: u64, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64()
}

/// Times `f` and returns its rate for `ops` operations.
pub fn timed(ops: u64, f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    rate(ops, start.elapsed())
}
