//! `pcmc merge OUT DIR...`: run directories of one job's different chains
//! joined into one.

use super::RunRecord;
use super::report::report_locked;
use crate::error::{InputError, input};
use crate::fsio::{RunLock, create_output_dir, write_atomic};
use crate::output::read_chain_csv;
use crate::summary::RunStats;
use anyhow::Result;
use std::path::{Path, PathBuf};

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
        super::report::refuse_smc2(
            d,
            "merge joins PMMH runs of one job with different chains (their chain.csv); compare SMC² runs with `pcmc compare-models`",
        )?;
        let run_path = d.join("run.json");
        let text = std::fs::read_to_string(&run_path).map_err(|e| {
            input(
                &run_path,
                format!("not a run directory of pcmc run (PMMH), which merge joins: {e}"),
            )
        })?;
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
            let d0 = dirs[0].display();
            for (what, a, b) in [
                ("iterations", first.iterations, rec.iterations),
                ("burn-in", first.burn_in, rec.burn_in),
                ("thin", first.thin, rec.thin),
                ("seed", first.seed, rec.seed),
            ] {
                if a != b {
                    return Err(input(
                        d,
                        format!(
                            "cannot merge: {what} is {b} here but {a} in {d0} (merged runs must differ only in their chains)"
                        ),
                    ));
                }
            }
            if first.fingerprint != rec.fingerprint {
                return Err(input(
                    d,
                    format!(
                        "cannot merge: a run of another job, data set or settings than {d0} (job fingerprint {} here, {} there; \
                         compare their job.toml and data.csv)",
                        rec.fingerprint, first.fingerprint
                    ),
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
    create_output_dir(out)?;
    let mut lock = RunLock::acquire(out)?;
    lock.announce()?;
    // The job and every copy of its inputs (data sets, covariates).
    let files =
        std::iter::once("job.toml".to_string()).chain(crate::job::input_copies_in(&dirs[0]));
    for f in files {
        std::fs::copy(dirs[0].join(&f), out.join(&f))
            .map_err(|e| input(dirs[0].join(&f), format!("cannot copy: {e}")))?;
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
    report_locked(out, quiet)
}
