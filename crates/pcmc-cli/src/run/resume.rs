//! `--resume` continues the run that was started: the flags of a resumed
//! run from the settings its checkpoint keeps ([`crate::settings`]), the
//! command that continues an interrupted run, and the run directory's
//! claim: a new run never silently overwrites another run's outputs.

pub use crate::settings::{RunSettings, changed_fields, refusal};

use super::{Overrides, RunOptions};
use crate::error::{InputError, input};
use crate::job::Method;
use anyhow::Result;
use std::path::Path;

/// The flags of a resumed run: every setting the run was started with is
/// used again where its flag is left out; a flag that contradicts the run
/// is refused naming the setting and both values. `--iterations N` with
/// `--extend` runs a PMMH run on to `N` iterations (at least as many as it
/// was started with).
///
/// # Errors
/// An input error naming the contradicting flag.
pub fn apply(st: &RunSettings, ov: &Overrides, dir: &Path, opts: RunOptions) -> Result<Overrides> {
    let mut ov = ov.clone();
    let d = dir.display();
    // A flag that must agree with the stored value `was` (shown as
    // `field = was`); the stored flag is used where it is left out.
    fn keep<T: PartialEq + ToString + Clone>(
        d: &impl std::fmt::Display,
        flag: &str,
        given: &mut Option<T>,
        was: &T,
        stored_flag: Option<T>,
        field: &str,
    ) -> Result<()> {
        if let Some(g) = given.as_ref()
            && g != was
        {
            return Err(InputError::flag(
                flag,
                format!(
                    "{} contradicts the run in {d}, started with {field} = {}: \
                     leave the flag out to continue that run, or start a new run with --force (or another --out)",
                    g.to_string(),
                    was.to_string()
                ),
            )
            .into());
        }
        if given.is_none() {
            *given = stored_flag;
        }
        Ok(())
    }
    let method = Some(st.method.clone());
    keep(&d, "--method", &mut ov.method, &st.method, method, "method")?;
    let smc2 = st.method() == Method::Smc2;
    keep(&d, "--seed", &mut ov.seed, &st.seed, st.seed_flag, "seed")?;
    if !smc2 {
        match ov.iterations {
            Some(n) if n == st.iterations => {}
            Some(n) if opts.extend && n > st.iterations => {}
            Some(n) if opts.extend => {
                return Err(InputError::flag(
                    "--extend",
                    format!(
                        "--iterations {n} is not more than the {} iterations the run in {d} was started with: a run can be extended, not shortened",
                        st.iterations
                    ),
                )
                .into());
            }
            Some(n) => {
                return Err(InputError::flag(
                    "--iterations",
                    format!(
                        "{n} contradicts the run in {d}, started with iterations = {}: leave the flag out to continue that run, \
                         add --extend to run it on to {n} iterations, or start a new run with --force (or another --out)",
                        st.iterations
                    ),
                )
                .into());
            }
            None => ov.iterations = st.iterations_flag,
        }
        keep(
            &d,
            "--chains",
            &mut ov.chains,
            &st.chains,
            st.chains_flag,
            "chains",
        )?;
        let first = st.first_chain_flag.unwrap_or(0);
        keep(
            &d,
            "--first-chain",
            &mut ov.first_chain,
            &first,
            st.first_chain_flag,
            "first chain",
        )?;
    } else {
        keep(
            &d,
            "--theta-particles",
            &mut ov.theta_particles,
            &st.theta_particles,
            st.theta_particles_flag,
            "smc2.theta_particles",
        )?;
        keep(
            &d,
            "--replicates",
            &mut ov.replicates,
            &st.replicates,
            st.replicates_flag,
            "smc2.replicates",
        )?;
    }
    // The particle setting is a count or "auto": compared as written.
    let field = if smc2 {
        "smc2.particles"
    } else {
        "filter.particles"
    };
    let mut given = ov.particles.map(|p| p.to_string());
    let was = st
        .particles_flag
        .map_or_else(|| st.particles.clone(), |p| p.to_string());
    keep(&d, "--particles", &mut given, &was, None, field)?;
    ov.particles = ov.particles.or(st.particles_flag);
    // The data: the same file as at the start (its values are checked with
    // the job's fingerprint).
    if ov.data.is_none() {
        ov.data.clone_from(&st.data_flag);
    }
    if opts.extend && smc2 {
        return Err(InputError::flag("--extend", "applies to PMMH runs only").into());
    }
    Ok(ov)
}

/// Files pcmc writes into a run directory (either method): what `--force`
/// removes. The first group marks a directory as holding a run; the second
/// too, except for `--resume` (a run killed before its first checkpoint
/// leaves them, and its resumption starts afresh); the rest never.
const RUN_MARKS: &[&str] = &[
    "summary.json",
    crate::checkpoint::FILE,
    crate::checkpoint::SMC2_FILE,
    "particles.csv",
    "particles.parquet",
];
const STARTED_MARKS: &[&str] = &["run.json", "chain.parquet"];
const OTHER_OUTPUTS: &[&str] = &[
    "chain.csv",
    "job.toml",
    "data.csv",
    "trace.svg",
    "density.svg",
    "pairs.svg",
    "autocorr.svg",
    "ranks.svg",
    "predictive.svg",
    "evidence.svg",
    "smc2.svg",
];

/// The outputs of a run in `dir`, if it holds any: its checkpoint,
/// summary or draws (a `chain.csv` with rows), and unless `resume` its run
/// record or Parquet chain.
pub fn run_outputs(dir: &Path, resume: bool) -> Vec<String> {
    let started: &[&str] = if resume { &[] } else { STARTED_MARKS };
    let mut found: Vec<String> = RUN_MARKS
        .iter()
        .chain(started)
        .filter(|f| dir.join(f).exists())
        .map(|f| f.to_string())
        .collect();
    let chain = dir.join("chain.csv");
    if let Ok(text) = std::fs::read_to_string(&chain)
        && text.lines().filter(|l| !l.trim().is_empty()).count() > 1
    {
        found.push("chain.csv".into());
    }
    found
}

/// Claims `dir` (locked by the caller when `root`) for a new run: refused
/// (exit 2) when it holds another run's outputs, unless `force`, which
/// removes every file a run of either method writes first (on the root
/// process only; the other ranks of a distributed run only check). With
/// `resume` (and no checkpoint) a run that never reached its first
/// checkpoint is started afresh.
///
/// # Errors
/// An input error naming the directory, what it holds, and `--resume` and
/// `--force`.
pub fn claim_fresh(dir: &Path, opts: RunOptions, root: bool) -> Result<()> {
    let force = opts.force;
    if force && !root {
        return Ok(());
    }
    let found = run_outputs(dir, opts.resume);
    if found.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(input(
            dir,
            format!(
                "holds another run's outputs ({}): {}replace it with --force (its files are removed first), \
                 or write to another directory (--out)",
                found.join(", "),
                if opts.resume {
                    "it has no checkpoint to continue from; "
                } else {
                    "continue that run with --resume, "
                }
            ),
        ));
    }
    // The copies of the inputs: data.csv, data-2.csv, …, covariates.csv, …
    let copies = crate::job::input_copies_in(dir);
    for f in RUN_MARKS
        .iter()
        .chain(STARTED_MARKS)
        .chain(OTHER_OUTPUTS)
        .map(|s| s.to_string())
        .chain(copies)
    {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p)
                .map_err(|e| input(&p, format!("cannot remove the old run's file: {e}")))?;
        }
    }
    Ok(())
}

/// The command that continues an interrupted run.
pub fn hint(job_path: &Path, dir: &Path) -> String {
    format!(
        "pcmc run {} --out {} --resume",
        shell_word(&job_path.display().to_string()),
        shell_word(&dir.display().to_string())
    )
}

/// `s` quoted for a POSIX shell where it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,:=+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn flattening_names_nested_fields_and_skips_unset_ones() {
        let v = serde_json::json!({"mcmc": {"burn_in": 100, "x": null}, "a": [1, {"b": "c"}]});
        let mut m = BTreeMap::new();
        crate::job::flatten("", &v, &mut m);
        let got: Vec<(String, String)> = m.into_iter().collect();
        assert_eq!(
            got,
            vec![
                ("a[0]".into(), "1".into()),
                ("a[1].b".into(), "\"c\"".into()),
                ("mcmc.burn_in".into(), "100".into()),
            ]
        );
    }

    #[test]
    fn hints_quote_what_a_shell_would_split() {
        assert_eq!(
            hint(Path::new("jobs/a.toml"), Path::new("runs/x")),
            "pcmc run jobs/a.toml --out runs/x --resume"
        );
        assert_eq!(
            hint(Path::new("my jobs/a.toml"), Path::new("it's")),
            r"pcmc run 'my jobs/a.toml' --out 'it'\''s' --resume"
        );
    }
}
