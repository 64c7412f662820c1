//! The particle filter's likelihood estimate is unbiased: E[exp(ℓ̂)] = exp(ℓ),
//! with the exact likelihood of immigration–death data from the forward
//! algorithm (`common`).

use pcmc_core::prelude::*;
use pcmc_core::{LikelihoodExecutor, serial};

mod common;

const K: usize = 120; // truncation: P(X > 120) is negligible for these means

fn exact_loglik(problem: &FilterProblem, theta: &[f64]) -> f64 {
    common::exact_loglik(problem, theta, K)
}

fn problem(
    obs: ObservationModel,
    particles: usize,
    resampling: Resampling,
) -> (FilterProblem, Vec<f64>) {
    let theta = vec![10.0, 0.5];
    let p = common::id_problem(&theta, vec![0.5, 1.0, 2.0, 3.5, 5.0], obs, particles, 11);
    let mut cfg = p.config().clone();
    cfg.resampling = resampling;
    (p.with_config(cfg).unwrap(), theta)
}

fn check_unbiased(obs: ObservationModel, resampling: Resampling) {
    let (problem, theta) = problem(obs, 40, resampling);
    let exact = exact_loglik(&problem, &theta);
    let mut exec = serial();
    let runs = 400;
    let ratios: Vec<f64> = (0..runs)
        .map(|r| {
            let key = FilterKey {
                seed: 5,
                chain: 0,
                iteration: r,
            };
            let out = exec.log_likelihood(&problem, &theta, key).unwrap();
            (out.loglik - exact).exp()
        })
        .collect();
    let n = ratios.len() as f64;
    let mean = ratios.iter().sum::<f64>() / n;
    let sd = (ratios.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (n - 1.0)).sqrt();
    let se = sd / n.sqrt();
    assert!(
        (mean - 1.0).abs() < 4.0 * se,
        "{resampling:?}: mean ratio {mean:.4}, se {se:.4}, exact loglik {exact:.4}"
    );
    // The estimator must also be informative: sd of the ratio well below 1.
    assert!(sd < 1.0, "sd of ratio {sd}");
}

#[test]
fn unbiased_poisson_observations() {
    check_unbiased(ObservationModel::Poisson, Resampling::Systematic);
}

#[test]
fn unbiased_gaussian_observations_every_scheme() {
    for scheme in [
        Resampling::Systematic,
        Resampling::Stratified,
        Resampling::Multinomial,
        Resampling::Residual,
    ] {
        check_unbiased(ObservationModel::Gaussian { sd: vec![2.0] }, scheme);
    }
}

/// With many particles the estimate concentrates on the exact value.
#[test]
fn consistent_with_many_particles() {
    let (problem, theta) = problem(
        ObservationModel::Gaussian { sd: vec![2.0] },
        20_000,
        Resampling::Systematic,
    );
    let exact = exact_loglik(&problem, &theta);
    let out = serial()
        .log_likelihood(
            &problem,
            &theta,
            FilterKey {
                seed: 9,
                chain: 0,
                iteration: 0,
            },
        )
        .unwrap();
    assert!(
        (out.loglik - exact).abs() < 0.05,
        "{} vs {exact}",
        out.loglik
    );
}
