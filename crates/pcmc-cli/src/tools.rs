//! `pcmc bench ssa` (kernel throughput) and `pcmc tune` (choosing the
//! particle count).

use crate::error::{InputError, input};
use crate::fsio::write_atomic;
use crate::run::{Overrides, prepare};
use anyhow::Result;
use pcmc_core::LikelihoodExecutor;
use pcmc_core::filter::{BLOCK, FilterKey};
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::ssa::{BlockScratch, KernelChoice, Outcome, Ssa};
use pcmc_core::workloads::{kernel_case, reference_lv_loop};
use plotters::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `pcmc bench ssa`: simulates `trajectories` trajectories of a reference
/// kernel case and prints one JSON line with events, seconds and events/s.
///
/// # Errors
/// An input error for an unknown model or kernel.
pub fn bench_ssa(model: &str, trajectories: u64, kernel: &str) -> Result<()> {
    let case = kernel_case(model).ok_or_else(|| {
        InputError::flag(
            "--model",
            format!("{model:?} is not one of lv11, lv12, lv13"),
        )
    })?;
    if trajectories == 0 {
        return Err(InputError::flag("--trajectories", "must be at least 1").into());
    }
    let kernel_choice = KernelChoice::parse(kernel).ok_or_else(|| {
        InputError::flag(
            "--kernel",
            format!("{kernel:?} is not one of scalar, batch, simd"),
        )
    })?;
    let caps = vec![pcmc_core::filter::DEFAULT_CAP; case.x0.len()];
    let ssa = Ssa::new(&case.network, &case.theta, &caps, u64::MAX);
    let s = case.x0.len();
    let mut scratch = BlockScratch::default();
    let mut block = vec![0u64; s * BLOCK];
    let mut outcomes = [Outcome::Reached; BLOCK];
    let start = Instant::now();
    let mut events = 0u64;
    let mut first = 0;
    // Blocks of the filter's width, each particle from its own stream, as
    // in a filter pass.
    while first < trajectories {
        let lanes = (trajectories - first).min(BLOCK as u64) as usize;
        for j in 0..lanes {
            for (sp, v) in case.x0.iter().enumerate() {
                block[sp * BLOCK + j] = *v;
            }
        }
        let c = ssa.propagate(
            kernel_choice,
            &mut block,
            BLOCK,
            lanes,
            0.0,
            case.span,
            |j| StreamKey::new(1, 0, 0, 0, first + j as u64, Purpose::Test),
            &mut outcomes,
            &mut scratch,
        );
        events += c.events;
        first += lanes as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    // The yardstick, in the same process on the same trajectories' count: a
    // tight C-like loop written for this model (its own streams, so its
    // event count differs slightly; rates are compared).
    let start = Instant::now();
    let reference_events: u64 = (0..trajectories)
        .map(|i| reference_lv_loop(&case, i, pcmc_core::filter::DEFAULT_CAP))
        .sum();
    let reference_seconds = start.elapsed().as_secs_f64();
    let rate = events as f64 / seconds.max(1e-12);
    let reference_rate = reference_events as f64 / reference_seconds.max(1e-12);
    println!(
        "{}",
        json!({
            "model": case.name,
            "kernel": kernel,
            "simd_active": kernel_choice == KernelChoice::Simd && ssa.simd_active(),
            "trajectories": trajectories,
            "events": events,
            "seconds": seconds,
            "events_per_second": rate,
            "reference_loop": {
                "events": reference_events,
                "seconds": reference_seconds,
                "events_per_second": reference_rate,
            },
            "ratio_to_reference_loop": rate / reference_rate,
        })
    );
    Ok(())
}

/// Settings of `pcmc tune`.
#[derive(Debug, Clone)]
pub struct TuneArgs {
    /// Particle counts to try.
    pub particles: Vec<usize>,
    /// Filter runs per count.
    pub repeats: u64,
    /// A finished run whose posterior mean θ to use.
    pub from: Option<PathBuf>,
    /// Threads.
    pub threads: Option<usize>,
    /// Output directory.
    pub out: Option<PathBuf>,
}

/// The sd of the log-likelihood estimate `pcmc tune` recommends a count
/// for: the same target as `filter.particles = "auto"`.
pub const TARGET_SD: f64 = pcmc_core::tuning::DEFAULT_TARGET_SD;

/// `pcmc tune`: the sd of the log-likelihood estimate and the cost of one
/// filter pass for each particle count, at one θ, and the recommended count:
/// the smallest whose sd is at most [`TARGET_SD`], the target that
/// `filter.particles = "auto"` aims at too (Doucet, Pitt, Deligiannidis &
/// Kohn, 2015, "Efficient implementation of Markov chain Monte Carlo when
/// using an unbiased likelihood estimator", Biometrika 102(2): an sd of
/// about 1.0–1.7 minimises the cost per effective sample; summaries warn
/// above [`crate::summary::LOGLIK_SD_LIMIT`], where mixing degrades sharply).
///
/// # Errors
/// Input errors for the job, the counts or the run directory.
pub fn tune(job_path: &Path, args: &TuneArgs) -> Result<()> {
    if args.particles.is_empty() || args.particles.contains(&0) {
        return Err(InputError::flag(
            "--particles",
            "give positive particle counts, e.g. 100,300,1000",
        )
        .into());
    }
    if args.repeats < 3 {
        return Err(InputError::flag("--repeats", "must be at least 3").into());
    }
    let prep = prepare(job_path, &Overrides::default())?;
    let job = &prep.job;
    let names = job.parameters.clone();
    let theta: Vec<f64> = match &args.from {
        None => job.mcmc.init.clone(),
        Some(dir) => {
            let p = dir.join("summary.json");
            let text =
                std::fs::read_to_string(&p).map_err(|e| input(&p, format!("cannot read: {e}")))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| input(&p, format!("malformed summary: {e}")))?;
            names
                .iter()
                .map(|n| {
                    v["parameters"][n]["mean"]
                        .as_f64()
                        .ok_or_else(|| input(&p, format!("parameters.{n}.mean is missing")))
                })
                .collect::<Result<_>>()?
        }
    };
    let threads = args.threads.unwrap_or_else(pcmc_rayon::default_threads);
    let mut exec = pcmc_rayon::rayon_executor(threads)
        .map_err(|e| InputError::flag("--threads", e.to_string()))?;
    let mut rows = Vec::new();
    for &n in &args.particles {
        crate::job::check_particles(Path::new("command line"), "--particles", n)?;
        let problem = prep
            .pmmh
            .problem()
            .with_particles(n)
            .map_err(|e| input(&job.path, e.to_string()))?;
        let mut lls = Vec::new();
        let mut secs = Vec::new();
        let mut events = 0u64;
        for r in 0..args.repeats {
            let key = FilterKey {
                seed: job.mcmc.seed ^ 0x7475_6e65,
                chain: 0,
                iteration: r,
            };
            let t = Instant::now();
            let out = exec.log_likelihood(&problem, &theta, key)?;
            secs.push(t.elapsed().as_secs_f64());
            events += out.counters.events;
            lls.push(out.loglik);
        }
        // The estimator's sd as the burn-in checks measure it (∞ on a collapse).
        let spread = pcmc_core::tuning::Spread::of(&lls);
        let collapsed = spread.collapsed as usize;
        let sd = spread.estimator_sd();
        secs.sort_by(f64::total_cmp);
        let median = secs[secs.len() / 2];
        rows.push((n, sd, median, collapsed, events / args.repeats));
    }
    let recommended = rows.iter().find(|r| r.1 <= TARGET_SD).map(|r| r.0);
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-tune", job.name)));
    std::fs::create_dir_all(&dir).map_err(|e| input(&dir, format!("cannot create: {e}")))?;
    let mut table = format!(
        "θ = {} ({})\n{:>10} {:>12} {:>14} {:>10} {:>14}\n",
        theta
            .iter()
            .map(|x| format!("{x:.4e}"))
            .collect::<Vec<_>>()
            .join(", "),
        if args.from.is_some() {
            "posterior mean"
        } else {
            "job's initial θ"
        },
        "particles",
        "sd(loglik)",
        "seconds/pass",
        "collapses",
        "events/pass"
    );
    let mut csv = String::from("particles,sd_loglik,median_seconds,collapses,events_per_pass\n");
    for (n, sd, t, c, e) in &rows {
        table.push_str(&format!("{n:>10} {sd:>12.3} {t:>14.4} {c:>10} {e:>14}\n"));
        csv.push_str(&format!("{n},{sd},{t},{c},{e}\n"));
    }
    match recommended {
        Some(n) => table.push_str(&format!(
            "recommended: {n} particles (the smallest with sd(loglik) ≤ {TARGET_SD}, the target filter.particles = \"auto\" aims at; \
             run summaries warn above {}, where chains mix poorly)\n",
            crate::summary::LOGLIK_SD_LIMIT
        )),
        None => table.push_str(&format!(
            "no count reached sd(loglik) ≤ {TARGET_SD} (the target filter.particles = \"auto\" aims at): try larger counts\n"
        )),
    }
    print!("{table}");
    write_atomic(&dir.join("tune.csv"), csv.as_bytes())?;
    let summary = json!({
        "job": job.name,
        "theta": theta,
        "repeats": args.repeats,
        "threads": threads,
        "rows": rows.iter().map(|(n, sd, t, c, e)| json!({
            "particles": n,
            "sd_loglik": if sd.is_finite() { json!(sd) } else { serde_json::Value::Null },
            "median_seconds": t,
            "collapses": c,
            "events_per_pass": e,
        })).collect::<Vec<_>>(),
        "recommended_particles": recommended,
    });
    write_atomic(
        &dir.join("tune.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    plot_tune(&dir.join("tune.svg"), &rows)?;
    Ok(())
}

fn plot_tune(path: &Path, rows: &[(usize, f64, f64, usize, u64)]) -> Result<()> {
    let root = SVGBackend::new(path, (800, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(400);
    let x0 = rows.iter().map(|r| r.0).min().unwrap_or(1) as f64 * 0.8;
    let x1 = rows.iter().map(|r| r.0).max().unwrap_or(10) as f64 * 1.25;
    let finite: Vec<f64> = rows.iter().map(|r| r.1).filter(|s| s.is_finite()).collect();
    let ymax = finite.iter().copied().fold(2.0f64, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&left)
        .caption("sd of the log-likelihood estimate", ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(45)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..ymax)?;
    c.configure_mesh()
        .x_desc("particles")
        .light_line_style(WHITE)
        .draw()?;
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.1.is_finite())
        .map(|r| (r.0 as f64, r.1))
        .collect();
    c.draw_series(LineSeries::new(pts.clone(), BLUE.stroke_width(2)))?;
    c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, BLUE.filled())))?;
    for band in [TARGET_SD, crate::summary::LOGLIK_SD_LIMIT] {
        c.draw_series(LineSeries::new(
            vec![(x0, band), (x1, band)],
            BLACK.mix(0.5),
        ))?;
    }
    let tmax = rows.iter().map(|r| r.2).fold(0.0f64, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&right)
        .caption("seconds per filter pass", ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..tmax.max(1e-9))?;
    c.configure_mesh()
        .x_desc("particles")
        .light_line_style(WHITE)
        .draw()?;
    let pts: Vec<(f64, f64)> = rows.iter().map(|r| (r.0 as f64, r.2)).collect();
    c.draw_series(LineSeries::new(pts.clone(), RED.stroke_width(2)))?;
    c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, RED.filled())))?;
    root.present()?;
    Ok(())
}
