//! The outputs of a finished SMC² run: `particles.csv`/`.parquet`,
//! `summary.json`, the printed table and the plots — of one run, or of
//! `R` replicates combined ([`pcmc_core::smc2::replicates`]).

use crate::fsio::write_atomic;
use crate::job::{Job, data_fingerprint};
use crate::output::ChainRow;
use crate::plots::{self, Smc2StepPoint};
use anyhow::{Context, Result};
use arrow::array::{ArrayRef, Float64Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use pcmc_core::smc2::replicates::{MAX_LOG_SD, MIN_REPLICATES, ReplicateEvidence, pool};
use pcmc_core::smc2::{MIN_EFFECTIVE_EVES, Smc2, Smc2Config, Smc2Output, StepRecord};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// The outputs of a finished run (`outs`: one per replicate, in order):
/// `particles.csv`/`.parquet`, `summary.json` (returned) and the plots.
///
/// # Errors
/// I/O failures.
pub(super) fn write_outputs(
    dir: &Path,
    job: &Job,
    smc2: &Smc2,
    config: &Smc2Config,
    nx: usize,
    outs: &[Smc2Output],
) -> Result<Value> {
    let names = job.parameters.clone();
    let data = smc2.problem().data();
    let combined = (outs.len() > 1).then(|| pool(outs));
    let cloud = combined.as_ref().map_or(&outs[0], |(p, _)| p);
    let nth = config.theta_particles;
    write_particles(dir, &names, cloud, nth, job.file.output.parquet)?;
    let run = Fields {
        job,
        names: &names,
        fingerprint: job.fingerprint(data),
        data_fp: data_fingerprint(data),
        config,
        nx,
    };
    let mut summary = match &combined {
        None => run.single(&outs[0]),
        Some((pooled, ev)) => run.replicated(outs, pooled, ev),
    };
    crate::summary::mark_parameter_kinds(
        &mut summary,
        job.noise_parameters(),
        &job.initial_parameters,
    );
    write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    if job.file.output.plots {
        draw(
            dir,
            job,
            smc2.problem(),
            &names,
            outs,
            cloud,
            config.ess_threshold,
        )?;
    }
    Ok(summary)
}

/// `particles.csv` (and `.parquet`): one row per θ-particle: its replicate
/// and index in it, normalised weight (pooled over the replicates),
/// log-weight, log-likelihood estimate, `Nx` and θ.
fn write_particles(
    dir: &Path,
    names: &[String],
    out: &Smc2Output,
    theta_particles: usize,
    parquet: bool,
) -> Result<()> {
    let w = out.weights();
    let slot = |i: usize| ((i / theta_particles) as u64, (i % theta_particles) as u64);
    let mut csv = String::from("replicate,particle,weight,log_weight,loglik,nx");
    for n in names {
        csv.push(',');
        csv.push_str(n);
    }
    csv.push('\n');
    for (i, (p, wi)) in out.particles.iter().zip(&w).enumerate() {
        let (r, m) = slot(i);
        let _ = write!(csv, "{r},{m},{wi},{},{},{}", p.log_weight, p.loglik, out.nx);
        for x in &p.theta {
            let _ = write!(csv, ",{x}");
        }
        csv.push('\n');
    }
    write_atomic(&dir.join("particles.csv"), csv.as_bytes())?;
    if parquet {
        let mut fields = vec![
            Field::new("replicate", DataType::UInt64, false),
            Field::new("particle", DataType::UInt64, false),
            Field::new("weight", DataType::Float64, false),
            Field::new("log_weight", DataType::Float64, false),
            Field::new("loglik", DataType::Float64, false),
            Field::new("nx", DataType::UInt64, false),
        ];
        fields.extend(
            names
                .iter()
                .map(|n| Field::new(n, DataType::Float64, false)),
        );
        let schema = Arc::new(Schema::new(fields));
        let ps = &out.particles;
        let n = ps.len();
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values((0..n).map(|i| slot(i).0))),
            Arc::new(UInt64Array::from_iter_values((0..n).map(|i| slot(i).1))),
            Arc::new(Float64Array::from(w.clone())),
            Arc::new(Float64Array::from_iter_values(
                ps.iter().map(|p| p.log_weight),
            )),
            Arc::new(Float64Array::from_iter_values(ps.iter().map(|p| p.loglik))),
            Arc::new(UInt64Array::from_iter_values(
                ps.iter().map(|_| out.nx as u64),
            )),
        ];
        for i in 0..names.len() {
            cols.push(Arc::new(Float64Array::from_iter_values(
                ps.iter().map(|p| p.theta[i]),
            )));
        }
        let batch = RecordBatch::try_new(schema.clone(), cols)?;
        let path = dir.join("particles.parquet");
        let tmp = dir.join(".particles.parquet.tmp");
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut wr = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
        wr.write(&batch)?;
        wr.close()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Weighted quantile `q` of `xs` with normalised weights `w`.
fn weighted_quantile(xs: &[f64], w: &[f64], q: f64) -> f64 {
    let mut idx: Vec<usize> = (0..xs.len()).collect();
    idx.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut cum = 0.0;
    for &i in &idx {
        cum += w[i];
        if cum >= q {
            return xs[i];
        }
    }
    idx.last().map_or(f64::NAN, |&i| xs[i])
}

/// What every SMC² summary states besides the evidence.
struct Fields<'a> {
    job: &'a Job,
    names: &'a [String],
    fingerprint: String,
    data_fp: String,
    config: &'a Smc2Config,
    nx: usize,
}

/// A run's (or one replicate's) evidence, its error and how the run went.
fn evidence_json(config: &Smc2Config, out: &Smc2Output) -> Value {
    let last = out.steps.last();
    let variance_positive = last.is_some_and(|s| s.relative_variance > 0.0);
    let failures = evidence_failures(config, out);
    json!({
        "log_evidence": out.log_evidence,
        "log_evidence_se": if variance_positive { json!(out.log_evidence_se) } else { Value::Null },
        "log_evidence_se_reliable": last.is_some_and(StepRecord::se_reliable),
        "evidence_usable": failures.is_empty(),
        "evidence_failures": failures,
        "eves": last.map_or(0, |s| s.eves),
        "effective_eves": last.map_or(0.0, |s| s.effective_eves),
        "theta_ess": before_final_move_ess(out),
        "particles_end": out.nx,
        "resample_moves": out.resamplings,
        "final_move": out.final_move,
        "exchanges": out.steps.iter().filter(|s| s.exchange_log_increment.is_some()).count(),
        "steps": out.steps,
    })
}

/// The weighted θ-ESS of the final cloud, before a final move.
fn before_final_move_ess(out: &Smc2Output) -> f64 {
    out.final_move
        .as_ref()
        .map_or_else(|| out.ess(), |f| f.ess_before)
}

/// Why a run's own standard error is unreliable.
fn unreliable_single(e: &Value) -> String {
    format!(
        "it rests on {:.1} effective Eves ({} initial θ-draws with descendants; fewer than {MIN_EFFECTIVE_EVES} effective ones{}), \
         and one run cannot see its own error then — it is usually far too small",
        e["effective_eves"].as_f64().unwrap_or(0.0),
        e["eves"],
        if e["log_evidence_se"].is_null() {
            ", and its variance estimate is not positive"
        } else {
            ""
        }
    )
}

impl Fields<'_> {
    /// The fields every summary shares: the settings and the posterior of
    /// `cloud`.
    fn common(&self, cloud: &Smc2Output, observations: usize) -> serde_json::Map<String, Value> {
        let w = cloud.weights();
        let mut params = serde_json::Map::new();
        for (i, n) in self.names.iter().enumerate() {
            let xs: Vec<f64> = cloud.particles.iter().map(|p| p.theta[i]).collect();
            let (mean, sd) = cloud.mean_sd(i);
            let mut v = json!({
                "mean": mean,
                "sd": sd,
                "q025": weighted_quantile(&xs, &w, 0.025),
                "q50": weighted_quantile(&xs, &w, 0.5),
                "q975": weighted_quantile(&xs, &w, 0.975),
            });
            if let Some(t) = &self.job.truth {
                v["true"] = json!(t[i]);
            }
            params.insert(n.clone(), v);
        }
        let c = self.config;
        let v = json!({
            "method": "smc2",
            "job": self.job.name,
            "job_fingerprint": self.fingerprint,
            "data_fingerprint": self.data_fp,
            "seed": c.seed,
            "stream_tag": format!("{:016x}", c.stream_tag),
            "theta_particles": c.theta_particles,
            "particles_start": self.nx,
            "ess_threshold": c.ess_threshold,
            "moves": c.moves,
            "renew": c.renew,
            "renew_max_moves": c.renew.map(|_| c.renew_max_moves),
            "proposal": c.proposal.name(),
            "exchange_below": c.exchange_below,
            "exchange_rule": c.exchange_below.map(|_| c.exchange_rule.name()),
            "noise_variance": c.noise_variance,
            "max_particles": c.max_particles,
            "observations": observations,
            "parameters": params,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("a JSON object"),
        }
    }

    /// The summary of a run without replicates.
    fn single(&self, out: &Smc2Output) -> Value {
        let mut m = self.common(out, out.steps.len());
        let e = evidence_json(self.config, out);
        let mut warnings = Vec::new();
        if e["log_evidence_se_reliable"].as_bool() != Some(true) {
            warnings.push(format!(
                "the standard error of log Ẑ is unreliable: {}; run replicates (--replicates {MIN_REPLICATES} or more: \
                 their spread is the honest error), or use more θ-particles",
                unreliable_single(&e)
            ));
        }
        for f in crate::summary::strings(&e["evidence_failures"]) {
            warnings.push(format!("the evidence is not usable: {f}"));
        }
        let ess = before_final_move_ess(out);
        low_ess_warning(ess, out.particles.len(), &mut warnings);
        if let Value::Object(em) = e {
            m.extend(em);
        }
        m.insert("replicates".into(), json!(1));
        m.insert(
            "log_evidence_se_estimator".into(),
            json!("Lee & Whiteley (2018): Eve indices of the θ-particles (multinomial θ-resampling), delta method on the log scale"),
        );
        m.insert("warnings".into(), json!(warnings));
        Value::Object(m)
    }

    /// The summary of `R` replicates: the combined evidence and error, the
    /// pooled posterior, and each replicate's own record.
    fn replicated(
        &self,
        outs: &[Smc2Output],
        pooled: &Smc2Output,
        ev: &ReplicateEvidence,
    ) -> Value {
        let k = outs[0].steps.len();
        let mut m = self.common(pooled, k);
        let runs: Vec<Value> = outs
            .iter()
            .enumerate()
            .map(|(r, o)| {
                let mut e = evidence_json(self.config, o);
                e["replicate"] = json!(r);
                e["weight"] = json!(ev.weights[r]);
                e
            })
            .collect();
        let mut warnings = Vec::new();
        let reliable = ev.se_reliable();
        if !reliable {
            let why = if outs.len() < MIN_REPLICATES {
                format!(
                    "{} replicates are too few for their spread to estimate it (at least {MIN_REPLICATES})",
                    outs.len()
                )
            } else {
                format!(
                    "the replicates' log Ẑ spread with sd {:.2} nats (more than {MAX_LOG_SD}): their mean rests on \
                     {:.1} effective replicates and its error is then far larger than the delta method says",
                    ev.log_sd, ev.effective_replicates
                )
            };
            warnings.push(format!(
                "the standard error of log Ẑ is unreliable: {why}; run more replicates, or use more θ-particles"
            ));
        }
        let mut failures = Vec::new();
        for e in &runs {
            for f in crate::summary::strings(&e["evidence_failures"]) {
                failures.push(format!("replicate {}: {f}", e["replicate"]));
            }
        }
        for f in &failures {
            warnings.push(format!("the evidence is not usable: {f}"));
        }
        // The pooled cloud's ESS with each replicate's weights before a
        // final move: 1 / Σ_r W_r² / ESS_r.
        let ess = 1.0
            / outs
                .iter()
                .zip(&ev.weights)
                .map(|(o, w)| w * w / before_final_move_ess(o))
                .sum::<f64>();
        low_ess_warning(ess, pooled.particles.len(), &mut warnings);
        let se = ev.log_evidence_se;
        m.extend(
            [
                ("replicates", json!(outs.len())),
                ("log_evidence", json!(ev.log_evidence)),
                ("log_evidence_se", if se.is_finite() { json!(se) } else { Value::Null }),
                ("log_evidence_se_reliable", json!(reliable)),
                (
                    "log_evidence_se_estimator",
                    json!("replicates: log of the mean of the replicates' Ẑ, its error from their spread (delta method on the log scale)"),
                ),
                ("replicate_log_evidence_sd", if ev.log_sd.is_finite() { json!(ev.log_sd) } else { Value::Null }),
                ("effective_replicates", json!(ev.effective_replicates)),
                ("evidence_usable", json!(failures.is_empty())),
                ("evidence_failures", json!(failures)),
                ("theta_ess", json!(ess)),
                ("particles_end", json!(pooled.nx)),
                ("resample_moves", json!(pooled.resamplings)),
                ("replicate_runs", json!(runs)),
                ("warnings", json!(warnings)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
        );
        Value::Object(m)
    }
}

/// A warning when the final cloud's θ-ESS is below a tenth of its size.
fn low_ess_warning(ess: f64, n: usize, warnings: &mut Vec<String>) {
    if ess < 0.1 * n as f64 {
        warnings.push(format!(
            "the θ-ESS of the final weighted cloud is {ess:.0} of {n}: the posterior summaries rest on few θ-particles"
        ));
    }
}

/// Why a finished run's evidence is not usable, one reason (with its
/// remedy) each: the θ-particles collapsed onto one, the moves stalled with
/// `Nx` at its cap, or the final move left few distinct θ.
fn evidence_failures(config: &Smc2Config, out: &Smc2Output) -> Vec<String> {
    let mut why = Vec::new();
    let nth = config.theta_particles as f64;
    if let Some(r) = out.steps.iter().find(|r| r.ess < COLLAPSED_ESS) {
        why.push(format!(
            "the θ-particles collapsed: θ-ESS {:.2} of {} at observation {} (one θ carried the weight: the cloud \
             was in the wrong place for that observation); use more θ-particles, and check the priors and the model",
            r.ess, config.theta_particles, r.t
        ));
    }
    if let Some(r) = out.steps.iter().rev().find(|r| r.resampled)
        && r.acceptance_rate() < STALLED_ACCEPTANCE
        && r.particles * 2 > config.max_particles
    {
        why.push(format!(
            "the moves stalled: acceptance {:.1} % in the last rejuvenation (observation {}) with Nx {} at its cap \
             (smc2.max_particles {}): the cloud cannot move; use more θ-particles, or raise smc2.max_particles",
            100.0 * r.acceptance_rate(),
            r.t,
            r.particles,
            config.max_particles
        ));
    }
    if let Some(f) = &out.final_move
        && (f.distinct as f64) < (FEW_DISTINCT * nth).max(2.0)
    {
        why.push(format!(
            "the final move left {} distinct θ of {}: the posterior rests on a few points; use more moves or θ-particles",
            f.distinct, config.theta_particles
        ));
    }
    why
}

/// A θ-ESS below this at any observation: the cloud collapsed onto one
/// θ-particle.
const COLLAPSED_ESS: f64 = 2.0;
/// A last rejuvenation accepting less than this with `Nx` at its cap: the
/// cloud cannot move.
const STALLED_ACCEPTANCE: f64 = 0.01;
/// Fewer distinct θ than this fraction of `Nθ` after a final move.
const FEW_DISTINCT: f64 = 0.05;

/// The evidence and its error as printed: `± SE`, flagged when the SE is
/// unreliable, `± ?` without one.
fn evidence_text(s: &Value) -> String {
    let z = s["log_evidence"].as_f64().unwrap_or(f64::NAN);
    let replicates = s["replicates"].as_u64().unwrap_or(1);
    match s["log_evidence_se"].as_f64() {
        Some(se) if s["log_evidence_se_reliable"].as_bool().unwrap_or(true) => {
            format!("{z:.4} ± {se:.4}")
        }
        Some(se) if replicates > 1 => format!(
            "{z:.4} ± {se:.4} (unreliable: {replicates} replicates, sd of their log Ẑ {:.2})",
            s["replicate_log_evidence_sd"].as_f64().unwrap_or(f64::NAN)
        ),
        Some(se) => format!(
            "{z:.4} ± {se:.4} (unreliable: {:.1} effective Eves)",
            s["effective_eves"].as_f64().unwrap_or(0.0)
        ),
        None => format!("{z:.4} ± ? (no positive variance estimate)"),
    }
}

/// The printed summary.
pub(super) fn table(s: &Value) -> String {
    let mut t = String::new();
    let replicates = s["replicates"].as_u64().unwrap_or(1);
    let _ = writeln!(
        t,
        "SMC² {}: log evidence {}{} (Nθ {}{}, Nx {} → {}, {} resample-moves, θ-ESS {:.0})",
        s["job"].as_str().unwrap_or(""),
        evidence_text(s),
        if s["evidence_usable"].as_bool() == Some(false) {
            " — NOT USABLE (see the warnings)"
        } else {
            ""
        },
        s["theta_particles"],
        if replicates > 1 {
            format!(" × {replicates} replicates")
        } else {
            String::new()
        },
        s["particles_start"],
        s["particles_end"],
        s["resample_moves"],
        s["theta_ess"].as_f64().unwrap_or(f64::NAN),
    );
    let final_line = |t: &mut String, f: &Value, prefix: &str| {
        if let Some(f) = f.as_object() {
            let acc: Vec<String> = f["acceptance"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| format!("{:.0} %", 100.0 * x.as_f64().unwrap_or(0.0)))
                        .collect()
                })
                .unwrap_or_default();
            let _ = writeln!(
                t,
                "{prefix}final resample-move: acceptance {}, {} distinct θ",
                acc.join(" / "),
                f["distinct"]
            );
        }
    };
    final_line(&mut t, &s["final_move"], "");
    for e in s["replicate_runs"].as_array().into_iter().flatten() {
        let _ = writeln!(
            t,
            "  replicate {}: log evidence {}{} (weight {:.3}, Nx → {}, θ-ESS {:.0})",
            e["replicate"],
            evidence_text(e),
            if e["evidence_usable"].as_bool() == Some(false) {
                " — NOT USABLE"
            } else {
                ""
            },
            e["weight"].as_f64().unwrap_or(f64::NAN),
            e["particles_end"],
            e["theta_ess"].as_f64().unwrap_or(f64::NAN),
        );
        final_line(&mut t, &e["final_move"], "    ");
    }
    let _ = writeln!(
        t,
        "{:<14} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "parameter", "mean", "sd", "2.5%", "50%", "97.5%"
    );
    if let Some(ps) = s["parameters"].as_object() {
        for (n, v) in ps {
            let f = |k: &str| v[k].as_f64().map_or("-".into(), |x| plots::tick(&x));
            let _ = writeln!(
                t,
                "{:<14} {:>12} {:>12} {:>12} {:>12} {:>12}",
                n,
                f("mean"),
                f("sd"),
                f("q025"),
                f("q50"),
                f("q975")
            );
        }
    }
    t
}

/// `Nθ` draws from the weighted cloud (systematic with offset ½: no random
/// numbers, so the plots are reproducible) as chain rows for the plots.
fn draws(out: &Smc2Output) -> Vec<ChainRow> {
    let w = out.weights();
    let n = w.len();
    let mut rows = Vec::with_capacity(n);
    let mut cum = 0.0;
    let mut j = 0;
    for (i, wi) in w.iter().enumerate() {
        cum += wi * n as f64;
        while j < n && (j as f64 + 0.5) < cum {
            let p = &out.particles[i];
            rows.push(ChainRow {
                chain: 0,
                iteration: j as u64,
                loglik: p.loglik,
                accepted: false,
                theta: p.theta.clone(),
            });
            j += 1;
        }
    }
    rows
}

/// The plots: the evidence per step (one trace per replicate), the
/// steps' θ-ESS, acceptance and `Nx` (replicate 0's), and the posterior
/// plots from `cloud` (the pooled cloud with replicates).
fn draw(
    dir: &Path,
    job: &Job,
    problem: &pcmc_core::filter::FilterProblem,
    names: &[String],
    outs: &[Smc2Output],
    cloud: &Smc2Output,
    threshold: f64,
) -> Result<()> {
    let points = |o: &Smc2Output| -> Vec<Smc2StepPoint> {
        let n = o.particles.len() as f64;
        o.steps
            .iter()
            .map(|s: &StepRecord| Smc2StepPoint {
                t: s.t,
                log_evidence: s.log_evidence,
                se: s.log_evidence_se,
                ess_fraction: s.ess / n,
                acceptance: s.resampled.then(|| s.acceptance_rate()),
                particles: s.particles,
            })
            .collect()
    };
    let runs: Vec<Vec<Smc2StepPoint>> = outs.iter().map(points).collect();
    plots::evidence(&dir.join("evidence.svg"), &runs)?;
    plots::smc2_steps(&dir.join("smc2.svg"), &runs[0], threshold)?;
    let rows = draws(cloud);
    plots::density(
        &dir.join("density.svg"),
        names,
        &rows,
        &job.priors,
        job.truth.as_deref(),
        |_| "θ-cloud".to_string(),
    )?;
    plots::pairs(&dir.join("pairs.svg"), names, &rows)?;
    let seed = outs[0].steps.len() as u64 ^ job.mcmc.seed;
    let bands =
        crate::run::predictive_bands(problem, &rows, job.file.output.predictive_draws, seed);
    if !bands.is_empty() {
        plots::predictive(&dir.join("predictive.svg"), &bands)?;
    }
    Ok(())
}
