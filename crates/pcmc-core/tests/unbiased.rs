//! The particle filter's likelihood estimate is unbiased: E[exp(ℓ̂)] = exp(ℓ).
//!
//! Immigration–death has a closed-form transition law (binomial survival plus
//! Poisson immigration), so the exact likelihood of noisy observations follows
//! from the forward algorithm on a truncated state space.

use pcmc_core::prelude::*;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::simulate::simulate;
use pcmc_core::{LikelihoodExecutor, serial};
use statrs::distribution::{Binomial, Discrete, Poisson};

const K: usize = 120; // truncation: P(X > 120) is negligible for these means

fn transition(lambda: f64, mu: f64, dt: f64) -> Vec<f64> {
    let p = (-mu * dt).exp();
    let imm = Poisson::new(lambda / mu * (1.0 - p)).unwrap();
    let mut m = vec![0.0; (K + 1) * (K + 1)];
    for x in 0..=K {
        let surv = Binomial::new(p, x as u64).unwrap();
        for j in 0..=x {
            let ps = surv.pmf(j as u64);
            for x2 in j..=K {
                m[x * (K + 1) + x2] += ps * imm.pmf((x2 - j) as u64);
            }
        }
    }
    m
}

/// Exact log-likelihood by the forward algorithm.
fn exact_loglik(problem: &FilterProblem, theta: &[f64]) -> f64 {
    let x0 = Poisson::new(problem.initial().means()[0]).unwrap();
    let mut alpha: Vec<f64> = (0..=K).map(|x| x0.pmf(x as u64)).collect();
    let mut t = problem.t0();
    let mut ll = 0.0;
    for k in 0..problem.data().len() {
        let tk = problem.data().times()[k];
        if tk > t {
            let m = transition(theta[0], theta[1], tk - t);
            let mut next = vec![0.0; K + 1];
            for x in 0..=K {
                for x2 in 0..=K {
                    next[x2] += alpha[x] * m[x * (K + 1) + x2];
                }
            }
            alpha = next;
        }
        let y = problem.data().row(k);
        for (x, a) in alpha.iter_mut().enumerate() {
            *a *= problem
                .observation()
                .log_density(y, [x as u64].into_iter())
                .exp();
        }
        let s: f64 = alpha.iter().sum();
        ll += s.ln();
        for a in alpha.iter_mut() {
            *a /= s;
        }
        t = tk;
    }
    ll
}

fn problem(
    obs: ObservationModel,
    particles: usize,
    resampling: Resampling,
) -> (FilterProblem, Vec<f64>) {
    let net = Network::immigration_death();
    let theta = vec![10.0, 0.5];
    let initial = InitialPrior::new(&net, vec![15.0]).unwrap();
    let times = vec![0.5, 1.0, 2.0, 3.5, 5.0];
    let traj = simulate(
        &net,
        &theta,
        &initial,
        &obs,
        &[0],
        0.0,
        &times,
        &[u64::MAX],
        u64::MAX,
        StreamKey::new(11, 0, 0, 0, 0, Purpose::Simulate),
    );
    let data = Data::new(&net, times, &["X".to_string()], traj.observations).unwrap();
    let mut cfg = FilterConfig::new(particles, 1);
    cfg.resampling = resampling;
    (
        FilterProblem::new(net, data, obs, initial, 0.0, cfg).unwrap(),
        theta,
    )
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
