//! Latency distributions a reviewer can look at: one panel per device and
//! mode, the CDF of every variant's guest latency on a log time axis, and
//! beside it (thin lines) the time the same requests sat queued in QEMU.
//! Drawn with plotters into an SVG.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::samples::{guest_rank, Collected, Samples, SeriesKey};

/// Line colours by variant position: baseline first.
const COLOURS: &[RGBColor] = &[
    RGBColor(200, 40, 40),
    RGBColor(30, 100, 200),
    RGBColor(40, 150, 60),
    RGBColor(150, 80, 170),
    RGBColor(230, 140, 20),
    RGBColor(90, 90, 90),
];

const PANEL: (u32, u32) = (560, 330);

/// A tick label in ms with no more digits than it needs.
fn ms_label(x: f64) -> String {
    let digits = if x >= 1.0 {
        0
    } else {
        (-x.log10().floor()) as usize
    };
    format!("{x:.digits$}")
}

/// (x, fraction at or below x) for sorted samples in µs, x in ms.
fn cdf(samples: &[u32]) -> Vec<(f64, f64)> {
    let mut v: Vec<u32> = samples.to_vec();
    v.sort_unstable();
    let n = v.len() as f64;
    v.iter()
        .enumerate()
        .map(|(i, &us)| (f64::from(us.max(1)) / 1000.0, (i + 1) as f64 / n))
        .collect()
}

fn pooled(runs: Option<&Vec<Vec<u32>>>) -> Vec<u32> {
    runs.map(|r| r.concat()).unwrap_or_default()
}

/// A drawing error, naming the file.
fn drawing(path: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing {}: {e}", path.display())
}

/// Draws every (guest, controller, mode) of `samples` for `variants`
/// (baseline first) into `path`; returns the number of panels. Each panel
/// names the disks' configuration where it is not the default.
pub fn render(
    path: &Path,
    samples: &Samples,
    variants: &[&str],
    config: &contract::Config,
) -> Result<usize> {
    let keys = panel_order(samples);
    if keys.is_empty() {
        return Ok(0);
    }
    let (rows, cols) = grid(&keys);
    let size = (PANEL.0 * cols as u32, PANEL.1 * rows as u32);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| drawing(path, e))?;
    let areas = root.split_evenly((rows, cols));
    for (key, area) in keys.iter().zip(&areas) {
        draw_panel(area, key, &samples[*key], variants, config).map_err(|e| drawing(path, e))?;
    }
    root.present().map_err(|e| drawing(path, e))?;
    Ok(keys.len())
}

/// The panels in reading order: guest, controller, mode.
fn panel_order(samples: &Samples) -> Vec<&SeriesKey> {
    let mut keys: Vec<&SeriesKey> = samples.keys().collect();
    keys.sort_by_key(|k| {
        (
            guest_rank(k.guest),
            contract::controllers::rank(&k.controller),
            k.mode.name(),
            k.workload,
        )
    });
    keys
}

/// (rows, columns) of the panel grid: a column per mode.
fn grid(keys: &[&SeriesKey]) -> (usize, usize) {
    let cols = keys
        .iter()
        .map(|k| k.mode)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .max(1);
    (keys.len().div_ceil(cols), cols)
}

/// One panel's lines: per variant its guest latency, then (thin, `true`)
/// the time its requests sat queued in QEMU; lines without samples left out.
fn series(c: &Collected, variants: &[&str]) -> Vec<(String, Vec<u32>, bool)> {
    variants
        .iter()
        .flat_map(|v| {
            [
                (v.to_string(), pooled(c.runs.get(*v)), false),
                (format!("{v}: queued in QEMU"), pooled(c.host.get(*v)), true),
            ]
        })
        .filter(|(_, s, _)| !s.is_empty())
        .collect()
}

/// The x range, ms, of every sample in `series`, with a margin each side.
fn x_range(series: &[(String, Vec<u32>, bool)]) -> (f64, f64) {
    let all = series.iter().flat_map(|(_, s, _)| s.iter().copied());
    let (lo, hi) = all.fold((u32::MAX, 0), |(lo, hi), x| (lo.min(x.max(1)), hi.max(x)));
    (
        f64::from(lo) / 1000.0 * 0.8,
        f64::from(hi.max(lo + 1)) / 1000.0 * 1.25,
    )
}

/// One panel: the CDF of each series on a log time axis, with a legend.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    key: &SeriesKey,
    c: &Collected,
    variants: &[&str],
    config: &contract::Config,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let series = series(c, variants);
    let config = if config.is_default() {
        String::new()
    } else {
        format!(", {}", config.name())
    };
    let (lo, hi) = x_range(&series);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{} ({}, {} guest{config}): latency CDF",
                c.device, key.mode, key.guest
            ),
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(40)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0f64..1.0)?;
    chart
        .configure_mesh()
        .x_labels(6)
        .x_label_formatter(&|x| ms_label(*x))
        .x_desc("ms (log scale)")
        .y_desc("fraction of requests")
        .draw()?;
    for (i, (name, s, host)) in series.iter().enumerate() {
        // A variant's two lines share its colour.
        let colour = COLOURS[(i / 2) % COLOURS.len()];
        let style = if *host {
            colour.mix(0.55).stroke_width(1)
        } else {
            colour.stroke_width(2)
        };
        chart
            .draw_series(LineSeries::new(cdf(s), style))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(ms_label(0.30000000000000004), "0.3");
        assert_eq!(ms_label(0.04), "0.04");
        assert_eq!(ms_label(10.0), "10");
        assert_eq!(ms_label(0.003), "0.003");
    }

    #[test]
    fn cdf_is_sorted_and_ends_at_one() {
        let c = cdf(&[300, 100, 200, 0]);
        assert_eq!(c.first().unwrap(), &(0.001, 0.25));
        assert_eq!(c.last().unwrap(), &(0.3, 1.0));
        assert!(c.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 < w[1].1));
    }
}
