//! The settings a run was started with, kept in its checkpoint: the ones
//! the command line chose (a resumed run uses them again where their flags
//! are left out) and the job's fields as run (to name what changed when a
//! checkpoint is refused).

use crate::job::{Job, Method};
use crate::run::Overrides;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// SMC²: replicates (1 for PMMH, and in checkpoints of older pcmc
    /// versions).
    #[serde(default = "one")]
    pub replicates: u32,
    /// `--replicates`, if given.
    #[serde(default)]
    pub replicates_flag: Option<u32>,
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
            replicates: if smc2 {
                ov.replicates
                    .or_else(|| job.smc2_replicates().ok())
                    .unwrap_or(1)
            } else {
                1
            },
            replicates_flag: ov.replicates,
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

fn one() -> u32 {
    1
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
