//! Small synthetic workloads for tests and benchmarks: Lotka–Volterra
//! problems whose data are simulated from known parameters with a fixed seed.
//! The job files in `jobs/` describe the full reference workloads.

use crate::filter::{DEFAULT_CAP, FilterConfig, FilterProblem};
use crate::model::Network;
use crate::observation::{Data, InitialPrior, ObservationModel};
use crate::rng::{Purpose, StreamKey};
use crate::simulate::simulate;

/// Lotka–Volterra with `k` predators, data simulated at `theta` with the given
/// seed, all species (or only the prey) observed with Gaussian noise `sd`.
pub fn lv_problem(
    k: usize,
    theta: &[f64],
    x0: &[f64],
    times: Vec<f64>,
    sd: f64,
    prey_only: bool,
    particles: usize,
    seed: u64,
) -> FilterProblem {
    let net = Network::lotka_volterra(k).unwrap();
    let observed: Vec<usize> = if prey_only {
        vec![0]
    } else {
        (0..=k).collect()
    };
    let names: Vec<String> = observed.iter().map(|s| net.species()[*s].clone()).collect();
    let initial = InitialPrior::new(&net, x0.to_vec()).unwrap();
    let obs = ObservationModel::Gaussian {
        sd: vec![sd; observed.len()],
    };
    let caps = vec![DEFAULT_CAP; k + 1];
    let traj = simulate(
        &net,
        theta,
        &initial,
        &obs,
        &observed,
        times[0],
        &times,
        &caps,
        u64::MAX,
        StreamKey::new(seed, 0, 0, 0, 0, Purpose::Simulate),
    );
    let data = Data::new(&net, times.clone(), &names, traj.observations).unwrap();
    FilterProblem::new(
        net,
        data,
        obs,
        initial,
        times[0],
        FilterConfig::new(particles, k + 1),
    )
    .unwrap()
}

/// lv11: θ = (1, 0.005, 0.6), x0 ~ Poisson(50, 100), prey observed with sd 10
/// at t = 0, 2, …, 30, data simulated with `seed`.
pub fn lv11(particles: usize, seed: u64) -> FilterProblem {
    let times: Vec<f64> = (0..16).map(|i| 2.0 * i as f64).collect();
    lv_problem(
        1,
        &[1.0, 0.005, 0.6],
        &[50.0, 100.0],
        times,
        10.0,
        true,
        particles,
        seed,
    )
}

/// A light two-predator problem (lv12's θ and x0, horizon 2.5, all species
/// observed with sd 100), data simulated with `seed`.
pub fn lv12_small(particles: usize, seed: u64) -> FilterProblem {
    let times: Vec<f64> = (0..6).map(|i| 0.5 * i as f64).collect();
    lv_problem(
        2,
        &[10.0, 0.005, 0.0025, 6.0, 3.0],
        &[800.0, 500.0, 600.0],
        times,
        100.0,
        false,
        particles,
        seed,
    )
}
