//! Forward simulation of the model and its observations: datasets for
//! `pcmc simulate` and posterior predictive draws.

use crate::filter::FilterProblem;
use crate::model::Network;
use crate::observation::{InitialPrior, ObservationModel};
use crate::rng::StreamKey;
use crate::ssa::{Outcome, Ssa};

/// One simulated trajectory observed at given times.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// Full states at each time (all species), row per time.
    pub states: Vec<Vec<u64>>,
    /// Noisy observations of the observed species at each time.
    pub observations: Vec<Vec<f64>>,
    /// Whether the trajectory hit the cap or the event limit; states after
    /// that stay frozen.
    pub stopped: bool,
}

/// Simulates the model at `theta` from the initial-state prior, recording the
/// state at each of `times` (the first at or after `t0`) and an observation of
/// the species `observed` through `obs`. The stream is `key`: the initial
/// state and the path use its index 0 and 1 streams, the observation noise
/// index 2.
pub fn simulate(
    net: &Network,
    theta: &[f64],
    initial: &InitialPrior,
    obs: &ObservationModel,
    observed: &[usize],
    t0: f64,
    times: &[f64],
    caps: &[u64],
    max_events: u64,
    key: StreamKey,
) -> Trajectory {
    let ssa = Ssa::new(net, theta, caps, max_events);
    let mut x = vec![0u64; net.species().len()];
    let mut rng0 = key.with_index(0).rng();
    initial.sample_into(&mut rng0, |s, v| x[s] = v);
    let mut path_rng = key.with_index(1).rng();
    let mut noise_rng = key.with_index(2).rng();
    let mut cum = vec![0.0; ssa.n_reactions()];
    let mut t = t0;
    let mut stopped = false;
    let mut states = Vec::with_capacity(times.len());
    let mut observations = Vec::with_capacity(times.len());
    for &tk in times {
        if !stopped && tk > t {
            let (o, _) = ssa.advance(&mut x, t, tk, &mut path_rng, &mut cum);
            stopped = o != Outcome::Reached;
        }
        t = tk.max(t);
        states.push(x.clone());
        let xo: Vec<u64> = observed.iter().map(|s| x[*s]).collect();
        observations.push(obs.sample(&xo, &mut noise_rng));
    }
    Trajectory {
        states,
        observations,
        stopped,
    }
}

/// [`simulate`] with the settings of a filtering problem, at its data times.
pub fn simulate_problem(problem: &FilterProblem, theta: &[f64], key: StreamKey) -> Trajectory {
    simulate(
        problem.network(),
        theta,
        problem.initial(),
        problem.observation(),
        problem.data().observed(),
        problem.t0(),
        problem.data().times(),
        &problem.config().caps,
        problem.config().max_events,
        key,
    )
}
