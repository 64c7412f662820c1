//! `pcmc run`: the job's method (`method`, or `--method`) chooses PMMH
//! ([`crate::run`]) or SMC² ([`crate::smc2run`]).

use crate::error::InputError;
use crate::job::{Job, Method};
use crate::run::{Overrides, RunOptions, RunOutcome};
use anyhow::Result;
use std::path::Path;

/// Runs a job with its method.
///
/// # Errors
/// Input errors (exit 2) and run failures (exit 1).
pub fn run(job_path: &Path, ov: &Overrides, opts: RunOptions) -> Result<RunOutcome> {
    let method = match &ov.method {
        Some(m) => Method::parse(m).ok_or_else(|| {
            InputError::flag("--method", format!("{m:?} is not one of pmmh, smc2"))
        })?,
        None => Job::load(job_path)?.method()?,
    };
    match method {
        Method::Smc2 => crate::smc2run::run(job_path, ov, opts),
        Method::Pmmh if ov.theta_particles.is_some() => {
            Err(InputError::flag("--theta-particles", "applies to method smc2 only").into())
        }
        Method::Pmmh => crate::run::run(job_path, ov, opts),
    }
}
