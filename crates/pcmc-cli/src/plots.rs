//! SVG plots: traces, marginal densities and the posterior predictive.

use crate::output::ChainRow;
use anyhow::Result;
use pcmc_core::diagnostics::{autocorrelation, pooled_ranks, quantile_sorted};
use pcmc_core::prior::Prior;
use plotters::coord::types::RangedCoordf64;
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
    const C: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    C[c % C.len()]
}

/// A tick label without spurious decimals: "200", "0.005", "1.5e-7" — the
/// shortest of up to 4 significant digits.
pub fn tick(v: &f64) -> String {
    // Tick positions are multiples of a step and carry its rounding error:
    // -5.6e-17 is a zero.
    let v = if v.abs() < 1e-10 { 0.0 } else { *v };
    if v == 0.0 || !v.is_finite() {
        return if v == 0.0 { "0".into() } else { format!("{v}") };
    }
    let a = v.abs();
    if !(1e-4..1e6).contains(&a) {
        let s = format!("{v:.3e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{e}");
    }
    let digits = (3 - a.log10().floor() as i32).clamp(0, 10) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The coordinates of every chart here.
type Xy = Cartesian2d<RangedCoordf64, RangedCoordf64>;

/// The plots' shared look: caption, margins and tick formatting.
fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<ChartContext<'a, DB, Xy>>
where
    DB::ErrorType: 'static,
{
    Ok(ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)?)
}

fn draw_mesh<'a, DB: DrawingBackend + 'a>(
    c: &mut ChartContext<'a, DB, Xy>,
    x_desc: &str,
    y_desc: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    c.configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_labels(5)
        .y_labels(5)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .light_line_style(WHITE)
        .draw()?;
    Ok(())
}

/// One parameter's draws per chain, in chain order.
fn per_chain(rows: &[ChainRow], p: usize) -> Vec<(u64, Vec<f64>)> {
    chain_ids(rows)
        .into_iter()
        .map(|id| {
            (
                id,
                rows.iter()
                    .filter(|r| r.chain == id)
                    .map(|r| r.theta[p])
                    .collect(),
            )
        })
        .collect()
}

/// Whether a parameter varies (fixed parameters are left out of the
/// diagnostics plots).
fn varies(rows: &[ChainRow], p: usize) -> bool {
    rows.first()
        .is_some_and(|r0| rows.iter().any(|r| r.theta[p] != r0.theta[p]))
}

fn legend<'a, DB: DrawingBackend + 'a>(c: &mut ChartContext<'a, DB, Xy>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 12))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// A legend entry: a short line in `style`.
fn swatch(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style)
}

/// The true value as a black line through `pts`, with its legend entry.
fn draw_truth<'a, DB: DrawingBackend + 'a>(
    c: &mut ChartContext<'a, DB, Xy>,
    pts: Vec<(f64, f64)>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    c.draw_series(LineSeries::new(pts, BLACK.stroke_width(2)))?
        .label("true value")
        .legend(swatch(BLACK.stroke_width(2)));
    Ok(())
}

/// `trace.svg`: θ against iteration, one panel per parameter, chains
/// overlaid in distinct colours, the true value (if known) in black.
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
        let mut chart = chart(area, &names[p], x0..x1, y0..y1)?;
        draw_mesh(&mut chart, "iteration", "")?;
        for (c, (id, vals)) in per_chain(rows, p).into_iter().enumerate() {
            let its = rows
                .iter()
                .filter(|r| r.chain == id)
                .map(|r| r.iteration as f64);
            chart
                .draw_series(LineSeries::new(its.zip(vals), colour(c).stroke_width(1)))?
                .label(format!("chain {id}"))
                .legend(swatch(colour(c).stroke_width(2)));
        }
        if let Some(t) = truth {
            draw_truth(&mut chart, vec![(x0, t[p]), (x1, t[p])])?;
        }
        if p == 0 {
            legend(&mut chart)?;
        }
    }
    root.present()?;
    Ok(())
}

/// Silverman's rule-of-thumb bandwidth, `0.9·min(sd, IQR/1.34)·n^(−1/5)`
/// (Silverman 1986, eq. 3.31); `None` for fewer than 2 distinct values.
pub fn silverman_bandwidth(xs: &[f64]) -> Option<f64> {
    let n = xs.len();
    if n < 2 {
        return None;
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let sd = (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64).sqrt();
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let iqr = quantile_sorted(&s, 0.75) - quantile_sorted(&s, 0.25);
    let spread = if iqr > 0.0 { sd.min(iqr / 1.34) } else { sd };
    let h = 0.9 * spread * (n as f64).powf(-0.2);
    (h > 0.0 && h.is_finite()).then_some(h)
}

/// A Gaussian kernel density estimate of `xs` with bandwidth `h` at `grid`.
pub fn kde(xs: &[f64], h: f64, grid: &[f64]) -> Vec<f64> {
    let norm = 1.0 / (xs.len() as f64 * h * (2.0 * std::f64::consts::PI).sqrt());
    grid.iter()
        .map(|g| {
            xs.iter()
                .map(|x| {
                    let z = (g - x) / h;
                    (-0.5 * z * z).exp()
                })
                .sum::<f64>()
                * norm
        })
        .collect()
}

/// A PMMH chain's name in plot legends.
pub fn chain_label(id: u64) -> String {
    format!("chain {id}")
}

/// `density.svg`: per parameter, a Gaussian kernel density estimate of each
/// chain's draws (Silverman's bandwidth, stated in the panel title), chains
/// in distinct colours with a legend named by `series` (a chain id's
/// label: [`chain_label`] for PMMH), the prior density drawn faintly in
/// grey, and the true value (if known) as a black vertical line.
///
/// # Errors
/// Drawing or I/O failures.
pub fn density(
    path: &Path,
    names: &[String],
    rows: &[ChainRow],
    priors: &[Prior],
    truth: Option<&[f64]>,
    series: fn(u64) -> String,
) -> Result<()> {
    let n = names.len();
    let cols = n.min(3);
    let nrows = n.div_ceil(cols);
    let root = SVGBackend::new(path, (360 * cols as u32, 280 * nrows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((nrows, cols));
    for p in 0..n {
        let chains = per_chain(rows, p);
        let (lo, hi) = range(rows.iter().map(|r| r.theta[p]).chain(truth.map(|t| t[p])));
        let grid: Vec<f64> = (0..=200)
            .map(|i| lo + (hi - lo) * f64::from(i) / 200.0)
            .collect();
        let mut curves = Vec::new();
        let mut bws = Vec::new();
        for (c, (id, vals)) in chains.iter().enumerate() {
            if let Some(h) = silverman_bandwidth(vals) {
                bws.push(h);
                curves.push((c, *id, kde(vals, h, &grid)));
            }
        }
        let ymax = curves
            .iter()
            .flat_map(|(_, _, d)| d.iter().copied())
            .fold(0.0, f64::max);
        let ymax = if ymax > 0.0 { ymax * 1.15 } else { 1.0 };
        let caption = match bws.first() {
            Some(h) => format!(
                "{} (KDE, Silverman bw {} for {})",
                names[p],
                tick(h),
                series(chains.first().map_or(0, |c| c.0))
            ),
            None => format!("{} (constant)", names[p]),
        };
        let mut chart = chart(&areas[p], &caption, lo..hi, 0.0..ymax)?;
        draw_mesh(&mut chart, "", "density")?;
        if let Some(prior) = priors.get(p).filter(|pr| !pr.is_fixed()) {
            let pd: Vec<(f64, f64)> = grid
                .iter()
                .map(|x| (*x, prior.log_density(*x).exp().min(ymax)))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    pd,
                    RGBColor(150, 150, 150).mix(0.6).stroke_width(1),
                ))?
                .label("prior")
                .legend(swatch(RGBColor(150, 150, 150).stroke_width(1)));
        }
        for (c, id, d) in curves {
            chart
                .draw_series(LineSeries::new(
                    grid.iter().copied().zip(d),
                    colour(c).stroke_width(2),
                ))?
                .label(series(id))
                .legend(swatch(colour(c).stroke_width(2)));
        }
        if let Some(t) = truth {
            draw_truth(&mut chart, vec![(t[p], 0.0), (t[p], ymax)])?;
        }
        legend(&mut chart)?;
    }
    root.present()?;
    Ok(())
}

/// `pairs.svg`: for every pair of free parameters, a scatter of
/// (ln θ_i, ln θ_j) over the kept draws (at most 1500 per chain, evenly
/// spaced), chains in their colours, with the correlation of the log-draws
/// in the title; the diagonal shows each log-parameter's pooled density.
///
/// # Errors
/// Drawing or I/O failures.
pub fn pairs(path: &Path, names: &[String], rows: &[ChainRow]) -> Result<()> {
    let free: Vec<usize> = (0..names.len()).filter(|p| varies(rows, *p)).collect();
    let d = free.len().max(1);
    let root = SVGBackend::new(path, (260 * d as u32, 260 * d as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((d, d));
    let logs: Vec<Vec<f64>> = free
        .iter()
        .map(|&p| rows.iter().map(|r| r.theta[p].ln()).collect())
        .collect();
    let ids = chain_ids(rows);
    for (i, &pi) in free.iter().enumerate() {
        for (j, &pj) in free.iter().enumerate() {
            let area = &areas[i * d + j];
            if i == j {
                // The marginal density of the log-draws, all chains pooled.
                let x = &logs[i];
                let (a, b) = range(x.iter().copied());
                let grid: Vec<f64> = (0..=100)
                    .map(|k| a + (b - a) * f64::from(k) / 100.0)
                    .collect();
                let dens = silverman_bandwidth(x).map(|h| kde(x, h, &grid));
                let top = dens
                    .as_ref()
                    .map_or(1.0, |d| d.iter().copied().fold(0.0, f64::max) * 1.1);
                let mut chart = chart(area, &format!("ln {}", names[pi]), a..b, 0.0..top)?;
                draw_mesh(&mut chart, &format!("ln {}", names[pi]), "")?;
                if let Some(d) = dens {
                    chart.draw_series(LineSeries::new(
                        grid.iter().copied().zip(d),
                        BLACK.stroke_width(2),
                    ))?;
                }
                continue;
            }
            if j > i {
                continue;
            }
            // Row i, column j < i: x = ln θ_j, y = ln θ_i.
            let (x, y) = (&logs[j], &logs[i]);
            let r = correlation(x, y);
            let mut chart = chart(
                area,
                &format!("r = {}", r.map_or("-".into(), |v| format!("{v:.2}"))),
                {
                    let (a, b) = range(x.iter().copied());
                    a..b
                },
                {
                    let (a, b) = range(y.iter().copied());
                    a..b
                },
            )?;
            draw_mesh(
                &mut chart,
                &format!("ln {}", names[pj]),
                &format!("ln {}", names[pi]),
            )?;
            for (c, id) in ids.iter().enumerate() {
                let idx: Vec<usize> = (0..rows.len()).filter(|k| rows[*k].chain == *id).collect();
                let step = idx.len().div_ceil(1500).max(1);
                chart.draw_series(
                    idx.iter()
                        .step_by(step)
                        .map(|&k| Circle::new((x[k], y[k]), 2, colour(c).mix(0.5).filled())),
                )?;
            }
        }
    }
    root.present()?;
    Ok(())
}

/// Pearson correlation (`None` if either vector is constant).
fn correlation(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// One panel per free (varying) parameter, stacked: `draw(p, area)` fills
/// parameter `p`'s panel.
fn free_panels(
    path: &Path,
    names: &[String],
    rows: &[ChainRow],
    mut draw: impl FnMut(usize, &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    let free: Vec<usize> = (0..names.len()).filter(|p| varies(rows, *p)).collect();
    let n = free.len().max(1);
    let root = SVGBackend::new(path, (900, 200 * n as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    for (&p, area) in free.iter().zip(root.split_evenly((n, 1)).iter()) {
        draw(p, area)?;
    }
    root.present()?;
    Ok(())
}

/// `autocorr.svg`: the autocorrelation of each free parameter's draws
/// against lag (up to 100 or half a chain), one line per chain; a chain
/// whose autocorrelation stays high for many lags mixes slowly.
///
/// # Errors
/// Drawing or I/O failures.
pub fn autocorr(path: &Path, names: &[String], rows: &[ChainRow]) -> Result<()> {
    free_panels(path, names, rows, |p, area| {
        let chains = per_chain(rows, p);
        let len = chains.iter().map(|(_, v)| v.len()).min().unwrap_or(0);
        let max_lag = (len / 2).clamp(1, 100);
        let mut chart = chart(
            area,
            &format!("{}: autocorrelation", names[p]),
            0.0..max_lag as f64,
            -0.25..1.05,
        )?;
        draw_mesh(&mut chart, "lag", "")?;
        chart.draw_series(LineSeries::new(
            vec![(0.0, 0.0), (max_lag as f64, 0.0)],
            BLACK.mix(0.4).stroke_width(1),
        ))?;
        for (c, (id, vals)) in chains.iter().enumerate() {
            if let Some(acf) = autocorrelation(vals, max_lag) {
                chart
                    .draw_series(LineSeries::new(
                        acf.into_iter().enumerate().map(|(l, v)| (l as f64, v)),
                        colour(c).stroke_width(2),
                    ))?
                    .label(format!("chain {id}"))
                    .legend(swatch(colour(c).stroke_width(2)));
            }
        }
        legend(&mut chart)
    })
}

/// `ranks.svg`: rank plots (Vehtari et al. 2021, section 4.1): the draws of
/// all chains are ranked together and each chain's ranks are histogrammed
/// (20 bins); the dashed line is the count every bin has on average when the
/// chains sample the same distribution. A chain whose histogram leans one
/// way has not mixed with the others.
///
/// # Errors
/// Drawing or I/O failures.
pub fn ranks(path: &Path, names: &[String], rows: &[ChainRow]) -> Result<()> {
    const BINS: usize = 20;
    free_panels(path, names, rows, |p, area| {
        let chains = per_chain(rows, p);
        let refs: Vec<&[f64]> = chains.iter().map(|(_, v)| v.as_slice()).collect();
        let total: usize = refs.iter().map(|c| c.len()).sum();
        let ranks = pooled_ranks(&refs);
        let hists: Vec<Vec<f64>> = ranks
            .iter()
            .map(|rs| {
                let mut h = vec![0.0; BINS];
                for r in rs {
                    let b = (((r - 1.0) / total as f64) * BINS as f64) as usize;
                    h[b.min(BINS - 1)] += 1.0;
                }
                h
            })
            .collect();
        let ymax = hists.iter().flatten().copied().fold(1.0, f64::max) * 1.15;
        let mut chart = chart(
            area,
            &format!("{}: rank histogram per chain", names[p]),
            0.0..total as f64,
            0.0..ymax,
        )?;
        draw_mesh(&mut chart, "rank of the draw among all chains", "draws")?;
        let w = total as f64 / BINS as f64;
        for (c, ((id, vals), h)) in chains.iter().zip(&hists).enumerate() {
            let expected = vals.len() as f64 / BINS as f64;
            let mut pts = Vec::with_capacity(2 * BINS);
            for (b, v) in h.iter().enumerate() {
                pts.push((b as f64 * w, *v));
                pts.push(((b + 1) as f64 * w, *v));
            }
            chart
                .draw_series(LineSeries::new(pts, colour(c).stroke_width(2)))?
                .label(format!("chain {id}"))
                .legend(swatch(colour(c).stroke_width(2)));
            chart.draw_series(DashedLineSeries::new(
                vec![(0.0, expected), (total as f64, expected)],
                4,
                4,
                colour(c).mix(0.6).stroke_width(1),
            ))?;
        }
        legend(&mut chart)
    })
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
    /// Observed (time, value) points (value NaN: not observed; drawn as a
    /// grey cross on the time axis).
    pub data: Vec<(f64, f64)>,
    /// Posterior draws simulated and kept.
    pub draws: usize,
    /// Draws left out because their trajectory was stopped (population cap
    /// or event limit): a stopped state is no prediction.
    pub dropped: usize,
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
                .chain(b.data.iter().map(|d| d.1).filter(|v| !v.is_nan())),
        );
        let gaps = b.data.iter().filter(|d| d.1.is_nan()).count();
        let name = if gaps > 0 {
            format!("{} ({gaps} missing, ×)", b.name)
        } else {
            b.name.clone()
        };
        let caption = if b.dropped > 0 {
            format!(
                "{}: data and 90% posterior predictive ({} of {} draws stopped by the cap or event limit, left out)",
                name, b.dropped, b.draws
            )
        } else {
            format!(
                "{}: data and 90% posterior predictive ({} draws)",
                name, b.draws
            )
        };
        let mut chart = chart(area, &caption, x0..x1, y0..y1)?;
        draw_mesh(&mut chart, "time", "")?;
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
        chart.draw_series(
            b.data
                .iter()
                .filter(|d| !d.1.is_nan())
                .map(|d| Circle::new(*d, 4, BLACK.filled())),
        )?;
        chart.draw_series(
            b.data
                .iter()
                .filter(|d| d.1.is_nan())
                .map(|d| Cross::new((d.0, y0), 5, BLACK.mix(0.5).stroke_width(2))),
        )?;
    }
    root.present()?;
    Ok(())
}

/// One SMC² step as the SMC² plots read it.
#[derive(Debug, Clone)]
pub struct Smc2StepPoint {
    /// Observations processed.
    pub t: usize,
    /// `log p̂(y_{1:t})`.
    pub log_evidence: f64,
    /// Its standard error.
    pub se: f64,
    /// θ-ESS over `Nθ` before any resampling.
    pub ess_fraction: f64,
    /// The rejuvenation's acceptance rate, if there was one.
    pub acceptance: Option<f64>,
    /// `Nx` during the step.
    pub particles: usize,
}

/// `evidence.svg`: `log p̂(y_{1:t})` against `t` with ±2 standard errors
/// (top), and the standard error itself (bottom: on the top panel's scale
/// it is usually too small to see); one trace per replicate (`runs`, in
/// order; a run without replicates is one).
///
/// # Errors
/// Drawing or I/O failures.
pub fn evidence(path: &Path, runs: &[Vec<Smc2StepPoint>]) -> Result<()> {
    let root = SVGBackend::new(path, (720, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((2, 1));
    let all = || runs.iter().flatten();
    let (lo, hi) =
        range(all().flat_map(|s| [s.log_evidence - 2.0 * s.se, s.log_evidence + 2.0 * s.se]));
    let tmax = all().map(|s| s.t).max().unwrap_or(1) as f64 + 0.5;
    let title = if runs.len() > 1 {
        "log evidence log p̂(y₁..y_t) with ±2 SE (Lee–Whiteley), one colour per replicate"
    } else {
        "log evidence log p̂(y₁..y_t) with ±2 SE (Lee–Whiteley)"
    };
    let mut c = chart(&areas[0], title, 0.0..tmax, lo..hi)?;
    draw_mesh(&mut c, "observations t", "log p̂(y₁..y_t)")?;
    for (r, steps) in runs.iter().enumerate() {
        c.draw_series(steps.iter().map(|s| {
            let t = s.t as f64;
            PathElement::new(
                [
                    (t, s.log_evidence - 2.0 * s.se),
                    (t, s.log_evidence + 2.0 * s.se),
                ],
                colour(r).mix(0.5).stroke_width(2),
            )
        }))?;
        c.draw_series(LineSeries::new(
            steps.iter().map(|s| (s.t as f64, s.log_evidence)),
            colour(r).stroke_width(2),
        ))?;
    }
    let (_, se_hi) = range(all().map(|s| s.se).chain([0.0]));
    let mut c = chart(
        &areas[1],
        "standard error of log p̂(y₁..y_t)",
        0.0..tmax,
        0.0..se_hi,
    )?;
    draw_mesh(&mut c, "observations t", "SE")?;
    for (r, steps) in runs.iter().enumerate() {
        let col = if runs.len() > 1 { colour(r) } else { colour(3) };
        let series = c.draw_series(LineSeries::new(
            steps.iter().map(|s| (s.t as f64, s.se)),
            col.stroke_width(2),
        ))?;
        if runs.len() > 1 {
            series
                .label(format!("replicate {r}"))
                .legend(swatch(col.stroke_width(2)));
        }
    }
    if runs.len() > 1 {
        legend(&mut c)?;
    }
    root.present()?;
    Ok(())
}

/// `smc2.svg`: per step, the θ-ESS as a fraction of `Nθ` (with the
/// resampling threshold), the acceptance rate of each rejuvenation, and
/// `Nx` during each observation's step (a staircase).
///
/// # Errors
/// Drawing or I/O failures.
pub fn smc2_steps(path: &Path, steps: &[Smc2StepPoint], threshold: f64) -> Result<()> {
    let root = SVGBackend::new(path, (720, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((2, 1));
    let tmax = steps.last().map_or(1, |s| s.t) as f64 + 0.5;
    let mut c = chart(
        &areas[0],
        "θ-ESS / Nθ (line; resampling below the dashed threshold) and move acceptance (dots)",
        0.0..tmax,
        0.0..1.05,
    )?;
    draw_mesh(&mut c, "observations t", "fraction")?;
    c.draw_series(LineSeries::new(
        steps.iter().map(|s| (s.t as f64, s.ess_fraction)),
        colour(0).stroke_width(2),
    ))?
    .label("θ-ESS / Nθ")
    .legend(swatch(colour(0).stroke_width(2)));
    c.draw_series(DashedLineSeries::new(
        [(0.0, threshold), (tmax, threshold)],
        6,
        4,
        BLACK.mix(0.5).stroke_width(1),
    ))?;
    c.draw_series(steps.iter().filter_map(|s| {
        s.acceptance
            .map(|a| Circle::new((s.t as f64, a), 4, colour(1).filled()))
    }))?
    .label("acceptance")
    .legend(|(x, y)| Circle::new((x + 8, y), 4, colour(1).filled()));
    legend(&mut c)?;
    let nmax = steps.iter().map(|s| s.particles).max().unwrap_or(1) as f64;
    let mut c = chart(
        &areas[1],
        "Nx: particles per θ-particle's filter",
        0.0..tmax,
        0.0..nmax * 1.1,
    )?;
    draw_mesh(&mut c, "observations t", "Nx")?;
    // Nx is constant within a step: a staircase.
    let stairs = steps.iter().flat_map(|s| {
        let n = s.particles as f64;
        [(s.t as f64 - 0.5, n), (s.t as f64 + 0.5, n)]
    });
    c.draw_series(LineSeries::new(stairs, colour(2).stroke_width(2)))?;
    root.present()?;
    Ok(())
}
