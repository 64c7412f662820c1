//! `pcmc run`, `pcmc report` and their shared pieces.

use crate::checkpoint::{self, Checkpoint};
use crate::data::read_data;
use crate::error::{InputError, input};
use crate::job::{Job, check_particles};
use crate::output::{ChainRow, ChainWriter, read_chain_csv, write_parquet};
use crate::plots::{self, Band};
use crate::summary::{RunStats, SummaryInput, summary_json, summary_table};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use pcmc_core::diagnostics::quantile_sorted;
use pcmc_core::filter::FilterProblem;
use pcmc_core::observation::Data;
use pcmc_core::pmmh::{ChainState, IterationRecord, Pmmh};
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::simulate::simulate;
use pcmc_core::{ChainGroup, LikelihoodExecutor};
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Command-line settings of `pcmc run` that override the job file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--executor`.
    pub executor: Option<String>,
    /// `--threads`.
    pub threads: Option<usize>,
    /// `--partitions`.
    pub partitions: Option<usize>,
    /// `--particles`.
    pub particles: Option<usize>,
    /// `--kernel`.
    pub kernel: Option<String>,
    /// `--no-early-rejection`: run every proposal's filter pass to the end.
    pub no_early_rejection: bool,
    /// `--iterations`.
    pub iterations: Option<u64>,
    /// `--chains`.
    pub chains: Option<usize>,
    /// `--first-chain`: index of the first chain (array jobs run one chain
    /// each; `pcmc merge` joins them).
    pub first_chain: Option<u64>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--data`.
    pub data: Option<PathBuf>,
    /// `--out`.
    pub out: Option<PathBuf>,
    /// `--scheduler`: a Ballista scheduler for the dataflow executor.
    pub scheduler: Option<String>,
    /// `--work-dir`: where particles live between steps on a cluster.
    pub work_dir: Option<PathBuf>,
}

/// A Ballista cluster to run the dataflow executor's steps on.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterTarget {
    /// The scheduler, `df://HOST:PORT`.
    pub scheduler: String,
    /// The work directory (absolute), seen by every executor.
    pub work_dir: PathBuf,
}

/// Settings of a run as executed, stored in `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Job name.
    pub job: String,
    /// Job fingerprint.
    pub fingerprint: String,
    /// Seed.
    pub seed: u64,
    /// Chains.
    pub chains: usize,
    /// Index of the first chain.
    #[serde(default)]
    pub first_chain: u64,
    /// Particles.
    pub particles: usize,
    /// Burn-in.
    pub burn_in: u64,
    /// Iterations after burn-in.
    pub iterations: u64,
    /// Thinning.
    pub thin: u64,
    /// Statistics, once the run has finished.
    pub stats: Option<RunStats>,
}

/// A job with its data, ready to run.
pub struct Prepared {
    /// The job, overrides applied.
    pub job: Job,
    /// The data.
    pub data: Data,
    /// Where the data came from.
    pub data_path: PathBuf,
    /// The raw data bytes (copied into the run directory).
    pub data_bytes: Vec<u8>,
    /// The sampler.
    pub pmmh: Pmmh,
}

/// Loads a job and its data, applying overrides.
///
/// # Errors
/// Input errors for the job, the data and the overrides.
pub fn prepare(job_path: &Path, ov: &Overrides) -> Result<Prepared> {
    let mut job = Job::load(job_path)?;
    if let Some(n) = ov.particles {
        check_particles(Path::new("command line"), "--particles", n)?;
        job.filter.particles = n;
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
    let data_path = match (&ov.data, job.data_path()) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => p,
        (None, None) => {
            return Err(input(
                &job.path,
                "data.path: the job names no data file (or pass --data FILE.csv)",
            ));
        }
    };
    let data = read_data(&data_path, &job.network)?;
    let data_bytes = std::fs::read(&data_path).unwrap_or_default();
    let problem = job.problem(data.clone(), &data_path)?;
    let pmmh = Pmmh::new(problem, job.priors.clone(), job.mcmc.clone())
        .map_err(|e| input(&job.path, e.to_string()))?;
    Ok(Prepared {
        job,
        data,
        data_path,
        data_bytes,
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
            pcmc_rayon::rayon_executor(threads).map_err(|e| InputError::flag("--threads", e.to_string()))?,
        )),
        "serial" => Ok(Box::new(pcmc_core::serial())),
        #[cfg(feature = "mpi")]
        "mpi" => {
            let runner = pcmc_rayon::RayonRunner::new(threads).map_err(|e| InputError::flag("--threads", e.to_string()))?;
            Ok(Box::new(pcmc_mpi::MpiExecutor::from_world_grouped(runner, chains)?))
        }
        #[cfg(not(feature = "mpi"))]
        "mpi" => Err(InputError::flag(
            "--executor",
            "the MPI executor is not compiled into this pcmc: build it with the cargo feature `mpi` \
             (cargo build --release -p pcmc-cli --features mpi)",
        )
        .into()),
        #[cfg(feature = "dataflow")]
        "dataflow" => {
            let cfg = pcmc_dataflow::DataflowConfig::from_env(partitions.unwrap_or(threads), threads)
                .map_err(|e| InputError::flag("--executor dataflow", e.to_string()))?;
            Ok(Box::new(
                pcmc_dataflow::DataflowExecutor::new(cfg)
                    .map_err(|e| InputError::flag("--partitions", e.to_string()))?,
            ))
        }
        #[cfg(not(feature = "dataflow"))]
        "dataflow" => Err(InputError::flag(
            "--executor",
            "the dataflow executor is not compiled into this pcmc: build it with the cargo feature `dataflow` \
             (cargo build --release -p pcmc-cli --features dataflow)",
        )
        .into()),
        other => Err(InputError::flag(
            "--executor",
            format!("{other:?} is not one of rayon, mpi, dataflow (or serial, for reference runs)"),
        )
        .into()),
    }
}

#[cfg(feature = "ballista")]
fn ballista_executor(c: &ClusterTarget, partitions: usize) -> Result<Box<dyn LikelihoodExecutor>> {
    pcmc_ballista::driver::parse_scheduler(&c.scheduler)
        .map_err(|e| InputError::flag("--scheduler", e.to_string()))?;
    let mut cfg = pcmc_ballista::ClusterConfig::new(&c.scheduler, partitions, c.work_dir.clone());
    if let Ok(v) = std::env::var(JOB_TIMEOUT_ENV) {
        let secs: u64 = v.trim().parse().ok().filter(|s| *s >= 1).ok_or_else(|| {
            InputError::flag(
                JOB_TIMEOUT_ENV,
                format!("{v:?} is not a number of seconds of at least 1"),
            )
        })?;
        cfg.job_timeout = Duration::from_secs(secs);
    }
    Ok(Box::new(pcmc_ballista::BallistaExecutor::new(cfg)?))
}

#[cfg(not(feature = "ballista"))]
fn ballista_executor(
    _c: &ClusterTarget,
    _partitions: usize,
) -> Result<Box<dyn LikelihoodExecutor>> {
    Err(InputError::flag(
        "--scheduler",
        "running on a Ballista cluster is not compiled into this pcmc: build it with the cargo feature `ballista` \
         (cargo build --release -p pcmc-cli --features ballista)",
    )
    .into())
}

/// Environment variable: the longest wait in seconds for one job on a
/// Ballista cluster before the run stops as if the cluster were gone
/// (default 600).
pub const JOB_TIMEOUT_ENV: &str = "PCMC_BALLISTA_JOB_TIMEOUT";

struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    last_log: Instant,
    start: Instant,
    total: u64,
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} it ({per_sec}, ETA {eta}) {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        });
        Progress {
            bar,
            quiet,
            last_log: Instant::now(),
            start: Instant::now(),
            total,
        }
    }

    fn update(&mut self, done: u64, acceptance: f64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            b.set_message(format!("acceptance {acceptance:.2}"));
        } else if !self.quiet
            && (self.last_log.elapsed() >= Duration::from_secs(10) || done == self.total)
        {
            let el = self.start.elapsed().as_secs_f64();
            let rate = done as f64 / el.max(1e-9);
            let eta = (self.total - done) as f64 / rate.max(1e-9);
            tracing::info!(
                "iteration {done}/{} ({rate:.2} it/s, acceptance {acceptance:.2}, elapsed {el:.0} s, ETA {eta:.0} s)",
                self.total
            );
            self.last_log = Instant::now();
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn row_of(st: &ChainState, accepted: bool) -> ChainRow {
    ChainRow {
        chain: st.chain,
        iteration: st.iteration,
        loglik: st.loglik,
        accepted,
        theta: st.theta.clone(),
    }
}

/// The run directory: `--out`, else `output.dir`, else `runs/<name>`.
pub fn run_dir(job: &Job, ov: &Overrides) -> PathBuf {
    ov.out
        .clone()
        .or_else(|| job.file.output.dir.clone())
        .unwrap_or_else(|| PathBuf::from("runs").join(&job.name))
}

fn create_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(input(dir, "the output path exists and is not a directory"));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| input(dir, format!("cannot create the output directory: {e}")))?;
    let probe = dir.join(".pcmc-write-test");
    std::fs::write(&probe, b"")
        .map_err(|e| input(dir, format!("the output directory is not writable: {e}")))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Writes `path` atomically (temporary file, fsync, rename).
///
/// # Errors
/// I/O failures.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Options of `pcmc run` that are not job settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// No progress bar, log lines or summary table.
    pub quiet: bool,
    /// Continue from the checkpoint in the run directory, if there is one.
    pub resume: bool,
    /// Checkpoint every this many iterations (overrides the job).
    pub checkpoint_every: Option<u64>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every iteration ran and the outputs are complete.
    Finished,
    /// A signal (SIGTERM, SIGINT, SIGUSR1) stopped the run after a checkpoint;
    /// `pcmc run --resume` continues it.
    Interrupted,
    /// The cluster became unavailable (the message says which and why); the
    /// checkpoint after the last complete iteration is written, and `pcmc
    /// run --resume` continues once the cluster is back.
    ClusterLost(String),
}

/// Exit status of a run stopped by a signal after writing its checkpoint
/// (EX_TEMPFAIL: "try again"), so batch scripts can requeue.
pub const EXIT_INTERRUPTED: u8 = 75;

fn signal_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        // A second signal while a checkpoint is pending stops at once.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    signal_hook::flag::register(SIGUSR1, flag.clone())?;
    Ok(flag)
}

/// Cuts `chain.csv` in `dir` back to its header and first `rows` rows
/// (atomically) and returns those rows.
fn truncate_chain(dir: &Path, rows: u64) -> Result<Vec<ChainRow>> {
    let path = dir.join("chain.csv");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| input(&path, format!("cannot read the chain to resume it: {e}")))?;
    let mut end = 0;
    let mut lines = 0u64;
    for (i, b) in text.bytes().enumerate() {
        if b == b'\n' {
            if lines == rows {
                end = i + 1;
                break;
            }
            lines += 1;
        }
    }
    if end == 0 {
        return Err(input(
            &path,
            format!(
                "has fewer than the {rows} rows the checkpoint records: cannot resume (start afresh without --resume)"
            ),
        ));
    }
    if end < text.len() {
        write_atomic(&path, &text.as_bytes()[..end])?;
    }
    let (_, parsed) = read_chain_csv(&path)?;
    Ok(parsed)
}

/// `pcmc run`, in four phases: `setup` (the job, its data and the
/// executor), `open_run` (a new run directory, or the checkpoint of one to
/// resume), `iterate` (the iteration loop with its checkpoints and signal
/// handling) and `finish_run` (run statistics, `summary.json`, plots).
///
/// # Errors
/// Input errors (exit 2) and run failures (exit 1).
pub fn run(job_path: &Path, ov: &Overrides, opts: RunOptions) -> Result<RunOutcome> {
    // Signals that arrive from now on stop the run cleanly at the next
    // iteration boundary, after a checkpoint.
    let stop = signal_flag()?;
    let mut s = setup(job_path, ov, opts)?;
    let mut r = open_run(&mut s, opts)?;
    match iterate(&mut s, &mut r, &stop)? {
        RunOutcome::Finished => {}
        stopped => return Ok(stopped),
    }
    finish_run(&mut s, r)?;
    Ok(RunOutcome::Finished)
}

/// Everything fixed for the length of a run: the job, the executor and
/// where outputs go.
struct Setup {
    job_path: PathBuf,
    prep: Prepared,
    exec: Box<dyn LikelihoodExecutor>,
    group: ChainGroup,
    /// This process writes the outputs (rank 0 of a distributed run).
    root: bool,
    quiet: bool,
    dir: PathBuf,
    fingerprint: String,
    names: Vec<String>,
    first_chain: u64,
    checkpoint_every: u64,
}

/// Phase 1: loads the job and data, applies the overrides and builds the
/// executor.
fn setup(job_path: &Path, ov: &Overrides, opts: RunOptions) -> Result<Setup> {
    let prep = prepare(job_path, ov)?;
    let job = &prep.job;
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
    let cluster = match ov
        .scheduler
        .clone()
        .or_else(|| job.file.executor.scheduler.clone())
    {
        None => {
            if ov.work_dir.is_some() {
                return Err(InputError::flag(
                    "--work-dir",
                    "applies to runs on a Ballista cluster (--scheduler) only",
                )
                .into());
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
            let work = std::fs::canonicalize(&work)
                .map_err(|e| input(&work, format!("cannot resolve the work directory: {e}")))?;
            Some(ClusterTarget {
                scheduler,
                work_dir: work,
            })
        }
    };
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
    let names = job.network.parameters().to_vec();
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
        prep,
    })
}

/// The state of a run in progress.
struct RunProgress {
    record: RunRecord,
    writer: Option<ChainWriter>,
    rows: Vec<ChainRow>,
    states: Vec<ChainState>,
    stats: RunStats,
    /// The first iteration still to run.
    first: u64,
    /// Wall seconds of earlier segments of a resumed run.
    wall_before: f64,
    /// Start of this segment.
    segment: Instant,
}

impl RunProgress {
    /// Writes the checkpoint after iteration `it` (root only).
    fn save(&mut self, s: &Setup, it: u64) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        writer.sync()?;
        let mut st = self.stats.clone();
        st.wall_seconds = self.wall_before + self.segment.elapsed().as_secs_f64();
        checkpoint::write(
            &s.dir,
            &Checkpoint {
                fingerprint: s.fingerprint.clone(),
                iteration: it,
                rows: self.rows.len() as u64,
                chains: self.states.clone(),
                stats: st,
            },
        )
    }
}

/// Phase 2: validates a checkpoint to resume (before anything in the
/// directory is touched), then opens the run directory: either cuts its
/// chain back to the checkpoint, or starts afresh and evaluates every
/// chain's starting point.
fn open_run(s: &mut Setup, opts: RunOptions) -> Result<RunProgress> {
    let job = &s.prep.job;
    let dir = &s.dir;
    let ckpt = if opts.resume && dir.is_dir() {
        checkpoint::read(dir)?
    } else {
        None
    };
    if let Some(c) = &ckpt {
        if c.fingerprint != s.fingerprint {
            return Err(input(
                dir.join(checkpoint::FILE),
                format!(
                    "was written for another job, data set or settings (fingerprint {}, this run {}): refusing to resume",
                    c.fingerprint, s.fingerprint
                ),
            ));
        }
        if c.chains.len() != job.mcmc.chains
            || c.chains.iter().any(|st| st.iteration != c.iteration)
            || c.chains
                .iter()
                .enumerate()
                .any(|(i, st)| st.chain != s.first_chain + i as u64)
        {
            return Err(input(
                dir.join(checkpoint::FILE),
                "inconsistent chain states: refusing to resume",
            ));
        }
    } else if opts.resume && !s.quiet {
        tracing::info!(
            "no checkpoint in {}: starting from the beginning",
            dir.display()
        );
    }
    if s.root {
        create_dir(dir)?;
        let _ = std::fs::remove_file(dir.join("summary.json"));
    }
    let record = RunRecord {
        job: job.name.clone(),
        fingerprint: s.fingerprint.clone(),
        seed: job.mcmc.seed,
        chains: job.mcmc.chains,
        first_chain: s.first_chain,
        particles: job.filter.particles,
        burn_in: job.mcmc.burn_in,
        iterations: job.mcmc.iterations,
        thin: job.mcmc.thin,
        stats: None,
    };
    let pmmh = &s.prep.pmmh;
    if !s.quiet {
        tracing::info!(
            "{} — {} chain(s) × {} iterations ({} burn-in), {} particles, executor {} × {}, output {}",
            job.name,
            job.mcmc.chains,
            pmmh.total_iterations(),
            job.mcmc.burn_in,
            job.filter.particles,
            s.exec.name(),
            s.exec.workers(),
            dir.display()
        );
    }
    let segment = Instant::now();
    let (writer, rows, states, mut stats, first) = match ckpt {
        Some(c) => {
            let (rows, writer) = if s.root {
                let rows = truncate_chain(dir, c.rows)?;
                let writer = ChainWriter::append(dir, &s.names, job.file.output.parquet, &rows)?;
                (rows, Some(writer))
            } else {
                (Vec::new(), None)
            };
            if !s.quiet {
                tracing::info!(
                    "resuming after iteration {} ({} rows kept)",
                    c.iteration,
                    rows.len()
                );
            }
            (writer, rows, c.chains, c.stats, c.iteration + 1)
        }
        None => {
            let writer = if s.root {
                write_atomic(&dir.join("job.toml"), job.text.as_bytes())?;
                write_atomic(&dir.join("data.csv"), &s.prep.data_bytes)?;
                let _ = std::fs::remove_file(dir.join(checkpoint::FILE));
                Some(ChainWriter::create(dir, &s.names, job.file.output.parquet)?)
            } else {
                None
            };
            let mut stats = RunStats::default();
            let mut mine = Vec::new();
            for (i, c) in (s.first_chain..s.first_chain + job.mcmc.chains as u64).enumerate() {
                if s.group.runs(i) {
                    let (st, rec) = pmmh.init_chain(s.exec.as_mut(), c).map_err(|e| match e {
                        pcmc_core::Error::NoStart { .. } => {
                            input(&job.path, format!("mcmc.init: {e}"))
                        }
                        other => other.into(),
                    })?;
                    account(&rec, &mut stats);
                    mine.push(Shared {
                        index: i,
                        state: st.clone(),
                        accepted: rec.accepted,
                        kept: rec.kept,
                    });
                }
            }
            let states = share_chains(s.exec.as_mut(), s.group, job.mcmc.chains, mine)?
                .into_iter()
                .map(|sh| sh.state)
                .collect();
            (writer, Vec::new(), states, stats, 1)
        }
    };
    if s.root {
        write_atomic(
            &dir.join("run.json"),
            serde_json::to_string_pretty(&record)?.as_bytes(),
        )?;
    }
    stats.executor = s.exec.name().to_string();
    stats.kernel = pmmh.problem().kernel_in_use().to_string();
    stats.workers = s.exec.workers();
    stats.threads_per_worker = s.exec.threads_per_worker();
    stats.chain_groups = s.group.count;
    let mut r = RunProgress {
        record,
        writer,
        rows,
        states,
        wall_before: stats.wall_seconds,
        stats,
        first,
        segment,
    };
    if first == 1 {
        r.save(s, 0)?;
    }
    Ok(r)
}

/// Phase 3: the iteration loop. Every chain of this worker's group takes a
/// step, the groups share their chains, kept rows are written; a checkpoint
/// is written every `checkpoint_every` iterations, every 10 minutes and when
/// a signal arrives (the run then stops with [`RunOutcome::Interrupted`]).
fn iterate(
    s: &mut Setup,
    r: &mut RunProgress,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<RunOutcome> {
    let pmmh = &s.prep.pmmh;
    let total = pmmh.total_iterations();
    let mut progress = Progress::new(total, s.quiet);
    let mut last_save = Instant::now();
    for it in r.first..=total {
        // Where to go back to if the cluster is lost during the iteration.
        let before = (r.states.clone(), r.stats.clone());
        let mut lost = None;
        let mut mine = Vec::new();
        for (i, st) in r.states.iter_mut().enumerate() {
            if !s.group.runs(i) {
                continue;
            }
            let rec = match pmmh.step(s.exec.as_mut(), st) {
                Ok(rec) => rec,
                Err(pcmc_core::Error::Unavailable(why)) => {
                    lost = Some(why);
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            account(&rec, &mut r.stats);
            if s.exec.workers() > 1 {
                let mut v = rec.theta.clone();
                v.push(rec.loglik);
                s.exec.check_consensus(&v)?;
            }
            mine.push(Shared {
                index: i,
                state: st.clone(),
                accepted: rec.accepted,
                kept: rec.kept,
            });
        }
        if let Some(why) = lost {
            (r.states, r.stats) = before;
            r.save(s, it - 1)?;
            progress.finish();
            if let Some(w) = r.writer.take() {
                w.finish()?;
            }
            return Ok(RunOutcome::ClusterLost(format!(
                "{why}; checkpoint written after iteration {}: continue with `pcmc run {} --out {} --resume` once the cluster is back",
                it - 1,
                s.job_path.display(),
                s.dir.display()
            )));
        }
        // Chains of other groups arrive here; rows go out in chain order.
        for sh in share_chains(s.exec.as_mut(), s.group, r.states.len(), mine)? {
            if sh.kept {
                r.stats.account_kept(&sh.state);
            }
            if s.group.count > 1 {
                r.states[sh.index] = sh.state.clone();
            }
            if sh.kept
                && let Some(w) = r.writer.as_mut()
            {
                let row = row_of(&sh.state, sh.accepted);
                w.write(&row)?;
                r.rows.push(row);
            }
        }
        let acc = r
            .states
            .iter()
            .map(|st| st.accepted as f64 / st.proposed.max(1) as f64)
            .sum::<f64>()
            / r.states.len() as f64;
        progress.update(it, acc);
        // Every rank must stop at the same iteration.
        let interrupted = s
            .exec
            .any_worker(stop.load(std::sync::atomic::Ordering::SeqCst))?;
        if interrupted
            || it == total
            || it.is_multiple_of(s.checkpoint_every)
            || last_save.elapsed() > Duration::from_secs(600)
        {
            r.save(s, it)?;
            last_save = Instant::now();
        }
        if interrupted && it < total {
            progress.finish();
            if let Some(w) = r.writer.take() {
                w.finish()?;
            }
            if s.root {
                tracing::warn!(
                    "stopped by a signal after iteration {it}; checkpoint written: continue with `pcmc run {} --out {} --resume`",
                    s.job_path.display(),
                    s.dir.display()
                );
            }
            return Ok(RunOutcome::Interrupted);
        }
    }
    progress.finish();
    if let Some(w) = r.writer.take() {
        w.finish()?;
    }
    Ok(RunOutcome::Finished)
}

/// Phase 4: totals over workers (stage times, load balance, memory, SSA
/// counters), then `run.json`, `summary.json`, the table and the plots.
fn finish_run(s: &mut Setup, mut r: RunProgress) -> Result<()> {
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
    for st in &r.states {
        stats.add_chain(st);
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

/// Adds a record's filter pass to the run statistics (this worker's own
/// share: with several chain groups, the totals are formed at the end).
fn account(rec: &IterationRecord, stats: &mut RunStats) {
    if let Some(f) = &rec.filter {
        stats.filter_passes += 1;
        stats.filter_steps += f.ess.len() as u64;
        stats.stages.add(&f.times);
        stats.balance.add(&f.balance);
        stats.task_retries += f.task_retries;
        stats.jobs += f.jobs;
        stats.jobs_resubmitted += f.jobs_resubmitted;
        stats.bytes_sent += f.bytes_sent;
        stats.rows_moved += f.rows_moved;
    }
}

/// One chain's state after an iteration, as chain groups share it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shared {
    /// The chain's position in the run (0 for its first chain).
    index: usize,
    state: ChainState,
    accepted: bool,
    kept: bool,
}

/// Exchanges the chains each group ran this iteration (`mine`) so that every
/// worker learns all `chains` of them; returns them in chain order.
fn share_chains(
    exec: &mut dyn LikelihoodExecutor,
    group: ChainGroup,
    chains: usize,
    mine: Vec<Shared>,
) -> Result<Vec<Shared>> {
    if group.count == 1 {
        return Ok(mine);
    }
    // Group leaders speak for their groups; the others send nothing.
    let bytes = if group.leader {
        serde_json::to_vec(&mine)?
    } else {
        Vec::new()
    };
    let mut all: Vec<Shared> = Vec::with_capacity(chains);
    for part in exec.all_gather_bytes(&bytes)? {
        if !part.is_empty() {
            all.extend(serde_json::from_slice::<Vec<Shared>>(&part)?);
        }
    }
    all.sort_by_key(|s| s.index);
    if all.len() != chains || all.iter().enumerate().any(|(i, s)| s.index != i) {
        anyhow::bail!("chain groups returned an inconsistent set of chains");
    }
    Ok(all)
}

/// Writes `summary.json`, prints the table and draws the plots.
#[allow(clippy::too_many_arguments)]
fn finish_outputs(
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
    let summary = summary_json(&SummaryInput {
        job: &record.job,
        fingerprint: &record.fingerprint,
        names,
        truth: job.truth.as_deref(),
        rows,
        chains: record.chains,
        particles: record.particles,
        burn_in: record.burn_in,
        iterations: record.iterations,
        thin: record.thin,
        stats: record.stats.as_ref(),
    });
    write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    if !quiet {
        print!("{}", summary_table(&summary));
        for w in summary["warnings"].as_array().into_iter().flatten() {
            tracing::warn!("{}", w.as_str().unwrap_or(""));
        }
    }
    if job.file.output.plots && !rows.is_empty() {
        plots::trace(&dir.join("trace.svg"), names, rows, job.truth.as_deref())?;
        plots::density(
            &dir.join("density.svg"),
            names,
            rows,
            &job.priors,
            job.truth.as_deref(),
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
    let t0 = problem.t0();
    let t1 = *data.times().last().expect("non-empty data");
    let grid: Vec<f64> = (0..=100)
        .map(|i| t0 + (t1 - t0) * f64::from(i) / 100.0)
        .collect();
    let m = draws.min(rows.len());
    let obs_n = data.observed().len();
    let mut sims: Vec<Vec<Vec<f64>>> = vec![vec![Vec::with_capacity(m); grid.len()]; obs_n];
    let mut dropped = 0;
    for d in 0..m {
        let r = &rows[d * rows.len() / m];
        let tr = simulate(
            problem.network(),
            &r.theta,
            problem.initial(),
            problem.observation(),
            data.observed(),
            t0,
            &grid,
            &problem.config().caps,
            problem.config().max_events,
            StreamKey::new(seed, 0, d as u64, 0, 0, Purpose::Predictive),
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
        return Vec::new();
    }
    (0..obs_n)
        .map(|s| {
            let mut lo = Vec::new();
            let mut mid = Vec::new();
            let mut hi = Vec::new();
            for col in sims[s].iter_mut() {
                col.sort_by(f64::total_cmp);
                lo.push(quantile_sorted(col, 0.05));
                mid.push(quantile_sorted(col, 0.5));
                hi.push(quantile_sorted(col, 0.95));
            }
            Band {
                name: data.names()[s].clone(),
                times: grid.clone(),
                lo,
                mid,
                hi,
                data: (0..data.len())
                    .map(|i| (data.times()[i], data.row(i)[s]))
                    .collect(),
                draws: m - dropped,
                dropped,
            }
        })
        .collect()
}

/// `pcmc report DIR`: recomputes the summary and plots from a run directory
/// (finished or not), and rebuilds `chain.parquet` from `chain.csv`.
///
/// # Errors
/// Input errors for a missing or malformed run directory.
pub fn report(dir: &Path, quiet: bool) -> Result<()> {
    if !dir.is_dir() {
        return Err(input(
            dir,
            "not a run directory (it does not exist or is not a directory)",
        ));
    }
    let job_path = dir.join("job.toml");
    let run_path = dir.join("run.json");
    for p in [&job_path, &run_path, &dir.join("chain.csv")] {
        if !p.is_file() {
            return Err(input(
                dir,
                format!(
                    "not a run directory: {} is missing",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ),
            ));
        }
    }
    let text = std::fs::read_to_string(&run_path)
        .map_err(|e| input(&run_path, format!("cannot read: {e}")))?;
    let record: RunRecord = serde_json::from_str(&text)
        .map_err(|e| input(&run_path, format!("malformed run record: {e}")))?;
    let ov = Overrides {
        data: Some(dir.join("data.csv")),
        particles: Some(record.particles),
        chains: Some(record.chains),
        first_chain: Some(record.first_chain),
        seed: Some(record.seed),
        iterations: Some(record.iterations.max(1)),
        ..Overrides::default()
    };
    let prep = prepare(&job_path, &ov)?;
    let (names, rows) = read_chain_csv(&dir.join("chain.csv"))?;
    if names != prep.job.network.parameters() {
        return Err(input(
            dir.join("chain.csv"),
            "the chain's columns do not match the job's parameters",
        ));
    }
    finish_outputs(
        dir,
        &prep.job,
        prep.pmmh.problem(),
        &record,
        &names,
        &rows,
        true,
        quiet,
    )
}

/// `pcmc merge OUT DIR...`: joins run directories of the same job whose
/// chains are different (e.g. one chain per array task, started with
/// `--first-chain`) into one run directory, with rows in the order of a
/// single multi-chain run, then writes the summary and plots.
///
/// # Errors
/// Input errors for missing directories, different jobs or repeated chains.
pub fn merge(out: &Path, dirs: &[PathBuf], quiet: bool) -> Result<()> {
    if dirs.is_empty() {
        return Err(InputError::flag("merge", "name at least one run directory").into());
    }
    let mut records = Vec::new();
    let mut rows = Vec::new();
    let mut names: Option<Vec<String>> = None;
    for d in dirs {
        let run_path = d.join("run.json");
        let text = std::fs::read_to_string(&run_path)
            .map_err(|e| input(&run_path, format!("not a run directory: {e}")))?;
        let rec: RunRecord = serde_json::from_str(&text)
            .map_err(|e| input(&run_path, format!("malformed run record: {e}")))?;
        if rec.stats.is_none() {
            return Err(input(d, "this run has not finished (resume it first)"));
        }
        let (n, r) = read_chain_csv(&d.join("chain.csv"))?;
        if let Some(prev) = &names
            && *prev != n
        {
            return Err(input(
                d.join("chain.csv"),
                "its parameters differ from the other runs'",
            ));
        }
        names = Some(n);
        if let Some(first) = records.first() {
            let first: &RunRecord = first;
            if first.fingerprint != rec.fingerprint
                || first.iterations != rec.iterations
                || first.burn_in != rec.burn_in
                || first.thin != rec.thin
            {
                return Err(input(
                    d,
                    "is a run of another job, data set or settings: cannot merge",
                ));
            }
        }
        rows.extend(r);
        records.push(rec);
    }
    let mut ids: Vec<u64> = rows.iter().map(|r| r.chain).collect();
    ids.sort_unstable();
    ids.dedup();
    let expected: usize = records.iter().map(|r| r.chains).sum();
    if ids.len() != expected {
        return Err(InputError::flag(
            "merge",
            "the runs share chain indices (give each array task its own --first-chain)",
        )
        .into());
    }
    rows.sort_by_key(|r| (r.iteration, r.chain));
    let names = names.expect("at least one run");
    create_dir(out)?;
    for f in ["job.toml", "data.csv"] {
        std::fs::copy(dirs[0].join(f), out.join(f))
            .map_err(|e| input(dirs[0].join(f), format!("cannot copy: {e}")))?;
    }
    let mut text = crate::output::header(&names);
    text.push('\n');
    for r in &rows {
        text.push_str(&crate::output::format_row(r));
        text.push('\n');
    }
    write_atomic(&out.join("chain.csv"), text.as_bytes())?;
    let mut merged = records[0].clone();
    merged.chains = expected;
    merged.first_chain = ids[0];
    let mut stats = RunStats::default();
    for rec in &records {
        let st = rec.stats.as_ref().expect("checked");
        stats.executor.clone_from(&st.executor);
        stats.kernel.clone_from(&st.kernel);
        stats.workers = stats.workers.max(st.workers);
        stats.wall_seconds = stats.wall_seconds.max(st.wall_seconds);
        stats.add_run(st);
        stats.acceptance_per_chain.extend(&st.acceptance_per_chain);
        stats.iterations_done = st.iterations_done;
    }
    merged.stats = Some(stats);
    write_atomic(
        &out.join("run.json"),
        serde_json::to_string_pretty(&merged)?.as_bytes(),
    )?;
    report(out, quiet)
}
