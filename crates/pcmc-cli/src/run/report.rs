//! `pcmc report DIR`: the summary and plots recomputed from a run directory.

use super::finish::finish_outputs;
use super::setup::prepare;
use super::{Overrides, RunRecord};
use crate::error::input;
use crate::fsio::RunLock;
use crate::output::read_chain_csv;
use anyhow::Result;
use std::path::Path;

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
    let mut lock = RunLock::acquire(dir)?;
    lock.announce()?;
    report_locked(dir, quiet)
}

/// [`report`] for a directory whose lock the caller holds.
pub(super) fn report_locked(dir: &Path, quiet: bool) -> Result<()> {
    refuse_smc2(
        dir,
        "pcmc report rebuilds an SMC² run from its final checkpoint (smc2-checkpoint.json), which this directory lacks",
    )?;
    let job_path = dir.join("job.toml");
    let run_path = dir.join("run.json");
    for p in [&job_path, &run_path, &dir.join("chain.csv")] {
        if !p.is_file() {
            return Err(input(
                dir,
                format!(
                    "not a run directory of pcmc run (PMMH): {} is missing (report reads job.toml, run.json and chain.csv)",
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
        inputs_from: Some(dir.to_path_buf()),
        particles: Some(record.particles),
        chains: Some(record.chains),
        first_chain: Some(record.first_chain),
        seed: Some(record.seed),
        iterations: Some(record.iterations.max(1)),
        ..Overrides::default()
    };
    let prep = prepare(&job_path, &ov)?;
    let (names, rows) = read_chain_csv(&dir.join("chain.csv"))?;
    if names != prep.job.parameters {
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

/// Refuses an SMC² run directory for a command that reads PMMH runs,
/// saying why (`what`).
///
/// # Errors
/// An input error naming the directory.
pub(super) fn refuse_smc2(dir: &Path, what: &str) -> Result<()> {
    let smc2 = dir.join(crate::checkpoint::SMC2_FILE).is_file()
        || (dir.join("particles.csv").is_file() && !dir.join("chain.csv").is_file());
    if smc2 {
        return Err(input(dir, format!("is an SMC² run directory: {what}")));
    }
    Ok(())
}
