//! Small synthetic workloads for tests and benchmarks: Lotka–Volterra
//! problems whose data are simulated from known parameters with a fixed seed.
//! The job files in `jobs/` describe the full reference workloads.

use crate::filter::{DEFAULT_CAP, FilterConfig, FilterProblem};
use crate::model::Network;
use crate::observation::{Data, InitialPrior, ObservationModel};
use crate::prior::Prior;
use crate::rng::{Purpose, StreamKey};
use crate::simulate::simulate;
use crate::smc2::{Smc2, Smc2Config};

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
    let observables = obs.observables(&net, &names).unwrap();
    let traj = simulate(
        &net,
        theta,
        &initial,
        &observables,
        None,
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

/// A small SMC² run on [`lv11`] (Nx 20 at the start, priors log-uniform
/// over a factor 1.5 about the truth, 24 θ-particles, 2 moves, seed 5, a
/// final resample-move): it has several resample-move steps and an exchange
/// (Nx doubles), so the executors' bit-identity tests run every kind of
/// batch on it.
pub fn smc2_lv11_small() -> Smc2 {
    let theta = [1.0, 0.005, 0.6];
    Smc2::new(
        lv11(20, 1),
        log_uniform_priors(&theta, 1.5),
        Smc2Config {
            seed: 5,
            theta_particles: 24,
            moves: 2,
            final_move: true,
            ..Smc2Config::default()
        },
    )
    .expect("a valid SMC² setting")
}

/// A tight, C-like Lotka–Volterra direct-method loop: the yardstick that
/// `pcmc bench ssa` and the kernel benchmarks measure pcmc's kernels
/// against.
///
/// It is what one would write by hand in C for this one model: the state in
/// local arrays, the hazards written out, xoshiro256++ for the uniforms
/// (53-bit doubles), the waiting time as `−ln(u)/h₀` with the C library's
/// logarithm, a linear search for the reaction, no event limit, no
/// bookkeeping beyond the event count. It stops a trajectory when a species
/// exceeds `cap` (one comparison per event, as pcmc's kernels do).
/// Trajectory `index` draws from the stream `(1, 0, 0, 0, index, Test)`;
/// returns its number of events. Its statistics are those of the model,
/// but it is not bit-identical to pcmc's kernels (other arithmetic).
///
/// # Panics
/// If `case` is not a Lotka–Volterra case from [`kernel_case`] (1 to 8
/// predators).
pub fn reference_lv_loop(case: &KernelCase, index: u64, cap: u64) -> u64 {
    use rand::Rng;
    const K: usize = 8;
    let k = case.x0.len() - 1;
    assert!((1..=K).contains(&k) && case.theta.len() == 2 * k + 1);
    let mut rng = StreamKey::new(1, 0, 0, 0, index, Purpose::Test).rng();
    let birth = case.theta[0];
    let mut pred = [0.0f64; K];
    let mut death = [0.0f64; K];
    pred[..k].copy_from_slice(&case.theta[1..=k]);
    death[..k].copy_from_slice(&case.theta[k + 1..]);
    let mut prey = case.x0[0];
    let mut y = [0u64; K];
    y[..k].copy_from_slice(&case.x0[1..]);
    let mut h = [0.0f64; 2 * K];
    let mut t = 0.0;
    let mut events = 0u64;
    loop {
        let xp = prey as f64;
        let mut h0 = birth * xp;
        for i in 0..k {
            let yi = y[i] as f64;
            h[2 * i] = pred[i] * xp * yi;
            h[2 * i + 1] = death[i] * yi;
            h0 += h[2 * i] + h[2 * i + 1];
        }
        if h0 <= 0.0 {
            return events;
        }
        let u = 1.0 - (rng.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0);
        t -= u.ln() / h0;
        if t > case.span {
            return events;
        }
        let mut target = (rng.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0) * h0;
        events += 1;
        target -= birth * xp;
        if target < 0.0 {
            prey += 1;
            if prey > cap {
                return events;
            }
            continue;
        }
        let mut chosen = false;
        for i in 0..k {
            target -= h[2 * i];
            if target < 0.0 {
                prey -= 1;
                y[i] += 1;
                if y[i] > cap {
                    return events;
                }
                chosen = true;
                break;
            }
            target -= h[2 * i + 1];
            if target < 0.0 {
                y[i] -= 1;
                chosen = true;
                break;
            }
        }
        if !chosen {
            // Rounding left the target at the very top: the last reaction
            // with a positive hazard.
            if let Some(i) = (0..k).rev().find(|&i| y[i] > 0) {
                y[i] -= 1;
            }
        }
    }
}
