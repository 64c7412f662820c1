//! Tests that fail when PMMH targets the wrong distribution.
//!
//! 1. **Prior recovery.** With a likelihood that is constant in θ the
//!    posterior is the prior, so the chain's draws must follow the prior's
//!    law: a Kolmogorov–Smirnov test per free parameter on draws thinned to
//!    near-independence (thinning from the measured bulk ESS). Every prior
//!    kind is checked, and a mix with a fixed parameter. Log-uniform priors
//!    alone cannot catch a dropped Jacobian (their −ln θ cancels the log
//!    walk's +ln θ); uniform, gamma and log-normal priors can.
//! 2. **Pseudo-marginal exactness** (Andrieu & Roberts, 2009). An estimate
//!    `ℓ(θ) + ε`, `ε ~ N(−σ²/2, σ²)`, is an unbiased likelihood estimate, and
//!    PMMH with it targets the exact posterior for any σ. With a Gaussian
//!    likelihood in ln θ and a log-normal prior, the posterior of ln θ is
//!    normal with known mean and variance; the chain's mean and variance
//!    must match within Monte Carlo error (from the ESS) at σ = 0, 1 and 2.
//!    With a *biased* estimate (`ε ~ N(0, σ²)`) whose σ varies with θ the
//!    target tilts by `exp(σ(θ)²/2)`, and the test must see the shift.

use pcmc_core::diagnostics::ess_bulk;
use pcmc_core::filter::{FilterKey, FilterOutput, FilterProblem};
use pcmc_core::prelude::*;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::workloads::lv11;
use rand_distr::{Distribution, StandardNormal};
use statrs::distribution::{ContinuousCDF, Gamma, LogNormal, Uniform};

/// A test executor whose estimate is `loglik(θ, key)`: no filter runs.
struct Formula<F>(F);

impl<F: FnMut(&[f64], FilterKey) -> f64> LikelihoodExecutor for Formula<F> {
    fn name(&self) -> &str {
        "formula"
    }
    fn workers(&self) -> usize {
        1
    }
    fn filter(
        &mut self,
        problem: &FilterProblem,
        theta: &[f64],
        key: FilterKey,
        _stop: Option<&AcceptTest>,
    ) -> pcmc_core::Result<FilterOutput> {
        let mut out = FilterOutput::new(problem.data().len());
        out.loglik = (self.0)(theta, key);
        Ok(out)
    }
}

/// Runs `chains` chains of PMMH with fixed proposal sds and returns the
/// kept draws of parameter `p`, per chain.
fn draws<E: LikelihoodExecutor>(
    exec: &mut E,
    priors: Vec<Prior>,
    sd: Vec<f64>,
    chains: usize,
    iterations: u64,
    seed: u64,
) -> Vec<Vec<Vec<f64>>> {
    let problem = lv11(10, 1);
    let init: Vec<f64> = priors.iter().map(|p| p.centre()).collect();
    let n_params = priors.len();
    let pmmh = Pmmh::new(
        problem,
        priors,
        PmmhConfig {
            seed,
            chains,
            burn_in: 1000,
            iterations,
            thin: 1,
            init,
            start: StartPoints::Fixed,
            proposal: ProposalCovariance::Diagonal(sd),
            early_rejection: true,
            checks: pcmc_core::tuning::ChainChecks::off(),
            adapt: None,
        },
    )
    .unwrap();
    let mut out = vec![vec![Vec::new(); chains]; n_params];
    pmmh.run(exec, |rec, _| {
        if rec.kept {
            for (p, x) in rec.theta.iter().enumerate() {
                out[p][rec.chain as usize].push(*x);
            }
        }
        Ok(())
    })
    .unwrap();
    out
}

/// The prior's CDF.
fn prior_cdf(p: &Prior, x: f64) -> f64 {
    match *p {
        Prior::LogUniform { lower, upper } => {
            ((x.ln() - lower.ln()) / (upper.ln() - lower.ln())).clamp(0.0, 1.0)
        }
        Prior::Uniform { lower, upper } => Uniform::new(lower, upper).unwrap().cdf(x),
        Prior::LogNormal { mu, sigma } => LogNormal::new(mu, sigma).unwrap().cdf(x),
        Prior::Gamma { shape, rate } => Gamma::new(shape, rate).unwrap().cdf(x),
        Prior::Fixed { value } => f64::from(u8::from(x >= value)),
    }
}

/// Kolmogorov–Smirnov statistic of `xs` against `cdf`.
fn ks_statistic(xs: &mut [f64], cdf: impl Fn(f64) -> f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len() as f64;
    xs.iter()
        .enumerate()
        .map(|(i, x)| {
            let f = cdf(*x);
            (f - i as f64 / m).max((i + 1) as f64 / m - f)
        })
        .fold(0.0, f64::max)
}

/// Thins one chain to near-independent draws: every ⌈2n/ESS⌉-th draw.
fn thinned(chain: &[f64]) -> (Vec<f64>, f64) {
    let ess = ess_bulk(&[chain]).expect("chain mixes");
    let step = ((2.0 * chain.len() as f64 / ess).ceil() as usize).max(1);
    (chain.iter().step_by(step).copied().collect(), ess)
}

/// The asymptotic Kolmogorov critical value at level α = 0.001 for `m`
/// draws: `sqrt(−ln(α/2)/2)/√m`.
fn ks_critical(m: usize) -> f64 {
    (-(0.001f64 / 2.0).ln() / 2.0).sqrt() / (m as f64).sqrt()
}

fn check_prior_recovery(label: &str, priors: Vec<Prior>, sd: Vec<f64>) {
    let free: Vec<usize> = (0..priors.len())
        .filter(|i| !priors[*i].is_fixed())
        .collect();
    let mut exec = Formula(|_: &[f64], _| 0.0);
    let d = draws(&mut exec, priors.clone(), sd, 1, 60_000, 7);
    for (p, prior) in priors.iter().enumerate() {
        let chain = &d[p][0];
        if prior.is_fixed() {
            assert!(chain.iter().all(|x| prior.log_density(*x) == 0.0));
            continue;
        }
        assert!(free.contains(&p));
        let (mut xs, ess) = thinned(chain);
        assert!(
            xs.len() >= 500,
            "{label} θ{p}: only {} near-independent draws (ESS {ess:.0}): tune the proposal",
            xs.len()
        );
        let stat = ks_statistic(&mut xs, |x| prior_cdf(prior, x));
        let crit = ks_critical(xs.len());
        assert!(
            stat < crit,
            "{label} θ{p} ({prior:?}): KS {stat:.4} ≥ critical {crit:.4} on {} draws (ESS {ess:.0})",
            xs.len()
        );
    }
}

#[test]
fn prior_recovery_uniform() {
    check_prior_recovery(
        "uniform",
        vec![
            Prior::Uniform {
                lower: 0.5,
                upper: 2.0,
            },
            Prior::Uniform {
                lower: 0.0,
                upper: 0.01,
            },
            Prior::Uniform {
                lower: 0.1,
                upper: 3.0,
            },
        ],
        vec![0.4, 1.2, 1.0],
    );
}

#[test]
fn prior_recovery_log_uniform() {
    check_prior_recovery(
        "log-uniform",
        vec![
            Prior::LogUniform {
                lower: 0.1,
                upper: 10.0,
            },
            Prior::LogUniform {
                lower: 1e-4,
                upper: 0.1,
            },
            Prior::LogUniform {
                lower: 0.5,
                upper: 2.0,
            },
        ],
        vec![2.0, 3.0, 0.7],
    );
}

#[test]
fn prior_recovery_log_normal() {
    check_prior_recovery(
        "log-normal",
        vec![
            Prior::LogNormal {
                mu: 0.0,
                sigma: 0.3,
            },
            Prior::LogNormal {
                mu: -5.3,
                sigma: 1.0,
            },
            Prior::LogNormal {
                mu: -0.5,
                sigma: 2.0,
            },
        ],
        vec![0.5, 1.5, 3.0],
    );
}

#[test]
fn prior_recovery_gamma() {
    check_prior_recovery(
        "gamma",
        vec![
            Prior::Gamma {
                shape: 2.0,
                rate: 1.0,
            },
            Prior::Gamma {
                shape: 0.7,
                rate: 100.0,
            },
            Prior::Gamma {
                shape: 20.0,
                rate: 30.0,
            },
        ],
        vec![1.2, 3.0, 0.4],
    );
}

#[test]
fn prior_recovery_mixed_with_a_fixed_parameter() {
    check_prior_recovery(
        "mixed",
        vec![
            Prior::Gamma {
                shape: 2.0,
                rate: 1.0,
            },
            Prior::Fixed { value: 0.005 },
            Prior::Uniform {
                lower: 0.2,
                upper: 1.0,
            },
        ],
        vec![1.2, 0.6],
    );
}

/// The pseudo-marginal set-up: a Gaussian log-likelihood in ln θ₀
/// (centre `M`, sd `TAU`), a log-normal prior `ln θ₀ ~ N(MU0, S0²)`, the
/// other two lv11 parameters fixed.
const MU0: f64 = 0.0;
const S0: f64 = 1.0;
const M: f64 = 0.5;
const TAU: f64 = 0.3;

/// The exact posterior of ln θ₀: (mean, variance).
fn exact_posterior() -> (f64, f64) {
    let v = 1.0 / (1.0 / (S0 * S0) + 1.0 / (TAU * TAU));
    (v * (MU0 / (S0 * S0) + M / (TAU * TAU)), v)
}

/// Mean, variance and bulk ESS of ln θ₀ over all chains, for an estimator
/// with noise sd `σ(θ) = sigma · (1 + ¼ tanh z)` (z: ln θ₀ standardised by
/// the exact posterior), unbiased or not.
fn pseudo_marginal(sigma: f64, unbiased: bool) -> (f64, f64, f64) {
    let (mp, vp) = exact_posterior();
    let sdp = vp.sqrt();
    let mut exec = Formula(move |theta: &[f64], key: FilterKey| {
        let l = theta[0].ln();
        let z: f64 = StandardNormal.sample(
            &mut StreamKey::new(key.seed, key.chain, key.iteration, 0, 0, Purpose::Test).rng(),
        );
        let s = sigma * (1.0 + 0.25 * ((l - mp) / sdp).tanh());
        let shift = if unbiased { -0.5 * s * s } else { 0.0 };
        -(l - M) * (l - M) / (2.0 * TAU * TAU) + shift + s * z
    });
    let priors = vec![
        Prior::LogNormal { mu: MU0, sigma: S0 },
        Prior::Fixed { value: 0.005 },
        Prior::Fixed { value: 0.6 },
    ];
    let d = draws(&mut exec, priors, vec![2.0 * sdp], 4, 150_000, 11);
    let logs: Vec<Vec<f64>> = d[0]
        .iter()
        .map(|c| c.iter().map(|x| x.ln()).collect())
        .collect();
    let refs: Vec<&[f64]> = logs.iter().map(|c| c.as_slice()).collect();
    let ess = ess_bulk(&refs).unwrap();
    let all: Vec<f64> = logs.iter().flatten().copied().collect();
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let var = all.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var, ess)
}

#[test]
fn pseudo_marginal_targets_the_exact_posterior() {
    let (mp, vp) = exact_posterior();
    for sigma in [0.0, 1.0, 2.0] {
        let (mean, var, ess) = pseudo_marginal(sigma, true);
        // Monte Carlo standard errors from the ESS: of the mean, sd/√ESS; of
        // the variance of a normal law, var·√(2/ESS).
        let se_mean = (vp / ess).sqrt();
        let se_var = vp * (2.0 / ess).sqrt();
        assert!(ess > 400.0, "σ = {sigma}: ESS {ess:.0} too small to test");
        assert!(
            (mean - mp).abs() < 4.0 * se_mean,
            "σ = {sigma}: mean of ln θ {mean:.4}, exact {mp:.4}, se {se_mean:.4} (ESS {ess:.0})"
        );
        assert!(
            (var - vp).abs() < 4.0 * se_var,
            "σ = {sigma}: variance of ln θ {var:.5}, exact {vp:.5}, se {se_var:.5} (ESS {ess:.0})"
        );
    }
}

#[test]
fn a_biased_estimator_is_detected() {
    let (mp, vp) = exact_posterior();
    for sigma in [1.0, 2.0] {
        let (mean, _, ess) = pseudo_marginal(sigma, false);
        let se_mean = (vp / ess).sqrt();
        assert!(
            (mean - mp).abs() > 6.0 * se_mean,
            "σ = {sigma}: the biased estimator's mean {mean:.4} is within 6 se ({se_mean:.4}) of the exact {mp:.4}"
        );
    }
}
