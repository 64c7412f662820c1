//! `pcmc run`: the job's method (`method`, or `--method`) chooses PMMH
//! ([`crate::run`]) or SMC² ([`crate::run::smc2`]).

use crate::error::InputError;
use crate::job::{Job, Method};
use crate::run::{Overrides, RunOptions, RunOutcome};
use crate::settings::RunSettings;
use anyhow::Result;
use std::path::Path;

/// Runs a job with its method.
///
/// # Errors
/// Input errors (exit 2) and run failures (exit 1).
///
/// With `--resume`, the settings stored in the run directory's checkpoint
/// are used again where their flags are left out, and a flag that
/// contradicts them is refused ([`crate::run::resume::apply`]).
pub fn run(job_path: &Path, ov: &Overrides, opts: RunOptions) -> Result<RunOutcome> {
    let flag_method = match &ov.method {
        Some(m) => Some(Method::parse(m).ok_or_else(|| {
            InputError::flag("--method", format!("{m:?} is not one of pmmh, smc2"))
        })?),
        None => None,
    };
    if opts.extend && !opts.resume {
        return Err(InputError::flag(
            "--extend",
            "goes with --resume (it runs an existing run on to more --iterations)",
        )
        .into());
    }
    if opts.force && opts.resume {
        return Err(InputError::flag(
            "--force",
            "contradicts --resume: --resume continues the run in the directory, --force replaces it",
        )
        .into());
    }
    let job = Job::load(job_path)?;
    let dir = crate::run::run_dir(&job, ov);
    let stored = if opts.resume {
        stored(&dir, flag_method.or(job.method().ok()))?
    } else {
        None
    };
    if opts.extend && stored.is_none() {
        return Err(InputError::flag(
            "--extend",
            format!("there is no checkpoint in {} to extend", dir.display()),
        )
        .into());
    }
    let resolved;
    let ov = match &stored {
        Some(st) => {
            resolved = crate::run::resume::apply(st, ov, &dir, opts)?;
            &resolved
        }
        None => ov,
    };
    let method = match stored {
        Some(st) => st.method(),
        None => match flag_method {
            Some(m) => m,
            None => job.method()?,
        },
    };
    if opts.extend && ov.iterations.is_none() {
        return Err(InputError::flag("--extend", "needs --iterations N (the new length)").into());
    }
    match method {
        Method::Smc2 => crate::run::smc2::run(job_path, ov, opts),
        Method::Pmmh if ov.theta_particles.is_some() => {
            Err(InputError::flag("--theta-particles", "applies to method smc2 only").into())
        }
        Method::Pmmh if ov.replicates.is_some() => {
            Err(InputError::flag("--replicates", "applies to method smc2 only").into())
        }
        Method::Pmmh => crate::run::run(job_path, ov, opts),
    }
}

/// The settings stored in the checkpoint of the run in `dir`, if there is
/// one: the PMMH checkpoint or the SMC² one (`method`, when both exist).
///
/// # Errors
/// An input error for an unreadable or corrupted checkpoint.
fn stored(dir: &Path, method: Option<Method>) -> Result<Option<RunSettings>> {
    let pmmh = dir.join(crate::checkpoint::FILE);
    let smc2 = dir.join(crate::checkpoint::SMC2_FILE);
    let pick_smc2 = match (pmmh.is_file(), smc2.is_file()) {
        (false, false) => return Ok(None),
        (true, false) => false,
        (false, true) => true,
        (true, true) => method == Some(Method::Smc2),
    };
    if pick_smc2 {
        crate::run::smc2::stored_settings(dir)
    } else {
        Ok(crate::checkpoint::read(dir)?.and_then(|c| c.run))
    }
}

/// `pcmc report DIR`: a PMMH run directory's summary and plots from its
/// chain, or an SMC² one's from its final checkpoint.
///
/// # Errors
/// Input errors for a directory that is not a run directory.
pub fn report(dir: &Path, quiet: bool) -> Result<()> {
    if dir.join(crate::checkpoint::SMC2_FILE).is_file() {
        crate::run::smc2::report(dir, quiet)
    } else {
        crate::run::report(dir, quiet)
    }
}
