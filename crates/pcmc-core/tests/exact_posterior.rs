//! PMMH with the real particle filter against an exact posterior.
//!
//! Immigration–death (`∅ → X` at rate λ, `X → ∅` at rate μ·x) has an exact
//! likelihood by the forward algorithm (`common`), so its posterior over
//! (ln λ, ln μ) can be computed on a grid. PMMH with exact-SSA particles must
//! reproduce the grid posterior's means and standard deviations within Monte
//! Carlo error, and simulation-based calibration (Talts, Betancourt, Simpson,
//! Vehtari & Gelman, 2018) over 100 replicate data sets drawn from the prior
//! must give uniform ranks.

mod common;

use common::id_priors as priors;
use pcmc_core::diagnostics::ess_bulk;
use pcmc_core::prelude::*;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::serial;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// A data set simulated at θ: X observed with Gaussian noise sd 2 at
/// `times`, X(0) ~ Poisson(15).
fn problem(theta: &[f64], times: Vec<f64>, particles: usize, seed: u64) -> FilterProblem {
    let obs = ObservationModel::Gaussian { sd: vec![2.0] };
    common::id_problem(theta, times, obs, particles, seed)
}

#[test]
fn pmmh_matches_the_grid_posterior() {
    let times: Vec<f64> = (1..=20).map(|i| 0.5 * f64::from(i)).collect();
    let problem = problem(&[10.0, 0.5], times, 100, 3);
    let common::Grid { mean, sd, cov, .. } = common::grid_posterior(&problem);
    eprintln!("grid posterior of (ln λ, ln μ): mean {mean:?}, sd {sd:?}");
    // The optimal random-walk scale for a 2-d Gaussian target.
    let s = 2.38 * 2.38 / 2.0;
    let proposal = vec![vec![s * cov[0], s * cov[1]], vec![s * cov[1], s * cov[3]]];
    let chains = 4;
    let pmmh = Pmmh::new(
        problem,
        priors(),
        PmmhConfig {
            seed: 21,
            chains,
            burn_in: 300,
            iterations: 5000,
            thin: 1,
            init: vec![mean[0].exp(), mean[1].exp()],
            start: StartPoints::Dispersed { sd: 0.3 },
            proposal: ProposalCovariance::Full(proposal),
            early_rejection: true,
            checks: pcmc_core::tuning::ChainChecks::off(),
            adapt: None,
        },
    )
    .unwrap();
    let mut draws = vec![vec![Vec::new(); chains]; 2];
    pmmh.run(&mut serial(), |rec, _| {
        if rec.kept {
            for (d, x) in draws.iter_mut().zip(&rec.theta) {
                d[rec.chain as usize].push(x.ln());
            }
        }
        Ok(())
    })
    .unwrap();
    for p in 0..2 {
        let refs: Vec<&[f64]> = draws[p].iter().map(|c| c.as_slice()).collect();
        let ess = ess_bulk(&refs).unwrap();
        let all: Vec<f64> = draws[p].iter().flatten().copied().collect();
        let n = all.len() as f64;
        let m = all.iter().sum::<f64>() / n;
        let v = all.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
        // Monte Carlo standard errors from the ESS: sd/√ESS for the mean and
        // sd/√(2·ESS) for the sd (near-Gaussian posterior).
        let se_mean = sd[p] / ess.sqrt();
        let se_sd = sd[p] / (2.0 * ess).sqrt();
        assert!(ess > 500.0, "θ{p}: ESS {ess:.0}");
        assert!(
            (m - mean[p]).abs() < 4.0 * se_mean,
            "θ{p}: PMMH mean of the log-rate {m:.4}, exact {:.4} (se {se_mean:.4}, ESS {ess:.0})",
            mean[p]
        );
        assert!(
            (v.sqrt() - sd[p]).abs() < 4.0 * se_sd,
            "θ{p}: PMMH sd of the log-rate {:.4}, exact {:.4} (se {se_sd:.4}, ESS {ess:.0})",
            v.sqrt(),
            sd[p]
        );
    }
}

/// The rank of each parameter's true value among `L = 9` thinned posterior
/// draws, for replicate `r` (θ drawn from the prior, data simulated at it).
fn sbc_ranks(r: u64) -> [usize; 2] {
    const L: u64 = 9;
    let pri = priors();
    let mut rng = StreamKey::new(2018, r, 0, 0, 0, Purpose::Test).rng();
    let theta: Vec<f64> = pri.iter().map(|p| p.sample(&mut rng)).collect();
    let times: Vec<f64> = (1..=10).map(f64::from).collect();
    let problem = problem(&theta, times, 40, 1000 + r);
    let iterations = 900;
    let pmmh = Pmmh::new(
        problem,
        pri,
        PmmhConfig {
            seed: r,
            chains: 1,
            burn_in: 300,
            iterations,
            thin: iterations / L,
            init: vec![10.0, 0.5],
            start: StartPoints::Prior,
            proposal: ProposalCovariance::Diagonal(vec![0.2, 0.2]),
            early_rejection: true,
            checks: pcmc_core::tuning::ChainChecks::off(),
            adapt: Some(AdaptConfig {
                start: 100,
                every: 50,
            }),
        },
    )
    .unwrap();
    let mut ranks = [0usize; 2];
    let mut kept = 0;
    pmmh.run(&mut serial(), |rec, _| {
        if rec.kept {
            kept += 1;
            for p in 0..2 {
                ranks[p] += usize::from(rec.theta[p] < theta[p]);
            }
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(kept, L);
    ranks
}

#[test]
fn simulation_based_calibration() {
    const REPLICATES: u64 = 100;
    const BINS: usize = 10; // ranks 0..=9
    let ranks: Vec<[usize; 2]> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2u64)
            .map(|t| {
                s.spawn(move || {
                    (0..REPLICATES)
                        .filter(|r| r % 2 == t)
                        .map(sbc_ranks)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let expected = REPLICATES as f64 / BINS as f64;
    // Two tests (one per parameter) at α = 0.001 each.
    let crit = ChiSquared::new((BINS - 1) as f64)
        .unwrap()
        .inverse_cdf(0.999);
    for p in 0..2 {
        let mut hist = [0usize; BINS];
        for r in &ranks {
            hist[r[p]] += 1;
        }
        let stat: f64 = hist
            .iter()
            .map(|&o| (o as f64 - expected).powi(2) / expected)
            .sum();
        assert!(
            stat < crit,
            "θ{p}: SBC rank histogram {hist:?} is not uniform: χ² = {stat:.1} ≥ {crit:.1}"
        );
    }
}
