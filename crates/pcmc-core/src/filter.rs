//! The bootstrap particle filter (Gordon, Salmond & Smith, 1993) with exact
//! SSA particles, whose likelihood estimate is unbiased (Del Moral, 2004) and
//! so can drive particle marginal Metropolis–Hastings (Andrieu, Doucet &
//! Holenstein, 2010).
//!
//! The filter is written once, in [`run_filter`], over a [`BlockRunner`] that
//! maps a function over fixed-size blocks of particles, serially or in
//! parallel. Particles live in blocks of [`BLOCK`] lanes in structure-of-arrays
//! form. Every random draw comes from a keyed stream (see [`crate::rng`]) and
//! every reduction is exact ([`crate::resample`]), so the result is the same
//! bit for bit whatever runner or worker count is used.
//!
//! # One pass
//! 1. Draw each particle's initial state from the initial-state prior
//!    (stream: `Initial`, step 0, particle index). With several data sets
//!    ([`DataSet`]), at the first row `k` of each later set the particles are
//!    drawn afresh from that set's law (stream: `Initial`, step `k`), and the
//!    set's clock starts at its own `t0`.
//! 2. For each observation `k` at time `t_k`: propagate every particle exactly
//!    from `t_{k−1}` (or `t0`) to `t_k` (stream: `Propagate`, step `k`, particle
//!    index; incidence counters set to 0 first; at covariate breakpoints the
//!    particle stops and restarts, [`Dynamics`]); weight it by the
//!    observation density (missing values contribute nothing); add
//!    `M + ln(Σ q_i / 2^62) − ln N` to the log-likelihood (exactly `M` when
//!    every weight is equal); unless `k` is the last observation (of the
//!    pass, or of its data set), resample (stream: `Resample`, step `k`).
//! 3. If every weight is zero (all particles capped or impossible), the
//!    estimate is −∞ and the pass stops: no NaN is ever produced.
//! 4. Exact early rejection (optional, PMMH proposals): after each
//!    observation, if even the largest value the remaining observations
//!    could add (each noise law's bound, [`Scoring::bound_from`]) cannot
//!    bring the estimate past the proposal's acceptance threshold, the pass
//!    stops ([`FilterProblem::cannot_accept`]). Such a proposal is rejected
//!    whatever the rest of the pass would give, so the chain is unchanged;
//!    only the work of hopeless proposals is saved.

use crate::accept::AcceptTest;
use crate::covariate::{Covariates, Dynamics, segment_index};
use crate::error::{Error, Result};
use crate::model::Network;
use crate::observation::{
    Data, InitialCount, InitialPrior, ObservationModel, Observations, Scoring,
};
use crate::resample::{self, MAX_PARTICLES, Resampling};
use crate::rng::{Purpose, StreamKey};
use crate::ssa::{BlockScratch, Outcome, Ssa, SsaCounters};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Particles per block (at most; fewer when a small population on several
/// threads needs more blocks to balance): the unit of parallel work and of
/// the batch kernel.
pub const BLOCK: usize = 16;

pub use crate::ssa::KernelChoice;

/// Settings of the particle filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterConfig {
    /// Number of particles N (1 ≤ N ≤ 2^32).
    pub particles: usize,
    /// The resampling scheme.
    pub resampling: Resampling,
    /// The SSA kernel.
    pub kernel: KernelChoice,
    /// Population cap per species (`u64::MAX`: none).
    pub caps: Vec<u64>,
    /// Event limit per particle per observation interval.
    pub max_events: u64,
}

/// The default population cap: a species above 10^6 stops its trajectory.
pub const DEFAULT_CAP: u64 = 1_000_000;
/// The default event limit per particle per observation interval.
pub const DEFAULT_MAX_EVENTS: u64 = 100_000_000;

/// The default population caps for a dataset: for each species that an
/// observable centred on its value reads (Gaussian or log-normal noise, or
/// counting noise with `ρ` fixed at 1), 100 times the largest observed value
/// of that observable (at least 1000); [`DEFAULT_CAP`] for the others
/// (unobserved species, and species seen through an inferred or partial
/// reporting rate, whose counts may be many times the data).
///
/// The cap applies along the whole path, not only at observation times: a
/// trajectory that exceeds it at *any* moment of an interval stops there and
/// gets weight zero, even if it would have come back down before the next
/// observation. The filter therefore targets the model truncated at the cap.
/// At 100 times the largest observation this truncation is negligible when
/// the model fits (a particle that far above an observation has an
/// observation density of zero to double precision under the shipped noise
/// models, and excursions of that size between observations are rare near
/// the posterior), and it saves the events of runaway trajectories (when
/// predators die out, the prey grows until the cap: up to 10^6 wasted events
/// per particle at the old fixed cap). Runs report the fraction of
/// particle-intervals stopped at the kept θ so that a cap that matters is
/// seen.
pub fn data_caps(net: &Network, observations: &Observations) -> Vec<u64> {
    let mut caps = vec![DEFAULT_CAP; net.species().len()];
    for &c in net.counters() {
        caps[c] = crate::model::COUNTER_CAP;
    }
    let mut set = vec![false; caps.len()];
    let maxes = observations.data().max_per_column();
    for (o, max) in observations.observables().iter().zip(maxes) {
        if !o.noise.centred_on_value() {
            continue;
        }
        let c = (100.0 * max.max(0.0)).ceil();
        let cap = if c.is_finite() && c < 1e18 {
            (c as u64).max(1000)
        } else {
            u64::MAX
        };
        for &(s, _) in o.terms.iter().filter(|(s, _)| !net.counters().contains(s)) {
            // A species read by several observables gets the largest cap.
            caps[s] = if set[s] { caps[s].max(cap) } else { cap };
            set[s] = true;
        }
    }
    caps
}

impl FilterConfig {
    /// Defaults for `n_species` species: systematic resampling, the SIMD
    /// kernel, every species capped at [`DEFAULT_CAP`], event limit
    /// [`DEFAULT_MAX_EVENTS`].
    pub fn new(particles: usize, n_species: usize) -> Self {
        FilterConfig {
            particles,
            resampling: Resampling::Systematic,
            kernel: KernelChoice::Simd,
            caps: vec![DEFAULT_CAP; n_species],
            max_events: DEFAULT_MAX_EVENTS,
        }
    }
}

/// Everything a filter pass needs except θ and the random key.
///
/// Serialisable so that it can travel to remote executors inside their
/// plans (a wire format between pcmc processes). Deserialising checks the
/// parts against each other again ([`FilterProblem::from_sets`]: the data
/// sets, their initial laws and covariates, the observables); the network
/// itself is taken as sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "FilterProblemWire")]
pub struct FilterProblem {
    network: Network,
    /// The data and their observables.
    observations: Observations,
    /// Per data set: the initial law and time, the covariates.
    sets: Vec<DataSet>,
    config: FilterConfig,
}

/// The wire form of a [`FilterProblem`], checked on arrival.
#[derive(Deserialize)]
struct FilterProblemWire {
    network: Network,
    observations: Observations,
    sets: Vec<DataSet>,
    config: FilterConfig,
}

impl TryFrom<FilterProblemWire> for FilterProblem {
    type Error = Error;
    fn try_from(w: FilterProblemWire) -> Result<Self> {
        FilterProblem::from_sets(w.network, w.observations, w.sets, w.config)
    }
}

/// What a data set brings besides its rows: its initial-state law and time,
/// and the covariate table of the rates (required when they use any).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSet {
    /// The initial-state law.
    pub initial: InitialPrior,
    /// The time of the initial state (at most the set's first time).
    pub t0: f64,
    /// The covariates the rates use, if any.
    pub covariates: Option<Covariates>,
}

/// Relative margin of [`FilterProblem::cannot_accept`] for the sums. The
/// log-likelihood is a sum of at most a few thousand increments, each
/// computed with a handful of correctly rounded operations (relative error
/// ~10⁻¹⁶ each), so summing them and the bounds errs by less than ~10⁻¹³ of
/// the magnitudes involved; 10⁻⁹ leaves four orders of magnitude to spare
/// and costs ~10⁻⁶ nats of rejection power. How far a computed observation
/// density can exceed its computed bound is a separate, absolute term
/// derived from the observation model's formula
/// (each noise law's `rounding`, [`Scoring::rounding_from`]): for Poisson counts of
/// 10⁸–10⁹ it is far larger than this relative margin.
pub const EARLY_REJECTION_MARGIN: f64 = 1e-9;

impl FilterProblem {
    /// Validates and assembles a filtering problem whose data columns are
    /// species seen through one fixed observation model (the first
    /// versions' form; see [`FilterProblem::from_observations`]). `t0` is
    /// the time of the initial state (at most the first observation time).
    ///
    /// # Errors
    /// [`Error::Setting`] or [`Error::Data`] for inconsistent parts.
    pub fn new(
        network: Network,
        data: Data,
        observation: ObservationModel,
        initial: InitialPrior,
        t0: f64,
        config: FilterConfig,
    ) -> Result<Self> {
        let observations = Observations::from_model(&network, &observation, data)?;
        Self::from_observations(network, observations, initial, t0, config, None)
    }

    /// Validates and assembles a filtering problem from data with their
    /// observables. θ is `observations.parameters()`: the network's rate
    /// parameters first, then the noise parameters. `covariates` is the
    /// table of the covariates the network's rates use (required when they
    /// use any).
    ///
    /// # Errors
    /// [`Error::Setting`] or [`Error::Data`] for inconsistent parts.
    pub fn from_observations(
        network: Network,
        observations: Observations,
        initial: InitialPrior,
        t0: f64,
        config: FilterConfig,
        covariates: Option<Covariates>,
    ) -> Result<Self> {
        let set = DataSet {
            initial,
            t0,
            covariates,
        };
        Self::from_sets(network, observations, vec![set], config)
    }

    /// Validates and assembles a filtering problem over several data sets
    /// ([`Data::concat`]) that share θ, `sets[d]` for the data's set `d`.
    /// The log-likelihood is the sum of independent filters, one per set:
    /// one pass runs them one after the other, each set's particles drawn
    /// afresh from its own initial law at its first row (random streams:
    /// `Initial` at that row's step).
    ///
    /// # Errors
    /// [`Error::Setting`] or [`Error::Data`] for inconsistent parts, naming
    /// the set.
    pub fn from_sets(
        network: Network,
        observations: Observations,
        sets: Vec<DataSet>,
        config: FilterConfig,
    ) -> Result<Self> {
        let n_sets = observations.data().n_sets();
        if sets.len() != n_sets {
            return Err(Error::setting(
                "data",
                format!("{} set descriptions for {n_sets} data sets", sets.len()),
            ));
        }
        for (d, set) in sets.iter().enumerate() {
            let first = observations.data().set_rows(d).start;
            Self::check_set(&network, &observations, set, first).map_err(|e| {
                if n_sets > 1 {
                    match e {
                        Error::Data(m) => Error::Data(format!("data set {}: {m}", d + 1)),
                        Error::Setting { field, reason } => Error::Setting {
                            field,
                            reason: format!("data set {}: {reason}", d + 1),
                        },
                        other => other,
                    }
                } else {
                    e
                }
            })?;
        }
        Self::assemble(network, observations, sets, config)
    }

    fn check_set(
        network: &Network,
        observations: &Observations,
        set: &DataSet,
        first: usize,
    ) -> Result<()> {
        let (initial, t0, covariates) = (&set.initial, set.t0, &set.covariates);
        match (covariates, network.covariate_names().is_empty()) {
            (None, false) => {
                return Err(Error::Data(format!(
                    "the model's rates use the covariates {} but no covariate table was given",
                    network.covariate_names().join(", ")
                )));
            }
            (Some(c), false) => c.check_for(network, t0)?,
            _ => {}
        }
        let data = observations.data();
        if network.counters().iter().any(|&c| {
            !matches!(
                initial.counts().get(c),
                Some(InitialCount::Fixed(0)) | Some(InitialCount::Poisson(0.0))
            )
        }) {
            return Err(Error::setting(
                "initial",
                "an incidence counter starts at 0",
            ));
        }
        if initial.means().len() != network.species().len() {
            return Err(Error::setting(
                "initial.means",
                "one mean per species is needed",
            ));
        }
        if let Some(i) = initial
            .theta_indices()
            .into_iter()
            .find(|&i| i >= observations.parameters().len())
        {
            return Err(Error::setting(
                "initial.counts",
                format!(
                    "θ index {i} is out of range ({} parameters)",
                    observations.parameters().len()
                ),
            ));
        }
        if !t0.is_finite() || t0 > data.times()[first] {
            return Err(Error::setting(
                "initial.time",
                format!(
                    "{t0} must be finite and not after the first observation time {}",
                    data.times()[first]
                ),
            ));
        }
        Ok(())
    }

    fn assemble(
        network: Network,
        observations: Observations,
        sets: Vec<DataSet>,
        config: FilterConfig,
    ) -> Result<Self> {
        let rates = network.parameters();
        if !observations.parameters().starts_with(rates) {
            return Err(Error::setting(
                "parameters",
                "θ must start with the network's rate parameters",
            ));
        }
        if observations
            .species_used()
            .iter()
            .any(|s| *s >= network.species().len())
        {
            return Err(Error::Data("the data were built for another model".into()));
        }
        if config.particles == 0 || config.particles > MAX_PARTICLES {
            return Err(Error::setting(
                "filter.particles",
                format!("{} is not in 1..=2^32", config.particles),
            ));
        }
        if config.caps.len() != network.species().len() {
            return Err(Error::setting(
                "filter.cap",
                format!(
                    "{} caps for {} species",
                    config.caps.len(),
                    network.species().len()
                ),
            ));
        }
        if config.caps.contains(&0) {
            return Err(Error::setting("filter.cap", "a cap must be at least 1"));
        }
        if config.max_events == 0 {
            return Err(Error::setting("filter.max_events", "must be at least 1"));
        }
        Ok(FilterProblem {
            network,
            observations,
            sets,
            config,
        })
    }

    /// Whether a pass that has processed the first `done` observations with
    /// partial log-likelihood `partial` can no longer be accepted by `test`,
    /// whatever the remaining observations give: the early-rejection rule.
    ///
    /// Each remaining increment `M_k + ln(Σq/2^62) − ln N` is at most `M_k`
    /// (every quantised weight is at most 2^62), and `M_k`, the largest
    /// log-weight, is at most the observation density's bound `B_k`
    /// ([`Scoring::bound_from`]). So the final estimate is at
    /// most `partial + Σ_{k ≥ done} B_k`, plus rounding, covered by a margin
    /// of [`EARLY_REJECTION_MARGIN`] times the magnitudes involved and by
    /// each observation model's own rounding bound
    /// ([`Scoring::rounding_from`]). The test
    /// is evaluated by the same monotone expression as the final decision
    /// ([`AcceptTest::accepts`]), so a pass stopped here would have been
    /// rejected had it run to the end: the chain is unchanged.
    ///
    /// Never true once every observation is processed, or when the bound is
    /// not a finite number. `scoring` is the pass's ([`Observations::at`]
    /// at its θ): the bounds are those of the laws that score it.
    pub fn cannot_accept(
        &self,
        scoring: &Scoring,
        done: usize,
        partial: f64,
        test: &AcceptTest,
    ) -> bool {
        self.cannot_accept_within(scoring, done, self.observations.data().len(), partial, test)
    }

    /// [`FilterProblem::cannot_accept`] for a pass over the first `upto`
    /// observations only (SMC²'s passes over `y_{1:t}`): the bound adds the
    /// observations `done..upto`. The bounds, their magnitudes and the
    /// rounding terms from `done` on cover those of `done..upto` (the
    /// difference of two suffix sums is exact to far below the margin).
    pub fn cannot_accept_within(
        &self,
        obs: &Scoring,
        done: usize,
        upto: usize,
        partial: f64,
        test: &AcceptTest,
    ) -> bool {
        let upto = upto.min(self.observations.data().len());
        if done >= upto {
            return false;
        }
        // The magnitude of what the remaining increments add: Σ (|B_j| +
        // ln N + 64).
        let per_step = (self.config.particles as f64).ln() + 64.0;
        let scale = obs.bound_magnitude_from(done) + (upto - done) as f64 * per_step;
        let margin =
            EARLY_REJECTION_MARGIN * (1.0 + partial.abs() + scale) + obs.rounding_from(done);
        let upper = partial + (obs.bound_from(done) - obs.bound_from(upto)) + margin;
        upper.is_finite() && !test.accepts(upper)
    }

    /// The model.
    pub fn network(&self) -> &Network {
        &self.network
    }
    /// The data.
    pub fn data(&self) -> &Data {
        self.observations.data()
    }
    /// The data with their observables: filters score particles through
    /// [`Observations::at`].
    pub fn observations(&self) -> &Observations {
        &self.observations
    }
    /// The names of θ's entries: the rate parameters, then the noise
    /// parameters.
    pub fn parameters(&self) -> &[String] {
        self.observations.parameters()
    }
    /// Whether `theta` has one finite, non-negative entry per parameter
    /// (anything else has likelihood zero).
    pub fn theta_is_valid(&self, theta: &[f64]) -> bool {
        theta.len() == self.parameters().len()
            && theta.iter().all(|t| t.is_finite() && *t >= 0.0)
            && self.sets.iter().all(|s| s.initial.valid_at(theta))
    }
    /// The first data set's covariate table, if the rates use covariates.
    pub fn covariates(&self) -> Option<&Covariates> {
        self.sets[0].covariates.as_ref()
    }
    /// The data sets' initial laws, times and covariates.
    pub fn sets(&self) -> &[DataSet] {
        &self.sets
    }
    /// The compiled dynamics of data set `d` at `theta` (one SSA, or one
    /// per covariate row).
    pub fn dynamics_of(&self, d: usize, theta: &[f64]) -> Dynamics {
        Dynamics::new(
            &self.network,
            theta,
            self.sets[d].covariates.as_ref(),
            &self.config.caps,
            self.config.max_events,
        )
    }
    /// The first data set's initial-state prior.
    pub fn initial(&self) -> &InitialPrior {
        &self.sets[0].initial
    }
    /// Time of the first data set's initial state.
    pub fn t0(&self) -> f64 {
        self.sets[0].t0
    }
    /// Filter settings.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }
    /// Number of particles.
    pub fn particles(&self) -> usize {
        self.config.particles
    }
    /// The kernel that propagates particles on this machine, for reports:
    /// `scalar`, `batch`, `simd` (AVX2 lanes) or `simd→batch` (the SIMD
    /// kernel's fallback: no AVX2, or a network or cap outside its range).
    pub fn kernel_in_use(&self) -> &'static str {
        match self.config.kernel {
            KernelChoice::Simd => {
                let theta = vec![1.0; self.network.parameters().len()];
                let ssa = Ssa::new(
                    &self.network,
                    &theta,
                    &self.config.caps,
                    self.config.max_events,
                );
                if ssa.simd_active() {
                    "simd"
                } else {
                    "simd→batch"
                }
            }
            k => k.name(),
        }
    }
    /// Returns a copy with another particle count.
    ///
    /// # Errors
    /// [`Error::Setting`] if `n` is 0 or above 2^32.
    pub fn with_particles(&self, n: usize) -> Result<Self> {
        let mut config = self.config.clone();
        config.particles = n;
        self.with_config(config)
    }

    /// Returns a copy with other filter settings (validated as in
    /// [`FilterProblem::new`]).
    ///
    /// # Errors
    /// As [`FilterProblem::new`].
    pub fn with_config(&self, config: FilterConfig) -> Result<Self> {
        FilterProblem::from_sets(
            self.network.clone(),
            self.observations.clone(),
            self.sets.clone(),
            config,
        )
    }
}

/// Identifies one filter pass: its random streams are keyed by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FilterKey {
    /// Run seed.
    pub seed: u64,
    /// Chain index.
    pub chain: u64,
    /// PMMH iteration.
    pub iteration: u64,
}

impl FilterKey {
    /// The stream key for `purpose` at `step` and `index`.
    #[inline]
    pub fn stream(&self, purpose: Purpose, step: u64, index: u64) -> StreamKey {
        StreamKey::new(self.seed, self.chain, self.iteration, step, index, purpose)
    }
}

/// Which key a pass draws from at each observation step: `key_for(k)`
/// serves the draws made on the way to observation `k` (the resampling after
/// observation `k − 1` and the propagation to `k`; for `k = 0` the initial
/// states). A [`FilterKey`] serves every step. SMC² gives a θ-particle's
/// filter the keys of its history ([`crate::smc2::Lineage`]).
pub trait KeySchedule {
    /// The key for step `k`.
    fn key_for(&self, k: usize) -> FilterKey;
}

impl KeySchedule for FilterKey {
    #[inline]
    fn key_for(&self, _k: usize) -> FilterKey {
        *self
    }
}

/// Wall time spent per stage of the filter, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    /// Drawing initial states and propagating particles.
    pub propagate: f64,
    /// Computing log-weights, their maximum and the exact sums.
    pub weight: f64,
    /// Computing offspring counts and copying particles.
    pub resample: f64,
    /// Waiting for or moving data between workers (distributed executors).
    pub communicate: f64,
    /// Building query plans (dataflow executor).
    #[serde(default)]
    pub planning: f64,
    /// Aggregates: the largest log-weight, the exact weight sums and the
    /// counters (dataflow executor).
    #[serde(default)]
    pub reduce: f64,
    /// Offspring and the repartition that forms the new population
    /// (dataflow executor).
    #[serde(default)]
    pub shuffle: f64,
    /// From submitting a distributed job to the start of its first task
    /// (Ballista executor): the cluster's scheduling overhead.
    #[serde(default)]
    pub scheduling: f64,
}

impl StageTimes {
    /// Adds another set of stage times.
    pub fn add(&mut self, o: &StageTimes) {
        self.propagate += o.propagate;
        self.weight += o.weight;
        self.resample += o.resample;
        self.communicate += o.communicate;
        self.planning += o.planning;
        self.reduce += o.reduce;
        self.shuffle += o.shuffle;
        self.scheduling += o.scheduling;
    }
}

/// Load balance of the propagation step, observation step by observation
/// step: each worker's (thread's, rank's or partition's) busy time
/// propagating particles, compared across the workers that share the step.
/// Sums over steps, so that passes and runs add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadBalance {
    /// Observation steps measured.
    pub steps: u64,
    /// Σ over steps of (slowest worker's busy time / mean busy time).
    pub sum_ratio: f64,
    /// The largest such ratio.
    pub max_ratio: f64,
    /// Σ over steps of the slowest worker's busy time (seconds): the
    /// step's propagation wall time when workers wait for each other.
    pub sum_max: f64,
    /// Σ over steps of the mean busy time (seconds): that wall time with
    /// perfect balance.
    pub sum_mean: f64,
}

impl LoadBalance {
    /// Records one step whose workers were busy for `max` seconds at most
    /// and `mean` seconds on average.
    pub fn record(&mut self, max: f64, mean: f64) {
        if !(mean > 0.0) {
            return;
        }
        let r = max / mean;
        self.steps += 1;
        self.sum_ratio += r;
        self.max_ratio = self.max_ratio.max(r);
        self.sum_max += max;
        self.sum_mean += mean;
    }

    /// Adds another record (other passes, another chain group).
    pub fn add(&mut self, o: &LoadBalance) {
        self.steps += o.steps;
        self.sum_ratio += o.sum_ratio;
        self.max_ratio = self.max_ratio.max(o.max_ratio);
        self.sum_max += o.sum_max;
        self.sum_mean += o.sum_mean;
    }

    /// Mean over steps of the per-step ratio (`None` before any step).
    pub fn mean_ratio(&self) -> Option<f64> {
        (self.steps > 0).then(|| self.sum_ratio / self.steps as f64)
    }

    /// Σ max / Σ mean: the propagation wall time over its balanced ideal
    /// (`None` before any step).
    pub fn weighted_ratio(&self) -> Option<f64> {
        (self.sum_mean > 0.0).then(|| self.sum_max / self.sum_mean)
    }
}

/// The result of one filter pass.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterOutput {
    /// The log-likelihood estimate (−∞ on collapse); never NaN.
    pub loglik: f64,
    /// The observation index at which every weight was zero, if any.
    pub collapsed_at: Option<usize>,
    /// Effective sample size `(Σw)²/Σw²` of the weights at each observation
    /// reached.
    pub ess: Vec<f64>,
    /// SSA counters summed over all particles and intervals.
    pub counters: SsaCounters,
    /// Wall time per stage.
    pub times: StageTimes,
    /// Bytes of particle data this rank sent to other ranks (or, for the
    /// dataflow executor, moved between partitions).
    pub bytes_sent: u64,
    /// Particles that changed worker or partition in resampling.
    pub rows_moved: u64,
    /// Tasks that failed and were run again (dataflow executor; on a
    /// Ballista cluster, tasks the cluster ran again, e.g. after losing an
    /// executor).
    pub task_retries: u64,
    /// Distributed jobs submitted (Ballista executor).
    pub jobs: u64,
    /// Jobs that failed and were submitted again by the driver (Ballista
    /// executor; every step is deterministic, so the result is unchanged).
    pub jobs_resubmitted: u64,
    /// Set when the pass stopped early because the proposal could no longer
    /// be accepted ([`FilterProblem::cannot_accept`]): the number of
    /// observations processed. `loglik` is then the partial sum over those.
    pub stopped_after: Option<usize>,
    /// Load balance of the propagation step across all workers of the pass.
    pub balance: LoadBalance,
}

impl FilterOutput {
    /// An empty output (log-likelihood 0) with room for `steps` ESS values.
    pub fn new(steps: usize) -> Self {
        FilterOutput {
            loglik: 0.0,
            collapsed_at: None,
            ess: Vec::with_capacity(steps),
            counters: SsaCounters::default(),
            times: StageTimes::default(),
            bytes_sent: 0,
            rows_moved: 0,
            task_retries: 0,
            jobs: 0,
            jobs_resubmitted: 0,
            stopped_after: None,
            balance: LoadBalance::default(),
        }
    }
}

/// Maps a function over blocks, serially or in parallel.
///
/// Implementations must call `f` exactly once per item and return the results
/// in item order; they may use any number of threads.
pub trait BlockRunner: Sync {
    /// Number of worker threads used.
    fn workers(&self) -> usize;
    /// The calling thread's index in `0..workers()`, inside [`BlockRunner::map`]
    /// (for per-thread busy times).
    fn current_worker(&self) -> usize {
        0
    }
    /// Applies `f` to every item, returning the results in order.
    fn map<I, R, F>(&self, items: &mut [I], f: F) -> Vec<R>
    where
        I: Send,
        R: Send,
        F: Fn(&mut I) -> R + Sync + Send;
}

/// Runs blocks one after another on the calling thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct SerialRunner;

impl BlockRunner for SerialRunner {
    fn workers(&self) -> usize {
        1
    }
    fn map<I, R, F>(&self, items: &mut [I], f: F) -> Vec<R>
    where
        I: Send,
        R: Send,
        F: Fn(&mut I) -> R + Sync + Send,
    {
        items.iter_mut().map(f).collect()
    }
}

/// Communication between the processes (ranks) that share one particle
/// population. Each rank owns the contiguous slice
/// [`rank_slice`]`(N, size, rank)` of the particles.
///
/// The filter needs only four collectives, all on small data except the
/// particle exchange after resampling. A single process is the one-rank case
/// ([`SingleProcess`]); the MPI executor implements this trait over a
/// communicator.
pub trait Collective {
    /// Number of ranks.
    fn size(&self) -> usize;
    /// This rank, in `0..size`.
    fn rank(&self) -> usize;
    /// The maximum of `x` over all ranks.
    ///
    /// # Errors
    /// Communication failures.
    fn max_f64(&self, x: f64) -> Result<f64>;
    /// Every rank's `local` values, concatenated in rank order (all ranks
    /// pass the same length).
    ///
    /// # Errors
    /// Communication failures.
    fn all_gather_u64(&self, local: &[u64]) -> Result<Vec<u64>>;
    /// Sends `send[r]` to rank `r` and returns what each rank sent here, in
    /// rank order.
    ///
    /// # Errors
    /// Communication failures.
    fn all_to_all(&self, send: Vec<Vec<u64>>) -> Result<Vec<Vec<u64>>>;
}

/// The one-rank [`Collective`]: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn size(&self) -> usize {
        1
    }
    fn rank(&self) -> usize {
        0
    }
    fn max_f64(&self, x: f64) -> Result<f64> {
        Ok(x)
    }
    fn all_gather_u64(&self, local: &[u64]) -> Result<Vec<u64>> {
        Ok(local.to_vec())
    }
    fn all_to_all(&self, send: Vec<Vec<u64>>) -> Result<Vec<Vec<u64>>> {
        Ok(send)
    }
}

/// The particles `[start, end)` owned by `rank` of `size` when there are `n`
/// in all: balanced contiguous slices.
pub fn rank_slice(n: usize, size: usize, rank: usize) -> (usize, usize) {
    let n = n as u128;
    let (size, rank) = (size as u128, rank as u128);
    ((n * rank / size) as usize, (n * (rank + 1) / size) as usize)
}

/// Per-block scratch space reused across passes.
#[derive(Debug, Default, Clone)]
struct BlockWork {
    scratch: BlockScratch,
    outcomes: Vec<Outcome>,
    offspring: Vec<u64>,
}

/// Buffers of a filter, reused across passes so that the hot loop does not
/// allocate.
#[derive(Debug, Default)]
pub struct Workspace {
    counts: Vec<u64>,
    lw: Vec<f64>,
    q: Vec<u64>,
    offspring: Vec<u64>,
    send: Vec<Vec<u64>>,
    work: Vec<BlockWork>,
    /// Particles per block (at most [`BLOCK`]): the block stride of the
    /// structure-of-arrays buffers.
    lanes: usize,
}

/// Particles per block for `local` particles on `workers` threads: [`BLOCK`],
/// or fewer when that leaves too few blocks to balance the threads (20
/// particles in blocks of 16 would give one thread 16 and the other 4).
/// The SIMD kernel refills its four register lanes from the block and idles
/// lanes only at the block's end, so it gets blocks of at least 12 particles
/// where there are enough (up to 8 per thread), or one block per thread.
/// Results do not depend on it: every draw is keyed by the particle and every
/// sum is exact.
fn lanes_for(local: usize, workers: usize, kernel: KernelChoice) -> usize {
    if workers <= 1 {
        BLOCK
    } else if kernel == KernelChoice::Simd {
        let per_thread = (local / (12 * workers)).clamp(1, 8);
        local.div_ceil(per_thread * workers).clamp(1, BLOCK)
    } else {
        local.div_ceil(8 * workers).clamp(1, BLOCK)
    }
}

struct Item<'a> {
    /// Global index of the block's first particle.
    first: usize,
    block: usize,
    len: usize,
    /// The block's stride (particles per block) in `counts`.
    stride: usize,
    counts: &'a mut [u64],
    lw: &'a mut [f64],
    q: &'a mut [u64],
    work: &'a mut BlockWork,
}

impl Workspace {
    fn prepare(&mut self, n: usize, species: usize, lanes: usize) {
        self.lanes = lanes;
        let blocks = n.div_ceil(lanes);
        let cells = blocks * lanes * species;
        self.counts.resize(cells, 0);
        self.lw.resize(blocks * lanes, 0.0);
        self.q.resize(blocks * lanes, 0);
        self.offspring.resize(n, 0);
        self.work.resize_with(blocks, BlockWork::default);
    }

    /// The blocks of the local slice of `n` particles starting at global
    /// index `first`.
    fn items(&mut self, first: usize, n: usize, species: usize) -> Vec<Item<'_>> {
        let lanes = self.lanes;
        let blocks = n.div_ceil(lanes);
        self.counts
            .chunks_mut(lanes * species)
            .zip(self.lw.chunks_mut(lanes))
            .zip(self.q.chunks_mut(lanes))
            .zip(self.work.iter_mut())
            .take(blocks)
            .enumerate()
            .map(|(b, (((counts, lw), q), work))| Item {
                first: first + b * lanes,
                block: b,
                len: lanes.min(n - b * lanes),
                stride: lanes,
                counts,
                lw,
                q,
                work,
            })
            .collect()
    }
}

fn elapsed(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// One bootstrap particle filter pass at `theta` with the streams of `key`,
/// on `runner`, in a single process, reusing the buffers of `ws`.
///
/// A `theta` with a negative or non-finite entry gives a log-likelihood of −∞.
pub fn run_filter<R: BlockRunner>(
    runner: &R,
    problem: &FilterProblem,
    theta: &[f64],
    key: FilterKey,
    ws: &mut Workspace,
) -> FilterOutput {
    run_filter_on(runner, &SingleProcess, problem, theta, key, None, ws)
        .expect("a single process cannot fail to communicate")
}

/// One filter pass by every rank of `comm`, each owning its
/// [`rank_slice`] of the particles and mapping `runner` over its blocks.
///
/// Every rank returns the same log-likelihood, ESS and (summed) SSA counters,
/// bit for bit equal to [`run_filter`]'s. Stage times are this rank's own;
/// `bytes_sent` counts the particle data this rank sent to other ranks.
///
/// With `stop`, the pass ends (every rank at the same observation, since all
/// hold the same partial sum) as soon as [`FilterProblem::cannot_accept`].
///
/// # Errors
/// Communication failures; [`Error::Setting`] for a resampling scheme that
/// cannot be distributed (multinomial, residual) on more than one rank.
pub fn run_filter_on<R: BlockRunner, C: Collective + ?Sized>(
    runner: &R,
    comm: &C,
    problem: &FilterProblem,
    theta: &[f64],
    key: FilterKey,
    stop: Option<&AcceptTest>,
    ws: &mut Workspace,
) -> Result<FilterOutput> {
    run_filter_steps(
        runner,
        comm,
        problem,
        theta,
        &key,
        problem.data().len(),
        stop,
        ws,
    )
}

/// A single-process pass over the first `upto` observations only (the
/// estimate of `p(y_{1:upto} | θ)`), drawing from `schedule`'s keys. With a
/// constant key and `upto` the data's length it is [`run_filter`]; for a
/// shorter `upto` its estimate and every draw are those of the full pass up
/// to that observation, bit for bit (draws are keyed by step and particle).
/// With `stop`, the pass ends as soon as the proposal can no longer be
/// accepted on `y_{1:upto}` ([`FilterProblem::cannot_accept_within`]).
///
/// # Panics
/// If `upto` is 0 or beyond the data.
pub fn run_filter_scheduled<R: BlockRunner, S: KeySchedule + ?Sized>(
    runner: &R,
    problem: &FilterProblem,
    theta: &[f64],
    schedule: &S,
    upto: usize,
    stop: Option<&AcceptTest>,
    ws: &mut Workspace,
) -> FilterOutput {
    assert!(
        (1..=problem.data().len()).contains(&upto),
        "a pass needs 1..={} observations, not {upto}",
        problem.data().len()
    );
    run_filter_steps(
        runner,
        &SingleProcess,
        problem,
        theta,
        schedule,
        upto,
        stop,
        ws,
    )
    .expect("a single process cannot fail to communicate")
}

#[allow(clippy::too_many_arguments)]
fn run_filter_steps<R: BlockRunner, C: Collective + ?Sized, S: KeySchedule + ?Sized>(
    runner: &R,
    comm: &C,
    problem: &FilterProblem,
    theta: &[f64],
    schedule: &S,
    upto: usize,
    stop: Option<&AcceptTest>,
    ws: &mut Workspace,
) -> Result<FilterOutput> {
    let net = &problem.network;
    let cfg = &problem.config;
    let data = problem.data();
    let n = cfg.particles;
    let species = net.species().len();
    let (size, rank) = (comm.size(), comm.rank());
    if size > 1 && !cfg.resampling.is_distributable() {
        return Err(Error::setting(
            "filter.resampling",
            format!(
                "{:?} resampling needs every weight in one place; with several ranks use systematic or stratified",
                cfg.resampling
            ),
        ));
    }
    let (first, end) = rank_slice(n, size, rank);
    let local = end - first;
    let mut out = FilterOutput::new(data.len());
    let scoring = match problem.theta_is_valid(theta) {
        true => problem.observations.at(theta),
        false => None,
    };
    let Some(scoring) = scoring else {
        out.loglik = f64::NEG_INFINITY;
        return Ok(out);
    };
    if stop.is_some_and(|s| problem.cannot_accept_within(&scoring, 0, upto, 0.0, s)) {
        out.stopped_after = Some(0);
        return Ok(out);
    }
    ws.prepare(
        local,
        species,
        lanes_for(local, runner.workers(), cfg.kernel),
    );
    let stride = ws.lanes;
    let mut ssa = problem.dynamics_of(0, theta);
    let mut t_prev = problem.sets[0].t0;
    let mut busy: Vec<f64> = Vec::new();
    for k in 0..upto {
        let t_k = data.times()[k];
        let key = schedule.key_for(k);
        // Initial states, at the first row of each data set (stream
        // `Initial` at that row's step; 0 for the first set).
        if data.starts_set(k) {
            let d = data.set_of(k);
            let set = &problem.sets[d];
            if k > 0 {
                ssa = problem.dynamics_of(d, theta);
            }
            t_prev = set.t0;
            let t = Instant::now();
            let mut items = ws.items(first, local, species);
            runner.map(&mut items, |it| {
                for j in 0..it.len {
                    let i = (it.first + j) as u64;
                    let mut rng = key.stream(Purpose::Initial, k as u64, i).rng();
                    let counts = &mut *it.counts;
                    set.initial
                        .sample_into(&mut rng, theta, |s, v| counts[s * stride + j] = v);
                    it.lw[j] = 0.0;
                }
            });
            out.times.propagate += elapsed(t);
        }
        // Propagate, then weigh: each block is weighed right after it is
        // propagated, in the same task (one dispatch to the workers per
        // step instead of two; the same arithmetic, particle by particle).
        let propagating = t_k > t_prev;
        let t = Instant::now();
        let mut items = ws.items(first, local, species);
        let done = runner.map(&mut items, |it| {
            let t = Instant::now();
            let c = propagating.then(|| {
                net.reset_counters(it.counts, it.stride, it.len);
                propagate_block(&ssa, cfg.kernel, it, key, k as u64, t_prev, t_k)
            });
            let propagated = elapsed(t);
            let t = Instant::now();
            let mut m = f64::NEG_INFINITY;
            for j in 0..it.len {
                if it.lw[j] == f64::NEG_INFINITY {
                    continue;
                }
                let counts = &*it.counts;
                let lw = scoring.log_density(k, |s| counts[s * stride + j]);
                it.lw[j] = lw;
                m = m.max(lw);
            }
            (c, runner.current_worker(), propagated, elapsed(t), m)
        });
        busy.clear();
        if propagating {
            busy.resize(runner.workers(), 0.0);
        }
        let last = busy.len().saturating_sub(1);
        let (mut in_propagate, mut in_weight) = (0.0, 0.0);
        let mut local_max = f64::NEG_INFINITY;
        for (c, w, secs, weigh_secs, m) in &done {
            if let Some(c) = c {
                out.counters.add(c);
                busy[(*w).min(last)] += secs;
            }
            in_propagate += secs;
            in_weight += weigh_secs;
            local_max = local_max.max(*m);
        }
        // The stage's wall time, split by the workers' time in each part.
        let wall = elapsed(t);
        let share = if in_propagate + in_weight > 0.0 {
            in_propagate / (in_propagate + in_weight)
        } else {
            0.0
        };
        out.times.propagate += wall * share;
        out.times.weight += wall * (1.0 - share);

        let t = Instant::now();
        let max = comm.max_f64(local_max)?;
        out.times.communicate += elapsed(t);
        let t = Instant::now();
        if max == f64::NEG_INFINITY {
            out.loglik = f64::NEG_INFINITY;
            out.collapsed_at = Some(k);
            out.ess.push(0.0);
            break;
        }
        let sums = runner.map(&mut items, |it| {
            let (mut s, mut a1, mut a2) = (0u128, 0u128, 0u128);
            for j in 0..it.len {
                let q = resample::quantise(it.lw[j], max);
                it.q[j] = q;
                s += u128::from(q);
                let a = u128::from(q >> 31);
                a1 += a;
                a2 += a * a;
            }
            (s, a1, a2)
        });
        drop(items);
        let mut mine = [0u128; 3];
        for (s, a1, a2) in &sums {
            mine[0] += s;
            mine[1] += a1;
            mine[2] += a2;
        }
        out.times.weight += elapsed(t);
        // Exact totals: every rank's three u128 sums, as u64 halves.
        let t = Instant::now();
        // Two more words carry this rank's slowest thread's and total
        // propagation busy time (f64 bits), for the load balance.
        let busy_max = busy.iter().copied().fold(0.0, f64::max);
        let busy_sum: f64 = busy.iter().sum();
        let mut words: Vec<u64> = mine
            .iter()
            .flat_map(|v| [*v as u64, (*v >> 64) as u64])
            .collect();
        words.extend([busy_max.to_bits(), busy_sum.to_bits()]);
        let all = comm.all_gather_u64(&words)?;
        out.times.communicate += elapsed(t);
        if !busy.is_empty() {
            let max = all
                .chunks_exact(8)
                .map(|w| f64::from_bits(w[6]))
                .fold(0.0, f64::max);
            let sum: f64 = all.chunks_exact(8).map(|w| f64::from_bits(w[7])).sum();
            out.balance.record(max, sum / (size * busy.len()) as f64);
        }
        let per_rank: Vec<[u128; 3]> = all
            .chunks_exact(8)
            .map(|w| {
                let v = |i: usize| u128::from(w[2 * i]) | (u128::from(w[2 * i + 1]) << 64);
                [v(0), v(1), v(2)]
            })
            .collect();
        let total: u128 = per_rank.iter().map(|r| r[0]).sum();
        let a1: u128 = per_rank.iter().map(|r| r[1]).sum();
        let a2: u128 = per_rank.iter().map(|r| r[2]).sum();
        let before_rank: u128 = per_rank[..rank].iter().map(|r| r[0]).sum();
        out.loglik += resample::log_mean_weight(max, total, n);
        out.ess.push(if a2 == 0 {
            1.0
        } else {
            (a1 as f64) * (a1 as f64) / (a2 as f64)
        });
        if stop.is_some_and(|s| problem.cannot_accept_within(&scoring, k + 1, upto, out.loglik, s))
        {
            out.stopped_after = Some(k + 1);
            break;
        }

        // Resample (not before a data set's first row: its particles are
        // drawn afresh).
        if k + 1 < upto && !data.starts_set(k + 1) {
            let t = Instant::now();
            let key_k = schedule
                .key_for(k + 1)
                .stream(Purpose::Resample, k as u64, 0);
            offspring_counts(
                runner,
                cfg.resampling,
                ws,
                first,
                local,
                species,
                n,
                total,
                before_rank,
                &sums,
                key_k,
            );
            let mine: u64 = ws.offspring[..local].iter().sum();
            out.times.resample += elapsed(t);
            let t = Instant::now();
            let counts = comm.all_gather_u64(&[mine])?;
            out.times.communicate += elapsed(t);
            let t = Instant::now();
            let start: u64 = counts[..rank].iter().sum();
            let (send, sent, moved) =
                pack_offspring(ws, n, size, rank, local, species, start as usize);
            out.times.resample += elapsed(t);
            let t = Instant::now();
            let received = comm.all_to_all(send)?;
            out.times.communicate += elapsed(t);
            out.bytes_sent += sent;
            out.rows_moved += moved;
            let t = Instant::now();
            unpack_population(ws, received, local, species);
            out.times.resample += elapsed(t);
        }
        t_prev = t_k;
    }
    // Every rank reports the totals of all ranks.
    let t = Instant::now();
    let c = &out.counters;
    let all = comm.all_gather_u64(&[c.events, c.cap_hits, c.cap_events, c.limit_hits])?;
    out.counters = SsaCounters::default();
    for w in all.chunks_exact(4) {
        out.counters.add(&SsaCounters {
            events: w[0],
            cap_hits: w[1],
            cap_events: w[2],
            limit_hits: w[3],
        });
    }
    out.times.communicate += elapsed(t);
    Ok(out)
}

fn propagate_block(
    ssa: &Dynamics,
    kernel: KernelChoice,
    it: &mut Item<'_>,
    key: FilterKey,
    step: u64,
    t0: f64,
    t1: f64,
) -> SsaCounters {
    // All particles are alive here: propagation follows initialisation or
    // resampling, both of which leave every particle alive.
    let w = &mut *it.work;
    let first = it.first as u64;
    w.outcomes.clear();
    w.outcomes.resize(it.len, Outcome::Reached);
    let c = ssa.propagate(
        kernel,
        it.counts,
        it.stride,
        it.len,
        t0,
        t1,
        |j, m| key.stream(Purpose::Propagate, step, segment_index(first + j as u64, m)),
        &mut w.outcomes,
        &mut w.scratch,
    );
    for (lw, o) in it.lw.iter_mut().zip(&w.outcomes) {
        if *o != Outcome::Reached {
            *lw = f64::NEG_INFINITY;
        }
    }
    c
}

/// Offspring counts of the local particles into `ws.offspring[..local]`.
fn offspring_counts<R: BlockRunner>(
    runner: &R,
    scheme: Resampling,
    ws: &mut Workspace,
    first: usize,
    local: usize,
    species: usize,
    n: usize,
    total: u128,
    before_rank: u128,
    sums: &[(u128, u128, u128)],
    key: StreamKey,
) {
    if scheme.is_distributable() {
        let mut before = Vec::with_capacity(sums.len());
        let mut c = before_rank;
        for (s, _, _) in sums {
            before.push(c);
            c += s;
        }
        let mut items = ws.items(first, local, species);
        runner.map(&mut items, |it| {
            it.work.offspring.resize(it.len, 0);
            resample::offspring_slice(
                scheme,
                &it.q[..it.len],
                before[it.block],
                total,
                n as u64,
                key,
                &mut it.work.offspring,
            );
        });
        drop(items);
        let lanes = ws.lanes;
        for (b, w) in ws.work.iter().enumerate().take(local.div_ceil(lanes)) {
            let len = lanes.min(local - b * lanes);
            ws.offspring[b * lanes..b * lanes + len].copy_from_slice(&w.offspring[..len]);
        }
    } else {
        // One rank holds every particle: the local slice is the whole vector.
        resample::offspring_all(
            scheme,
            &ws.q[..local],
            total,
            n as u64,
            key,
            &mut ws.offspring[..local],
        );
    }
}

/// Packs the local particles with their offspring counts for the ranks that
/// will own the offspring: for each destination rank, runs of
/// `[count, x_0, …, x_{S−1}]` in global order. `start` is the global index of
/// this rank's first offspring. Returns the buffers and the bytes addressed to
/// other ranks.
fn pack_offspring(
    ws: &mut Workspace,
    n: usize,
    size: usize,
    rank: usize,
    local: usize,
    species: usize,
    start: usize,
) -> (Vec<Vec<u64>>, u64, u64) {
    let mut send = std::mem::take(&mut ws.send);
    let mut moved = 0u64;
    send.resize_with(size, Vec::new);
    for v in send.iter_mut() {
        v.clear();
    }
    let mut pos = start;
    let mut dest = 0;
    let mut dest_end = rank_slice(n, size, 0).1;
    for i in 0..local {
        let mut o = ws.offspring[i] as usize;
        let lanes = ws.lanes;
        let (b, j) = (i / lanes, i % lanes);
        let base = b * lanes * species;
        while o > 0 {
            while pos >= dest_end {
                dest += 1;
                dest_end = rank_slice(n, size, dest).1;
            }
            let piece = o.min(dest_end - pos);
            if dest != rank {
                moved += piece as u64;
            }
            let buf = &mut send[dest];
            buf.push(piece as u64);
            for s in 0..species {
                buf.push(ws.counts[base + s * lanes + j]);
            }
            pos += piece;
            o -= piece;
        }
    }
    let bytes = send
        .iter()
        .enumerate()
        .filter(|(d, _)| *d != rank)
        .map(|(_, v)| 8 * v.len() as u64)
        .sum();
    (send, bytes, moved)
}

/// Rebuilds the local population from the received runs (in rank order),
/// marking every particle alive.
fn unpack_population(ws: &mut Workspace, received: Vec<Vec<u64>>, local: usize, species: usize) {
    let mut idx = 0usize;
    let lanes = ws.lanes;
    for buf in &received {
        for run in buf.chunks_exact(1 + species) {
            for _ in 0..run[0] {
                let (b, j) = (idx / lanes, idx % lanes);
                let base = b * lanes * species;
                for s in 0..species {
                    ws.counts[base + s * lanes + j] = run[1 + s];
                }
                idx += 1;
            }
        }
    }
    debug_assert_eq!(idx, local, "the exchange must restore the local slice");
    ws.lw[..local].fill(0.0);
    ws.send = received;
}
