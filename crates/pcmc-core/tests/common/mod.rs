//! The exact likelihood of immigration–death data, shared by the
//! unbiasedness and exact-posterior tests.
//!
//! Immigration–death has a closed-form transition law (binomial survival
//! plus Poisson immigration), so the exact likelihood of noisy observations
//! follows from the forward algorithm on the state space truncated at `k`.

use pcmc_core::prelude::*;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::simulate::simulate;
use statrs::distribution::{Discrete, Poisson};

/// An immigration–death data set simulated at θ (stream `seed`), X(0) ~
/// Poisson(15), X observed through `obs` at `times`, and its filtering
/// problem with `particles` particles.
pub fn id_problem(
    theta: &[f64],
    times: Vec<f64>,
    obs: ObservationModel,
    particles: usize,
    seed: u64,
) -> FilterProblem {
    let net = Network::immigration_death();
    let initial = InitialPrior::new(&net, vec![15.0]).unwrap();
    let traj = simulate(
        &net,
        theta,
        &initial,
        &obs,
        &[0],
        0.0,
        &times,
        &[u64::MAX],
        u64::MAX,
        StreamKey::new(seed, 0, 0, 0, 0, Purpose::Simulate),
    );
    let data = Data::new(&net, times, &["X".to_string()], traj.observations).unwrap();
    FilterProblem::new(
        net,
        data,
        obs,
        initial,
        0.0,
        FilterConfig::new(particles, 1),
    )
    .unwrap()
}

/// The transition matrix over `dt` on `0..=k` (row-major, rows: from).
fn transition(lambda: f64, mu: f64, dt: f64, k: usize) -> Vec<f64> {
    let p = (-mu * dt).exp();
    let imm = Poisson::new(lambda / mu * (1.0 - p)).unwrap();
    let imm_pmf: Vec<f64> = (0..=k).map(|i| imm.pmf(i as u64)).collect();
    let mut m = vec![0.0; (k + 1) * (k + 1)];
    // Binomial(x, p) pmfs row by row: B(x+1, j) = p·B(x, j−1) + (1−p)·B(x, j).
    let mut surv = vec![1.0];
    for x in 0..=k {
        if x > 0 {
            let mut next = vec![0.0; x + 1];
            for (j, b) in surv.iter().enumerate() {
                next[j] += (1.0 - p) * b;
                next[j + 1] += p * b;
            }
            surv = next;
        }
        for (j, &ps) in surv.iter().enumerate() {
            if ps == 0.0 {
                continue;
            }
            for x2 in j..=k {
                m[x * (k + 1) + x2] += ps * imm_pmf[x2 - j];
            }
        }
    }
    m
}

/// The exact log-likelihood of `problem`'s data at θ = (λ, μ) by the
/// forward algorithm on `0..=k` (transition matrices cached per interval
/// length).
pub fn exact_loglik(problem: &FilterProblem, theta: &[f64], k: usize) -> f64 {
    let x0 = Poisson::new(problem.initial().means()[0]).unwrap();
    let mut alpha: Vec<f64> = (0..=k).map(|x| x0.pmf(x as u64)).collect();
    let mut t = problem.t0();
    let mut ll = 0.0;
    let mut cache: Vec<(f64, Vec<f64>)> = Vec::new();
    for i in 0..problem.data().len() {
        let ti = problem.data().times()[i];
        if ti > t {
            let dt = ti - t;
            if !cache.iter().any(|(d, _)| *d == dt) {
                cache.push((dt, transition(theta[0], theta[1], dt, k)));
            }
            let m = &cache.iter().find(|(d, _)| *d == dt).unwrap().1;
            let mut next = vec![0.0; k + 1];
            for x in 0..=k {
                if alpha[x] == 0.0 {
                    continue;
                }
                for x2 in 0..=k {
                    next[x2] += alpha[x] * m[x * (k + 1) + x2];
                }
            }
            alpha = next;
        }
        let y = problem.data().row(i);
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
        t = ti;
    }
    ll
}
