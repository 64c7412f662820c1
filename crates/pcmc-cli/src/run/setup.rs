//! Phase 1 of a run: the job and its data with the command line's
//! overrides applied, and the executor that runs it.

#[cfg(feature = "ballista")]
use super::JOB_TIMEOUT_ENV;
use super::{ClusterTarget, Overrides, RunOptions};
use crate::data::read_data;
use crate::error::{InputError, input};
use crate::job::{Job, check_particles};
use anyhow::Result;
use pcmc_core::observation::Data;
use pcmc_core::pmmh::Pmmh;
use pcmc_core::{ChainGroup, LikelihoodExecutor};
use std::path::{Path, PathBuf};
#[cfg(feature = "ballista")]
use std::time::Duration;

/// A job with its data, ready to run.
pub struct Prepared {
    /// The job, overrides applied.
    pub job: Job,
    /// The data.
    pub data: Data,
    /// Where the data came from.
    pub data_path: PathBuf,
    /// The input files to copy into the run directory: (name, bytes) —
    /// `data.csv`, `data-2.csv`, …, `covariates.csv`, …
    pub inputs: Vec<(String, Vec<u8>)>,
    /// The sampler.
    pub pmmh: Pmmh,
}

impl Prepared {
    /// Copies the data and covariate files into the run directory `dir`
    /// (what `pcmc report` reads back).
    ///
    /// # Errors
    /// I/O failures.
    pub fn write_inputs(&self, dir: &Path) -> Result<()> {
        for (name, bytes) in &self.inputs {
            crate::fsio::write_atomic(&dir.join(name), bytes)?;
        }
        Ok(())
    }
}

/// Loads a job and its data, applying overrides.
///
/// # Errors
/// Input errors for the job, the data and the overrides.
pub fn prepare(job_path: &Path, ov: &Overrides) -> Result<Prepared> {
    let mut job = Job::load_with(job_path, ov.inputs_from.as_deref())?;
    if let Some(n) = ov.particles {
        check_particles(Path::new("command line"), "--particles", n)?;
        job.filter.particles = n;
        // A count on the command line fixes it.
        job.mcmc.checks.auto = None;
    }
    if let Some(k) = &ov.kernel {
        job.filter.kernel = pcmc_core::ssa::KernelChoice::parse(k).ok_or_else(|| {
            InputError::flag(
                "--kernel",
                format!("{k:?} is not one of scalar, batch, simd"),
            )
        })?;
    }
    if ov.no_early_rejection {
        job.mcmc.early_rejection = false;
    }
    if let Some(n) = ov.iterations {
        if n == 0 {
            return Err(InputError::flag("--iterations", "must be at least 1").into());
        }
        job.mcmc.iterations = n;
    }
    if let Some(c) = ov.chains {
        if c == 0 || c > 1024 {
            return Err(InputError::flag("--chains", format!("{c} is not in 1..=1024")).into());
        }
        job.mcmc.chains = c;
    }
    if let Some(s) = ov.seed {
        job.mcmc.seed = s;
    }
    let n_sets = job.data_sets().len();
    if ov.data.is_some() && n_sets > 1 {
        return Err(InputError::flag(
            "--data",
            format!("the job has {n_sets} data sets ([[data]]): edit their paths in the job"),
        )
        .into());
    }
    job.inputs_from.clone_from(&ov.inputs_from);
    let paths: Vec<PathBuf> = match (&ov.data, job.data_path()) {
        (Some(p), _) => vec![p.clone()],
        (None, Some(_)) if ov.inputs_from.is_some() => {
            let dir = ov.inputs_from.as_ref().expect("checked");
            (0..n_sets)
                .map(|d| dir.join(crate::job::input_copy("data", d)))
                .collect()
        }
        (None, Some(_)) => job
            .data_sets()
            .iter()
            .map(|d| job.base_dir().join(&d.path))
            .collect(),
        (None, None) => {
            return Err(input(
                &job.path,
                "data.path: the job names no data file (or pass --data FILE.csv)",
            ));
        }
    };
    let columns = job.data_columns();
    let mut parts = Vec::with_capacity(paths.len());
    let mut inputs = Vec::new();
    for (d, p) in paths.iter().enumerate() {
        parts.push((read_data(p, &columns)?, p.clone()));
        let copy = crate::job::input_copy("data", d);
        inputs.push((copy, std::fs::read(p).unwrap_or_default()));
        if let Some(c) = job.covariate_path(d) {
            let copy = crate::job::input_copy("covariates", d);
            inputs.push((copy, std::fs::read(c).unwrap_or_default()));
        }
    }
    if let Some(b) = &job.sbml {
        inputs.push((crate::job::SBML_COPY.to_string(), b.clone()));
    }
    let data_path = paths[0].clone();
    let problem = job.problem_sets(parts)?;
    let data = problem.data().clone();
    let pmmh = Pmmh::new(problem, job.priors.clone(), job.mcmc.clone())
        .map_err(|e| input(&job.path, e.to_string()))?;
    Ok(Prepared {
        job,
        data,
        data_path,
        inputs,
        pmmh,
    })
}

/// Builds the executor named `kind` for a run of `chains` chains (the MPI
/// executor splits its ranks into one group per chain). With `cluster`, the
/// dataflow executor runs its steps on that Ballista cluster.
///
/// # Errors
/// An input error for an unknown executor or one not compiled in, or a bad
/// scheduler address; an error naming the scheduler if it cannot be reached.
pub fn make_executor(
    kind: &str,
    threads: usize,
    partitions: Option<usize>,
    chains: usize,
    cluster: Option<&ClusterTarget>,
) -> Result<Box<dyn LikelihoodExecutor>> {
    let _ = chains;
    if let Some(c) = cluster {
        if kind != "dataflow" {
            return Err(InputError::flag(
                "--scheduler",
                format!("a Ballista scheduler runs the dataflow executor's steps; use it with --executor dataflow, not {kind}"),
            )
            .into());
        }
        return ballista_executor(c, partitions.unwrap_or(threads));
    }
    #[cfg(not(feature = "dataflow"))]
    let _ = partitions;
    match kind {
        "rayon" => Ok(Box::new(
            pcmc_rayon::rayon_executor(threads)
                .map_err(|e| InputError::flag("--threads", e.to_string()))?,
        )),
        "serial" => Ok(Box::new(pcmc_core::serial())),
        #[cfg(feature = "mpi")]
        "mpi" => {
            let runner = pcmc_rayon::RayonRunner::new(threads)
                .map_err(|e| InputError::flag("--threads", e.to_string()))?;
            Ok(Box::new(pcmc_mpi::MpiExecutor::from_world_grouped(
                runner, chains,
            )?))
        }
        #[cfg(feature = "dataflow")]
        "dataflow" => Ok(Box::new(dataflow_executor(
            partitions.unwrap_or(threads),
            threads,
        )?)),
        other => Err(unavailable_executor(other)),
    }
}

/// The in-process dataflow executor of `partitions` partitions on
/// `threads` threads (fault injection from the environment, for tests).
///
/// # Errors
/// An input error for bad settings.
#[cfg(feature = "dataflow")]
pub fn dataflow_executor(
    partitions: usize,
    threads: usize,
) -> Result<pcmc_dataflow::DataflowExecutor> {
    let cfg = pcmc_dataflow::DataflowConfig::from_env(partitions, threads)
        .map_err(|e| InputError::flag("--executor dataflow", e.to_string()))?;
    Ok(pcmc_dataflow::DataflowExecutor::new(cfg)
        .map_err(|e| InputError::flag("--partitions", e.to_string()))?)
}

#[cfg(feature = "ballista")]
fn ballista_executor(c: &ClusterTarget, partitions: usize) -> Result<Box<dyn LikelihoodExecutor>> {
    Ok(Box::new(ballista_driver(c, partitions)?))
}

/// The driver of a run on the Ballista cluster `c`, `partitions` tasks per
/// job (`PCMC_BALLISTA_JOB_TIMEOUT` read from the environment).
///
/// # Errors
/// An input error for a bad address, secret or work directory; an error
/// naming the scheduler if it cannot be reached.
#[cfg(feature = "ballista")]
pub fn ballista_driver(
    c: &ClusterTarget,
    partitions: usize,
) -> Result<pcmc_ballista::BallistaExecutor> {
    pcmc_ballista::driver::parse_scheduler(&c.scheduler)
        .map_err(|e| InputError::flag("--scheduler", e.to_string()))?;
    let mut cfg = pcmc_ballista::ClusterConfig::new(&c.scheduler, partitions, c.work_dir.clone());
    cfg.token = Some(crate::cluster::load_token(c.token_file.as_deref())?);
    if let Ok(v) = std::env::var(JOB_TIMEOUT_ENV) {
        let secs: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.1 && *s <= 1e7)
            .ok_or_else(|| {
                InputError::flag(
                    JOB_TIMEOUT_ENV,
                    format!("{v:?} is not a number of seconds between 0.1 and 10^7"),
                )
            })?;
        cfg.stall_timeout = Duration::from_secs_f64(secs);
    }
    match pcmc_ballista::BallistaExecutor::new(cfg) {
        Ok(e) => Ok(e),
        // A bad address, secret or work directory is the user's to fix.
        Err(pcmc_core::Error::Setting { field, reason }) => {
            Err(InputError::flag(&field, reason).into())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(feature = "ballista"))]
fn ballista_executor(
    _c: &ClusterTarget,
    _partitions: usize,
) -> Result<Box<dyn LikelihoodExecutor>> {
    Err(ballista_missing())
}

/// Why executor `kind` cannot be built here: not compiled in (naming the
/// cargo feature), or not an executor at all. For the kinds the callers do
/// not handle themselves.
pub fn unavailable_executor(kind: &str) -> anyhow::Error {
    #[cfg(any(not(feature = "mpi"), not(feature = "dataflow")))]
    fn missing(name: &str, feature: &str) -> InputError {
        InputError::flag(
            "--executor",
            format!(
                "the {name} executor is not compiled into this pcmc: build it with the cargo feature `{feature}` \
                 (cargo build --release -p pcmc-cli --features {feature})"
            ),
        )
    }
    match kind {
        #[cfg(not(feature = "mpi"))]
        "mpi" => missing("MPI", "mpi"),
        #[cfg(not(feature = "dataflow"))]
        "dataflow" => missing("dataflow", "dataflow"),
        other => InputError::flag(
            "--executor",
            format!("{other:?} is not one of rayon, mpi, dataflow (or serial, for reference runs)"),
        ),
    }
    .into()
}

/// The error for `--scheduler` when Ballista is not compiled in.
#[cfg(not(feature = "ballista"))]
pub fn ballista_missing() -> anyhow::Error {
    InputError::flag(
        "--scheduler",
        "running on a Ballista cluster is not compiled into this pcmc: build it with the cargo feature `ballista` \
         (cargo build --release -p pcmc-cli --features ballista)",
    )
    .into()
}

/// The Ballista cluster a run's steps go to: `--scheduler` (else the
/// job's), with `--work-dir` (else the job's, else `DIR/work`, created and
/// made absolute) and `--token-file`; `None` without a scheduler.
///
/// # Errors
/// An input error for `--work-dir` or `--token-file` without a scheduler,
/// or a work directory that cannot be created.
pub fn cluster_target(job: &Job, ov: &Overrides, dir: &Path) -> Result<Option<ClusterTarget>> {
    Ok(
        match ov
            .scheduler
            .clone()
            .or_else(|| job.file.executor.scheduler.clone())
        {
            None => {
                for (flag, given) in [
                    ("--work-dir", ov.work_dir.is_some()),
                    ("--token-file", ov.token_file.is_some()),
                ] {
                    if given {
                        return Err(InputError::flag(
                            flag,
                            "applies to runs on a Ballista cluster (--scheduler) only",
                        )
                        .into());
                    }
                }
                None
            }
            Some(scheduler) => {
                let work = ov
                    .work_dir
                    .clone()
                    .or_else(|| job.file.executor.work_dir.clone())
                    .unwrap_or_else(|| dir.join("work"));
                std::fs::create_dir_all(&work)
                    .map_err(|e| input(&work, format!("cannot create the work directory: {e}")))?;
                // Absolute, not resolved through symbolic links: automount and
                // link paths differ between nodes, the path as given is the one
                // every node is told to use.
                let work = std::path::absolute(&work)
                    .map_err(|e| input(&work, format!("cannot resolve the work directory: {e}")))?;
                Some(ClusterTarget {
                    scheduler,
                    work_dir: work,
                    token_file: ov.token_file.clone(),
                })
            }
        },
    )
}

/// The run directory: `--out`, else `output.dir`, else `runs/<name>`.
pub fn run_dir(job: &Job, ov: &Overrides) -> PathBuf {
    ov.out
        .clone()
        .or_else(|| job.file.output.dir.clone())
        .unwrap_or_else(|| PathBuf::from("runs").join(&job.name))
}

/// Everything fixed for the length of a run: the job, the executor and
/// where outputs go.
pub(super) struct Setup {
    pub(super) job_path: PathBuf,
    pub(super) prep: Prepared,
    pub(super) exec: Box<dyn LikelihoodExecutor>,
    pub(super) group: ChainGroup,
    /// This process writes the outputs (rank 0 of a distributed run).
    pub(super) root: bool,
    pub(super) quiet: bool,
    pub(super) dir: PathBuf,
    pub(super) fingerprint: String,
    pub(super) names: Vec<String>,
    pub(super) first_chain: u64,
    pub(super) checkpoint_every: u64,
    /// The settings as run, stored in every checkpoint.
    pub(super) settings: crate::settings::RunSettings,
}

/// The executor kind (`--executor`, else the job's, else rayon) and the
/// worker threads (`--threads`, else the job's, else: under MPI
/// `SLURM_CPUS_PER_TASK` or 1 per rank, otherwise all cores).
///
/// # Errors
/// An input error for 0 threads.
pub fn executor_and_threads(job: &Job, ov: &Overrides) -> Result<(String, usize)> {
    let kind = ov
        .executor
        .clone()
        .or_else(|| job.file.executor.kind.clone())
        .unwrap_or_else(|| "rayon".into());
    let threads = ov.threads.or(job.file.executor.threads).unwrap_or_else(|| {
        if kind == "mpi" {
            // One thread per rank unless Slurm gives each task several CPUs.
            std::env::var("SLURM_CPUS_PER_TASK")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(1)
        } else {
            pcmc_rayon::default_threads()
        }
    });
    if threads == 0 {
        return Err(InputError::flag("--threads", "must be at least 1").into());
    }
    Ok((kind, threads))
}

/// Phase 1: loads the job and data, applies the overrides and builds the
/// executor.
pub(super) fn setup(job_path: &Path, ov: &Overrides, opts: RunOptions) -> Result<Setup> {
    let prep = prepare(job_path, ov)?;
    let job = &prep.job;
    let (kind, threads) = executor_and_threads(job, ov)?;
    let partitions = ov.partitions.or(job.file.executor.partitions);
    if partitions == Some(0) {
        return Err(InputError::flag("--partitions", "must be at least 1").into());
    }
    let first_chain = ov.first_chain.unwrap_or(0);
    if first_chain > 1_000_000 {
        return Err(InputError::flag("--first-chain", "must be at most 10^6").into());
    }
    let checkpoint_every = opts
        .checkpoint_every
        .or(job.file.output.checkpoint_every)
        .unwrap_or(100);
    if checkpoint_every == 0 {
        return Err(InputError::flag("--checkpoint-every", "must be at least 1").into());
    }
    let dir = run_dir(job, ov);
    let cluster = cluster_target(job, ov, &dir)?;
    let exec = make_executor(
        &kind,
        threads,
        partitions,
        job.mcmc.chains,
        cluster.as_ref(),
    )?;
    #[cfg(feature = "dataflow")]
    if kind == "dataflow" {
        pcmc_dataflow::check_species(job.network.species())
            .map_err(|e| input(&job.path, e.to_string()))?;
    }
    if exec.workers() > 1 && kind != "rayon" && !job.filter.resampling.is_distributable() {
        return Err(input(
            &job.path,
            format!(
                "filter.resampling: {:?} needs every weight in one place; the {kind} executor with {} workers supports systematic and stratified",
                job.filter.resampling,
                exec.workers()
            ),
        ));
    }
    // In a distributed run every rank computes the same chain; rank 0 alone
    // writes files and prints.
    let root = exec.is_root();
    let quiet = opts.quiet || !root;
    if ov.partitions.is_some() && kind != "dataflow" && !quiet {
        tracing::warn!(
            "--partitions applies to the dataflow executor only; the {kind} executor ignores it"
        );
    }
    let fingerprint = job.fingerprint(&prep.data);
    let settings = crate::settings::RunSettings::of(
        job,
        &crate::job::data_fingerprint(&prep.data),
        crate::job::Method::Pmmh,
        ov,
    );
    let names = job.parameters.clone();
    let group = exec.chain_group();
    Ok(Setup {
        job_path: job_path.to_path_buf(),
        exec,
        group,
        root,
        quiet,
        dir,
        fingerprint,
        names,
        first_chain,
        checkpoint_every,
        settings,
        prep,
    })
}
