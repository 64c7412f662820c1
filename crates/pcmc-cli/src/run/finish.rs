//! Phase 4 of a run: totals over workers, `run.json`, `summary.json`, the
//! printed table and the plots (also used by `pcmc report`).

use super::RunRecord;
use super::setup::Setup;
use super::state::RunProgress;
use crate::fsio::write_atomic;
use crate::job::Job;
use crate::output::{ChainRow, write_parquet};
use crate::plots::{self, Band};
use crate::summary::{SummaryInput, summary_json, summary_table};
use anyhow::Result;
use pcmc_core::diagnostics::quantile_sorted;
use pcmc_core::filter::FilterProblem;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::simulate::simulate;
use std::path::Path;

/// Phase 4: totals over workers (stage times, load balance, memory, SSA
/// counters), then `run.json`, `summary.json`, the table and the plots.
pub(super) fn finish_run(s: &mut Setup, mut r: RunProgress) -> Result<()> {
    let job = &s.prep.job;
    let exec = s.exec.as_mut();
    let group = s.group;
    let stats = &mut r.stats;
    stats.wall_seconds = r.wall_before + r.segment.elapsed().as_secs_f64();
    stats.iterations_done = s.prep.pmmh.total_iterations();
    // Load balance: busy (non-communication) time of the slowest worker over
    // the mean, and the particle bytes moved by all workers.
    let busy = stats.stages.propagate + stats.stages.weight + stats.stages.resample;
    if group.count > 1 {
        // Every rank of a group saw the group's passes: count each group's
        // once, from its leader, and add the groups up.
        let mine = |x: f64| if group.leader { x } else { 0.0 };
        let st = &mut stats.stages;
        for v in [
            &mut st.propagate,
            &mut st.weight,
            &mut st.resample,
            &mut st.communicate,
        ] {
            *v = exec.sum_over_workers(mine(*v))?;
        }
        stats.filter_passes = exec.sum_over_workers(mine(stats.filter_passes as f64))? as u64;
        stats.filter_steps = exec.sum_over_workers(mine(stats.filter_steps as f64))? as u64;
        stats.task_retries = exec.sum_over_workers(mine(stats.task_retries as f64))? as u64;
        let b = &mut stats.balance;
        b.steps = exec.sum_over_workers(mine(b.steps as f64))? as u64;
        b.sum_ratio = exec.sum_over_workers(mine(b.sum_ratio))?;
        b.max_ratio = exec.max_over_workers(b.max_ratio)?;
        b.sum_max = exec.sum_over_workers(mine(b.sum_max))?;
        b.sum_mean = exec.sum_over_workers(mine(b.sum_mean))?;
    }
    // The per-step measure (Σ over steps of the slowest worker's propagation
    // time over Σ of the mean) where the filter reported one; else the
    // whole-run busy times of the workers (processes).
    let max_busy = exec.max_over_workers(busy)?;
    let mean_busy = exec.sum_over_workers(busy)? / exec.workers() as f64;
    stats.load_imbalance = match stats.balance.weighted_ratio() {
        Some(r) => r,
        None if mean_busy > 0.0 => max_busy / mean_busy,
        None => 1.0,
    };
    stats.bytes_sent_all = exec.sum_over_workers(stats.bytes_sent as f64)? as u64;
    stats.rows_moved = exec.sum_over_workers(stats.rows_moved as f64)? as u64;
    stats.hosts = exec
        .all_gather_bytes(crate::fsio::host_name().as_bytes())?
        .into_iter()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect();
    let rss = crate::summary::peak_rss_bytes().unwrap_or(0) as f64;
    stats.peak_rss_bytes = exec.max_over_workers(rss)? as u64;
    stats.peak_rss_bytes_all = exec.sum_over_workers(rss)? as u64;
    stats.ssa_events = 0;
    stats.cap_hits = 0;
    stats.cap_events = 0;
    stats.event_limit_hits = 0;
    stats.collapses = 0;
    stats.outside_prior = 0;
    stats.early = Default::default();
    stats.early_rejection = job.mcmc.early_rejection;
    stats.acceptance_per_chain.clear();
    stats.chain_checks.clear();
    for st in &r.states {
        stats.add_chain(st);
        stats
            .chain_checks
            .push(crate::summary::ChainCheckReport::of(
                st,
                job.filter.particles as u64,
            ));
        stats
            .acceptance_per_chain
            .push(st.accepted_after_burn_in as f64 / job.mcmc.iterations.max(1) as f64);
    }
    if !s.root {
        return Ok(());
    }
    r.record.stats = Some(r.stats);
    write_atomic(
        &s.dir.join("run.json"),
        serde_json::to_string_pretty(&r.record)?.as_bytes(),
    )?;
    finish_outputs(
        &s.dir,
        job,
        s.prep.pmmh.problem(),
        &r.record,
        &s.names,
        &r.rows,
        false,
        s.quiet,
    )
}

/// Writes `summary.json`, prints the table and draws the plots.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish_outputs(
    dir: &Path,
    job: &Job,
    problem: &FilterProblem,
    record: &RunRecord,
    names: &[String],
    rows: &[ChainRow],
    rewrite_parquet: bool,
    quiet: bool,
) -> Result<()> {
    if rewrite_parquet && job.file.output.parquet {
        write_parquet(&dir.join("chain.parquet"), names, rows)?;
    }
    let mut summary = summary_json(&SummaryInput {
        job: &record.job,
        fingerprint: &record.fingerprint,
        names,
        truth: job.truth.as_deref(),
        rows,
        chains: record.chains,
        particles: record.particles,
        auto_particles: job.mcmc.checks.auto.is_some(),
        burn_in: record.burn_in,
        iterations: record.iterations,
        thin: record.thin,
        stats: record.stats.as_ref(),
    })?;
    crate::summary::mark_parameter_kinds(
        &mut summary,
        job.noise_parameters(),
        &job.initial_parameters,
    );
    write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    if !quiet {
        print!("{}", summary_table(&summary));
        crate::summary::log_warnings(&summary, job.file.output.smoke_test);
    }
    if job.file.output.plots && !rows.is_empty() {
        plots::trace(&dir.join("trace.svg"), names, rows, job.truth.as_deref())?;
        plots::density(
            &dir.join("density.svg"),
            names,
            rows,
            &job.priors,
            job.truth.as_deref(),
            plots::chain_label,
        )?;
        plots::pairs(&dir.join("pairs.svg"), names, rows)?;
        plots::autocorr(&dir.join("autocorr.svg"), names, rows)?;
        plots::ranks(&dir.join("ranks.svg"), names, rows)?;
        let bands = predictive_bands(problem, rows, job.file.output.predictive_draws, record.seed);
        if !bands.is_empty() {
            plots::predictive(&dir.join("predictive.svg"), &bands)?;
        }
    }
    Ok(())
}

/// Forward simulations at up to `draws` posterior draws (evenly spaced over
/// the kept rows), summarised as 5/50/95 % quantiles of the observations on a
/// grid of 101 times. A simulation stopped by the population cap or the
/// event limit is left out (and counted in [`Band::dropped`]): its frozen
/// state is not a prediction.
pub fn predictive_bands(
    problem: &FilterProblem,
    rows: &[ChainRow],
    draws: usize,
    seed: u64,
) -> Vec<Band> {
    if rows.is_empty() || draws == 0 {
        return Vec::new();
    }
    let data = problem.data();
    let n_sets = data.n_sets();
    let mut bands = Vec::new();
    for (d, set) in problem.sets().iter().enumerate() {
        let range = data.set_rows(d);
        let times = &data.times()[range.clone()];
        let (t0, t1) = (set.t0, *times.last().expect("a data set has rows"));
        // Incidence counts events since the previous time: with incidence
        // columns the bands are drawn at the data's own times, so that each
        // simulated count covers the interval the datum covers.
        let grid: Vec<f64> = if problem.network().counters().is_empty() {
            (0..=100)
                .map(|i| t0 + (t1 - t0) * f64::from(i) / 100.0)
                .collect()
        } else {
            times.to_vec()
        };
        let m = draws.min(rows.len());
        let observables = problem.observations().observables();
        let obs_n = observables.len();
        let mut sims: Vec<Vec<Vec<f64>>> = vec![vec![Vec::with_capacity(m); grid.len()]; obs_n];
        let mut dropped = 0;
        for i in 0..m {
            let r = &rows[i * rows.len() / m];
            let tr = simulate(
                problem.network(),
                &r.theta,
                &set.initial,
                observables,
                set.covariates.as_ref(),
                t0,
                &grid,
                &problem.config().caps,
                problem.config().max_events,
                // Set 0 draws what a single data set drew.
                StreamKey::new(seed, d as u64, i as u64, 0, 0, Purpose::Predictive),
            );
            if tr.stopped {
                dropped += 1;
                continue;
            }
            for (g, obs) in tr.observations.iter().enumerate() {
                for (s, v) in obs.iter().enumerate() {
                    sims[s][g].push(*v);
                }
            }
        }
        if dropped == m {
            continue;
        }
        for (s, sim) in sims.iter_mut().enumerate() {
            let mut lo = Vec::new();
            let mut mid = Vec::new();
            let mut hi = Vec::new();
            for col in sim.iter_mut() {
                col.sort_by(f64::total_cmp);
                lo.push(quantile_sorted(col, 0.05));
                mid.push(quantile_sorted(col, 0.5));
                hi.push(quantile_sorted(col, 0.95));
            }
            let name = if n_sets > 1 {
                format!("{} (data set {})", data.names()[s], d + 1)
            } else {
                data.names()[s].clone()
            };
            bands.push(Band {
                name,
                times: grid.clone(),
                lo,
                mid,
                hi,
                data: range
                    .clone()
                    .map(|i| (data.times()[i], data.row(i)[s]))
                    .collect(),
                draws: m - dropped,
                dropped,
            });
        }
    }
    bands
}
