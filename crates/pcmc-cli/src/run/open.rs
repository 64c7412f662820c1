//! Phase 2 of a run: the run directory, locked, either new (every chain's
//! starting point evaluated) or cut back to the checkpoint it resumes from.

use super::setup::Setup;
use super::state::{RunProgress, Shared, account, share_chains};
use super::{RunOptions, RunRecord};
use crate::checkpoint;
use crate::error::input;
use crate::fsio::{RunLock, create_output_dir, write_atomic};
use crate::output::{ChainRow, ChainWriter, read_chain_csv};
use crate::summary::RunStats;
use anyhow::Result;
use std::path::Path;
use std::time::Instant;

/// Phase 2: locks the run directory (the writing process only: rank 0 of
/// a distributed run), validates a checkpoint to resume (before anything
/// else in the directory is touched), then opens the run directory: either
/// cuts its chain back to the checkpoint, or starts afresh and evaluates
/// every chain's starting point.
pub(super) fn open_run(s: &mut Setup, opts: RunOptions) -> Result<RunProgress> {
    let job = &s.prep.job;
    let dir = &s.dir;
    let mut lock = if s.root {
        create_output_dir(dir)?;
        Some(RunLock::acquire(dir)?)
    } else {
        None
    };
    let ckpt = if opts.resume && dir.is_dir() {
        checkpoint::read(dir)?
    } else {
        None
    };
    if let Some(c) = &ckpt {
        if c.fingerprint != s.fingerprint {
            return Err(input(
                dir.join(checkpoint::FILE),
                super::resume::refusal(
                    c.run.as_ref(),
                    &s.settings,
                    (&c.fingerprint, &s.fingerprint),
                ),
            ));
        }
        // The checkpoint must be the one of the run in this directory (its
        // run.json is written before the first checkpoint).
        let record: Option<RunRecord> = std::fs::read(dir.join("run.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if record.is_some_and(|r| r.fingerprint != c.fingerprint) {
            return Err(input(
                dir.join(checkpoint::FILE),
                "was written for another job, data set or settings than the run in this directory (its run.json): \
                 refusing to resume; start a new run with --force, or in another directory (--out)",
            ));
        }
        let total = s.prep.pmmh.total_iterations();
        if c.iteration > total {
            return Err(input(
                dir.join(checkpoint::FILE),
                format!(
                    "the run is at iteration {} but this one has only {total} ({} burn-in + {}): \
                     refusing to resume (continue it with the --iterations it was started with, or --extend)",
                    c.iteration, job.mcmc.burn_in, job.mcmc.iterations
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
    } else {
        super::resume::claim_fresh(dir, opts, s.root)?;
        if opts.resume && !s.quiet {
            tracing::info!(
                "no checkpoint in {}: starting from the beginning",
                dir.display()
            );
        }
    }
    if let Some(l) = lock.as_mut() {
        l.announce()?;
    }
    if s.root {
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
    let ignored = job.ignored_fields(crate::job::Method::Pmmh);
    if !ignored.is_empty() && !s.quiet {
        tracing::info!("method pmmh ignores {}", ignored.join(", "));
    }
    if !s.quiet {
        tracing::info!(
            "{} — {} chain(s) × {} iterations ({} burn-in), {} particles, executor {} × {}, output {}",
            job.name,
            job.mcmc.chains,
            pmmh.total_iterations(),
            job.mcmc.burn_in,
            match job.mcmc.checks.auto {
                Some(a) => format!("auto ({}..={})", a.min, a.max),
                None => job.filter.particles.to_string(),
            },
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
                s.prep.write_inputs(dir)?;
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
        _lock: lock,
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
