//! The exact likelihood of immigration–death data, shared by the
//! unbiasedness and exact-posterior tests.
//!
//! Immigration–death has a closed-form transition law (binomial survival
//! plus Poisson immigration), so the exact likelihood of noisy observations
//! follows from the forward algorithm on the state space truncated at `k`.

use pcmc_core::observation::InitialCount;
use pcmc_core::prelude::*;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::simulate::simulate;
use statrs::distribution::{Discrete, Poisson};

/// The immigration–death priors of the exact-posterior and SMC² tests:
/// ln λ ~ N(ln 10, 0.5²), ln μ ~ N(ln 0.5, 0.5²).
#[allow(dead_code)] // not every test binary that includes `common` uses it
pub fn id_priors() -> Vec<Prior> {
    vec![
        Prior::LogNormal {
            mu: 10f64.ln(),
            sigma: 0.5,
        },
        Prior::LogNormal {
            mu: 0.5f64.ln(),
            sigma: 0.5,
        },
    ]
}

/// An immigration–death data set simulated at θ (stream `seed`), X(0) ~
/// Poisson(15), X observed through `obs` at `times`, and its filtering
/// problem with `particles` particles.
#[allow(dead_code)] // not every test binary that includes `common` uses it
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
        &obs.observables(&net, &["X".to_string()]).unwrap(),
        None,
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
#[allow(dead_code)] // not every test binary that includes `common` uses it
pub fn transition(lambda: f64, mu: f64, dt: f64, k: usize) -> Vec<f64> {
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
    let Some(scoring) = problem.observations().at(theta) else {
        return f64::NEG_INFINITY;
    };
    exact_loglik_with(problem, theta, k, |i, x| {
        scoring.log_density(i, |_| x).exp()
    })
}

/// [`exact_loglik`] with the observation densities given by `weigh(row,
/// x)` (the density of data row `row` when the species count is `x`): an
/// implementation independent of pcmc's own.
#[allow(dead_code)] // not every test binary that includes `common` uses it
pub fn exact_loglik_with(
    problem: &FilterProblem,
    theta: &[f64],
    k: usize,
    weigh: impl Fn(usize, u64) -> f64,
) -> f64 {
    let mut cache: Vec<(f64, Vec<f64>)> = Vec::new();
    forward_with(problem, k, weigh, |alpha, dt| {
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
        *alpha = next;
    })
}

/// The forward algorithm for a one-species chain on `0..=k` started from
/// `problem`'s initial law (Poisson or fixed): `propagate(p, dt)` moves the
/// law `p` over `dt`; observations weigh it through `problem`'s
/// observables at `theta` (their noise parameters read from it).
#[allow(dead_code)] // not every test binary that includes `common` uses it
pub fn forward_loglik(
    problem: &FilterProblem,
    theta: &[f64],
    k: usize,
    propagate: impl FnMut(&mut Vec<f64>, f64),
) -> f64 {
    let Some(scoring) = problem.observations().at(theta) else {
        return f64::NEG_INFINITY;
    };
    forward_with(
        problem,
        k,
        |i, x| scoring.log_density(i, |_| x).exp(),
        propagate,
    )
}

/// The forward algorithm with observation densities `weigh(row, x)`.
pub fn forward_with(
    problem: &FilterProblem,
    k: usize,
    weigh: impl Fn(usize, u64) -> f64,
    mut propagate: impl FnMut(&mut Vec<f64>, f64),
) -> f64 {
    let mut alpha: Vec<f64> = match problem.initial().counts()[0] {
        InitialCount::Poisson(m) => {
            let x0 = Poisson::new(m).unwrap();
            (0..=k).map(|x| x0.pmf(x as u64)).collect()
        }
        InitialCount::Fixed(n) => (0..=k)
            .map(|x| f64::from(u8::from(x as u64 == n)))
            .collect(),
        other => panic!("the forward algorithm takes a Poisson or fixed count, not {other:?}"),
    };
    let mut t = problem.t0();
    let mut ll = 0.0;
    for i in 0..problem.data().len() {
        let ti = problem.data().times()[i];
        if ti > t {
            propagate(&mut alpha, ti - t);
        }
        for (x, a) in alpha.iter_mut().enumerate() {
            *a *= weigh(i, x as u64);
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

/// The evidence and the posterior moments of (ln λ, ln μ) under
/// [`id_priors`], by quadrature of the exact likelihood on a grid.
#[allow(dead_code)] // each test reads the fields it needs
pub struct Grid {
    /// `log Z = log ∫ p(y | θ) p(θ) dθ`.
    pub log_z: f64,
    /// Posterior means.
    pub mean: [f64; 2],
    /// Posterior sds.
    pub sd: [f64; 2],
    /// Posterior covariance (row-major 2×2).
    pub cov: [f64; 4],
}

/// [`Grid`] for `problem`'s data.
#[allow(dead_code)] // not every test binary that includes `common` uses it
pub fn grid_posterior(problem: &FilterProblem) -> Grid {
    let pri = id_priors();
    // Prior ± 5 sd in each log-rate, 101 points each (step 0.05, under half
    // the posterior sds here): the rule's error on a smooth density is far
    // below Monte Carlo error.
    let g = 101;
    let axis = |mu: f64| -> Vec<f64> {
        (0..g)
            .map(|i| mu - 2.5 + 5.0 * i as f64 / (g - 1) as f64)
            .collect()
    };
    let (la, ma) = (axis(10f64.ln()), axis(0.5f64.ln()));
    let mut lp = Vec::with_capacity(g * g);
    for &l in &la {
        for &m in &ma {
            let theta = [l.exp(), m.exp()];
            // Density of (ln λ, ln μ): prior density × Jacobian θ × likelihood.
            let v = pri[0].log_density(theta[0])
                + l
                + pri[1].log_density(theta[1])
                + m
                + exact_loglik(problem, &theta, 80);
            lp.push(v);
        }
    }
    let max = lp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = lp.iter().map(|v| (v - max).exp()).collect();
    let z: f64 = w.iter().sum();
    // The rectangle rule on the log-rates' grid: the density is smooth and
    // negligible at the edges (checked below), so its error is far below
    // Monte Carlo error.
    let step = 5.0 / (g - 1) as f64;
    let log_z = max + (z * step * step).ln();
    let mut mean = [0.0; 2];
    for (i, wi) in w.iter().enumerate() {
        mean[0] += wi * la[i / g] / z;
        mean[1] += wi * ma[i % g] / z;
    }
    let mut cov = [0.0; 4];
    for (i, wi) in w.iter().enumerate() {
        let d = [la[i / g] - mean[0], ma[i % g] - mean[1]];
        for a in 0..2 {
            for b in 0..2 {
                cov[a * 2 + b] += wi * d[a] * d[b] / z;
            }
        }
    }
    // Mass on the grid's border would mean a truncated posterior.
    let edge: f64 = w
        .iter()
        .enumerate()
        .filter(|(i, _)| i / g == 0 || i / g == g - 1 || i % g == 0 || i % g == g - 1)
        .map(|(_, wi)| wi / z)
        .sum();
    assert!(
        edge < 1e-6,
        "grid too narrow: {edge:e} of the mass on its edge"
    );
    Grid {
        log_z,
        mean,
        sd: [cov[0].sqrt(), cov[3].sqrt()],
        cov,
    }
}

/// Checks per-chain draws of one quantity against its exact posterior
/// mean and sd: at least `min_ess` effective draws (bulk ESS), the mean
/// within 4 Monte Carlo standard errors (`sd/√ESS`) and the sd within 4 of
/// its own (`sd/√(2 ESS)`). `label` names the quantity in messages.
#[allow(dead_code)] // not every test binary that includes `common` uses it
pub fn assert_posterior(label: &str, draws: &[Vec<f64>], mean: f64, sd: f64, min_ess: f64) {
    let refs: Vec<&[f64]> = draws.iter().map(|c| c.as_slice()).collect();
    let ess = pcmc_core::diagnostics::ess_bulk(&refs).unwrap();
    let all: Vec<f64> = draws.iter().flatten().copied().collect();
    let n = all.len() as f64;
    let pm = all.iter().sum::<f64>() / n;
    let psd = (all.iter().map(|x| (x - pm).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    eprintln!(
        "{label}: exact mean {mean:.4} sd {sd:.4}; PMMH mean {pm:.4} sd {psd:.4} (ESS {ess:.0})"
    );
    assert!(ess > min_ess, "{label}: ESS {ess}");
    assert!(
        (pm - mean).abs() < 4.0 * sd / ess.sqrt(),
        "{label}: mean {pm} vs {mean}"
    );
    assert!(
        (psd - sd).abs() < 4.0 * sd / (2.0 * ess).sqrt(),
        "{label}: sd {psd} vs {sd}"
    );
}
