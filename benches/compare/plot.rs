//! SVG plots of a run: throughput vs threads, and hit ratio vs capacity.

use std::{collections::BTreeMap, path::Path};

use plotters::prelude::*;

use crate::report::Row;

type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// `2t` in a label → 2.
fn threads(label: &str) -> Option<f64> {
    label
        .split_whitespace()
        .find_map(|w| w.strip_suffix('t')?.parse().ok())
}

/// `cap 5%` in a label → 5.
fn capacity(label: &str) -> Option<f64> {
    let mut words = label.split_whitespace();
    while let Some(w) = words.next() {
        if w == "cap" {
            return words.next()?.trim_end_matches('%').parse().ok();
        }
    }
    None
}

fn without(label: &str, drop: &dyn Fn(&str) -> bool) -> String {
    label
        .split_whitespace()
        .filter(|w| !drop(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn add(series: &mut Series, name: String, x: f64, y: f64) {
    let points = series.entry(name).or_default();
    if !points.iter().any(|(px, _)| *px == x) {
        points.push((x, y));
    }
}

/// Words of a label that name the workload itself, not the contender or the x value.
fn is_noise(w: &str) -> bool {
    w == "zipf0.99" || w == "1M" || (w.ends_with('t') && w[..w.len() - 1].parse::<u32>().is_ok())
}

/// Throughput rows (labels with `Nt`) of one get/put `mix`, as one series per contender.
fn throughput_series(rows: &[Row], mix: &str) -> Series {
    let mut series = Series::new();
    for r in rows
        .iter()
        .filter(|r| r.unit == "ops/s" && r.label.contains(mix))
    {
        let (Some(x), Some((peer, p))) = (threads(&r.label), &r.peer) else {
            continue;
        };
        if r.section != "memory" && r.section != "generational" {
            continue;
        }
        let variant = without(&r.label, &|w| is_noise(w) || w == mix);
        let ours = format!("strata {} {variant}", r.section);
        add(&mut series, ours.trim().to_string(), x, r.strata / 1e6);
        // Peers are measured once per row; "admission" only changes strata's side.
        let theirs = format!("{peer} {}", without(&variant, &|w| w == "admission"));
        add(&mut series, theirs.trim().to_string(), x, p / 1e6);
    }
    series
}

/// Hit-ratio rows (labels with `cap N%`).
fn hit_ratio_series(rows: &[Row]) -> Series {
    let mut series = Series::new();
    for r in rows.iter().filter(|r| r.label.contains("hit ratio")) {
        let (Some(x), Some((peer, p))) = (capacity(&r.label), &r.peer) else {
            continue;
        };
        let workload = without(&r.label, &|w| {
            w == "cap" || w.ends_with('%') || w == "hit" || w == "ratio"
        });
        add(&mut series, format!("strata {workload}"), x, r.strata);
        let theirs = without(&workload, &|w| w == "admission");
        add(&mut series, format!("{peer} {theirs}"), x, *p);
    }
    series
}

fn draw(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &Series,
) -> Result<(), Box<dyn std::error::Error>> {
    if series.is_empty() {
        return Ok(());
    }
    let xs = series.values().flatten().map(|p| p.0);
    let ys = series.values().flatten().map(|p| p.1);
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let y1 = ys.fold(0.0f64, f64::max) * 1.1;
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - 0.1)..(x1 + 0.1), 0.0..y1.max(1e-9))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut points = points.clone();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Writes `throughput_95_5.svg`, `throughput_50_50.svg` and `hit_ratio.svg` into `dir`.
pub fn write(dir: &Path, rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    for (file, mix) in [
        ("throughput_95_5.svg", "95/5"),
        ("throughput_50_50.svg", "50/50"),
    ] {
        let title = format!("Throughput vs threads, {mix} get/put (Zipf 0.99, 1M keys)");
        let series = throughput_series(rows, mix);
        draw(&dir.join(file), &title, "threads", "M ops/s", &series)?;
    }
    draw(
        &dir.join("hit_ratio.svg"),
        "Hit ratio vs capacity",
        "capacity (% of key space)",
        "hit ratio (%)",
        &hit_ratio_series(rows),
    )?;
    Ok(())
}
