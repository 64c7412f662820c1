//! `pcmc run` and the commands that read run directories (`report`,
//! `merge`). A run passes through four phases, one file each: [`setup`]
//! (the job, its data and the executor), `open` (a new run directory, or
//! the checkpoint of one to resume), `iterate` (the loop with its
//! checkpoints and signals) and `finish` (totals, summary, plots); `state`
//! holds what the phases share while a run is in progress. Those are
//! PMMH's; [`smc2`] is SMC²'s run, with the same setup, resumption rules
//! ([`resume`]) and output directory, its own loop over observations and
//! its own outputs.

mod finish;
pub(crate) mod iterate;
mod merge;
mod open;
mod report;
pub mod resume;
pub mod setup;
pub mod smc2;
mod state;

pub use finish::predictive_bands;
pub use merge::merge;
pub use report::report;
pub use setup::{Prepared, executor_and_threads, make_executor, prepare, run_dir};

use crate::summary::RunStats;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Command-line settings of `pcmc run` that override the job file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--method`: `pmmh` or `smc2` (else the job's `method`).
    pub method: Option<String>,
    /// `--theta-particles`: SMC²'s `Nθ`.
    pub theta_particles: Option<usize>,
    /// `--replicates`: SMC²'s independent replicates.
    pub replicates: Option<u32>,
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
    /// Read every data set and covariate file from this run directory's
    /// copies (`data.csv`, `data-2.csv`, …, `covariates.csv`, …):
    /// `pcmc report`.
    pub inputs_from: Option<PathBuf>,
    /// `--out`.
    pub out: Option<PathBuf>,
    /// `--scheduler`: a Ballista scheduler for the dataflow executor.
    pub scheduler: Option<String>,
    /// `--work-dir`: where particles live between steps on a cluster.
    pub work_dir: Option<PathBuf>,
    /// `--token-file`: the Ballista cluster's secret (else
    /// `PCMC_CLUSTER_TOKEN`).
    pub token_file: Option<PathBuf>,
}

/// A Ballista cluster to run the dataflow executor's steps on.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterTarget {
    /// The scheduler, `df://HOST:PORT`.
    pub scheduler: String,
    /// The work directory (absolute), seen by every executor.
    pub work_dir: PathBuf,
    /// `--token-file`, if given (else the secret comes from
    /// `PCMC_CLUSTER_TOKEN`).
    pub token_file: Option<PathBuf>,
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

/// Environment variable: how long (seconds, decimals allowed) a job on a
/// Ballista cluster may go without progress — no task started, beating or
/// finished — before the run stops as if the cluster were gone (default
/// 600). A job that keeps making progress may take as long as it needs.
pub const JOB_TIMEOUT_ENV: &str = "PCMC_BALLISTA_JOB_TIMEOUT";

/// Options of `pcmc run` that are not job settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// No progress bar, log lines or summary table.
    pub quiet: bool,
    /// Continue from the checkpoint in the run directory, if there is one.
    pub resume: bool,
    /// Checkpoint every this many iterations (overrides the job).
    pub checkpoint_every: Option<u64>,
    /// With `resume`: run a PMMH run on to the `--iterations` given, more
    /// than it was started with (the chain a run started with that many
    /// iterations gives, bit for bit).
    pub extend: bool,
    /// Start afresh in a directory that holds another run's outputs,
    /// removing them first.
    pub force: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every iteration ran and the outputs are complete.
    Finished,
    /// A signal (SIGTERM, SIGINT, SIGUSR1) stopped the run after a checkpoint;
    /// `pcmc run --resume` continues it.
    Interrupted,
    /// SMC² finished and wrote its outputs, but its evidence is not usable
    /// (the θ-particles collapsed, the moves stalled, …): the message says
    /// why and what to do. Exit status [`EXIT_UNUSABLE`].
    EvidenceUnusable(String),
    /// The cluster became unavailable (the message says which and why); the
    /// checkpoint after the last complete iteration is written, and `pcmc
    /// run --resume` continues once the cluster is back.
    ClusterLost(String),
}

/// Exit status of an SMC² run that finished with an evidence that is not
/// usable ([`RunOutcome::EvidenceUnusable`]).
pub const EXIT_UNUSABLE: u8 = 3;

/// Exit status of a run stopped by a signal after writing its checkpoint
/// (EX_TEMPFAIL: "try again"), so batch scripts can requeue.
pub const EXIT_INTERRUPTED: u8 = 75;

/// `pcmc run` of a PMMH job ([`crate::launch::run`] chooses the method), in
/// four phases: `setup` (the job, its data and the
/// executor), `open_run` (a new run directory, or the checkpoint of one to
/// resume), `iterate` (the iteration loop with its checkpoints and signal
/// handling) and `finish_run` (run statistics, `summary.json`, plots).
///
/// # Errors
/// Input errors (exit 2) and run failures (exit 1).
pub fn run(job_path: &Path, ov: &Overrides, opts: RunOptions) -> Result<RunOutcome> {
    // Signals that arrive from now on stop the run cleanly at the next
    // iteration boundary, after a checkpoint.
    let stop = iterate::signal_flag()?;
    let mut s = setup::setup(job_path, ov, opts)?;
    s.exec.stop_on(stop.clone());
    let mut r = open::open_run(&mut s, opts)?;
    match iterate::iterate(&mut s, &mut r, &stop)? {
        RunOutcome::Finished => {}
        stopped => return Ok(stopped),
    }
    finish::finish_run(&mut s, r)?;
    Ok(RunOutcome::Finished)
}
