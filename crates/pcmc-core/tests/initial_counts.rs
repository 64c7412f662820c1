//! Initial counts given by θ: a count that is a rounded parameter, and a
//! total that ties two species (`S = N − I0`).
//!
//! - At any θ, the filter with θ-given counts is, bit for bit, the filter
//!   with the fixed counts they round to (rounding half up), and a θ that
//!   makes a count negative has likelihood 0.
//! - PMMH over an inferred initial count matches the exact posterior of
//!   the count: immigration–death with known rates, `X(0) = round(θ₂)`,
//!   θ₂ ~ Uniform(0.5, 40.5) (so `X(0)` is uniform on 1..=40); the exact
//!   posterior is `p(n | y) ∝ L(n)`, each `L(n)` by the forward algorithm.
//!   The chain's mean and sd of `X(0)` are within 4 Monte Carlo standard
//!   errors (from the chains' ESS) of the exact ones.

mod common;

use pcmc_core::filter::FilterProblem;
use pcmc_core::model::{Network, ReactionSpec, Term};
use pcmc_core::observation::{
    Data, InitialCount, InitialPrior, Noise, Observable, Observations, Param,
};
use pcmc_core::prelude::*;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::simulate::simulate;
use pcmc_core::{LikelihoodExecutor, serial};

const K: usize = 150;
const TRUE_X0: u64 = 20;

/// Immigration–death (λ = 2, μ = 0.2) observed through Gaussian noise
/// (sd 3) at a few early times, from the initial law `initial`, with θ =
/// (λ, μ, x0).
fn problem(initial: InitialCount, particles: usize) -> FilterProblem {
    let net = Network::immigration_death();
    let names: Vec<String> = vec!["lambda".into(), "mu".into(), "x0".into()];
    let obs = vec![Observable {
        name: "X".into(),
        terms: vec![(0, 1)],
        noise: Noise::Gaussian {
            sd: Param::Fixed(3.0),
        },
    }];
    let times = vec![0.5, 1.0, 1.5, 2.0, 3.0, 4.0];
    let truth = InitialPrior::with_counts(&net, vec![InitialCount::Fixed(TRUE_X0)]).unwrap();
    let traj = simulate(
        &net,
        &[2.0, 0.2, 0.0],
        &truth,
        &obs,
        None,
        0.0,
        &times,
        &[u64::MAX],
        u64::MAX,
        StreamKey::new(21, 0, 0, 0, 0, Purpose::Simulate),
    );
    let data = Data::from_columns(times, &["X".to_string()], traj.observations).unwrap();
    let observations = Observations::new(obs, data, names, 1).unwrap();
    let initial = InitialPrior::with_counts(&net, vec![initial]).unwrap();
    FilterProblem::from_observations(
        net,
        observations,
        initial,
        0.0,
        FilterConfig::new(particles, 1),
        None,
    )
    .unwrap()
}

fn x0() -> InitialCount {
    InitialCount::Theta {
        constant: 0,
        plus: Some(2),
        minus: None,
    }
}

fn loglik(p: &FilterProblem, theta: &[f64], iteration: u64) -> f64 {
    let key = FilterKey {
        seed: 3,
        chain: 0,
        iteration,
    };
    serial().log_likelihood(p, theta, key).unwrap().loglik
}

#[test]
fn a_theta_given_count_is_the_fixed_count_it_rounds_to() {
    let inferred = problem(x0(), 64);
    for (x, n) in [(19.7, 20), (20.4999, 20), (20.5, 21), (0.2, 0), (7.0, 7)] {
        let fixed = problem(InitialCount::Fixed(n), 64);
        for it in 0..3 {
            assert_eq!(
                loglik(&inferred, &[2.0, 0.2, x], it).to_bits(),
                loglik(&fixed, &[2.0, 0.2, x], it).to_bits(),
                "θ₂ = {x} is the count {n}"
            );
        }
    }
    // A total: S = 50 − I0, I = I0, on S + I → 2I, I → ∅.
    let term = |s: &str, c| Term {
        species: s.into(),
        count: c,
    };
    let net = Network::new(
        vec!["S".into(), "I".into()],
        vec!["beta".into(), "gamma".into()],
        &[
            ReactionSpec {
                name: "infection".into(),
                reactants: vec![term("S", 1), term("I", 1)],
                products: vec![term("I", 2)],
                rate: "beta".into(),
            },
            ReactionSpec {
                name: "removal".into(),
                reactants: vec![term("I", 1)],
                products: vec![],
                rate: "gamma".into(),
            },
        ],
    )
    .unwrap();
    let sir = |s: InitialCount, i: InitialCount| {
        let obs = vec![Observable {
            name: "I".into(),
            terms: vec![(1, 1)],
            noise: Noise::Poisson {
                rho: Param::Fixed(1.0),
            },
        }];
        let data = Data::from_columns(
            vec![1.0, 2.0, 3.0],
            &["I".to_string()],
            vec![vec![4.0], vec![9.0], vec![12.0]],
        )
        .unwrap();
        let names = vec!["beta".into(), "gamma".into(), "I0".into()];
        let observations = Observations::new(obs, data, names, 2).unwrap();
        let initial = InitialPrior::with_counts(&net, vec![s, i]).unwrap();
        FilterProblem::from_observations(
            net.clone(),
            observations,
            initial,
            0.0,
            FilterConfig::new(64, 2),
            None,
        )
        .unwrap()
    };
    let total = sir(
        InitialCount::Theta {
            constant: 50,
            plus: None,
            minus: Some(2),
        },
        InitialCount::Theta {
            constant: 0,
            plus: Some(2),
            minus: None,
        },
    );
    let fixed = sir(InitialCount::Fixed(47), InitialCount::Fixed(3));
    let theta = [0.02, 0.3, 3.2];
    assert_eq!(
        loglik(&total, &theta, 0).to_bits(),
        loglik(&fixed, &theta, 0).to_bits()
    );
    assert!(loglik(&total, &theta, 0).is_finite());
    // I0 = 51 makes S negative: likelihood 0, and θ is invalid.
    assert!(!total.theta_is_valid(&[0.02, 0.3, 50.6]));
    assert_eq!(loglik(&total, &[0.02, 0.3, 50.6], 0), f64::NEG_INFINITY);
    assert!(total.theta_is_valid(&[0.02, 0.3, 49.6]));
}

#[test]
fn pmmh_over_an_initial_count_matches_the_exact_posterior() {
    // The exact posterior of n = X(0) under the uniform prior on 1..=40.
    let ns: Vec<u64> = (1..=40).collect();
    let ll: Vec<f64> = ns
        .iter()
        .map(|&n| {
            let p = problem(InitialCount::Fixed(n), 16);
            common::exact_loglik(&p, &[2.0, 0.2, n as f64], K)
        })
        .collect();
    let m = ll.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = ll.iter().map(|l| (l - m).exp()).collect();
    let z: f64 = w.iter().sum();
    let mean = ns.iter().zip(&w).map(|(n, w)| *n as f64 * w).sum::<f64>() / z;
    let sd = (ns
        .iter()
        .zip(&w)
        .map(|(n, w)| (*n as f64 - mean).powi(2) * w)
        .sum::<f64>()
        / z)
        .sqrt();
    assert!(
        w[0] / z < 1e-4 && w[39] / z < 1e-4,
        "the prior's range must hold the posterior"
    );
    let p = problem(x0(), 200);
    let chains = 4;
    let pmmh = Pmmh::new(
        p,
        vec![
            Prior::Fixed { value: 2.0 },
            Prior::Fixed { value: 0.2 },
            Prior::Uniform {
                lower: 0.5,
                upper: 40.5,
            },
        ],
        PmmhConfig {
            seed: 13,
            chains,
            burn_in: 300,
            iterations: 4000,
            thin: 1,
            init: vec![2.0, 0.2, mean],
            start: StartPoints::Dispersed { sd: 0.1 },
            proposal: ProposalCovariance::Diagonal(vec![2.4 * sd / mean]),
            early_rejection: true,
            checks: pcmc_core::tuning::ChainChecks::off(),
            adapt: None,
        },
    )
    .unwrap();
    let mut draws = vec![Vec::new(); chains];
    pmmh.run(&mut serial(), |rec, _| {
        if rec.kept {
            draws[rec.chain as usize].push((rec.theta[2] + 0.5).floor());
        }
        Ok(())
    })
    .unwrap();
    common::assert_posterior("X(0)", &draws, mean, sd, 400.0);
}
