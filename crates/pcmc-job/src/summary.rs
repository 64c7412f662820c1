//! `summary.json` and the printed summary table.

use crate::output::ChainRow;
use pcmc_core::diagnostics::{ParamSummary, summarize};
use pcmc_core::filter::{LoadBalance, StageTimes};
use pcmc_core::pmmh::{ChainState, EarlyRejections, Relocation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Counters and timings of a run, kept by `pcmc run`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunStats {
    /// Executor name.
    pub executor: String,
    /// Workers (threads, ranks or partitions).
    pub workers: usize,
    /// The SSA kernel that ran (`FilterProblem::kernel_in_use`).
    #[serde(default)]
    pub kernel: String,
    /// Wall time of the sampling loop, seconds.
    pub wall_seconds: f64,
    /// SSA events over all filter passes.
    pub ssa_events: u64,
    /// Trajectories stopped by the population cap.
    pub cap_hits: u64,
    /// Events spent by trajectories that hit the cap.
    pub cap_events: u64,
    /// Trajectories stopped by the event limit.
    pub event_limit_hits: u64,
    /// Filter passes whose estimate was −∞.
    pub collapses: u64,
    /// Proposals outside the prior's support (no filter run).
    pub outside_prior: u64,
    /// Filter passes run.
    pub filter_passes: u64,
    /// Time per filter stage, summed over passes.
    pub stages: StageTimes,
    /// Acceptance rate after burn-in, per chain.
    pub acceptance_per_chain: Vec<f64>,
    /// Iterations completed per chain (counting burn-in).
    pub iterations_done: u64,
    /// Threads per worker (rank).
    #[serde(default)]
    pub threads_per_worker: usize,
    /// Particle bytes this process sent to other workers.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Particle bytes sent between workers, all workers together.
    #[serde(default)]
    pub bytes_sent_all: u64,
    /// Propagation busy time of the slowest worker over the mean, step by
    /// step: Σ_steps max / Σ_steps mean (1 = balanced; see
    /// [`LoadBalance::weighted_ratio`]).
    #[serde(default)]
    pub load_imbalance: f64,
    /// Particles that changed worker or partition in resampling, all
    /// workers together.
    #[serde(default)]
    pub rows_moved: u64,
    /// Observation steps run, summed over filter passes.
    #[serde(default)]
    pub filter_steps: u64,
    /// Tasks that failed and were run again (dataflow executor; on a
    /// Ballista cluster, tasks the cluster ran again).
    #[serde(default)]
    pub task_retries: u64,
    /// Distributed jobs submitted (Ballista executor).
    #[serde(default)]
    pub jobs: u64,
    /// Jobs the driver submitted again after they failed (Ballista).
    #[serde(default)]
    pub jobs_resubmitted: u64,
    /// Groups of workers running chains side by side (MPI: one
    /// communicator per group).
    #[serde(default)]
    pub chain_groups: usize,
    /// Host names of the worker processes, one entry per worker in worker
    /// order (MPI ranks; one entry for single-process executors).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Peak resident memory of the largest process (bytes, from the OS;
    /// 0 where unknown).
    #[serde(default)]
    pub peak_rss_bytes: u64,
    /// Peak resident memory summed over all processes (MPI ranks).
    #[serde(default)]
    pub peak_rss_bytes_all: u64,
    /// Particle-intervals of the filter passes behind the kept rows' θ (a
    /// row's pass is the one that gave its log-likelihood), summed over kept
    /// rows.
    #[serde(default)]
    pub kept_intervals: u64,
    /// Of those, trajectories stopped by the population cap.
    #[serde(default)]
    pub kept_cap_hits: u64,
    /// Of those, trajectories stopped by the event limit.
    #[serde(default)]
    pub kept_limit_hits: u64,
    /// Per-step load balance of the propagation step, over all filter passes
    /// (each chain group's once).
    #[serde(default)]
    pub balance: LoadBalance,
    /// Whether early rejection was on.
    #[serde(default)]
    pub early_rejection: bool,
    /// Filter passes stopped early (the proposal could no longer be
    /// accepted) and the work they skipped.
    #[serde(default)]
    pub early: EarlyRejections,
    /// What each chain's burn-in checks found, in chain order.
    #[serde(default)]
    pub chain_checks: Vec<ChainCheckReport>,
}

/// One chain's burn-in checks: its particle count, the noise of its
/// estimate, and whether it was stuck or moved.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChainCheckReport {
    /// Chain index.
    pub chain: u64,
    /// Particles of its latest passes (the kept iterations' count once
    /// burn-in is over).
    pub particles: u64,
    /// sd of the log-likelihood estimate at its θ from its latest check
    /// (with `auto`, measured at the kept count when burn-in ended; `None`
    /// if no check ran or the passes collapsed).
    pub sd: Option<f64>,
    /// Times it was stuck and given a fresh estimate.
    pub stuck: u64,
    /// Extra filter passes its checks ran.
    pub check_passes: u64,
    /// Times it was moved to another chain's state.
    pub relocations: Vec<Relocation>,
    /// `[iteration, particles, sd]` of every check (sd `null` when ∞).
    pub history: Vec<(u64, u64, Option<f64>)>,
}

impl ChainCheckReport {
    /// The report of a chain's state; `default_particles` for a chain that
    /// kept the problem's count.
    pub fn of(st: &ChainState, default_particles: u64) -> Self {
        let fin = |x: f64| x.is_finite().then_some(x);
        let last = st.checks.last();
        ChainCheckReport {
            chain: st.chain,
            particles: if st.particles == 0 {
                default_particles
            } else {
                st.particles
            },
            sd: last.filter(|k| k.collapsed == 0).and_then(|k| fin(k.sd)),
            stuck: st.stuck(),
            check_passes: st.check_passes,
            relocations: st.relocations.clone(),
            history: st
                .checks
                .iter()
                .map(|k| {
                    let sd = if k.collapsed > 0 { f64::INFINITY } else { k.sd };
                    (k.iteration, k.particles, fin(sd))
                })
                .collect(),
        }
    }
}

impl RunStats {
    /// Counts a kept row's θ: the cap and event-limit hits of the filter
    /// pass that gave its log-likelihood.
    pub fn account_kept(&mut self, st: &ChainState) {
        self.kept_intervals += st.current_intervals;
        self.kept_cap_hits += st.current_counters.cap_hits;
        self.kept_limit_hits += st.current_counters.limit_hits;
    }

    /// Adds a chain's counters (events, cap and limit hits, collapses,
    /// proposals outside the prior, early rejections).
    pub fn add_chain(&mut self, st: &ChainState) {
        self.ssa_events += st.counters.events;
        self.cap_hits += st.counters.cap_hits;
        self.cap_events += st.counters.cap_events;
        self.event_limit_hits += st.counters.limit_hits;
        self.collapses += st.collapses;
        self.outside_prior += st.outside_prior;
        self.early.add(&st.early);
    }

    /// Adds the counters of another process's or array task's run (`pcmc
    /// merge`).
    pub fn add_run(&mut self, st: &RunStats) {
        self.ssa_events += st.ssa_events;
        self.cap_hits += st.cap_hits;
        self.cap_events += st.cap_events;
        self.event_limit_hits += st.event_limit_hits;
        self.collapses += st.collapses;
        self.outside_prior += st.outside_prior;
        self.filter_passes += st.filter_passes;
        self.kept_intervals += st.kept_intervals;
        self.kept_cap_hits += st.kept_cap_hits;
        self.kept_limit_hits += st.kept_limit_hits;
        self.early_rejection |= st.early_rejection;
        self.early.add(&st.early);
        self.stages.add(&st.stages);
        self.balance.add(&st.balance);
        self.hosts.extend(st.hosts.iter().cloned());
        self.chain_checks.extend(st.chain_checks.iter().cloned());
    }

    /// The fraction of particle-intervals at kept θ that hit the cap or the
    /// event limit (`None` before any kept row).
    pub fn kept_stop_fraction(&self) -> Option<f64> {
        (self.kept_intervals > 0).then(|| {
            (self.kept_cap_hits + self.kept_limit_hits) as f64 / self.kept_intervals as f64
        })
    }
}

/// This process's peak resident set size in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Per-parameter summaries from rows, in parameter order.
pub fn parameter_summaries(names: &[String], rows: &[ChainRow]) -> Vec<Option<ParamSummary>> {
    (0..names.len())
        .map(|p| {
            // Group by chain index (chains need not be numbered from 0).
            let mut per: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
            for r in rows {
                per.entry(r.chain).or_default().push(r.theta[p]);
            }
            let per: Vec<Vec<f64>> = per.into_values().collect();
            (!per.is_empty()).then(|| summarize(&per))
        })
        .collect()
}

fn num(x: f64) -> Value {
    // JSON has no infinities or NaN: those become null.
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// Everything `summary.json` holds besides the run statistics.
pub struct SummaryInput<'a> {
    /// Job name.
    pub job: &'a str,
    /// Job fingerprint.
    pub fingerprint: &'a str,
    /// Parameter names.
    pub names: &'a [String],
    /// True θ, if known.
    pub truth: Option<&'a [f64]>,
    /// Kept rows.
    pub rows: &'a [ChainRow],
    /// Number of chains.
    pub chains: usize,
    /// Particles (with `auto`, the starting count).
    pub particles: usize,
    /// Whether the particle count was adapted (`filter.particles = "auto"`).
    pub auto_particles: bool,
    /// Burn-in.
    pub burn_in: u64,
    /// Iterations after burn-in.
    pub iterations: u64,
    /// Thinning.
    pub thin: u64,
    /// Run statistics, if known (absent for a crashed run).
    pub stats: Option<&'a RunStats>,
}

/// A summary whose figures contradict each other: a bug in pcmc, never
/// the user's input (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("internal error, please report it: the summary of job {job} {why}")]
pub struct InconsistentSummary {
    /// The job.
    pub job: String,
    /// What is inconsistent.
    pub why: String,
}

/// Checks that a summary's draws agree with its chains, iterations and
/// thinning (exactly, for a finished run) and that every acceptance rate
/// lies in [0, 1].
fn check_consistent(s: &SummaryInput<'_>) -> Result<(), InconsistentSummary> {
    let fail = |why: String| {
        Err(InconsistentSummary {
            job: s.job.to_string(),
            why,
        })
    };
    let per_chain = s.iterations / s.thin.max(1);
    let mut per: std::collections::BTreeMap<u64, u64> = Default::default();
    for r in s.rows {
        *per.entry(r.chain).or_default() += 1;
    }
    if per.len() > s.chains {
        return fail(format!(
            "has draws of {} chains, but the run has {}",
            per.len(),
            s.chains
        ));
    }
    if let Some((c, n)) = per.iter().find(|(_, n)| **n > per_chain) {
        return fail(format!(
            "has {n} draws of chain {c}, more than {} iterations thinned by {} give ({per_chain})",
            s.iterations, s.thin
        ));
    }
    if let Some(st) = s.stats
        && st.iterations_done == s.burn_in + s.iterations
        && s.rows.len() as u64 != per_chain * s.chains as u64
    {
        return fail(format!(
            "has {} draws, but {} chains × {} iterations thinned by {} give {}",
            s.rows.len(),
            s.chains,
            s.iterations,
            s.thin,
            per_chain * s.chains as u64
        ));
    }
    if let Some(st) = s.stats
        && let Some(a) = st
            .acceptance_per_chain
            .iter()
            .find(|a| !(0.0..=1.0).contains(*a))
    {
        return fail(format!("has an acceptance rate {a} outside [0, 1]"));
    }
    Ok(())
}

/// Marks each parameter of a summary as a reaction `rate`, an
/// `observation` parameter (a noise parameter of `[observables]`) or an
/// `initial` count, and lists the observation parameters under
/// `observation_parameters` (and the initial counts under
/// `initial_parameters`, when there are any).
pub fn mark_parameter_kinds(v: &mut Value, noise: &[String], initial: &[String]) {
    if let Some(ps) = v.get_mut("parameters").and_then(Value::as_object_mut) {
        for (name, p) in ps.iter_mut() {
            if let Some(o) = p.as_object_mut() {
                let kind = if noise.contains(name) {
                    "observation"
                } else if initial.contains(name) {
                    "initial"
                } else {
                    "rate"
                };
                o.insert("kind".into(), json!(kind));
            }
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("observation_parameters".into(), json!(noise));
        if !initial.is_empty() {
            o.insert("initial_parameters".into(), json!(initial));
        }
    }
}

/// Builds `summary.json`.
///
/// # Errors
/// [`InconsistentSummary`] when the draws disagree with the chains,
/// iterations and thinning, or an acceptance rate lies outside [0, 1].
pub fn summary_json(s: &SummaryInput<'_>) -> Result<Value, InconsistentSummary> {
    check_consistent(s)?;
    let sums = parameter_summaries(s.names, s.rows);
    let mut params = Map::new();
    for (i, (name, ps)) in s.names.iter().zip(&sums).enumerate() {
        let mut o = Map::new();
        if let Some(p) = ps {
            o.insert("mean".into(), num(p.mean));
            o.insert("sd".into(), num(p.sd));
            o.insert("q025".into(), num(p.q025));
            o.insert("q50".into(), num(p.q50));
            o.insert("q975".into(), num(p.q975));
            o.insert("ess".into(), p.ess.map_or(Value::Null, num));
            o.insert("ess_tail".into(), p.ess_tail.map_or(Value::Null, num));
            o.insert("rhat".into(), p.rhat.map_or(Value::Null, num));
        }
        if let Some(t) = s.truth {
            o.insert("true".into(), num(t[i]));
        }
        params.insert(name.clone(), Value::Object(o));
    }
    let acceptance = match s.stats {
        Some(st) if !st.acceptance_per_chain.is_empty() => {
            st.acceptance_per_chain.iter().sum::<f64>() / st.acceptance_per_chain.len() as f64
        }
        _ => {
            let n = s.rows.len().max(1) as f64;
            s.rows.iter().filter(|r| r.accepted).count() as f64 / n
        }
    };
    let (convergence, others) = warnings(s, &sums);
    let mut v = json!({
        "pcmc_version": env!("CARGO_PKG_VERSION"),
        "job": s.job,
        "job_fingerprint": s.fingerprint,
        "chains": s.chains,
        "particles": if s.auto_particles { json!("auto") } else { json!(s.particles) },
        "burn_in": s.burn_in,
        "iterations": s.iterations,
        "thin": s.thin,
        "draws": s.rows.len(),
        "acceptance_rate": num(acceptance),
        "parameters": params,
    });
    let o = v.as_object_mut().expect("object");
    match s.stats {
        Some(st) => {
            o.insert("executor".into(), json!(st.executor));
            o.insert("workers".into(), json!(st.workers));
            o.insert("kernel".into(), json!(st.kernel));
            o.insert(
                "acceptance_per_chain".into(),
                json!(st.acceptance_per_chain),
            );
            o.insert("wall_seconds".into(), num(st.wall_seconds));
            o.insert("ssa_events".into(), json!(st.ssa_events));
            o.insert(
                "events_per_second".into(),
                num(if st.wall_seconds > 0.0 {
                    st.ssa_events as f64 / st.wall_seconds
                } else {
                    0.0
                }),
            );
            o.insert("cap_hits".into(), json!(st.cap_hits));
            o.insert("cap_events".into(), json!(st.cap_events));
            o.insert("event_limit_hits".into(), json!(st.event_limit_hits));
            o.insert("collapses".into(), json!(st.collapses));
            o.insert("outside_prior".into(), json!(st.outside_prior));
            o.insert("filter_passes".into(), json!(st.filter_passes));
            if !st.chain_checks.is_empty() {
                let n: Vec<u64> = st.chain_checks.iter().map(|c| c.particles).collect();
                o.insert("particles_per_chain".into(), json!(n));
                o.insert(
                    "loglik_sd_per_chain".into(),
                    json!(st.chain_checks.iter().map(|c| c.sd).collect::<Vec<_>>()),
                );
                o.insert(
                    "stuck_recoveries".into(),
                    json!(st.chain_checks.iter().map(|c| c.stuck).sum::<u64>()),
                );
                o.insert(
                    "relocations".into(),
                    json!(
                        st.chain_checks
                            .iter()
                            .map(|c| c.relocations.len())
                            .sum::<usize>()
                    ),
                );
                o.insert(
                    "check_passes".into(),
                    json!(st.chain_checks.iter().map(|c| c.check_passes).sum::<u64>()),
                );
                o.insert(
                    "burn_in_checks".into(),
                    serde_json::to_value(&st.chain_checks).unwrap_or(Value::Null),
                );
            }
            o.insert(
                "early_rejection".into(),
                json!({
                    "enabled": st.early_rejection,
                    "passes_stopped": st.early.passes,
                    "fraction_of_passes": if st.filter_passes > 0 {
                        num(st.early.passes as f64 / st.filter_passes as f64)
                    } else {
                        Value::Null
                    },
                    "passes_stopped_at_start": st.early.stopped_at_start,
                    "particle_intervals_skipped": st.early.intervals_skipped,
                    "events_saved_estimate": st.early.events_saved,
                    "events_saved_fraction": if st.ssa_events + st.early.events_saved > 0 {
                        num(st.early.events_saved as f64
                            / (st.ssa_events + st.early.events_saved) as f64)
                    } else {
                        Value::Null
                    },
                }),
            );
            o.insert("iterations_done".into(), json!(st.iterations_done));
            o.insert(
                "stages".into(),
                serde_json::to_value(st.stages).unwrap_or(Value::Null),
            );
            o.insert("threads_per_worker".into(), json!(st.threads_per_worker));
            o.insert("hosts".into(), json!(st.hosts));
            o.insert("bytes_moved".into(), json!(st.bytes_sent_all));
            o.insert("rows_moved".into(), json!(st.rows_moved));
            let per_step = |x: u64| {
                if st.filter_steps > 0 {
                    num(x as f64 / st.filter_steps as f64)
                } else {
                    Value::Null
                }
            };
            o.insert("filter_steps".into(), json!(st.filter_steps));
            o.insert("rows_moved_per_step".into(), per_step(st.rows_moved));
            o.insert("bytes_moved_per_step".into(), per_step(st.bytes_sent_all));
            o.insert("task_retries".into(), json!(st.task_retries));
            if st.jobs > 0 {
                o.insert(
                    "cluster".into(),
                    json!({
                        "jobs": st.jobs,
                        "jobs_per_step": per_step(st.jobs),
                        "jobs_resubmitted": st.jobs_resubmitted,
                        "tasks_rerun": st.task_retries,
                        "scheduling_seconds": num(st.stages.scheduling),
                        "scheduling_seconds_per_job": num(st.stages.scheduling / st.jobs as f64),
                    }),
                );
            }
            o.insert("chain_groups".into(), json!(st.chain_groups.max(1)));
            o.insert("load_imbalance".into(), num(st.load_imbalance));
            let b = &st.balance;
            o.insert(
                "load_imbalance_per_step".into(),
                json!({
                    "steps": b.steps,
                    "mean": b.mean_ratio().map_or(Value::Null, num),
                    "max": if b.steps > 0 { num(b.max_ratio) } else { Value::Null },
                    "weighted": b.weighted_ratio().map_or(Value::Null, num),
                }),
            );
            o.insert("peak_rss_bytes".into(), json!(st.peak_rss_bytes));
            o.insert("peak_rss_bytes_all".into(), json!(st.peak_rss_bytes_all));
            o.insert("kept_particle_intervals".into(), json!(st.kept_intervals));
            o.insert("kept_cap_hits".into(), json!(st.kept_cap_hits));
            o.insert("kept_event_limit_hits".into(), json!(st.kept_limit_hits));
            o.insert(
                "kept_stop_fraction".into(),
                st.kept_stop_fraction().map_or(Value::Null, num),
            );
        }
        None => {
            o.insert(
                "run_statistics".into(),
                json!("unavailable: the run did not finish"),
            );
        }
    }
    let all: Vec<&String> = convergence.iter().chain(&others).collect();
    o.insert("warnings".into(), json!(all));
    o.insert("convergence_warnings".into(), json!(convergence));
    Ok(v)
}

/// R̂ above this suggests the chains have not converged (Vehtari et al.
/// 2021).
pub const RHAT_LIMIT: f64 = 1.01;
/// Bulk and tail ESS below this many per chain are too few for reliable
/// summaries (Vehtari et al. 2021).
pub const ESS_PER_CHAIN: f64 = 100.0;
/// A larger fraction of particle-intervals stopped by the cap or the event
/// limit at kept θ means the cap shapes the likelihood.
pub const STOP_FRACTION_LIMIT: f64 = 0.001;

/// sd of the log-likelihood estimate above which a chain is said to mix
/// poorly (Doucet et al. 2015: the cost per effective sample grows quickly
/// beyond about 1.7–2).
pub const LOGLIK_SD_LIMIT: f64 = 2.0;

/// What a modeller should know before trusting the summary: the
/// convergence diagnostics that fail (R̂, bulk and tail ESS), and the rest.
fn warnings(s: &SummaryInput<'_>, sums: &[Option<ParamSummary>]) -> (Vec<String>, Vec<String>) {
    let mut w = Vec::new();
    let chains = {
        let mut ids: Vec<u64> = s.rows.iter().map(|r| r.chain).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len().max(1)
    };
    let need = ESS_PER_CHAIN * chains as f64;
    let varies = |p: usize| {
        s.rows
            .first()
            .is_some_and(|r0| s.rows.iter().any(|r| r.theta[p] != r0.theta[p]))
    };
    for (p, (name, ps)) in s.names.iter().zip(sums).enumerate() {
        let Some(ps) = ps else { continue };
        if !varies(p) {
            continue;
        }
        if let Some(r) = ps.rhat.filter(|r| *r > RHAT_LIMIT) {
            w.push(format!(
                "{name}: R-hat {r:.3} > {RHAT_LIMIT}: the chains (or a chain's halves) disagree: a chain may sit in a local mode or on an overestimated likelihood; use filter.particles = \"auto\" or more particles (`pcmc tune` shows sd(log-likelihood) per count) with mcmc.stuck_check and mcmc.relocate on, and a burn-in long enough for them to act"
            ));
        }
        for (kind, e) in [("bulk", ps.ess), ("tail", ps.ess_tail)] {
            match e {
                Some(e) if e < need => w.push(format!(
                    "{name}: {kind} ESS {e:.0} < {need:.0} ({ESS_PER_CHAIN} per chain): too few effective draws for reliable {}",
                    if kind == "bulk" { "means and medians" } else { "95% interval ends" }
                )),
                None => w.push(format!("{name}: {kind} ESS undefined (too few draws)")),
                _ => {}
            }
        }
    }
    let convergence = std::mem::take(&mut w);
    let minus_inf = s
        .rows
        .iter()
        .filter(|r| r.loglik == f64::NEG_INFINITY)
        .count();
    if minus_inf > 0 {
        w.push(format!(
            "{minus_inf} kept rows have log-likelihood -inf: a chain never found a point the filter can explain: use filter.particles = \"auto\" or more particles, or other starting points"
        ));
    }
    for c in s.stats.map_or(&[][..], |st| &st.chain_checks[..]) {
        let remedy = if s.auto_particles {
            "raise filter.auto.max, or lengthen the burn-in so that the chain reaches the posterior before its count is fixed"
        } else {
            "use filter.particles = \"auto\" or more particles (`pcmc tune` shows sd(log-likelihood) per count)"
        };
        if let Some(sd) = c.sd.filter(|sd| *sd > LOGLIK_SD_LIMIT) {
            w.push(format!(
                "chain {}: sd(log-likelihood) {sd:.2} at its θ with {} particles (> {LOGLIK_SD_LIMIT}, where chains mix poorly and can stick; \
                 filter.particles = \"auto\" and `pcmc tune` aim at {}): {remedy}",
                c.chain, c.particles, pcmc_core::tuning::DEFAULT_TARGET_SD
            ));
        }
        if c.stuck > 0 {
            w.push(format!(
                "chain {}: stuck {} time(s) in burn-in on an overestimated likelihood and given a fresh estimate; with too few particles it can stick again: {remedy}",
                c.chain, c.stuck
            ));
        }
        for m in &c.relocations {
            w.push(format!(
                "chain {}: moved to chain {}'s state after burn-in iteration {}: its log posterior lay {:.1} below (allowed {:.1}), a local mode or a region the filter cannot explain; R-hat cannot see such a mode (mcmc.relocate = false keeps the chain where it was)",
                c.chain, m.to, m.iteration, m.gap, m.allowed
            ));
        }
    }
    if let Some(f) = s.stats.and_then(RunStats::kept_stop_fraction)
        && f > STOP_FRACTION_LIMIT
    {
        w.push(format!(
            "{:.2}% of particle-intervals at kept θ were stopped by the population cap or the event limit (> {}%): the cap shapes the likelihood; raise filter.cap / filter.max_events",
            100.0 * f,
            100.0 * STOP_FRACTION_LIMIT
        ));
    }
    (convergence, w)
}

/// The strings of a JSON array (none for anything else).
pub fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Logs a summary's warnings. A smoke test (`output.smoke_test = true`,
/// the shipped `*-quick` jobs) folds its convergence warnings (R̂, ESS),
/// which a run that short is not meant to pass, into one line; they stay
/// listed in `summary.json`.
pub fn log_warnings(v: &Value, smoke_test: bool) {
    let convergence = strings(&v["convergence_warnings"]);
    for w in v["warnings"].as_array().into_iter().flatten() {
        let w = w.as_str().unwrap_or("");
        if !(smoke_test && convergence.contains(&w)) {
            tracing::warn!("{w}");
        }
    }
    if smoke_test && !convergence.is_empty() {
        tracing::info!(
            "smoke test (output.smoke_test = true): {} convergence diagnostics (R-hat, ESS) are below their limits, as expected of a run this short; \
             they are listed in summary.json — a real job leaves output.smoke_test out",
            convergence.len()
        );
    }
}

fn fmt(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => {
            let a = v.abs();
            if a != 0.0 && !(1e-3..1e5).contains(&a) {
                format!("{v:.3e}")
            } else {
                format!("{v:.digits$}")
            }
        }
        _ => "-".into(),
    }
}

/// The summary as a table for the terminal.
pub fn summary_table(v: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7} {:>6} {:>10}\n",
        "parameter", "mean", "sd", "2.5%", "50%", "97.5%", "ESS", "tailESS", "R-hat", "true"
    ));
    if let Some(params) = v["parameters"].as_object() {
        for (name, p) in params {
            let g = |k: &str| p[k].as_f64();
            out.push_str(&format!(
                "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7} {:>6} {:>10}\n",
                name,
                fmt(g("mean"), 4),
                fmt(g("sd"), 4),
                fmt(g("q025"), 4),
                fmt(g("q50"), 4),
                fmt(g("q975"), 4),
                g("ess").map_or("-".into(), |e| format!("{e:.0}")),
                g("ess_tail").map_or("-".into(), |e| format!("{e:.0}")),
                fmt(g("rhat"), 3),
                fmt(g("true"), 4),
            ));
        }
    }
    out.push_str(&format!(
        "draws {} ({} chains) | acceptance {}",
        v["draws"],
        v["chains"],
        fmt(v["acceptance_rate"].as_f64(), 3)
    ));
    if let Some(w) = v["wall_seconds"].as_f64() {
        out.push_str(&format!(
            " | wall {w:.1} s | {} SSA events ({} /s, {} kernel) | cap hits {} | {} × {}",
            fmt(v["ssa_events"].as_f64(), 0),
            fmt(v["events_per_second"].as_f64(), 0),
            v["kernel"].as_str().unwrap_or("?"),
            v["cap_hits"],
            v["executor"].as_str().unwrap_or("?"),
            v["workers"]
        ));
        let st = &v["stages"];
        if v["workers"].as_u64().unwrap_or(1) > 1 && v["executor"] == "mpi" {
            out.push_str(&format!(
                "\nmoved {} bytes between workers | load imbalance (max/mean busy) {}",
                v["bytes_moved"],
                fmt(v["load_imbalance"].as_f64(), 3)
            ));
        }
        if v["executor"] == "ballista" {
            let c = &v["cluster"];
            out.push_str(&format!(
                "\ncluster: {} jobs, scheduling {} s per job | tasks re-run {}, jobs resubmitted {} | offspring moved {} rows per step",
                c["jobs"],
                fmt(c["scheduling_seconds_per_job"].as_f64(), 3),
                c["tasks_rerun"],
                c["jobs_resubmitted"],
                fmt(v["rows_moved_per_step"].as_f64(), 1),
            ));
            out.push_str(&format!(
                "\nstages: propagate (advance jobs) {} s, reduce (sum jobs) {} s, of which scheduling {} s",
                fmt(st["propagate"].as_f64(), 2),
                fmt(st["reduce"].as_f64(), 2),
                fmt(st["scheduling"].as_f64(), 2)
            ));
        } else if v["executor"] == "dataflow" {
            out.push_str(&format!(
                "\nshuffled {} rows ({} bytes) per step | tasks retried {}",
                fmt(v["rows_moved_per_step"].as_f64(), 1),
                fmt(v["bytes_moved_per_step"].as_f64(), 0),
                v["task_retries"]
            ));
            out.push_str(&format!(
                "\nstages: planning {} s, propagate {} s, reduce {} s, shuffle {} s",
                fmt(st["planning"].as_f64(), 3),
                fmt(st["propagate"].as_f64(), 2),
                fmt(st["reduce"].as_f64(), 2),
                fmt(st["shuffle"].as_f64(), 2)
            ));
        } else {
            out.push_str(&format!(
                "\nstages: propagate {} s, weight {} s, resample {} s, communicate {} s",
                fmt(st["propagate"].as_f64(), 2),
                fmt(st["weight"].as_f64(), 2),
                fmt(st["resample"].as_f64(), 2),
                fmt(st["communicate"].as_f64(), 2)
            ));
        }
    }
    if let Some(f) = v["kept_stop_fraction"].as_f64() {
        out.push_str(&format!(
            "\nstopped by cap or event limit at kept θ: {:.3}% of particle-intervals",
            100.0 * f
        ));
    }
    let er = &v["early_rejection"];
    if er["enabled"] == true
        && let (Some(p), Some(e)) = (
            er["fraction_of_passes"].as_f64(),
            er["events_saved_fraction"].as_f64(),
        )
    {
        out.push_str(&format!(
            "\nearly rejection: {:.1}% of filter passes stopped early, ≈{:.1}% of SSA events saved",
            100.0 * p,
            100.0 * e
        ));
    }
    out.push('\n');
    out
}
