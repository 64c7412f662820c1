//! What a run was started with, kept in its checkpoint so that `--resume`
//! continues *that* run: the settings the command line chose (used again
//! when the flag is left out, refused when a flag contradicts them) and the
//! job's fields as run (to name what changed when a checkpoint is refused);
//! and the run directory's claim: a new run never silently overwrites
//! another run's outputs.

use super::{Overrides, RunOptions};
use crate::error::{InputError, input};
use crate::job::{Job, Method};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The settings of a run as it was started, stored in its checkpoint.
///
/// Each `Option` is the command-line flag that set it (`None`: the job
/// file's value was used); the plain fields are the effective values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// `pmmh` or `smc2`.
    pub method: String,
    /// Effective seed.
    pub seed: u64,
    /// `--seed`, if given.
    pub seed_flag: Option<u64>,
    /// PMMH: iterations after burn-in (0 for SMC²).
    pub iterations: u64,
    /// `--iterations`, if given.
    pub iterations_flag: Option<u64>,
    /// PMMH: chains (0 for SMC²).
    pub chains: usize,
    /// `--chains`, if given.
    pub chains_flag: Option<usize>,
    /// `--first-chain`, if given.
    pub first_chain_flag: Option<u64>,
    /// The job's particle setting as run (`auto` or a count; SMC²: `Nx`).
    pub particles: String,
    /// `--particles`, if given.
    pub particles_flag: Option<usize>,
    /// SMC²: `Nθ` (0 for PMMH).
    pub theta_particles: usize,
    /// `--theta-particles`, if given.
    pub theta_particles_flag: Option<usize>,
    /// `--data`, if given (absolute).
    pub data_flag: Option<PathBuf>,
    /// Every job field that determines the results, flattened to
    /// `section.field = value`, plus `data` (the values' fingerprint).
    pub fields: BTreeMap<String, String>,
}

impl RunSettings {
    /// The settings of `job` (overrides applied) run with the flags `ov`.
    pub fn of(job: &Job, data_fingerprint: &str, method: Method, ov: &Overrides) -> RunSettings {
        let smc2 = method == Method::Smc2;
        let (theta, nx) = if smc2 {
            job.smc2_config()
                .map(|(c, nx)| {
                    (
                        ov.theta_particles.unwrap_or(c.theta_particles),
                        ov.particles.unwrap_or(nx),
                    )
                })
                .unwrap_or((0, 0))
        } else {
            (0, 0)
        };
        let mut fields = job.result_fields();
        fields.insert("data".into(), data_fingerprint.to_string());
        RunSettings {
            method: if smc2 { "smc2" } else { "pmmh" }.into(),
            seed: job.mcmc.seed,
            seed_flag: ov.seed,
            iterations: if smc2 { 0 } else { job.mcmc.iterations },
            iterations_flag: ov.iterations,
            chains: if smc2 { 0 } else { job.mcmc.chains },
            chains_flag: ov.chains,
            first_chain_flag: ov.first_chain,
            particles: if smc2 {
                nx.to_string()
            } else {
                match job.mcmc.checks.auto {
                    Some(_) => "auto".into(),
                    None => job.filter.particles.to_string(),
                }
            },
            particles_flag: ov.particles,
            theta_particles: theta,
            theta_particles_flag: ov.theta_particles,
            data_flag: ov
                .data
                .as_ref()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
            fields,
        }
    }

    /// The method the run was started with.
    pub fn method(&self) -> Method {
        Method::parse(&self.method).unwrap_or(Method::Pmmh)
    }
}

/// Which settings differ between a checkpoint's run (`was`) and this one,
/// one `field: X when the run started, Y now` item each.
pub fn changed_fields(was: &RunSettings, now: &RunSettings) -> Vec<String> {
    let mut keys: Vec<&String> = was.fields.keys().chain(now.fields.keys()).collect();
    keys.sort();
    keys.dedup();
    let unset = "(not set)".to_string();
    keys.into_iter()
        .filter_map(|k| {
            let a = was.fields.get(k).unwrap_or(&unset);
            let b = now.fields.get(k).unwrap_or(&unset);
            (a != b).then(|| {
                if k == "data" {
                    "data: the data values differ from those the run started with".to_string()
                } else {
                    format!("{k}: {a} when the run started, {b} now")
                }
            })
        })
        .collect()
}

/// The message of a checkpoint refused because the job, data or settings
/// changed: the changed fields by name, else (an older checkpoint without
/// them) the two fingerprints.
pub fn refusal(was: Option<&RunSettings>, now: &RunSettings, fps: (&str, &str)) -> String {
    let changed = was.map(|w| changed_fields(w, now)).unwrap_or_default();
    if changed.is_empty() {
        format!(
            "was written for another job, data set or settings (fingerprint {}, this run {}): refusing to resume; \
             start a new run with --force, or in another directory (--out)",
            fps.0, fps.1
        )
    } else {
        format!(
            "the job changed since the run started — {}: refusing to resume; restore the job as it was, \
             or start a new run with --force (or in another directory, --out)",
            changed.join("; ")
        )
    }
}

/// The settings stored in the checkpoint of the run in `dir`, if there is
/// one: the PMMH checkpoint or the SMC² one (`method`, when both exist).
///
/// # Errors
/// An input error for an unreadable or corrupted checkpoint.
pub fn stored(dir: &Path, method: Option<Method>) -> Result<Option<RunSettings>> {
    let pmmh = dir.join(crate::checkpoint::FILE);
    let smc2 = dir.join(crate::smc2run::CHECKPOINT);
    let pick_smc2 = match (pmmh.is_file(), smc2.is_file()) {
        (false, false) => return Ok(None),
        (true, false) => false,
        (false, true) => true,
        (true, true) => method == Some(Method::Smc2),
    };
    if pick_smc2 {
        crate::smc2run::stored_settings(dir)
    } else {
        Ok(crate::checkpoint::read(dir)?.and_then(|c| c.run))
    }
}

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
    let contradiction = |flag: &str, given: String, field: &str, was: String| -> anyhow::Error {
        InputError::flag(
            flag,
            format!(
                "{given} contradicts the run in {d}, started with {field} = {was}: \
                 leave the flag out to continue that run, or start a new run with --force (or another --out)"
            ),
        )
        .into()
    };
    if let Some(m) = &ov.method
        && *m != st.method
    {
        return Err(contradiction(
            "--method",
            m.clone(),
            "method",
            st.method.clone(),
        ));
    }
    ov.method = Some(st.method.clone());
    let smc2 = st.method() == Method::Smc2;
    if let Some(s) = ov.seed
        && s != st.seed
    {
        return Err(contradiction(
            "--seed",
            s.to_string(),
            "seed",
            st.seed.to_string(),
        ));
    }
    ov.seed = ov.seed.or(st.seed_flag);
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
        if let Some(c) = ov.chains
            && c != st.chains
        {
            return Err(contradiction(
                "--chains",
                c.to_string(),
                "chains",
                st.chains.to_string(),
            ));
        }
        ov.chains = ov.chains.or(st.chains_flag);
        let first = st.first_chain_flag.unwrap_or(0);
        if let Some(f) = ov.first_chain
            && f != first
        {
            return Err(contradiction(
                "--first-chain",
                f.to_string(),
                "first chain",
                first.to_string(),
            ));
        }
        ov.first_chain = ov.first_chain.or(st.first_chain_flag);
    } else {
        if let Some(t) = ov.theta_particles
            && t != st.theta_particles
        {
            return Err(contradiction(
                "--theta-particles",
                t.to_string(),
                "smc2.theta_particles",
                st.theta_particles.to_string(),
            ));
        }
        ov.theta_particles = ov.theta_particles.or(st.theta_particles_flag);
    }
    if let Some(p) = ov.particles
        && Some(p) != st.particles_flag
        && p.to_string() != st.particles
    {
        let field = if smc2 {
            "smc2.particles"
        } else {
            "filter.particles"
        };
        return Err(contradiction(
            "--particles",
            p.to_string(),
            field,
            st.particles.clone(),
        ));
    }
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
    crate::smc2run::CHECKPOINT,
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
    for f in RUN_MARKS.iter().chain(STARTED_MARKS).chain(OTHER_OUTPUTS) {
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

/// A JSON value flattened to `a.b.c = value` entries (arrays by index).
pub fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        Value::Null => {}
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattening_names_nested_fields_and_skips_unset_ones() {
        let v = serde_json::json!({"mcmc": {"burn_in": 100, "x": null}, "a": [1, {"b": "c"}]});
        let mut m = BTreeMap::new();
        flatten("", &v, &mut m);
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
