//! SVG plots: traces, marginal densities and the posterior predictive.

use crate::output::ChainRow;
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let pad = lo.abs().max(1.0) * 0.05;
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// The distinct chain indices in `rows`, in order.
fn chain_ids(rows: &[ChainRow]) -> Vec<u64> {
    let mut ids: Vec<u64> = rows.iter().map(|r| r.chain).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn colour(c: usize) -> RGBColor {
    const C: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    C[c % C.len()]
}

/// `trace.svg`: θ against iteration, one panel per parameter, chains overlaid.
///
/// # Errors
/// Drawing or I/O failures.
pub fn trace(
    path: &Path,
    names: &[String],
    rows: &[ChainRow],
    truth: Option<&[f64]>,
) -> Result<()> {
    let n = names.len();
    let root = SVGBackend::new(path, (900, 200 * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x0, x1) = range(rows.iter().map(|r| r.iteration as f64));
    for (p, area) in root.split_evenly((n, 1)).iter().enumerate() {
        let (y0, y1) = range(rows.iter().map(|r| r.theta[p]).chain(truth.map(|t| t[p])));
        let mut chart = ChartBuilder::on(area)
            .caption(&names[p], ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .light_line_style(WHITE)
            .draw()?;
        for (c, id) in chain_ids(rows).into_iter().enumerate() {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.chain == id)
                .map(|r| (r.iteration as f64, r.theta[p]))
                .collect();
            chart.draw_series(LineSeries::new(pts, colour(c).stroke_width(1)))?;
        }
        if let Some(t) = truth {
            chart.draw_series(LineSeries::new(
                vec![(x0, t[p]), (x1, t[p])],
                BLACK.stroke_width(2),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

/// `density.svg`: histogram densities per parameter, chains overlaid, the true
/// value (if known) as a vertical line.
///
/// # Errors
/// Drawing or I/O failures.
pub fn density(
    path: &Path,
    names: &[String],
    rows: &[ChainRow],
    truth: Option<&[f64]>,
) -> Result<()> {
    let n = names.len();
    let cols = n.min(3);
    let nrows = n.div_ceil(cols);
    let root = SVGBackend::new(path, (320 * cols as u32, 260 * nrows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((nrows, cols));
    for p in 0..n {
        let (lo, hi) = range(rows.iter().map(|r| r.theta[p]).chain(truth.map(|t| t[p])));
        let per_chain = rows.len() / chain_ids(rows).len().max(1);
        let bins = ((per_chain as f64).sqrt() as usize).clamp(8, 40);
        let w = (hi - lo) / bins as f64;
        let mut curves = Vec::new();
        let mut ymax: f64 = 0.0;
        for (c, id) in chain_ids(rows).into_iter().enumerate() {
            let vals: Vec<f64> = rows
                .iter()
                .filter(|r| r.chain == id)
                .map(|r| r.theta[p])
                .collect();
            if vals.is_empty() {
                continue;
            }
            let mut h = vec![0.0; bins];
            for v in &vals {
                let b = (((v - lo) / w) as usize).min(bins - 1);
                h[b] += 1.0;
            }
            let pts: Vec<(f64, f64)> = h
                .iter()
                .enumerate()
                .map(|(b, k)| (lo + w * (b as f64 + 0.5), k / (vals.len() as f64 * w)))
                .collect();
            ymax = pts.iter().fold(ymax, |m, q| m.max(q.1));
            curves.push((c, pts));
        }
        let mut chart = ChartBuilder::on(&areas[p])
            .caption(&names[p], ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, 0.0..(ymax * 1.1).max(f64::MIN_POSITIVE))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels(4)
            .draw()?;
        for (c, pts) in curves {
            chart.draw_series(LineSeries::new(pts, colour(c).stroke_width(2)))?;
        }
        if let Some(t) = truth {
            chart.draw_series(LineSeries::new(
                vec![(t[p], 0.0), (t[p], ymax * 1.1)],
                BLACK.stroke_width(2),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

/// Bands of the posterior predictive for one observed species.
pub struct Band {
    /// Species name.
    pub name: String,
    /// Grid times.
    pub times: Vec<f64>,
    /// 5 % quantile per time.
    pub lo: Vec<f64>,
    /// Median per time.
    pub mid: Vec<f64>,
    /// 95 % quantile per time.
    pub hi: Vec<f64>,
    /// Observed (time, value) points.
    pub data: Vec<(f64, f64)>,
}

/// `predictive.svg`: data points with the 90 % posterior predictive band and
/// median, one panel per observed species.
///
/// # Errors
/// Drawing or I/O failures.
pub fn predictive(path: &Path, bands: &[Band]) -> Result<()> {
    let n = bands.len();
    let root = SVGBackend::new(path, (900, 300 * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    for (b, area) in bands.iter().zip(root.split_evenly((n, 1)).iter()) {
        let (x0, x1) = range(b.times.iter().copied().chain(b.data.iter().map(|d| d.0)));
        let (y0, y1) = range(
            b.lo.iter()
                .chain(&b.hi)
                .copied()
                .chain(b.data.iter().map(|d| d.1)),
        );
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{}: data and 90% posterior predictive", b.name),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("time")
            .light_line_style(WHITE)
            .draw()?;
        let mut poly: Vec<(f64, f64)> = b.times.iter().copied().zip(b.hi.iter().copied()).collect();
        poly.extend(b.times.iter().copied().zip(b.lo.iter().copied()).rev());
        chart.draw_series(std::iter::once(Polygon::new(
            poly,
            colour(0).mix(0.25).filled(),
        )))?;
        chart.draw_series(LineSeries::new(
            b.times.iter().copied().zip(b.mid.iter().copied()),
            colour(0).stroke_width(2),
        ))?;
        chart.draw_series(b.data.iter().map(|d| Circle::new(*d, 4, BLACK.filled())))?;
    }
    root.present()?;
    Ok(())
}
