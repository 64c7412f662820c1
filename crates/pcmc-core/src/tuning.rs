//! Burn-in checks of each chain: the particle count adapted to the noise of
//! the log-likelihood estimate, and chains stuck on a lucky overestimate.
//!
//! PMMH is exact for any particle count N, but how well it mixes depends on
//! the standard deviation σ of the estimate log L̂(θ): Doucet, Pitt,
//! Deligiannidis & Kohn (2015, "Efficient implementation of Markov chain
//! Monte Carlo when using an unbiased likelihood estimator", Biometrika
//! 102(2)) show that the cost per effective sample is smallest near σ ≈ 1.2
//! (between 1 and 1.7 little changes), and that for the bootstrap filter
//! σ² ≈ c(θ)/N. Far from the posterior σ can be in the hundreds at an N
//! that suits the posterior: a chain there accepts a lucky overestimate and
//! then rejects nearly everything for thousands of iterations.
//!
//! Every [`ChainChecks::every`] burn-in iterations each chain runs
//! [`ChainChecks::passes`] extra filter passes at its current θ (keyed
//! streams of their own, so the chain stays a pure function of job and
//! seed). With the particle count on `auto` ([`AutoParticles`]) it then:
//!
//! 1. at the starting point, before the first iteration, rescales N up to
//!    [`START_ROUNDS`] times from the sd of the passes;
//! 2. at each burn-in check, rescales N to `c/target²` where `c` is the
//!    median of the noise constants `N·σ²` of the last three checks
//!    ([`rescaled`]): by
//!    at most 4× per check, not at all within a dead band of `[2/3, 3/2]`
//!    of the current N (a 16-pass sd is itself ±18 % noisy, and
//!    heavy-tailed at small N), clamped to `[min, max]`;
//! 3. at the end of burn-in fixes N for the kept iterations from the median
//!    of `c` over the checks of the second half of burn-in
//!    ([`kept_particles`]), measures σ at that N with a last set of passes,
//!    corrects N once from that measurement if it misses the target by more
//!    than the dead band ([`needs_correction`]; the last measurement is the
//!    one reported), and continues from a fresh estimate at that N.
//!
//! The kept chain is exact PMMH with that N. Each chain fixes its own N (a
//! chain of an array job is then the same chain as in a run of all chains);
//! R̂ and the pooled summaries are valid across chains with different N,
//! which all target the same posterior and differ only in how fast they mix.
//!
//! Whatever the particle count:
//!
//! - a chain that accepted nothing over the last `every` iterations and whose
//!   current estimate exceeds every one of the fresh estimates at its θ is
//!   **stuck** ([`looks_stuck`]): its estimate is replaced by a fresh one
//!   (with the adapted N, if any);
//! - at the checks between half and three quarters of burn-in, a chain whose
//!   log posterior (mean fresh estimate + log prior) lies further below the
//!   best chain's than two chains at the posterior plausibly differ
//!   ([`relocation_gap`]) is **relocated** to the best chain's state
//!   (`Pmmh::relocate`): a local mode (on prey-only Lotka–Volterra data, fast
//!   oscillations aliased by the sampling interval make one) or a region the
//!   filter cannot explain. This needs the chains of one run side by side;
//!   R̂ cannot see a mode no kept chain visits, so every move is reported.
//!
//! Burn-in is not kept, so none of this changes what the kept chain
//! targets, only where it starts and how well it mixes.

use crate::error::{Error, Result};
use crate::resample::MAX_PARTICLES;

/// Default target sd of log L̂ (Doucet et al., 2015).
pub const DEFAULT_TARGET_SD: f64 = 1.2;
/// Default iterations between two checks of a chain.
pub const DEFAULT_CHECK_EVERY: u64 = 50;
/// Default extra filter passes per check.
pub const DEFAULT_CHECK_PASSES: u32 = 16;
/// Most extra passes per check.
pub const MAX_CHECK_PASSES: u32 = 1000;
/// Rounds of rescaling at a chain's starting point (each of
/// [`ChainChecks::passes`] passes) before its first iteration.
pub const START_ROUNDS: u32 = 4;
/// Most change of the kept count by its one correction ([`needs_correction`]).
pub const CORRECTION_LIMIT: f64 = 2.0;
/// N grows by this factor when a check's passes collapsed (σ = ∞).
pub const COLLAPSE_GROWTH: usize = 4;

/// The particle count adapted during burn-in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoParticles {
    /// Fewest particles.
    pub min: usize,
    /// Most particles.
    pub max: usize,
    /// Particles at the starting point, before its first rescaling.
    pub start: usize,
    /// Target sd of log L̂.
    pub target_sd: f64,
}

impl AutoParticles {
    /// Bounds `min ..= max`, starting at `min`, target
    /// [`DEFAULT_TARGET_SD`].
    pub fn new(min: usize, max: usize) -> Self {
        AutoParticles {
            min,
            max,
            start: min,
            target_sd: DEFAULT_TARGET_SD,
        }
    }

    /// `n` clamped to the bounds.
    pub fn clamp(&self, n: f64) -> usize {
        if n.is_nan() || n >= self.max as f64 {
            self.max
        } else {
            (n.ceil() as usize).clamp(self.min, self.max)
        }
    }
}

/// What each chain checks during burn-in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainChecks {
    /// Iterations between two checks.
    pub every: u64,
    /// Extra filter passes per check.
    pub passes: u32,
    /// Detect and recover chains stuck on an overestimate.
    pub stuck: bool,
    /// Move a chain whose log posterior lies far below the best chain's
    /// ([`relocation_gap`]) to that chain's state (chains of one run only;
    /// at the checks between half and three quarters of burn-in).
    pub relocate: bool,
    /// Adapt the particle count (else the problem's N throughout).
    pub auto: Option<AutoParticles>,
}

impl Default for ChainChecks {
    /// Stuck chains detected every [`DEFAULT_CHECK_EVERY`] iterations with
    /// [`DEFAULT_CHECK_PASSES`] passes; a fixed particle count.
    fn default() -> Self {
        ChainChecks {
            every: DEFAULT_CHECK_EVERY,
            passes: DEFAULT_CHECK_PASSES,
            stuck: true,
            relocate: true,
            auto: None,
        }
    }
}

impl ChainChecks {
    /// No checks: plain PMMH with a fixed particle count.
    pub fn off() -> Self {
        ChainChecks {
            stuck: false,
            relocate: false,
            ..ChainChecks::default()
        }
    }

    /// Whether any check runs.
    pub fn active(&self) -> bool {
        self.stuck || self.relocate || self.auto.is_some()
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.every == 0 {
            return Err(Error::setting("mcmc.check_every", "must be at least 1"));
        }
        if !(2..=MAX_CHECK_PASSES).contains(&self.passes) {
            return Err(Error::setting(
                "mcmc.check_passes",
                format!("{} is not in 2..={MAX_CHECK_PASSES}", self.passes),
            ));
        }
        if let Some(a) = &self.auto {
            if a.min == 0 || a.max > MAX_PARTICLES || a.min > a.max {
                return Err(Error::setting(
                    "filter.auto",
                    format!(
                        "min = {} and max = {} must satisfy 1 ≤ min ≤ max ≤ 2^32",
                        a.min, a.max
                    ),
                ));
            }
            if !(a.min..=a.max).contains(&a.start) {
                return Err(Error::setting(
                    "filter.auto.start",
                    format!("{} is not in min..=max ({}..={})", a.start, a.min, a.max),
                ));
            }
            if !(a.target_sd.is_finite() && a.target_sd > 0.0) {
                return Err(Error::setting(
                    "filter.auto.target_sd",
                    format!("{} is not a finite positive number", a.target_sd),
                ));
            }
        }
        Ok(())
    }
}

/// The log-likelihood estimates of a check's passes, summarised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Mean of the finite estimates (−∞ if none).
    pub mean: f64,
    /// Sample sd of the finite estimates (∞ if fewer than two).
    pub sd: f64,
    /// Estimates that were −∞ (the filter collapsed).
    pub collapsed: u32,
}

impl Spread {
    /// Summarises `lls`.
    pub fn of(lls: &[f64]) -> Spread {
        let finite: Vec<f64> = lls.iter().copied().filter(|x| x.is_finite()).collect();
        let collapsed = (lls.len() - finite.len()) as u32;
        if finite.is_empty() {
            return Spread {
                mean: f64::NEG_INFINITY,
                sd: f64::INFINITY,
                collapsed,
            };
        }
        let m = finite.iter().sum::<f64>() / finite.len() as f64;
        let sd = if finite.len() < 2 {
            f64::INFINITY
        } else {
            (finite.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (finite.len() - 1) as f64)
                .sqrt()
        };
        Spread {
            mean: m,
            sd,
            collapsed,
        }
    }

    /// The sd of the estimator: ∞ if any pass collapsed.
    pub fn estimator_sd(&self) -> f64 {
        if self.collapsed > 0 {
            f64::INFINITY
        } else {
            self.sd
        }
    }
}

/// The noise constant `c = N·σ²` of a check at `n` particles whose
/// estimator sd is `sd` (∞ if it is): `σ² ≈ c/N` for the bootstrap filter.
pub fn noise_constant(n: u64, sd: f64) -> f64 {
    n as f64 * sd * sd
}

/// The particle count after a check at `n` particles, from the noise
/// constants ([`noise_constant`]) of the last checks, oldest first (only the
/// last three are used): their median `c` (the larger of two) gives
/// `c/target²`. N changes by at most a factor [`COLLAPSE_GROWTH`] per check,
/// not at all if the ratio to `n` is within `[2/3, 3/2]` (a 16-pass sd is
/// itself ±18 % noisy, and heavy-tailed at small N), grows by
/// [`COLLAPSE_GROWTH`] if `c` is ∞, and stays within the bounds.
pub fn rescaled(n: usize, constants: &[f64], a: &AutoParticles) -> usize {
    let mut last: Vec<f64> = constants.iter().rev().take(3).copied().collect();
    if last.is_empty() {
        return a.clamp(n as f64);
    }
    last.sort_by(f64::total_cmp);
    let c = last[last.len() / 2];
    let nf = n as f64;
    let growth = COLLAPSE_GROWTH as f64;
    if !c.is_finite() {
        return a.clamp(nf * growth);
    }
    let r = c / (nf * a.target_sd * a.target_sd);
    if (2.0 / 3.0..=1.5).contains(&r) {
        a.clamp(nf)
    } else {
        a.clamp(nf * r.clamp(1.0 / growth, growth))
    }
}

/// The particle count for the kept iterations: `median(c)/target²` over the
/// finite noise constants `c = N·σ²` ([`noise_constant`]) of the checks
/// made in the second half of burn-in, clamped to the bounds; `current` if
/// there are none. The median, because a chain that reached the posterior
/// only during that half brings checks whose `c` is orders of magnitude
/// larger; the count is then measured and corrected once
/// ([`needs_correction`]).
pub fn kept_particles(constants: &[f64], a: &AutoParticles, current: usize) -> usize {
    let mut c: Vec<f64> = constants
        .iter()
        .copied()
        .filter(|c| c.is_finite())
        .collect();
    if c.is_empty() {
        return a.clamp(current as f64);
    }
    c.sort_by(f64::total_cmp);
    let m = c.len() / 2;
    let median = if c.len() % 2 == 1 {
        c[m]
    } else {
        0.5 * (c[m - 1] + c[m])
    };
    a.clamp(median / (a.target_sd * a.target_sd))
}

/// Whether the sd `sd` measured at the kept count `n` calls for one more
/// count, and which: `n·(sd/target)²`, by at most a factor
/// [`CORRECTION_LIMIT`] either way (one 16-pass sd is heavy-tailed at
/// small N: a single wild value must not multiply the kept cost), clamped,
/// when `(sd/target)²` is outside `[2/3, 3/2]`.
pub fn needs_correction(n: usize, sd: f64, a: &AutoParticles) -> Option<usize> {
    let r = (sd / a.target_sd).powi(2);
    if (2.0 / 3.0..=1.5).contains(&r) {
        return None;
    }
    let next = if sd.is_finite() {
        a.clamp(n as f64 * r.clamp(1.0 / CORRECTION_LIMIT, CORRECTION_LIMIT))
    } else {
        a.clamp(n as f64 * CORRECTION_LIMIT)
    };
    (next != n).then_some(next)
}

/// Whether a chain that accepted `accepted` proposals since its last check
/// and holds the estimate `current` is stuck: it accepted none, and
/// `current` is finite and above every fresh estimate `lls` at its θ (at
/// stationarity the current estimate tops 16 fresh ones with probability
/// about 1/17, and a chain there accepts some of 50 proposals all but
/// surely).
pub fn looks_stuck(accepted: u64, current: f64, lls: &[f64]) -> bool {
    accepted == 0 && current.is_finite() && !lls.is_empty() && lls.iter().all(|l| current > *l)
}

/// How far below the best chain's log-likelihood another chain's may lie
/// before it is moved to the best chain's state (burn-in only): half the
/// `1 − 10⁻⁴` quantile of χ²_d (d free parameters; at the posterior
/// `2(ℓ_max − ℓ(θ))` is about χ²_d, so two chains both at the posterior
/// differ by more than that with probability below 10⁻⁴), plus three
/// standard errors of the difference of the two checks' means. The χ²
/// quantile is Wilson and Hilferty's (1931) approximation.
pub fn relocation_gap(d: usize, se: f64) -> f64 {
    const Z: f64 = 3.719; // the standard normal's 1 − 10⁻⁴ quantile
    let d = d.max(1) as f64;
    let h = 2.0 / (9.0 * d);
    let q = d * (1.0 - h + Z * h.sqrt()).powi(3);
    q / 2.0 + 3.0 * se
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> AutoParticles {
        AutoParticles::new(50, 4000)
    }

    #[test]
    fn spread_is_the_sample_sd_of_the_finite_estimates() {
        let s = Spread::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((s.mean, s.collapsed), (2.5, 0));
        assert!((s.sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        let s = Spread::of(&[1.0, f64::NEG_INFINITY, 3.0]);
        assert_eq!((s.mean, s.collapsed), (2.0, 1));
        assert!((s.sd - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(s.estimator_sd(), f64::INFINITY);
        assert_eq!(Spread::of(&[1.0]).sd, f64::INFINITY);
        assert_eq!(Spread::of(&[f64::NEG_INFINITY; 3]).mean, f64::NEG_INFINITY);
    }

    #[test]
    fn rescaling_follows_the_median_noise_constant_within_bounds_and_steps() {
        let a = auto();
        let c = |n: u64, sd: f64| noise_constant(n, sd);
        // σ = 2.4 at 100: four times the target variance → 400.
        assert_eq!(rescaled(100, &[c(100, 2.4)], &a), 400);
        // σ = 0.6 at 400: a quarter → 100.
        assert_eq!(rescaled(400, &[c(400, 0.6)], &a), 100);
        // At most a factor 4 per check.
        assert_eq!(rescaled(100, &[c(100, 130.0)], &a), 400);
        assert_eq!(rescaled(2000, &[c(2000, 0.1)], &a), 500);
        // Within the dead band nothing changes.
        assert_eq!(rescaled(300, &[c(300, 1.3)], &a), 300);
        assert_eq!(rescaled(300, &[c(300, 1.0)], &a), 300);
        // One noisy check among three does not move N: the median does.
        let hist = [c(100, 1.2), c(100, 1.1), c(100, 5.6)];
        assert_eq!(rescaled(100, &hist, &a), 100);
        // Only the last three count.
        let hist = [c(100, 50.0), c(100, 1.2), c(100, 1.1), c(100, 1.3)];
        assert_eq!(rescaled(100, &hist, &a), 100);
        // Bounds and collapses.
        assert_eq!(rescaled(100, &[c(100, 0.01)], &a), 50);
        assert_eq!(rescaled(100, &[f64::INFINITY], &a), 400);
        assert_eq!(rescaled(3000, &[f64::INFINITY], &a), 4000);
    }

    #[test]
    fn kept_count_is_the_median_noise_constant_over_the_target_corrected_once() {
        let a = auto();
        // median(200·1.44, 400·0.36) / 1.44 = (288 + 144)/2/1.44 = 150.
        let cs = [
            noise_constant(200, 1.2),
            noise_constant(400, 0.6),
            f64::INFINITY,
        ];
        assert_eq!(kept_particles(&cs, &a, 999), 150);
        assert_eq!(kept_particles(&[f64::INFINITY], &a, 999), 999);
        // A check from before the chain arrived does not decide the count.
        let cs = [
            noise_constant(2000, 60.0),
            noise_constant(200, 1.2),
            noise_constant(200, 1.3),
        ];
        assert_eq!(kept_particles(&cs, &a, 999), 235);
        // The measured sd at the kept count corrects it once.
        assert_eq!(needs_correction(200, 1.3, &a), None);
        assert_eq!(needs_correction(200, 1.6, &a), Some(356));
        assert_eq!(needs_correction(200, 2.4, &a), Some(400));
        assert_eq!(needs_correction(200, 0.6, &a), Some(100));
        assert_eq!(needs_correction(200, f64::INFINITY, &a), Some(400));
        assert_eq!(needs_correction(4000, 9.0, &a), None);
    }

    #[test]
    fn a_chain_is_stuck_only_without_moves_and_above_every_fresh_estimate() {
        let fresh = [-300.0, -280.0, -310.0];
        assert!(looks_stuck(0, -270.0, &fresh));
        assert!(!looks_stuck(1, -270.0, &fresh));
        assert!(!looks_stuck(0, -290.0, &fresh));
        assert!(!looks_stuck(0, f64::NEG_INFINITY, &fresh));
        assert!(!looks_stuck(0, -270.0, &[]));
    }

    #[test]
    fn relocation_gap_is_half_a_far_chi_square_quantile_plus_three_standard_errors() {
        // χ²_3 and χ²_8 at 1 − 10⁻⁴: 21.11 and 31.83 (tables); Wilson and
        // Hilferty's cube is within 4 % this far out (21.84 and 32.28), on
        // the side of moving fewer chains.
        let (g3, g8) = (relocation_gap(3, 0.0), relocation_gap(8, 0.0));
        assert!((21.11 / 2.0..1.04 * 21.11 / 2.0).contains(&g3), "{g3}");
        assert!((31.83 / 2.0..1.04 * 31.83 / 2.0).contains(&g8), "{g8}");
        assert!((relocation_gap(3, 1.0) - relocation_gap(3, 0.0) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn settings_are_validated() {
        assert!(ChainChecks::default().validate().is_ok());
        let mut c = ChainChecks {
            auto: Some(auto()),
            ..ChainChecks::default()
        };
        assert!(c.validate().is_ok());
        c.passes = 1;
        assert!(c.validate().is_err());
        c.passes = 16;
        c.every = 0;
        assert!(c.validate().is_err());
        c.every = 50;
        c.auto = Some(AutoParticles::new(500, 50));
        assert!(c.validate().is_err());
        c.auto = Some(AutoParticles {
            target_sd: 0.0,
            ..auto()
        });
        assert!(c.validate().is_err());
        c.auto = Some(AutoParticles {
            start: 10,
            ..auto()
        });
        assert!(c.validate().is_err());
    }
}
