//! `pcmc run` with `method = "smc2"`, and `pcmc compare-models`.
//!
//! A run directory of SMC² holds `particles.csv` (and `.parquet`): the final
//! weighted θ-particles; `summary.json`: the evidence with its standard
//! error, weighted posterior summaries and one record per observation;
//! `run.json`: the settings and timings; and the plots `evidence.svg`,
//! `smc2.svg`, `density.svg`, `pairs.svg` and `predictive.svg` (the last
//! three from `Nθ` draws resampled from the weighted cloud).

use crate::error::{InputError, input};
use crate::fsio::{RunLock, create_output_dir, write_atomic};
use crate::job::data_fingerprint;
use crate::output::ChainRow;
use crate::plots::{self, Smc2StepPoint};
use crate::run::resume;
use crate::run::setup::cluster_target;
use crate::run::{ClusterTarget, Overrides, RunOptions, RunOutcome, prepare, run_dir};
use crate::settings::RunSettings;
use anyhow::{Context, Result};
use arrow::array::{ArrayRef, Float64Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use pcmc_core::smc2::{
    ModelEvidence, PassBatch, SerialPasses, Smc2, Smc2Output, Smc2State, StepRecord, compare_models,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The executor of an SMC² run: θ-particles across threads, across MPI
/// ranks (each with its threads), across dataflow partitions (in this
/// process or as jobs on a Ballista cluster), or on one thread.
enum Exec {
    /// rayon, serial, dataflow or Ballista: one process drives the batches
    /// (`workers`: threads, partitions or tasks per job).
    Local {
        batch: Box<dyn PassBatch>,
        workers: usize,
    },
    /// MPI ranks: every rank runs the sampler; rank 0 writes.
    #[cfg(feature = "mpi")]
    Mpi(Box<pcmc_mpi::MpiExecutor<pcmc_rayon::RayonRunner>>),
}

impl Exec {
    /// The executor `kind` with `threads` threads and (dataflow)
    /// `partitions` partitions, on the Ballista cluster `cluster` if given.
    fn new(
        kind: &str,
        threads: usize,
        partitions: Option<usize>,
        cluster: Option<&ClusterTarget>,
    ) -> Result<Exec> {
        let runner = || {
            pcmc_rayon::RayonRunner::new(threads)
                .map_err(|e| InputError::flag("--threads", e.to_string()))
        };
        let local = |batch: Box<dyn PassBatch>, workers: usize| Ok(Exec::Local { batch, workers });
        let partitions = partitions.unwrap_or(threads);
        #[cfg(not(feature = "dataflow"))]
        let _ = partitions;
        if let Some(c) = cluster {
            if kind != "dataflow" {
                return Err(InputError::flag(
                    "--scheduler",
                    format!("a Ballista scheduler runs the dataflow executor's jobs; use it with --executor dataflow, not {kind}"),
                )
                .into());
            }
            #[cfg(feature = "ballista")]
            return local(
                Box::new(crate::run::setup::ballista_driver(c, partitions)?),
                partitions,
            );
            #[cfg(not(feature = "ballista"))]
            {
                let _ = c;
                return Err(crate::run::setup::ballista_missing());
            }
        }
        match kind {
            "rayon" => local(Box::new(runner()?), threads),
            "serial" => local(Box::<SerialPasses>::default(), 1),
            #[cfg(feature = "dataflow")]
            "dataflow" => local(
                Box::new(crate::run::setup::dataflow_executor(partitions, threads)?),
                partitions,
            ),
            #[cfg(feature = "mpi")]
            "mpi" => Ok(Exec::Mpi(Box::new(pcmc_mpi::MpiExecutor::from_world(
                runner()?,
            )?))),
            // Not compiled in, or not an executor: the PMMH path's message.
            other => Err(crate::run::setup::unavailable_executor(other)),
        }
    }

    fn batch(&mut self) -> &mut dyn PassBatch {
        match self {
            Exec::Local { batch, .. } => batch.as_mut(),
            #[cfg(feature = "mpi")]
            Exec::Mpi(m) => m.as_mut(),
        }
    }

    /// Whether this process writes the outputs.
    fn is_root(&self) -> bool {
        match self {
            Exec::Local { .. } => true,
            #[cfg(feature = "mpi")]
            Exec::Mpi(m) => pcmc_core::LikelihoodExecutor::is_root(m.as_ref()),
        }
    }

    /// Whether `flag` is set on any rank (every rank gets the same answer,
    /// so all stop at the same step).
    fn any(&mut self, flag: bool) -> Result<bool> {
        match self {
            Exec::Local { .. } => Ok(flag),
            #[cfg(feature = "mpi")]
            Exec::Mpi(m) => Ok(pcmc_core::LikelihoodExecutor::any_worker(m.as_mut(), flag)?),
        }
    }

    /// Workers: ranks, threads or partitions.
    fn workers(&self) -> usize {
        match self {
            Exec::Local { workers, .. } => *workers,
            #[cfg(feature = "mpi")]
            Exec::Mpi(m) => pcmc_core::LikelihoodExecutor::workers(m.as_ref()),
        }
    }

    /// Rank 0's `bytes` on every rank (a checkpoint read on rank 0 only, so
    /// the run directory need not be shared to resume).
    fn share_root(&mut self, bytes: Vec<u8>) -> Result<Vec<u8>> {
        match self {
            Exec::Local { .. } => Ok(bytes),
            #[cfg(feature = "mpi")]
            Exec::Mpi(m) => {
                let all = pcmc_core::LikelihoodExecutor::all_gather_bytes(m.as_mut(), &bytes)?;
                Ok(all.into_iter().next().unwrap_or_default())
            }
        }
    }
}

/// The checkpoint file of an SMC² run directory.
pub const CHECKPOINT: &str = crate::checkpoint::SMC2_FILE;
const CHECKPOINT_FORMAT: &str = "pcmc-smc2-checkpoint";

/// What an SMC² run needs to continue bit for bit: its state after a
/// completed observation step.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    /// The job and data ([`crate::job::Job::fingerprint`]).
    fingerprint: String,
    /// The settings as run (command-line overrides included).
    settings: String,
    /// The sampler's state.
    state: Smc2State,
    /// Seconds per step so far.
    seconds: Vec<f64>,
    /// The settings the run was started with (absent in checkpoints of
    /// older pcmc versions).
    #[serde(default)]
    run: Option<RunSettings>,
}

/// The settings stored in the SMC² checkpoint in `dir`, if there is one.
///
/// # Errors
/// An input error for an unreadable or corrupted checkpoint.
pub fn stored_settings(dir: &Path) -> Result<Option<RunSettings>> {
    Ok(
        crate::checkpoint::read_envelope::<Checkpoint>(&dir.join(CHECKPOINT), CHECKPOINT_FORMAT)?
            .and_then(|c| c.run),
    )
}

/// The job with its overrides, the SMC² settings (`--particles` sets the
/// starting `Nx`, `--theta-particles` `Nθ`) and the sampler.
///
/// # Errors
/// Input errors for the job, its data and the settings.
fn build(
    job_path: &Path,
    ov: &Overrides,
) -> Result<(
    crate::run::Prepared,
    pcmc_core::smc2::Smc2Config,
    usize,
    Smc2,
)> {
    let prep = prepare(job_path, ov)?;
    let job = &prep.job;
    let (config, nx) = job.smc2_config()?;
    let nx = ov.particles.unwrap_or(nx);
    let config = pcmc_core::smc2::Smc2Config {
        max_particles: config.max_particles.max(nx),
        theta_particles: ov.theta_particles.unwrap_or(config.theta_particles),
        ..config
    };
    let problem = prep
        .pmmh
        .problem()
        .with_particles(nx)
        .map_err(|e| input(&job.path, e.to_string()))?;
    let smc2 = Smc2::new(problem, job.priors.clone(), config.clone())
        .map_err(|e| input(&job.path, e.to_string()))?;
    Ok((prep, config, nx, smc2))
}

/// Runs SMC² for a job: every observation in turn, then the outputs. A
/// checkpoint is written after every `checkpoint_every` observation steps
/// (default 1) and when a signal stops the run (SIGTERM, SIGINT or
/// SIGUSR1, honoured at the end of the step in progress); `--resume`
/// continues from it to the same bytes.
///
/// # Errors
/// Input errors (exit 2) and run failures (exit 1).
pub fn run(job_path: &Path, ov: &Overrides, opts: RunOptions) -> Result<RunOutcome> {
    let stop = crate::run::iterate::signal_flag()?;
    for (flag, given) in [
        ("--chains", ov.chains.is_some()),
        ("--first-chain", ov.first_chain.is_some()),
        ("--iterations", ov.iterations.is_some()),
    ] {
        if given {
            return Err(InputError::flag(flag, "does not apply to method smc2").into());
        }
    }
    let (prep, config, nx, smc2) = build(job_path, ov)?;
    let job = &prep.job;
    let (kind, threads) = crate::run::executor_and_threads(job, ov)?;
    let partitions = ov.partitions.or(job.file.executor.partitions);
    if partitions == Some(0) {
        return Err(InputError::flag("--partitions", "must be at least 1").into());
    }
    let dir = run_dir(job, ov);
    let cluster = cluster_target(job, ov, &dir)?;
    let mut exec = Exec::new(&kind, threads, partitions, cluster.as_ref())?;
    // As PMMH's outputs name it: the dataflow executor on a cluster.
    let kind = if cluster.is_some() {
        "ballista".to_string()
    } else {
        kind
    };
    let root = exec.is_root();
    let quiet = opts.quiet || !root;
    let mut lock = if root {
        create_output_dir(&dir)?;
        Some(RunLock::acquire(&dir)?)
    } else {
        None
    };
    let ignored = job.ignored_fields(crate::job::Method::Smc2);
    if !ignored.is_empty() && !quiet {
        tracing::info!(
            "method smc2 ignores {} (it uses only mcmc.early_rejection of [mcmc], and sizes Nx itself: [smc2])",
            ignored.join(", ")
        );
    }
    let fingerprint = job.fingerprint(&prep.data);
    let data_fp = data_fingerprint(&prep.data);
    let settings = format!("{config:?}|nx={nx}");
    let run_settings = RunSettings::of(job, &data_fp, crate::job::Method::Smc2, ov);
    // Every rank must run with rank 0's settings (a rank that cannot see
    // the run directory would otherwise start from the job's).
    if exec.share_root(settings.clone().into_bytes())? != settings.as_bytes() {
        return Err(input(
            &dir,
            "the ranks disagree about the run's settings (does every rank see the run directory's checkpoint?)",
        ));
    }
    let every = opts
        .checkpoint_every
        .or(job.file.output.checkpoint_every)
        .unwrap_or(1);
    if every == 0 {
        return Err(InputError::flag("--checkpoint-every", "must be at least 1").into());
    }
    let ckpt_path = dir.join(CHECKPOINT);
    // Rank 0 reads the checkpoint (an input error stops every rank: they
    // all see an empty or failed read) and hands it to the others.
    let read = if opts.resume && root {
        crate::checkpoint::read_envelope::<Checkpoint>(&ckpt_path, CHECKPOINT_FORMAT)
    } else {
        Ok(None)
    };
    let bytes = match &read {
        Ok(Some(c)) => serde_json::to_vec(c)?,
        Ok(None) => b"none".to_vec(),
        Err(_) => b"error".to_vec(),
    };
    let shared = exec.share_root(bytes)?;
    let resumed: Option<Checkpoint> = match (read, shared.as_slice()) {
        (Err(e), _) => return Err(e),
        (_, b"error") => anyhow::bail!("rank 0 could not read the checkpoint"),
        (_, b"none") => None,
        (_, b) => Some(serde_json::from_slice(b)?),
    };
    let (mut state, mut seconds) = match resumed {
        Some(c) => {
            if c.fingerprint != fingerprint || c.settings != settings {
                return Err(input(
                    &ckpt_path,
                    resume::refusal(
                        c.run.as_ref(),
                        &run_settings,
                        (&c.fingerprint, &fingerprint),
                    ),
                ));
            }
            smc2.check_state(&c.state)
                .map_err(|e| input(&ckpt_path, e.to_string()))?;
            if !quiet {
                tracing::info!(
                    "resuming after observation {} of {}",
                    c.state.t,
                    prep.data.len()
                );
            }
            (c.state, c.seconds)
        }
        None => {
            if opts.resume && !quiet {
                tracing::info!(
                    "no checkpoint in {}: starting from the beginning",
                    dir.display()
                );
            }
            // A fresh run: never over another run's outputs unless --force.
            resume::claim_fresh(&dir, opts, root)?;
            (smc2.start(), Vec::new())
        }
    };
    if let Some(l) = lock.as_mut() {
        l.announce()?;
    }
    if root {
        write_atomic(&dir.join("data.csv"), &prep.data_bytes)?;
        write_atomic(&dir.join("job.toml"), job.text.as_bytes())?;
    }
    let clock = Instant::now();
    let before: f64 = seconds.iter().sum();
    let k = prep.data.len();
    let save = |state: &Smc2State, seconds: &[f64]| -> Result<()> {
        if !root {
            return Ok(());
        }
        crate::checkpoint::write_envelope(
            &ckpt_path,
            CHECKPOINT_FORMAT,
            &Checkpoint {
                fingerprint: fingerprint.clone(),
                settings: settings.clone(),
                state: state.clone(),
                seconds: seconds.to_vec(),
                run: Some(run_settings.clone()),
            },
        )
    };
    while !smc2.is_done(&state) {
        if exec.any(stop.load(std::sync::atomic::Ordering::Relaxed))? {
            save(&state, &seconds)?;
            if root {
                tracing::warn!(
                    "stopped by a signal after observation {} of {k}; checkpoint written: continue with `{}`",
                    state.t,
                    resume::hint(job_path, &dir)
                );
            }
            return Ok(RunOutcome::Interrupted);
        }
        let t0 = Instant::now();
        smc2.step(&mut state, exec.batch())?;
        seconds.push(t0.elapsed().as_secs_f64());
        if (state.t as u64).is_multiple_of(every) {
            save(&state, &seconds)?;
        }
        if let Some(f) = state
            .final_move
            .as_ref()
            .filter(|_| state.steps.len() < seconds.len())
        {
            if !quiet {
                tracing::info!(
                    "final resample-move: acceptance {:.0} %, {} distinct θ ({:.1} s)",
                    100.0 * f.acceptance.iter().sum::<f64>() / f.acceptance.len().max(1) as f64,
                    f.distinct,
                    seconds.last().copied().unwrap_or(0.0)
                );
            }
            continue;
        }
        let r = state.steps.last().expect("a step was recorded");
        if !quiet {
            tracing::info!(
                "observation {}/{k}: θ-ESS {:.0}/{}, log evidence {:.3} ± {:.3}{}, Nx {} ({:.1} s)",
                r.t,
                r.ess,
                config.theta_particles,
                r.log_evidence,
                r.log_evidence_se,
                if r.resampled {
                    format!(
                        ", resampled and moved (acceptance {:.0} %){}",
                        100.0 * r.acceptance_rate(),
                        if r.exchange_log_increment.is_some() {
                            ", Nx doubled"
                        } else {
                            ""
                        }
                    )
                } else {
                    String::new()
                },
                state.particles,
                seconds.last().copied().unwrap_or(0.0)
            );
        }
    }
    let wall = before + clock.elapsed().as_secs_f64();
    // The finished state stays in the checkpoint: `--resume` of a finished
    // run and `pcmc report` rebuild the outputs from it.
    save(&state, &seconds)?;
    let out = smc2.output(state);
    if !root {
        return Ok(RunOutcome::Finished);
    }
    let summary = write_outputs(&dir, job, &smc2, &config, nx, &out)?;
    let record = json!({
        "job": job.name,
        "method": "smc2",
        "fingerprint": fingerprint,
        "executor": kind,
        "workers": exec.workers(),
        "threads": threads,
        "wall_seconds": wall,
        "step_seconds": seconds,
        "host": crate::fsio::host_name(),
    });
    write_atomic(
        &dir.join("run.json"),
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )?;
    if !quiet {
        print!("{}", table(&summary));
        crate::summary::log_warnings(&summary, job.file.output.smoke_test);
        println!("wall time {wall:.1} s on {kind} with {threads} thread(s)");
    }
    if summary["evidence_usable"].as_bool() == Some(false) {
        let why = crate::summary::strings(&summary["evidence_failures"]);
        return Ok(RunOutcome::EvidenceUnusable(why.join("; ")));
    }
    Ok(RunOutcome::Finished)
}

/// The outputs of a finished run: `particles.csv`/`.parquet`,
/// `summary.json` (returned) and the plots.
///
/// # Errors
/// I/O failures.
fn write_outputs(
    dir: &Path,
    job: &crate::job::Job,
    smc2: &Smc2,
    config: &pcmc_core::smc2::Smc2Config,
    nx: usize,
    out: &Smc2Output,
) -> Result<Value> {
    let names = job.network.parameters().to_vec();
    let data = smc2.problem().data();
    write_particles(dir, &names, out, job.file.output.parquet)?;
    let summary = summary_json(
        job,
        &names,
        &job.fingerprint(data),
        &data_fingerprint(data),
        config,
        nx,
        out,
    );
    write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    if job.file.output.plots {
        draw(dir, job, smc2.problem(), &names, out, config.ess_threshold)?;
    }
    Ok(summary)
}

/// `pcmc report DIR` of an SMC² run directory: the particles, summary and
/// plots rebuilt from its job, data and final checkpoint (the settings the
/// run was started with are the checkpoint's).
///
/// # Errors
/// Input errors for a directory without them, or a run that has not
/// finished.
pub fn report(dir: &Path, quiet: bool) -> Result<()> {
    let mut lock = RunLock::acquire(dir)?;
    let ckpt_path = dir.join(CHECKPOINT);
    let c = crate::checkpoint::read_envelope::<Checkpoint>(&ckpt_path, CHECKPOINT_FORMAT)?
        .ok_or_else(|| {
            input(
                dir,
                format!("an SMC² run directory needs its {CHECKPOINT} to be reported"),
            )
        })?;
    let st = c.run.as_ref().ok_or_else(|| {
        input(
            &ckpt_path,
            "written by an older pcmc without the run's settings: rerun the job to report it",
        )
    })?;
    let ov = Overrides {
        data: Some(dir.join("data.csv")),
        ..Overrides::default()
    };
    let ov = resume::apply(st, &ov, dir, RunOptions::default())?;
    let (prep, config, nx, smc2) = build(&dir.join("job.toml"), &ov)?;
    let job = &prep.job;
    if job.fingerprint(smc2.problem().data()) != c.fingerprint {
        return Err(input(
            &ckpt_path,
            "does not belong to the job.toml and data.csv beside it: refusing to report",
        ));
    }
    smc2.check_state(&c.state)
        .map_err(|e| input(&ckpt_path, e.to_string()))?;
    if !smc2.is_done(&c.state) {
        return Err(input(
            dir,
            format!(
                "the SMC² run has not finished (observation {} of {}): continue it with `pcmc run JOB --out {} --resume`",
                c.state.t,
                smc2.problem().data().len(),
                dir.display()
            ),
        ));
    }
    lock.announce()?;
    let out = smc2.output(c.state);
    let summary = write_outputs(dir, job, &smc2, &config, nx, &out)?;
    if !quiet {
        print!("{}", table(&summary));
        crate::summary::log_warnings(&summary, job.file.output.smoke_test);
    }
    Ok(())
}

/// `particles.csv` (and `.parquet`): one row per θ-particle: its index,
/// normalised weight, log-weight, log-likelihood estimate, `Nx` and θ.
fn write_particles(dir: &Path, names: &[String], out: &Smc2Output, parquet: bool) -> Result<()> {
    let w = out.weights();
    let mut csv = String::from("particle,weight,log_weight,loglik,nx");
    for n in names {
        csv.push(',');
        csv.push_str(n);
    }
    csv.push('\n');
    for (m, (p, wi)) in out.particles.iter().zip(&w).enumerate() {
        let _ = write!(csv, "{m},{wi},{},{},{}", p.log_weight, p.loglik, out.nx);
        for x in &p.theta {
            let _ = write!(csv, ",{x}");
        }
        csv.push('\n');
    }
    write_atomic(&dir.join("particles.csv"), csv.as_bytes())?;
    if parquet {
        let mut fields = vec![
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
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(0..ps.len() as u64)),
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

#[allow(clippy::too_many_arguments)]
fn summary_json(
    job: &crate::job::Job,
    names: &[String],
    fingerprint: &str,
    data_fp: &str,
    config: &pcmc_core::smc2::Smc2Config,
    nx: usize,
    out: &Smc2Output,
) -> Value {
    let w = out.weights();
    let mut params = serde_json::Map::new();
    for (i, n) in names.iter().enumerate() {
        let xs: Vec<f64> = out.particles.iter().map(|p| p.theta[i]).collect();
        let (mean, sd) = out.mean_sd(i);
        let mut v = json!({
            "mean": mean,
            "sd": sd,
            "q025": weighted_quantile(&xs, &w, 0.025),
            "q50": weighted_quantile(&xs, &w, 0.5),
            "q975": weighted_quantile(&xs, &w, 0.975),
        });
        if let Some(t) = &job.truth {
            v["true"] = json!(t[i]);
        }
        params.insert(n.clone(), v);
    }
    let last = out.steps.last();
    let eves = last.map_or(0, |s| s.eves);
    let effective = last.map_or(0.0, |s| s.effective_eves);
    let reliable = last.is_some_and(pcmc_core::smc2::StepRecord::se_reliable);
    let variance_positive = last.is_some_and(|s| s.relative_variance > 0.0);
    let mut warnings = Vec::new();
    if !reliable {
        warnings.push(format!(
            "the standard error of log Ẑ is unreliable: it rests on {effective:.1} effective Eves \
             ({eves} initial θ-draws with descendants; fewer than {} effective ones{}), and one run \
             cannot see its own error then — it is usually far too small; rerun with other --seed \
             values and use the spread of log Ẑ over the runs, or use more θ-particles",
            pcmc_core::smc2::MIN_EFFECTIVE_EVES,
            if variance_positive {
                String::new()
            } else {
                ", and its variance estimate is not positive".into()
            }
        ));
    }
    let failures = evidence_failures(config, out);
    for f in &failures {
        warnings.push(format!("the evidence is not usable: {f}"));
    }
    let ess = out
        .final_move
        .as_ref()
        .map_or_else(|| out.ess(), |f| f.ess_before);
    if ess < 0.1 * out.particles.len() as f64 {
        warnings.push(format!(
            "the θ-ESS of the final weighted cloud is {ess:.0} of {}: the posterior summaries rest on few θ-particles",
            out.particles.len()
        ));
    }
    json!({
        "method": "smc2",
        "job": job.name,
        "job_fingerprint": fingerprint,
        "data_fingerprint": data_fp,
        "seed": config.seed,
        "theta_particles": config.theta_particles,
        "particles_start": nx,
        "particles_end": out.nx,
        "ess_threshold": config.ess_threshold,
        "moves": config.moves,
        "proposal": config.proposal.name(),
        "exchange_below": config.exchange_below,
        "max_particles": config.max_particles,
        "observations": out.steps.len(),
        "log_evidence": out.log_evidence,
        "log_evidence_se": if variance_positive { json!(out.log_evidence_se) } else { Value::Null },
        "log_evidence_se_reliable": reliable,
        "log_evidence_se_estimator": "Lee & Whiteley (2018): Eve indices of the θ-particles (multinomial θ-resampling), delta method on the log scale",
        "evidence_usable": failures.is_empty(),
        "evidence_failures": failures,
        "eves": eves,
        "effective_eves": effective,
        "theta_ess": ess,
        "resample_moves": out.resamplings,
        "final_move": out.final_move,
        "exchanges": out.steps.iter().filter(|s| s.exchange_log_increment.is_some()).count(),
        "parameters": params,
        "steps": out.steps,
        "warnings": warnings,
    })
}

/// Why a finished run's evidence is not usable, one reason (with its
/// remedy) each: the θ-particles collapsed onto one, the moves stalled with
/// `Nx` at its cap, or the final move left few distinct θ.
fn evidence_failures(config: &pcmc_core::smc2::Smc2Config, out: &Smc2Output) -> Vec<String> {
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
/// unreliable, `± ?` without a positive variance estimate.
fn evidence_text(s: &Value) -> String {
    let z = s["log_evidence"].as_f64().unwrap_or(f64::NAN);
    match s["log_evidence_se"].as_f64() {
        Some(se) if s["log_evidence_se_reliable"].as_bool().unwrap_or(true) => {
            format!("{z:.4} ± {se:.4}")
        }
        Some(se) => format!(
            "{z:.4} ± {se:.4} (unreliable: {:.1} effective Eves)",
            s["effective_eves"].as_f64().unwrap_or(0.0)
        ),
        None => format!("{z:.4} ± ? (no positive variance estimate)"),
    }
}

/// The printed summary.
fn table(s: &Value) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "SMC² {}: log evidence {}{} (Nθ {}, Nx {} → {}, {} resample-moves, θ-ESS {:.0})",
        s["job"].as_str().unwrap_or(""),
        evidence_text(s),
        if s["evidence_usable"].as_bool() == Some(false) {
            " — NOT USABLE (see the warnings)"
        } else {
            ""
        },
        s["theta_particles"],
        s["particles_start"],
        s["particles_end"],
        s["resample_moves"],
        s["theta_ess"].as_f64().unwrap_or(f64::NAN),
    );
    if let Some(f) = s["final_move"].as_object() {
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
            "final resample-move: acceptance {}, {} distinct θ",
            acc.join(" / "),
            f["distinct"]
        );
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

fn draw(
    dir: &Path,
    job: &crate::job::Job,
    problem: &pcmc_core::filter::FilterProblem,
    names: &[String],
    out: &Smc2Output,
    threshold: f64,
) -> Result<()> {
    let n = out.particles.len() as f64;
    let points: Vec<Smc2StepPoint> = out
        .steps
        .iter()
        .map(|s: &StepRecord| Smc2StepPoint {
            t: s.t,
            log_evidence: s.log_evidence,
            se: s.log_evidence_se,
            ess_fraction: s.ess / n,
            acceptance: s.resampled.then(|| s.acceptance_rate()),
            particles: s.particles,
        })
        .collect();
    plots::evidence(&dir.join("evidence.svg"), &points)?;
    plots::smc2_steps(&dir.join("smc2.svg"), &points, threshold)?;
    let rows = draws(out);
    plots::density(
        &dir.join("density.svg"),
        names,
        &rows,
        &job.priors,
        job.truth.as_deref(),
        |_| "θ-cloud".to_string(),
    )?;
    plots::pairs(&dir.join("pairs.svg"), names, &rows)?;
    let seed = out.steps.len() as u64 ^ job.mcmc.seed;
    let bands =
        crate::run::predictive_bands(problem, &rows, job.file.output.predictive_draws, seed);
    if !bands.is_empty() {
        plots::predictive(&dir.join("predictive.svg"), &bands)?;
    }
    Ok(())
}

/// `pcmc compare-models`: each SMC² run's log evidence ± SE, the log Bayes
/// factors against the run of highest evidence and posterior model
/// probabilities (prior weights `weights`, equal if empty). Refuses runs
/// that are not SMC² or whose data differ.
///
/// # Errors
/// Input errors (exit 2) for unreadable or mismatched run directories.
pub fn compare(dirs: &[PathBuf], weights: &[f64]) -> Result<()> {
    if dirs.len() < 2 {
        return Err(InputError::flag("RUN_DIR", "give at least two run directories").into());
    }
    if !weights.is_empty() && weights.len() != dirs.len() {
        return Err(InputError::flag(
            "--prior-weights",
            format!("{} weights for {} runs", weights.len(), dirs.len()),
        )
        .into());
    }
    if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
        return Err(
            InputError::flag("--prior-weights", "weights must be finite and positive").into(),
        );
    }
    let mut rows = Vec::new();
    let mut seeds: Vec<(u64, &PathBuf)> = Vec::new();
    let mut data_fp: Option<(String, &PathBuf)> = None;
    for (i, d) in dirs.iter().enumerate() {
        let path = d.join("summary.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| input(&path, format!("cannot read: {e}")))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| input(&path, format!("not a pcmc summary: {e}")))?;
        if v["method"].as_str() != Some("smc2") {
            return Err(input(
                &path,
                "method: not an SMC² run (only SMC² runs estimate the evidence)",
            ));
        }
        let field = |k: &str| {
            v[k].as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| input(&path, format!("{k}: missing or not a finite number")))
        };
        let log_z = field("log_evidence")?;
        // An SE without a positive variance estimate is unknown: the
        // Bayes factors against this run get no ±.
        let se = v["log_evidence_se"]
            .as_f64()
            .filter(|x| x.is_finite())
            .unwrap_or(f64::NAN);
        let name = d.display();
        if v["evidence_usable"].as_bool() == Some(false) {
            tracing::warn!(
                "{name}: its run says the evidence is not usable ({}): the comparison with it means nothing",
                v["evidence_failures"]
            );
        }
        if v["log_evidence_se_reliable"].as_bool() == Some(false) {
            tracing::warn!(
                "{name}: its standard error is unreliable ({:.1} effective Eves): the ± of its Bayes factors is likely far too small; compare runs with other seeds",
                v["effective_eves"].as_f64().unwrap_or(0.0)
            );
        }
        if let Some(seed) = v["seed"].as_u64() {
            seeds.push((seed, d));
        }
        let fp = v["data_fingerprint"]
            .as_str()
            .ok_or_else(|| input(&path, "data_fingerprint: missing"))?
            .to_string();
        match &data_fp {
            None => data_fp = Some((fp, d)),
            Some((first, fd)) if *first != fp => {
                return Err(input(
                    &path,
                    format!(
                        "data_fingerprint: these data differ from those of {} ({fp} vs {first}): \
                         evidences of different data cannot be compared",
                        fd.display()
                    ),
                ));
            }
            Some(_) => {}
        }
        rows.push((
            v["job"].as_str().unwrap_or("?").to_string(),
            ModelEvidence {
                log_evidence: log_z,
                se,
                prior_weight: weights.get(i).copied().unwrap_or(1.0),
            },
        ));
    }
    for (i, (a, da)) in seeds.iter().enumerate() {
        if let Some((_, db)) = seeds[i + 1..].iter().find(|(b, _)| b == a) {
            tracing::warn!(
                "{} and {} ran with the same seed {a}: their random numbers are shared (pcmc's streams are keyed \
                 by seed, not by model), so their errors are correlated and the ± of their Bayes factor, which \
                 assumes independent runs, is off; rerun one with another --seed",
                da.display(),
                db.display()
            );
        }
    }
    let models: Vec<ModelEvidence> = rows.iter().map(|(_, m)| m.clone()).collect();
    let table = compare_models(&models);
    let labels: Vec<String> = dirs
        .iter()
        .zip(&rows)
        .map(|(d, (name, _))| format!("{name} ({})", d.display()))
        .collect();
    let w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(3);
    println!(
        "{:<w$} {:>16} {:>20} {:>12}",
        "run", "log evidence", "log BF vs best", "P(model)"
    );
    for ((label, (_, m)), c) in labels.iter().zip(&rows).zip(&table) {
        println!(
            "{:<w$} {:>16} {:>20} {:>12}",
            label,
            format!("{:.3} ± {:.3}", m.log_evidence, m.se),
            format!("{:.3} ± {:.3}", c.log_bayes_factor, c.log_bayes_factor_se),
            format!("{:.4}", c.probability)
        );
    }
    if weights.is_empty() {
        println!("(equal prior model weights)");
    }
    Ok(())
}
