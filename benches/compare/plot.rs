//! Charts of a run, as PNG and SVG: grouped bars, one group per workload, one colour per
//! library (strata first, in blues; peers in warm colours), the legend in its own row above
//! the data. Throughput charts print strata / fastest peer above strata's bars; hit-ratio
//! charts have one panel per access pattern and print every bar's value.

use std::{error::Error, path::Path};

use plotters::{
    coord::Shift,
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use crate::report::{Bar, Bars};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// One chart: its groups of bars, by panel.
struct Chart<'a> {
    stem: &'static str,
    title: &'a str,
    unit: &'static str,
    /// Libraries in legend order: strata's first, then peers, each in order of appearance.
    libraries: Vec<(&'a str, bool)>,
    panels: Vec<(&'a str, Vec<&'a Bars>)>,
}

/// Writes `<chart>.png` and `<chart>.svg` for every chart the run recorded bars for.
pub fn write(dir: &Path, bars: &[Bars]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    register_font()?;
    for chart in charts(bars) {
        let (w, h) = size(&chart);
        let svg = dir.join(format!("{}.svg", chart.stem));
        render(SVGBackend::new(&svg, (w, h)).into_drawing_area(), &chart)?;
        let png = dir.join(format!("{}.png", chart.stem));
        render(BitMapBackend::new(&png, (w, h)).into_drawing_area(), &chart)?;
    }
    Ok(())
}

fn charts(bars: &[Bars]) -> Vec<Chart<'_>> {
    let mut charts: Vec<Chart<'_>> = Vec::new();
    for b in bars {
        let i = match charts.iter().position(|c| c.stem == b.chart) {
            Some(i) => i,
            None => {
                charts.push(Chart {
                    stem: b.chart,
                    title: &b.title,
                    unit: b.unit,
                    libraries: Vec::new(),
                    panels: Vec::new(),
                });
                charts.len() - 1
            }
        };
        add(&mut charts[i], b);
    }
    for c in &mut charts {
        // Stable: strata's libraries first, each side in order of appearance.
        c.libraries.sort_by_key(|&(_, ours)| !ours);
    }
    charts
}

fn add<'a>(chart: &mut Chart<'a>, b: &'a Bars) {
    for bar in &b.bars {
        if !chart.libraries.iter().any(|(l, _)| *l == bar.library) {
            chart.libraries.push((&bar.library, bar.ours));
        }
    }
    match chart.panels.iter_mut().find(|(p, _)| *p == b.panel) {
        Some((_, groups)) => groups.push(b),
        None => chart.panels.push((&b.panel, vec![b])),
    }
}

const HEADER: u32 = 100;
const PANEL: u32 = 430;

fn size(chart: &Chart<'_>) -> (u32, u32) {
    let bars: usize = chart
        .panels
        .iter()
        .map(|(_, g)| slots(g))
        .max()
        .unwrap_or(1);
    let w = (120 + bars * 30).clamp(900, 1800) as u32;
    (w, HEADER + PANEL * chart.panels.len() as u32)
}

/// Bar slots of a panel: every group's bars plus a gap between groups.
fn slots(groups: &[&Bars]) -> usize {
    groups.iter().map(|g| g.bars.len() + 1).sum()
}

fn render<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart<'_>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(HEADER);
    draw_header(&header, chart)?;
    let panels = body.split_evenly((chart.panels.len(), 1));
    for (area, (name, groups)) in panels.iter().zip(&chart.panels) {
        draw_panel(&root, area, chart, name, groups)?;
    }
    root.present()?;
    Ok(())
}

/// Title, the note on what the printed numbers mean, and the legend, above the data.
fn draw_header<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, chart: &Chart<'_>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let centre = Pos::new(HPos::Center, VPos::Top);
    let title = ("sans-serif", 22).into_font().style(FontStyle::Bold);
    area.draw_text(
        chart.title,
        &title.into_text_style(area).pos(centre),
        (w as i32 / 2, 8),
    )?;
    let note = if chart.unit == "%" {
        "hit ratio in % above each bar; higher is better"
    } else {
        "bars: median ops/s over rounds; above strata's bars: strata ÷ fastest peer \
         (median of per-round ratios; red = behind)"
    };
    let style = ("sans-serif", 14).into_font().color(&RGBColor(80, 80, 80));
    area.draw_text(note, &style.pos(centre), (w as i32 / 2, 40))?;
    draw_legend(area, chart, 76)
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &Chart<'_>,
    y: i32,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let font = TextStyle::from(("sans-serif", 15).into_font());
    let widths: Vec<i32> = chart
        .libraries
        .iter()
        .map(|(l, _)| {
            area.estimate_text_size(l, &font)
                .map(|(w, _)| w as i32 + 44)
        })
        .collect::<std::result::Result<_, _>>()?;
    let (w, _) = area.dim_in_pixel();
    let mut x = (w as i32 - widths.iter().sum::<i32>()) / 2;
    for ((library, ours), width) in chart.libraries.iter().zip(widths) {
        let color = colour(chart, library, *ours);
        area.draw(&Rectangle::new([(x, y), (x + 16, y + 16)], color.filled()))?;
        let style = font.clone().pos(Pos::new(HPos::Left, VPos::Center));
        area.draw_text(library, &style, (x + 22, y + 8))?;
        x += width;
    }
    Ok(())
}

/// strata's libraries in blues, peers in warm and neutral colours, by legend position.
fn colour(chart: &Chart<'_>, library: &str, ours: bool) -> RGBColor {
    const OURS: [RGBColor; 4] = [
        RGBColor(31, 78, 156),
        RGBColor(86, 150, 222),
        RGBColor(42, 157, 143),
        RGBColor(20, 40, 90),
    ];
    const PEERS: [RGBColor; 5] = [
        RGBColor(231, 111, 81),
        RGBColor(233, 176, 60),
        RGBColor(150, 150, 150),
        RGBColor(160, 90, 160),
        RGBColor(190, 60, 60),
    ];
    let side = chart.libraries.iter().filter(|(_, o)| *o == ours);
    let i = side.take_while(|(l, _)| *l != library).count();
    if ours {
        OURS[i % OURS.len()]
    } else {
        PEERS[i % PEERS.len()]
    }
}

/// ops/s in M or k, % as is: (divisor, axis label).
fn scale(chart: &Chart<'_>, max: f64) -> (f64, String) {
    match chart.unit {
        "ops/s" if max >= 1e6 => (1e6, "M ops/s".into()),
        "ops/s" if max >= 1e3 => (1e3, "k ops/s".into()),
        unit => (1.0, unit.into()),
    }
}

fn draw_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    chart: &Chart<'_>,
    name: &str,
    groups: &[&Bars],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let bars = groups.iter().flat_map(|g| &g.bars);
    let max = bars.map(|b| b.value).fold(0.0, f64::max);
    let (div, y_desc) = scale(chart, max);
    let top = if chart.unit == "%" {
        100.0
    } else {
        max / div * 1.18
    };
    // Room under the axis for the longest group caption, one line per `\n`.
    let lines = groups
        .iter()
        .map(|g| g.group.lines().count())
        .max()
        .unwrap_or(1);
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(14)
        .margin_right(24)
        .x_label_area_size(14 + 17 * lines as u32)
        .y_label_area_size(72);
    if !name.is_empty() {
        builder.caption(name, ("sans-serif", 17).into_font().style(FontStyle::Bold));
    }
    let mut plot = builder.build_cartesian_2d(0.0..slots(groups) as f64, 0.0..top.max(1e-9))?;
    plot.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .y_label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .y_labels(8)
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;
    let mut x = 0.5;
    for group in groups {
        draw_group(root, &mut plot, chart, group, x, div)?;
        x += (group.bars.len() + 1) as f64;
    }
    Ok(())
}

type Plot<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One workload's bars from `x`, one slot each, with its caption under the axis.
fn draw_group<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    plot: &mut Plot<'_, DB>,
    chart: &Chart<'_>,
    group: &Bars,
    x: f64,
    div: f64,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    for (i, bar) in group.bars.iter().enumerate() {
        let (x0, y) = (x + i as f64, bar.value / div);
        let color = colour(chart, &bar.library, bar.ours);
        plot.draw_series(std::iter::once(Rectangle::new(
            [(x0 + 0.06, 0.0), (x0 + 0.94, y)],
            color.filled(),
        )))?;
        if let Some((text, style)) = label(chart, bar) {
            let at = EmptyElement::at((x0 + 0.5, y)) + Text::new(text, (0, -4), style);
            plot.draw_series(std::iter::once(at))?;
        }
    }
    let centre = x + group.bars.len() as f64 / 2.0;
    let (px, py) = plot.backend_coord(&(centre, 0.0));
    let style =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (line, text) in group.group.lines().enumerate() {
        root.draw_text(text, &style, (px, py + 8 + 17 * line as i32))?;
    }
    Ok(())
}

/// The number above a bar: strata's ratio to the fastest peer, or the hit ratio.
fn label(chart: &Chart<'_>, bar: &Bar) -> Option<(String, TextStyle<'static>)> {
    let anchor = Pos::new(HPos::Center, VPos::Bottom);
    if chart.unit == "%" {
        let font = TextStyle::from(("sans-serif", 12).into_font());
        return Some((format!("{:.1}", bar.value), font.pos(anchor)));
    }
    let ratio = bar.ratio?;
    let color = if ratio < 1.0 {
        RGBColor(190, 30, 30)
    } else {
        RGBColor(20, 110, 40)
    };
    let font = ("sans-serif", 14)
        .into_font()
        .style(FontStyle::Bold)
        .color(&color);
    Some((format!("{ratio:.2}×"), font.pos(anchor)))
}

/// Text in both backends is laid out with a TrueType font read at run time (plotters'
/// `ab_glyph` feature: pure Rust, no fontconfig to link). `STRATA_BENCH_FONT` names one.
fn register_font() -> Result<()> {
    static DONE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let regular = find_font(&["DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf"])?;
        let bold = find_font(&[
            "DejaVuSans-Bold.ttf",
            "LiberationSans-Bold.ttf",
            "Arial Bold.ttf",
        ]);
        for (style, bytes) in [(FontStyle::Normal, Ok(regular)), (FontStyle::Bold, bold)] {
            let Ok(bytes) = bytes else { continue };
            plotters::style::register_font("sans-serif", style, bytes)
                .map_err(|_| "the chart font is not a valid TrueType file".to_string())?;
        }
        Ok(())
    })
    .clone()
    .map_err(Into::into)
}

fn find_font(names: &[&str]) -> std::result::Result<&'static [u8], String> {
    let dirs = [
        "/usr/share/fonts/truetype/dejavu",
        "/usr/share/fonts/TTF",
        "/usr/share/fonts/dejavu",
        "/usr/share/fonts/truetype/liberation",
        "/Library/Fonts",
        "/System/Library/Fonts/Supplemental",
    ];
    let env = std::env::var_os("STRATA_BENCH_FONT").map(std::path::PathBuf::from);
    let candidates = env.into_iter().chain(
        dirs.iter()
            .flat_map(|d| names.iter().map(move |n| Path::new(d).join(n))),
    );
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok(Box::leak(bytes.into_boxed_slice()));
        }
    }
    Err("no TrueType font found for the charts: set STRATA_BENCH_FONT=/path/to/font.ttf".into())
}
