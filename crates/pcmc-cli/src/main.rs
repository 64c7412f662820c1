//! `pcmc`: particle marginal Metropolis–Hastings for stochastic kinetic
//! models, on a laptop (rayon), a Slurm cluster (MPI) or a dataflow engine.
//!
//! Exit status: 0 success, 2 bad input (job, data, flags), 3 an SMC² run
//! whose evidence is not usable (outputs written), 75 stopped after a
//! checkpoint, 1 other failures.
#![deny(missing_docs)]

use anyhow::Result;
use clap::{Parser, Subcommand};
use pcmc_cli::error::{self, input};
use pcmc_cli::{data, job, run};
use pcmc_core::rng::{Purpose, StreamKey};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "pcmc",
    version,
    about = "Particle MCMC for stochastic kinetic models on laptops and HPC clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run inference for a job file: PMMH, or SMC² (`method = "smc2"`).
    Run {
        /// The job file (TOML).
        job: PathBuf,
        /// Inference method: pmmh or smc2 (default: the job's `method`, else pmmh).
        #[arg(long)]
        method: Option<String>,
        /// Executor: rayon (default), serial (the one-thread reference), mpi or
        /// dataflow (the last two need the cargo features `mpi`, `dataflow`).
        #[arg(long)]
        executor: Option<String>,
        /// Worker threads (default: the job's, else SLURM_CPUS_PER_TASK, else all cores).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
        threads: Option<u64>,
        /// Partitions (dataflow executor).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        partitions: Option<u64>,
        /// Particles per filter pass (SMC²: the starting Nx per θ-particle).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=(1u64 << 32)))]
        particles: Option<u64>,
        /// SMC²: the number of θ-particles Nθ.
        #[arg(long, value_parser = clap::value_parser!(u64).range(2..=(1u64 << 24)))]
        theta_particles: Option<u64>,
        /// SMC²: independent replicates of the run, combined (the evidence
        /// their mean, its error their spread, the posterior their pooled
        /// clouds).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        replicates: Option<u32>,
        /// SSA kernel: simd (default), scalar or batch — same results.
        #[arg(long)]
        kernel: Option<String>,
        /// Run every proposal's filter pass to the end instead of stopping it
        /// once the proposal can no longer be accepted (same chain; for
        /// timing comparisons).
        #[arg(long)]
        no_early_rejection: bool,
        /// Iterations after burn-in.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
        iterations: Option<u64>,
        /// Number of chains.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
        chains: Option<u64>,
        /// Index of the first chain (array jobs: one chain per task, then `pcmc merge`).
        #[arg(long)]
        first_chain: Option<u64>,
        /// Run seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Data file (CSV), instead of the job's (relative to the working
        /// directory; the job's data.path is relative to the job file).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Run directory (default: the job's output.dir, else `runs/<name>`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// No progress bar, log lines or summary table.
        #[arg(long)]
        quiet: bool,
        /// Continue the run in the run directory from its checkpoint, with the
        /// settings it was started with (start afresh if there is none).
        #[arg(long)]
        resume: bool,
        /// With --resume and --iterations N: run a PMMH run on to N
        /// iterations, more than it was started with.
        #[arg(long)]
        extend: bool,
        /// Replace another run's outputs in the run directory (they are
        /// removed first); without it such a directory is refused.
        #[arg(long)]
        force: bool,
        /// Write a checkpoint every N iterations (SMC²: observation steps;
        /// default: the job's output.checkpoint_every, else 100 for PMMH and
        /// 1 for SMC²).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        checkpoint_every: Option<u64>,
        /// Run the dataflow executor's steps as jobs on this Ballista
        /// scheduler, df://HOST:PORT (started with `pcmc cluster scheduler`).
        #[arg(long)]
        scheduler: Option<String>,
        /// Directory for particles between steps on a cluster, seen by every
        /// executor at the same path (default: `work` in the run directory).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// The Ballista cluster's secret, in a file only its owner can read
        /// (else the PCMC_CLUSTER_TOKEN environment variable).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// pcmc's Ballista cluster processes (for `pcmc run --scheduler`;
    /// builds with the cargo feature `ballista`).
    #[cfg_attr(not(feature = "ballista"), command(hide = true))]
    Cluster {
        #[command(subcommand)]
        what: pcmc_cli::cluster::ClusterCommand,
    },
    /// Simulate a dataset from the job's model at its true parameters.
    Simulate {
        /// The job file (TOML) with `true` values and a [simulate] section.
        job: PathBuf,
        /// Seed (default: simulate.seed, else the job seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Output CSV (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The data set ([[data]], from 1) whose initial state and
        /// covariates to simulate with; set N > 1 draws from other streams.
        #[arg(long, default_value_t = 1)]
        set: usize,
    },
    /// Validate a job file and its data without running.
    Check {
        /// The job file (TOML).
        job: PathBuf,
        /// Data file (CSV), instead of the job's (relative to the working
        /// directory; the job's data.path is relative to the job file).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Choose the particle count: the sd of the log-likelihood estimate and
    /// the cost per filter pass for several counts at one θ.
    Tune {
        /// The job file (TOML).
        job: PathBuf,
        /// Particle counts to try (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "100,300,1000,3000")]
        particles: Vec<usize>,
        /// Filter runs per count.
        #[arg(long, default_value_t = 20)]
        repeats: u64,
        /// Use the posterior mean of this finished run instead of the job's initial θ.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Worker threads.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
        threads: Option<u64>,
        /// Output directory for tune.csv, tune.json and tune.svg (default `runs/<name>-tune`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Join finished runs of the same job with different chains (e.g. array
    /// tasks) into one run directory.
    Merge {
        /// The merged run directory to write.
        out: PathBuf,
        /// The run directories to join.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Do not print the summary table.
        #[arg(long)]
        quiet: bool,
    },
    /// Compare the evidence of SMC² runs of different models on the same
    /// data: log evidence ± SE, log Bayes factors against the best, and
    /// posterior model probabilities.
    CompareModels {
        /// The SMC² run directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Prior model weights, one per run (comma-separated; default equal).
        #[arg(long, value_delimiter = ',')]
        prior_weights: Vec<f64>,
    },
    /// Recompute the summary, Parquet output and plots of a run directory
    /// (PMMH: from its chain; SMC²: from its final checkpoint).
    Report {
        /// The run directory.
        dir: PathBuf,
        /// Do not print the summary table.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// SSA kernel throughput on a reference model: one JSON line.
    Ssa {
        /// lv11, lv12 or lv13.
        #[arg(long, default_value = "lv11")]
        model: String,
        /// Number of trajectories.
        #[arg(long, default_value_t = 64)]
        trajectories: u64,
        /// simd (the default, what runs use), scalar or batch.
        #[arg(long, default_value = "simd")]
        kernel: String,
    },
    /// Complete runs of a job per executor and worker count, side by side:
    /// bench.csv, bench.md and bench.svg.
    Compare(pcmc_cli::bench::CompareArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let quiet = matches!(
        cli.command,
        Command::Run { quiet: true, .. }
            | Command::Report { quiet: true, .. }
            | Command::Merge { quiet: true, .. }
    );
    let level = if quiet { "warn" } else { "info" };
    // A driver on a Ballista cluster runs two jobs per observation step:
    // Ballista's client logs each at INFO, which would drown pcmc's own
    // lines. The cluster processes keep Ballista's INFO lines. RUST_LOG
    // overrides both.
    let quiet_ballista = if matches!(cli.command, Command::Cluster { .. }) {
        ""
    } else {
        ",ballista=warn,ballista_core=warn,ballista_scheduler=warn,ballista_executor=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level}{quiet_ballista}")));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .init();
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Unusable>().is_some() => {
            eprintln!("pcmc: {e}");
            ExitCode::from(run::EXIT_UNUSABLE)
        }
        Err(e)
            if e.downcast_ref::<Interrupted>().is_some()
                || e.downcast_ref::<ClusterLost>().is_some() =>
        {
            eprintln!("pcmc: {e}");
            ExitCode::from(run::EXIT_INTERRUPTED)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(error::exit_status(&e) as u8)
        }
    }
}

/// A run stopped by a signal after writing its checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by a signal; the checkpoint is written (resume with --resume)")]
struct Interrupted;

/// An SMC² run that finished, outputs written, with an evidence that is not
/// usable.
#[derive(Debug, thiserror::Error)]
#[error("the run finished, but its evidence is not usable: {0}")]
struct Unusable(String);

/// A run stopped because its cluster became unavailable, after writing the
/// checkpoint of its last complete iteration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ClusterLost(String);

fn dispatch(cmd: Command) -> Result<()> {
    match cmd {
        Command::Run {
            job,
            method,
            executor,
            threads,
            partitions,
            particles,
            theta_particles,
            replicates,
            kernel,
            no_early_rejection,
            iterations,
            chains,
            first_chain,
            seed,
            data,
            out,
            quiet,
            resume,
            extend,
            force,
            checkpoint_every,
            scheduler,
            work_dir,
            token_file,
        } => {
            let ov = run::Overrides {
                method,
                executor,
                threads: threads.map(|v| v as usize),
                partitions: partitions.map(|v| v as usize),
                particles: particles.map(|v| v as usize),
                theta_particles: theta_particles.map(|v| v as usize),
                replicates,
                kernel,
                no_early_rejection,
                iterations,
                chains: chains.map(|v| v as usize),
                first_chain,
                seed,
                data,
                inputs_from: None,
                out,
                scheduler,
                work_dir,
                token_file,
            };
            let opts = run::RunOptions {
                quiet,
                resume,
                checkpoint_every,
                extend,
                force,
            };
            match pcmc_cli::launch::run(&job, &ov, opts)? {
                run::RunOutcome::Finished => Ok(()),
                run::RunOutcome::Interrupted => Err(Interrupted.into()),
                run::RunOutcome::ClusterLost(why) => Err(ClusterLost(why).into()),
                run::RunOutcome::EvidenceUnusable(why) => Err(Unusable(why).into()),
            }
        }
        Command::Simulate {
            job,
            seed,
            out,
            set,
        } => simulate(&job, seed, out, set),
        Command::Cluster { what } => pcmc_cli::cluster::run(what),
        Command::Check { job, data } => check(&job, data),
        Command::Report { dir, quiet } => pcmc_cli::launch::report(&dir, quiet),
        Command::CompareModels {
            dirs,
            prior_weights,
        } => pcmc_cli::run::smc2::compare(&dirs, &prior_weights),
        Command::Merge { out, dirs, quiet } => run::merge(&out, &dirs, quiet),
        Command::Bench {
            what:
                BenchCommand::Ssa {
                    model,
                    trajectories,
                    kernel,
                },
        } => pcmc_cli::tools::bench_ssa(&model, trajectories, &kernel),
        Command::Bench {
            what: BenchCommand::Compare(args),
        } => pcmc_cli::bench::compare(&args),
        Command::Tune {
            job,
            particles,
            repeats,
            from,
            threads,
            out,
        } => pcmc_cli::tools::tune(
            &job,
            &pcmc_cli::tools::TuneArgs {
                particles,
                repeats,
                from,
                threads: threads.map(|t| t as usize),
                out,
            },
        ),
    }
}

fn simulate(
    path: &std::path::Path,
    seed: Option<u64>,
    out: Option<PathBuf>,
    set: usize,
) -> Result<()> {
    let job = job::Job::load(path)?;
    let n_sets = job.data_sets().len().max(1);
    if set == 0 || set > n_sets {
        return Err(pcmc_cli::error::InputError::flag(
            "--set",
            format!("{set} is not a data set of the job (1..={n_sets})"),
        )
        .into());
    }
    let d = set - 1;
    let (initial, time) = job.initial_of(d)?;
    let truth = job.truth.clone().ok_or_else(|| {
        input(
            path,
            "parameters: every parameter needs a `true` value to simulate from",
        )
    })?;
    let times = job.simulate_times()?;
    let sim = job
        .file
        .simulate
        .as_ref()
        .expect("checked by simulate_times");
    let cols = job.data_columns();
    let names: Vec<String> = sim.observed.clone().unwrap_or_else(|| cols.names.clone());
    for n in &names {
        if !cols.names.contains(n) {
            return Err(input(
                path,
                format!(
                    "simulate.observed: {n:?} is not {} ({})",
                    cols.what,
                    cols.names.join(", ")
                ),
            ));
        }
    }
    let all = job.observables(&names)?;
    let observables: Vec<_> = names
        .iter()
        .filter_map(|n| all.iter().find(|o| &o.name == n).cloned())
        .collect();
    let t0 = time.unwrap_or(times[0]);
    if t0 > times[0] {
        return Err(input(path, "initial.time: after the first simulation time"));
    }
    let seed = seed.or(sim.seed).unwrap_or(job.mcmc.seed);
    let tr = pcmc_core::simulate::simulate(
        &job.network,
        &truth,
        &initial,
        &observables,
        job.covariates_of(d)?.as_ref(),
        t0,
        &times,
        &job.filter.caps,
        job.filter.max_events,
        StreamKey::new(seed, d as u64, 0, 0, 0, Purpose::Simulate),
    );
    if tr.stopped {
        tracing::warn!("the simulated trajectory hit the population cap or the event limit");
    }
    let mut rows = tr.observations;
    for t in sim.missing.iter().flatten() {
        let i = times.iter().position(|x| x == t).ok_or_else(|| {
            input(
                path,
                format!("simulate.missing: {t} is not one of the simulation times"),
            )
        })?;
        rows[i].fill(f64::NAN);
    }
    let text = data::format_data(&names, &times, &rows);
    match out {
        Some(p) => {
            if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| input(parent, format!("cannot create: {e}")))?;
            }
            std::fs::write(&p, text).map_err(|e| input(&p, format!("cannot write: {e}")))?;
        }
        None => print!("{text}"),
    }
    Ok(())
}

fn check(path: &std::path::Path, data: Option<PathBuf>) -> Result<()> {
    let ov = run::Overrides {
        data,
        ..Default::default()
    };
    let prep = run::prepare(path, &ov)?;
    let job = &prep.job;
    println!("{}: ok", path.display());
    println!(
        "  model: {} species ({}), {} reactions, parameters {}",
        job.network.species().len(),
        job.network.species().join(", "),
        job.network.reactions().len(),
        job.parameters.join(", ")
    );
    if let Some(file) = &job.file.model.sbml {
        let fixed = job
            .network
            .reactions()
            .iter()
            .filter(|r| r.rate.is_none())
            .count();
        println!(
            "  SBML: {file}; {fixed} reaction(s) at the file's fixed rate constants, initial amounts from the file where [initial] gives none"
        );
    }
    println!(
        "  data: {} ({} rows, observing {})",
        prep.data_path.display(),
        prep.data.len(),
        prep.data.names().join(", ")
    );
    if prep.data.n_sets() > 1 {
        let sets: Vec<String> = (0..prep.data.n_sets())
            .map(|d| format!("{} ({} rows)", job.set_name(d), prep.data.set_rows(d).len()))
            .collect();
        println!(
            "  {} data sets sharing θ: {}",
            prep.data.n_sets(),
            sets.join(", ")
        );
    }
    if job.method()? == job::Method::Smc2 {
        let (c, nx) = job.smc2_config()?;
        let replicates = job.smc2_replicates()?;
        println!(
            "  method smc2: {}{} θ-particles × {} particles (exchange {}, at most {}), {} {} move(s) per rejuvenation below θ-ESS {} · Nθ{}, seed {}",
            if replicates > 1 {
                format!("{replicates} replicates of ")
            } else {
                String::new()
            },
            c.theta_particles,
            nx,
            match (c.exchange_below, c.exchange_rule) {
                (None, _) => "off".to_string(),
                (Some(a), pcmc_core::smc2::ExchangeRule::Acceptance) =>
                    format!("doubling Nx below {a} acceptance"),
                (Some(_), pcmc_core::smc2::ExchangeRule::Noise) =>
                    format!("raising Nx when Var(log p̂) exceeds {}", c.noise_variance),
            },
            c.max_particles,
            c.moves,
            c.proposal.name(),
            c.ess_threshold,
            if c.final_move {
                " and after the last observation"
            } else {
                ""
            },
            c.seed
        );
        return Ok(());
    }
    println!(
        "  filter: {} particles, {:?} resampling; mcmc: {} chain(s), {} burn-in + {} iterations, thin {}, seed {}",
        match job.mcmc.checks.auto {
            Some(a) => format!(
                "auto ({}..={}, from {}, target sd {})",
                a.min, a.max, a.start, a.target_sd
            ),
            None => job.filter.particles.to_string(),
        },
        job.filter.resampling,
        job.mcmc.chains,
        job.mcmc.burn_in,
        job.mcmc.iterations,
        job.mcmc.thin,
        job.mcmc.seed
    );
    Ok(())
}
