//! `pcmc run` with `method = "smc2"`, and `pcmc compare-models`.
//!
//! A run directory of SMC² holds `particles.csv` (and `.parquet`): the final
//! weighted θ-particles; `summary.json`: the evidence with its standard
//! error, weighted posterior summaries and one record per observation;
//! `run.json`: the settings and timings; and the plots `evidence.svg`,
//! `smc2.svg`, `density.svg`, `pairs.svg` and `predictive.svg` (the last
//! three from `Nθ` draws resampled from the weighted cloud).
//!
//! With `R` replicates (`--replicates`, `smc2.replicates`) the run is `R`
//! independent runs one after the other, each across all the workers,
//! combined ([`pcmc_core::smc2::replicates`]); the checkpoint holds the
//! finished replicates' final states and the one in progress.

mod compare;
mod outputs;

pub use compare::compare;

use crate::error::{InputError, input};
use crate::fsio::{RunLock, create_output_dir, write_atomic};
use crate::job::data_fingerprint;
use crate::run::resume;
use crate::run::setup::cluster_target;
use crate::run::{ClusterTarget, Overrides, RunOptions, RunOutcome, prepare, run_dir};
use crate::settings::RunSettings;
use anyhow::Result;
use outputs::{table, write_outputs};
use pcmc_core::smc2::{PassBatch, SerialPasses, Smc2, Smc2Output, Smc2State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;
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
    /// The sampler's state (of replicate `finished.len()`).
    state: Smc2State,
    /// The finished replicates' final states, in order.
    #[serde(default)]
    finished: Vec<Smc2State>,
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

/// A run's job, settings and sampler.
struct Built {
    /// The job with its overrides, and its data.
    prep: crate::run::Prepared,
    /// The SMC² settings (of replicate 0).
    config: pcmc_core::smc2::Smc2Config,
    /// The starting `Nx`.
    nx: usize,
    /// The sampler of replicate 0.
    smc2: Smc2,
    /// Replicates.
    replicates: u32,
}

impl Built {
    /// The settings string a checkpoint must match.
    fn settings(&self) -> String {
        format!(
            "{:?}|nx={}|replicates={}",
            self.config, self.nx, self.replicates
        )
    }

    /// Every replicate's output: the finished ones' and the last state's.
    fn outputs(&self, finished: Vec<Smc2State>, last: Smc2State) -> Vec<Smc2Output> {
        finished
            .into_iter()
            .chain(std::iter::once(last))
            .enumerate()
            .map(|(r, st)| self.smc2.with_replicate(r as u32).output(st))
            .collect()
    }

    /// Whether a checkpoint's states fit: at most `R − 1` finished
    /// replicates, each finished, and the one in progress.
    fn check(&self, finished: &[Smc2State], state: &Smc2State) -> Result<(), String> {
        if finished.len() >= self.replicates as usize {
            return Err(format!(
                "holds {} finished replicates of a run of {}",
                finished.len(),
                self.replicates
            ));
        }
        for (r, st) in finished.iter().enumerate() {
            let s = self.smc2.with_replicate(r as u32);
            s.check_state(st).map_err(|e| e.to_string())?;
            if !s.is_done(st) {
                return Err(format!("replicate {r} is stored as finished but is not"));
            }
        }
        self.smc2.check_state(state).map_err(|e| e.to_string())
    }
}

/// The job with its overrides, the SMC² settings (`--particles` sets the
/// starting `Nx`, `--theta-particles` `Nθ`, `--replicates` the replicates)
/// and the sampler.
///
/// # Errors
/// Input errors for the job, its data and the settings.
fn build(job_path: &Path, ov: &Overrides) -> Result<Built> {
    let prep = prepare(job_path, ov)?;
    let job = &prep.job;
    let (config, nx) = job.smc2_config()?;
    let replicates = match ov.replicates {
        Some(r) => r,
        None => job.smc2_replicates()?,
    };
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
    Ok(Built {
        prep,
        config,
        nx,
        smc2,
        replicates,
    })
}

/// Runs SMC² for a job: every observation in turn (for each replicate),
/// then the outputs. A checkpoint is written after every `checkpoint_every`
/// observation steps (default 1), after each replicate, and when a signal
/// stops the run (SIGTERM, SIGINT or SIGUSR1, honoured at the end of the
/// step in progress); `--resume` continues from it to the same bytes.
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
    let built = build(job_path, ov)?;
    let (prep, config, smc2) = (&built.prep, &built.config, &built.smc2);
    let replicates = built.replicates;
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
    let settings = built.settings();
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
    let (mut finished, mut state, mut seconds) = match resumed {
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
            built
                .check(&c.finished, &c.state)
                .map_err(|e| input(&ckpt_path, e))?;
            if !quiet {
                tracing::info!(
                    "resuming after observation {} of {}{}",
                    c.state.t,
                    prep.data.len(),
                    replicate_label(c.finished.len(), replicates)
                );
            }
            (c.finished, c.state, c.seconds)
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
            (Vec::new(), smc2.start(), Vec::new())
        }
    };
    if let Some(l) = lock.as_mut() {
        l.announce()?;
    }
    if root {
        prep.write_inputs(&dir)?;
        write_atomic(&dir.join("job.toml"), job.text.as_bytes())?;
    }
    let clock = Instant::now();
    let before: f64 = seconds.iter().sum();
    let k = prep.data.len();
    let save = |finished: &[Smc2State], state: &Smc2State, seconds: &[f64]| -> Result<()> {
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
                finished: finished.to_vec(),
                seconds: seconds.to_vec(),
                run: Some(run_settings.clone()),
            },
        )
    };
    loop {
        let r = finished.len();
        let sampler = smc2.with_replicate(r as u32);
        let label = replicate_label(r, replicates);
        while !sampler.is_done(&state) {
            if exec.any(stop.load(std::sync::atomic::Ordering::Relaxed))? {
                save(&finished, &state, &seconds)?;
                if root {
                    tracing::warn!(
                        "stopped by a signal after observation {} of {k}{label}; checkpoint written: continue with `{}`",
                        state.t,
                        resume::hint(job_path, &dir)
                    );
                }
                return Ok(RunOutcome::Interrupted);
            }
            let final_step = state.t >= k;
            let t0 = Instant::now();
            sampler.step(&mut state, exec.batch())?;
            seconds.push(t0.elapsed().as_secs_f64());
            if (state.t as u64).is_multiple_of(every) {
                save(&finished, &state, &seconds)?;
            }
            if !quiet {
                log_step(
                    &state,
                    config,
                    k,
                    &label,
                    seconds.last().copied(),
                    final_step,
                );
            }
        }
        if r + 1 >= replicates as usize {
            break;
        }
        if !quiet {
            tracing::info!(
                "replicate {} of {replicates} finished: log evidence {:.3}",
                r + 1,
                state.log_evidence
            );
        }
        finished.push(std::mem::replace(
            &mut state,
            smc2.with_replicate(r as u32 + 1).start(),
        ));
        save(&finished, &state, &seconds)?;
    }
    let wall = before + clock.elapsed().as_secs_f64();
    // The finished state stays in the checkpoint: `--resume` of a finished
    // run and `pcmc report` rebuild the outputs from it.
    save(&finished, &state, &seconds)?;
    let outs = built.outputs(finished, state);
    if !root {
        return Ok(RunOutcome::Finished);
    }
    let summary = write_outputs(&dir, job, smc2, config, built.nx, &outs)?;
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

/// `", replicate r of R"` (1-based) for runs with replicates, else nothing.
fn replicate_label(r: usize, replicates: u32) -> String {
    if replicates > 1 {
        format!(", replicate {} of {replicates}", r + 1)
    } else {
        String::new()
    }
}

/// The log line of the step just made (`seconds` its time; `final_step`:
/// it was the resample-move after the last observation).
fn log_step(
    state: &Smc2State,
    config: &pcmc_core::smc2::Smc2Config,
    k: usize,
    label: &str,
    seconds: Option<f64>,
    final_step: bool,
) {
    let secs = seconds.unwrap_or(0.0);
    if final_step {
        if let Some(f) = &state.final_move {
            tracing::info!(
                "final resample-move{label}: acceptance {:.0} %, {} distinct θ ({secs:.1} s)",
                100.0 * f.acceptance.iter().sum::<f64>() / f.acceptance.len().max(1) as f64,
                f.distinct,
            );
        }
        return;
    }
    let Some(r) = state.steps.last() else {
        return;
    };
    tracing::info!(
        "observation {}/{k}{label}: θ-ESS {:.0}/{}, log evidence {:.3} ± {:.3}{}, Nx {} ({secs:.1} s)",
        r.t,
        r.ess,
        config.theta_particles,
        r.log_evidence,
        r.log_evidence_se,
        if r.resampled {
            format!(
                ", resampled and moved (acceptance {:.0} %){}",
                100.0 * r.acceptance_rate(),
                match (r.exchange_log_increment, r.loglik_variance) {
                    (Some(_), Some(v)) => format!(", Var(log p̂) {v:.2}: Nx raised"),
                    (Some(_), None) => ", Nx doubled".to_string(),
                    (None, Some(v)) => format!(", Var(log p̂) {v:.2}"),
                    (None, None) => String::new(),
                }
            )
        } else {
            String::new()
        },
        state.particles,
    );
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
    let built = build(&dir.join("job.toml"), &ov)?;
    let job = &built.prep.job;
    let smc2 = &built.smc2;
    if job.fingerprint(smc2.problem().data()) != c.fingerprint || built.settings() != c.settings {
        return Err(input(
            &ckpt_path,
            "does not belong to the job.toml and data.csv beside it: refusing to report",
        ));
    }
    built
        .check(&c.finished, &c.state)
        .map_err(|e| input(&ckpt_path, e))?;
    if c.finished.len() + 1 < built.replicates as usize || !smc2.is_done(&c.state) {
        return Err(input(
            dir,
            format!(
                "the SMC² run has not finished (observation {} of {}{}): continue it with `pcmc run JOB --out {} --resume`",
                c.state.t,
                smc2.problem().data().len(),
                replicate_label(c.finished.len(), built.replicates),
                dir.display()
            ),
        ));
    }
    lock.announce()?;
    let outs = built.outputs(c.finished, c.state);
    let summary = write_outputs(dir, job, smc2, &built.config, built.nx, &outs)?;
    if !quiet {
        print!("{}", table(&summary));
        crate::summary::log_warnings(&summary, job.file.output.smoke_test);
    }
    Ok(())
}
