//! Forward simulation of the model and its observations: datasets for
//! `pcmc simulate` and posterior predictive draws.

use crate::covariate::{Covariates, Dynamics};
use crate::filter::FilterProblem;
use crate::model::Network;
use crate::observation::{InitialPrior, Law, Observable};
use crate::rng::StreamKey;
use crate::ssa::Outcome;

/// One simulated trajectory observed at given times.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// Full states at each time (all species), row per time.
    pub states: Vec<Vec<u64>>,
    /// Noisy observations of the observables at each time (NaN everywhere
    /// when a noise parameter of θ is outside its range).
    pub observations: Vec<Vec<f64>>,
    /// Whether the trajectory hit the cap or the event limit; states after
    /// that stay frozen.
    pub stopped: bool,
}

/// Simulates the model at `theta` from the initial-state prior, recording the
/// state at each of `times` (the first at or after `t0`; incidence counters
/// count from the previous time) and an observation of
/// each of `observables` (their noise parameters read from `theta`), with
/// the rates' covariates from `covariates` (the path stops at each
/// breakpoint and restarts with the new hazards). The stream is `key`: the
/// initial state and the path use its index 0 and 1 streams, the
/// observation noise index 2.
#[allow(clippy::too_many_arguments)]
pub fn simulate(
    net: &Network,
    theta: &[f64],
    initial: &InitialPrior,
    observables: &[Observable],
    covariates: Option<&Covariates>,
    t0: f64,
    times: &[f64],
    caps: &[u64],
    max_events: u64,
    key: StreamKey,
) -> Trajectory {
    let dynamics = Dynamics::new(net, theta, covariates, caps, max_events);
    let breaks = covariates.map_or(&[][..], |c| c.times());
    let laws: Option<Vec<Law>> = observables.iter().map(|o| o.noise.resolve(theta)).collect();
    let mut x = vec![0u64; net.species().len()];
    let mut rng0 = key.with_index(0).rng();
    initial.sample_into(&mut rng0, theta, |s, v| x[s] = v);
    let mut path_rng = key.with_index(1).rng();
    let mut noise_rng = key.with_index(2).rng();
    let mut cum = vec![0.0; net.reactions().len()];
    let mut t = t0;
    let mut stopped = false;
    let mut states = Vec::with_capacity(times.len());
    let mut observations = Vec::with_capacity(times.len());
    for &tk in times {
        if !stopped && tk > t {
            net.reset_counters(&mut x, 1, 1);
            let mut cuts = vec![t];
            cuts.extend(breaks.iter().copied().filter(|b| *b > t && *b < tk));
            cuts.push(tk);
            for w in cuts.windows(2) {
                let (o, _) =
                    dynamics
                        .ssa_at(w[0])
                        .advance(&mut x, w[0], w[1], &mut path_rng, &mut cum);
                if o != Outcome::Reached {
                    stopped = true;
                    break;
                }
            }
        }
        t = tk.max(t);
        states.push(x.clone());
        let row = match &laws {
            Some(laws) => observables
                .iter()
                .zip(laws)
                .map(|(o, law)| law.sample(o.value(|s| x[s]), &mut noise_rng))
                .collect(),
            None => vec![f64::NAN; observables.len()],
        };
        observations.push(row);
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
        problem.observations().observables(),
        problem.covariates(),
        problem.t0(),
        problem.data().times(),
        &problem.config().caps,
        problem.config().max_events,
        key,
    )
}
