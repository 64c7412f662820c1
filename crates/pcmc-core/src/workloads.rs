//! Small synthetic workloads for tests and benchmarks: Lotka–Volterra
//! problems whose data are simulated from known parameters with a fixed seed.
//! The job files in `jobs/` describe the full reference workloads.

use crate::filter::{DEFAULT_CAP, FilterConfig, FilterProblem};
use crate::model::Network;
use crate::observation::{Data, InitialPrior, ObservationModel};
use crate::prior::Prior;
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

/// A kernel benchmark case: a model, its parameters, a start state and the
/// time span of one trajectory (one filter pass's horizon).
#[derive(Debug, Clone)]
pub struct KernelCase {
    /// Case name (`lv11`, `lv12`, `lv13`).
    pub name: &'static str,
    /// The model.
    pub network: Network,
    /// Parameters.
    pub theta: Vec<f64>,
    /// Start state.
    pub x0: Vec<u64>,
    /// Time span simulated per trajectory.
    pub span: f64,
}

/// The reference workloads' kernels: lv11 (about 10^4 events per trajectory),
/// lv12 (about 7·10^5) and lv13 (about 3.6·10^4), at their true parameters
/// from their prior-mean initial states over their observation horizons.
pub fn kernel_case(name: &str) -> Option<KernelCase> {
    let (k, theta, x0, span, name): (usize, Vec<f64>, Vec<u64>, f64, &'static str) = match name {
        "lv11" => (1, vec![1.0, 0.005, 0.6], vec![50, 100], 30.0, "lv11"),
        "lv12" => (
            2,
            vec![10.0, 0.005, 0.0025, 6.0, 3.0],
            vec![800, 500, 600],
            20.0,
            "lv12",
        ),
        "lv13" => (
            3,
            vec![0.96, 0.001, 0.0008, 0.0006, 0.6, 0.48, 0.36],
            vec![1000, 300, 300, 300],
            20.0,
            "lv13",
        ),
        _ => return None,
    };
    Some(KernelCase {
        name,
        network: Network::lotka_volterra(k).ok()?,
        theta,
        x0,
        span,
    })
}

/// Log-uniform priors over `[θ/factor, θ·factor]` for every component of
/// `theta`: the vague priors of the reference workloads' tests and
/// benchmarks.
pub fn log_uniform_priors(theta: &[f64], factor: f64) -> Vec<Prior> {
    theta
        .iter()
        .map(|t| Prior::LogUniform {
            lower: t / factor,
            upper: t * factor,
        })
        .collect()
}
