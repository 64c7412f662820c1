//! Particle marginal Metropolis–Hastings (Andrieu, Doucet & Holenstein, 2010,
//! "Particle Markov chain Monte Carlo methods", JRSS B 72(3)).
//!
//! The proposal is a Gaussian random walk on log θ for the free (non-fixed)
//! parameters: `θ' = θ·exp(ε)`, `ε ~ N(0, Σ)`. The acceptance ratio is
//!
//! ```text
//! log α = ℓ̂(θ') − ℓ̂(θ) + log p(θ') − log p(θ) + Σ_free (log θ'_i − log θ_i)
//! ```
//!
//! where the last term is the Jacobian of the log transform. `Σ` is fixed, or
//! adapted during burn-in only, and frozen afterwards so that the kept chain
//! is a valid Markov chain. The adapted proposal is `Σ = 2.38²/d ·
//! (Cov(log θ) + 10⁻⁸ I)` (Haario, Saksman & Tamminen, 2001), where `Cov`
//! forgets the oldest states: it is estimated from the burn-in states after
//! iteration `b/2`, `b` the largest power of two not above the current
//! iteration (from [`ADAPT_FORGET_FROM`] on), so at least the last half of
//! what the chain has seen and never the first quarter. The transient of a
//! chain that walked in from far away would otherwise stretch `Σ` along its
//! path for the whole run.
//!
//! Each iteration's draws are keyed: the proposal by
//! `(seed, chain, iteration, Proposal)`, the accept uniform by
//! `(seed, chain, iteration, Accept)`, the filter by `(seed, chain, iteration)`.
//! A chain is therefore a pure function of the job and seed.
//!
//! The accept uniform is drawn before the proposal's filter pass, so that the
//! pass can stop as soon as the proposal cannot be accepted whatever its
//! remaining observations give ([`AcceptTest`],
//! [`crate::filter::FilterProblem::cannot_accept`]): with
//! [`PmmhConfig::early_rejection`] on or off the chain is the same bit for
//! bit.
//!
//! A proposal outside the prior's support is rejected without running the
//! filter; a proposal whose estimate is −∞ is rejected. If the current state's
//! estimate is −∞ (only possible at a poor starting point), any proposal with a
//! finite estimate is accepted.

use crate::accept::AcceptTest;
use crate::error::{Error, Result};
use crate::executor::LikelihoodExecutor;
use crate::filter::{FilterKey, FilterOutput, FilterProblem};
use crate::prior::Prior;
use crate::rng::{Purpose, StreamKey, uniform_open0};
use crate::ssa::SsaCounters;
use crate::tuning::{
    ChainChecks, START_ROUNDS, Spread, kept_particles, looks_stuck, needs_correction,
    noise_constant, relocation_gap, rescaled,
};
use rand::RngExt;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// The proposal covariance on the log scale of the free parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProposalCovariance {
    /// Independent increments with these standard deviations.
    Diagonal(Vec<f64>),
    /// A full covariance matrix (rows), symmetric positive definite.
    Full(Vec<Vec<f64>>),
}

/// Where the chains start.
///
/// Dispersed starting points let split-R̂ detect a run that has not
/// converged: chains that start together can agree with each other while all
/// of them are still far from the posterior (Gelman & Rubin, 1992; Vehtari et
/// al., 2021).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum StartPoints {
    /// Every chain starts at [`PmmhConfig::init`].
    Fixed,
    /// Chain 0 starts at `init`; chain `c > 0` at `init_i · exp(z_i)`,
    /// `z_i ~ N(0, sd²)` for every free parameter `i` (keyed stream
    /// `(seed, c, 0, Start)`).
    Dispersed {
        /// Standard deviation of the log-scale perturbation.
        sd: f64,
    },
    /// Every chain starts at a draw from the prior of each free parameter.
    Prior,
}

/// The default [`StartPoints::Dispersed`] spread: chains start a factor of
/// about e^±0.5 ≈ 0.6–1.65 apart, wide against a posterior that data inform
/// (log-scale sds of a few per cent), narrow enough that the filter's
/// estimate at the start is rarely −∞.
pub const DEFAULT_INIT_SD: f64 = 0.5;

/// The first iteration at which the covariance estimate forgets the oldest
/// states (see the module documentation).
pub const ADAPT_FORGET_FROM: u64 = 64;

/// Attempts at finding a starting point with a finite log-likelihood
/// estimate before [`Error::NoStart`].
pub const MAX_START_ATTEMPTS: u32 = 100;

/// Adaptation of the proposal during burn-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdaptConfig {
    /// First iteration at which the covariance is re-estimated.
    pub start: u64,
    /// Re-estimate every this many iterations (until the end of burn-in).
    pub every: u64,
}

/// PMMH settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PmmhConfig {
    /// Run seed.
    pub seed: u64,
    /// Number of independent chains.
    pub chains: usize,
    /// Burn-in iterations (not kept; adaptation happens here).
    pub burn_in: u64,
    /// Iterations after burn-in.
    pub iterations: u64,
    /// Keep every `thin`-th iteration after burn-in.
    pub thin: u64,
    /// Starting θ (all parameters, fixed ones at their value).
    pub init: Vec<f64>,
    /// How the chains' starting points derive from `init`.
    pub start: StartPoints,
    /// Initial proposal covariance over the free parameters.
    pub proposal: ProposalCovariance,
    /// Burn-in adaptation, if any.
    pub adapt: Option<AdaptConfig>,
    /// Stop a proposal's filter pass as soon as it can no longer be accepted
    /// ([`crate::filter::FilterProblem::cannot_accept`]). The chain is the
    /// same bit for bit either way; only the work differs.
    pub early_rejection: bool,
    /// Burn-in checks of each chain: an adapted particle count and stuck
    /// chains ([`crate::tuning`]).
    pub checks: ChainChecks,
}

/// Why a chain's burn-in check ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// At the starting point, before the first iteration.
    Start,
    /// Every [`ChainChecks::every`] burn-in iterations.
    BurnIn,
    /// At the end of burn-in: the particle count of the kept iterations.
    Kept,
}

/// One burn-in check of a chain: extra filter passes at its current θ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticleCheck {
    /// Why it ran.
    pub kind: CheckKind,
    /// Iterations completed when it ran.
    pub iteration: u64,
    /// Particles of its passes.
    pub particles: u64,
    /// Its passes.
    pub passes: u32,
    /// Mean of their log-likelihood estimates (finite ones).
    #[serde(with = "f64_ext")]
    pub mean: f64,
    /// Sample sd of the finite ones (∞ if fewer than two).
    #[serde(with = "f64_ext")]
    pub sd: f64,
    /// Passes that collapsed (estimate −∞).
    pub collapsed: u32,
    /// Log prior density at the chain's θ.
    #[serde(with = "f64_ext")]
    pub log_prior: f64,
    /// Particles from here on.
    pub next: u64,
    /// Proposals accepted since the previous check.
    pub accepted_since: u64,
    /// Whether the chain was stuck ([`crate::tuning::looks_stuck`]).
    pub stuck: bool,
    /// The chain's estimate before the check.
    #[serde(with = "f64_ext")]
    pub loglik_before: f64,
    /// Its estimate after (a fresh one when the particle count changed, the
    /// chain was stuck, or burn-in ended).
    #[serde(with = "f64_ext")]
    pub loglik_after: f64,
}

impl ParticleCheck {
    /// Its noise constant `N·σ²` (∞ if a pass collapsed).
    pub fn noise(&self) -> f64 {
        let sd = if self.collapsed > 0 {
            f64::INFINITY
        } else {
            self.sd
        };
        noise_constant(self.particles, sd)
    }
}

/// A chain moved to another chain's state during burn-in
/// ([`Pmmh::relocate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relocation {
    /// The chain moved.
    pub chain: u64,
    /// Iterations completed when it moved.
    pub iteration: u64,
    /// The chain whose state it took.
    pub to: u64,
    /// How far its log posterior (mean check estimate + log prior) lay below.
    pub gap: f64,
    /// The gap allowed ([`crate::tuning::relocation_gap`]).
    pub allowed: f64,
    /// Its θ before the move.
    pub theta: Vec<f64>,
}

/// Filter passes stopped by early rejection and the work they skipped
/// (sums, so that chains and runs add up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyRejections {
    /// Passes stopped early.
    pub passes: u64,
    /// Particle-intervals they did not simulate (particles × observation
    /// steps left).
    pub intervals_skipped: u64,
    /// SSA events they did not simulate, estimated from each pass's own
    /// events per observation step before it stopped (`events × left /
    /// done`, in exact integer arithmetic). A pass stopped before its first
    /// step simulated nothing to estimate from and adds nothing here: see
    /// `stopped_at_start`.
    pub events_saved: u64,
    /// Passes stopped before simulating any step (the proposal could not be
    /// accepted whatever the data gave).
    #[serde(default)]
    pub stopped_at_start: u64,
}

impl EarlyRejections {
    /// Records a pass of `particles` particles over `steps` observations
    /// that stopped after `done` of them, having simulated `events`.
    pub fn record(&mut self, particles: u64, steps: usize, done: usize, events: u64) {
        let left = (steps - done) as u64;
        self.passes += 1;
        self.intervals_skipped += particles * left;
        if done == 0 {
            self.stopped_at_start += 1;
        } else {
            let saved = u128::from(events) * u128::from(left) / done as u128;
            self.events_saved += u64::try_from(saved).unwrap_or(u64::MAX);
        }
    }

    /// Adds another set of counts.
    pub fn add(&mut self, o: &EarlyRejections) {
        self.passes += o.passes;
        self.intervals_skipped += o.intervals_skipped;
        self.events_saved += o.events_saved;
        self.stopped_at_start += o.stopped_at_start;
    }
}

/// Count, mean and co-moment matrix (row-major) of a set of vectors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Vectors seen.
    pub n: u64,
    /// Their mean (empty while `n` is 0 and nothing was sized).
    pub mean: Vec<f64>,
    /// Σ (x − mean)(x − mean)ᵀ.
    pub m2: Vec<f64>,
}

impl Moments {
    /// No vectors of dimension `d`.
    pub fn empty(d: usize) -> Self {
        Self {
            n: 0,
            mean: vec![0.0; d],
            m2: vec![0.0; d * d],
        }
    }

    /// Adds `x` (Welford).
    pub fn push(&mut self, x: &[f64]) {
        let d = x.len();
        if self.mean.len() != d {
            *self = Self::empty(d);
        }
        self.n += 1;
        let nf = self.n as f64;
        let delta: Vec<f64> = x.iter().zip(&self.mean).map(|(a, m)| a - m).collect();
        for (m, dl) in self.mean.iter_mut().zip(&delta) {
            *m += dl / nf;
        }
        for (i, di) in delta.iter().enumerate() {
            for (j, (xj, mj)) in x.iter().zip(&self.mean).enumerate() {
                self.m2[i * d + j] += di * (xj - mj);
            }
        }
    }

    /// The moments of both sets together (Chan, Golub & LeVeque, 1979).
    pub fn merged(&self, other: &Self) -> Self {
        if self.n == 0 {
            return other.clone();
        }
        if other.n == 0 {
            return self.clone();
        }
        let d = self.mean.len();
        let (na, nb) = (self.n as f64, other.n as f64);
        let n = na + nb;
        let delta: Vec<f64> = other
            .mean
            .iter()
            .zip(&self.mean)
            .map(|(b, a)| b - a)
            .collect();
        let mean = self
            .mean
            .iter()
            .zip(&delta)
            .map(|(a, dl)| a + dl * nb / n)
            .collect();
        let mut m2 = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                m2[i * d + j] =
                    self.m2[i * d + j] + other.m2[i * d + j] + delta[i] * delta[j] * na * nb / n;
            }
        }
        Self {
            n: self.n + other.n,
            mean,
            m2,
        }
    }
}

/// Everything about one chain that its continuation needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainState {
    /// Chain index.
    pub chain: u64,
    /// The last completed iteration (0: the initial evaluation).
    pub iteration: u64,
    /// Current θ.
    pub theta: Vec<f64>,
    /// Current log-likelihood estimate.
    #[serde(with = "f64_ext")]
    pub loglik: f64,
    /// Current log prior density.
    #[serde(with = "f64_ext")]
    pub log_prior: f64,
    /// Proposals made.
    pub proposed: u64,
    /// Proposals accepted.
    pub accepted: u64,
    /// Proposals accepted after burn-in.
    pub accepted_after_burn_in: u64,
    /// Proposals rejected because they left the prior's support.
    pub outside_prior: u64,
    /// Filter passes whose estimate was −∞.
    pub collapses: u64,
    /// SSA counters summed over all filter passes.
    pub counters: SsaCounters,
    /// SSA counters of the filter pass that gave the current state's
    /// log-likelihood (the current θ's cap and event-limit hits).
    #[serde(default)]
    pub current_counters: SsaCounters,
    /// Particle-intervals simulated by that pass (particles × observation
    /// steps reached).
    #[serde(default)]
    pub current_intervals: u64,
    /// Filter passes stopped early because the proposal could no longer be
    /// accepted, and the work they skipped.
    #[serde(default)]
    pub early: EarlyRejections,
    /// Lower Cholesky factor of Σ, row-major d×d.
    pub chol: Vec<f64>,
    /// Adaptation: number of states averaged.
    pub adapt_n: u64,
    /// Adaptation: running mean of log θ (free).
    pub adapt_mean: Vec<f64>,
    /// Adaptation: running co-moment matrix of log θ (free), row-major.
    pub adapt_m2: Vec<f64>,
    /// Adaptation: the states of the previous window (the covariance uses
    /// them and the current window's: see the module documentation).
    #[serde(default)]
    pub adapt_prev: Moments,
    /// Particles of the chain's filter passes (0: the problem's).
    #[serde(default)]
    pub particles: u64,
    /// `accepted` at the last burn-in check.
    #[serde(default)]
    pub accepted_at_check: u64,
    /// The burn-in checks made so far.
    #[serde(default)]
    pub checks: Vec<ParticleCheck>,
    /// Extra filter passes run by the checks.
    #[serde(default)]
    pub check_passes: u64,
    /// Times the chain was moved to another chain's state.
    #[serde(default)]
    pub relocations: Vec<Relocation>,
}

impl ChainState {
    /// Times the chain was found stuck and given a fresh estimate.
    pub fn stuck(&self) -> u64 {
        self.checks.iter().filter(|c| c.stuck).count() as u64
    }
}

/// What one iteration of one chain did.
#[derive(Debug, Clone, PartialEq)]
pub struct IterationRecord {
    /// Chain index.
    pub chain: u64,
    /// Iteration (0: the initial evaluation).
    pub iteration: u64,
    /// θ after the iteration.
    pub theta: Vec<f64>,
    /// Log-likelihood estimate after the iteration.
    pub loglik: f64,
    /// Whether the proposal was accepted (true for iteration 0).
    pub accepted: bool,
    /// Whether the iteration is kept (after burn-in, on the thinning grid).
    pub kept: bool,
    /// The proposal's filter pass, if one ran.
    pub filter: Option<FilterOutput>,
}

/// A PMMH sampler: a filtering problem, priors and settings.
#[derive(Debug, Clone)]
pub struct Pmmh {
    problem: FilterProblem,
    priors: Vec<Prior>,
    config: PmmhConfig,
    free: Vec<usize>,
    chol0: Vec<f64>,
}

/// Lower Cholesky factor of a symmetric positive-definite d×d matrix (row-major).
pub fn cholesky(a: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut s = a[i * d + j];
            for k in 0..j {
                s -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if !(s > 0.0) || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Some(l)
}

impl Pmmh {
    /// Validates and assembles a sampler.
    ///
    /// # Errors
    /// [`Error::Setting`] for a prior list of the wrong length, invalid
    /// priors, no free parameter, a starting point outside the prior's
    /// support, zero chains or thinning, or an invalid proposal covariance.
    pub fn new(problem: FilterProblem, priors: Vec<Prior>, config: PmmhConfig) -> Result<Self> {
        let names = problem.parameters();
        let free = crate::prior::free_parameters(names, &priors)?;
        if config.chains == 0 || config.chains > 1024 {
            return Err(Error::setting("mcmc.chains", "must be in 1..=1024"));
        }
        if config.thin == 0 {
            return Err(Error::setting("mcmc.thin", "must be at least 1"));
        }
        if config.init.len() != names.len() {
            return Err(Error::setting(
                "mcmc.init",
                format!(
                    "{} values for {} parameters",
                    config.init.len(),
                    names.len()
                ),
            ));
        }
        for ((x, p), name) in config.init.iter().zip(&priors).zip(names) {
            if p.log_density(*x) == f64::NEG_INFINITY {
                return Err(Error::setting(
                    "mcmc.init",
                    format!("{name} = {x} is outside the support of its prior"),
                ));
            }
        }
        match config.start {
            StartPoints::Dispersed { sd } if !(sd.is_finite() && sd >= 0.0) => {
                return Err(Error::setting(
                    "mcmc.init_sd",
                    format!("{sd} is not a finite non-negative number"),
                ));
            }
            _ => {}
        }
        config.checks.validate()?;
        if let Some(a) = config.adapt
            && a.every == 0
        {
            return Err(Error::setting("mcmc.adapt_every", "must be at least 1"));
        }
        let d = free.len();
        let chol0 = match &config.proposal {
            ProposalCovariance::Diagonal(sd) => {
                if sd.len() != d {
                    return Err(Error::setting(
                        "mcmc.proposal_sd",
                        format!("{} values for {d} free parameters", sd.len()),
                    ));
                }
                if let Some(s) = sd.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(Error::setting(
                        "mcmc.proposal_sd",
                        format!("{s} is not a finite positive number"),
                    ));
                }
                let mut l = vec![0.0; d * d];
                for (i, s) in sd.iter().enumerate() {
                    l[i * d + i] = *s;
                }
                l
            }
            ProposalCovariance::Full(rows) => {
                if rows.len() != d || rows.iter().any(|r| r.len() != d) {
                    return Err(Error::setting(
                        "mcmc.proposal_cov",
                        format!("must be a {d}×{d} matrix over the free parameters"),
                    ));
                }
                let flat: Vec<f64> = rows.iter().flatten().copied().collect();
                let symmetric = (0..d).all(|i| (0..d).all(|j| flat[i * d + j] == flat[j * d + i]));
                if !symmetric {
                    return Err(Error::setting("mcmc.proposal_cov", "is not symmetric"));
                }
                cholesky(&flat, d).ok_or_else(|| {
                    Error::setting("mcmc.proposal_cov", "is not positive definite")
                })?
            }
        };
        Ok(Pmmh {
            problem,
            priors,
            config,
            free,
            chol0,
        })
    }

    /// The filtering problem.
    pub fn problem(&self) -> &FilterProblem {
        &self.problem
    }
    /// The priors, one per parameter.
    pub fn priors(&self) -> &[Prior] {
        &self.priors
    }
    /// The settings.
    pub fn config(&self) -> &PmmhConfig {
        &self.config
    }
    /// Indices of the free (non-fixed) parameters.
    pub fn free(&self) -> &[usize] {
        &self.free
    }
    /// Total iterations per chain: burn-in plus sampling.
    pub fn total_iterations(&self) -> u64 {
        self.config.burn_in + self.config.iterations
    }
    /// Whether iteration `it` is kept.
    pub fn is_kept(&self, it: u64) -> bool {
        it > self.config.burn_in && (it - self.config.burn_in).is_multiple_of(self.config.thin)
    }

    fn log_prior(&self, theta: &[f64]) -> f64 {
        self.priors
            .iter()
            .zip(theta)
            .map(|(p, x)| p.log_density(*x))
            .sum()
    }

    fn key(&self, chain: u64, iteration: u64) -> FilterKey {
        FilterKey {
            seed: self.config.seed,
            chain,
            iteration,
        }
    }

    /// The starting point of `chain` at attempt `attempt` (attempt 0 of
    /// chain 0 is `init` unless the chains start from the prior).
    pub fn start_point(&self, chain: u64, attempt: u32) -> Vec<f64> {
        let mut theta = self.config.init.clone();
        let key = StreamKey::new(
            self.config.seed,
            chain,
            0,
            u64::from(attempt),
            0,
            Purpose::Start,
        );
        match self.config.start {
            StartPoints::Fixed => {}
            StartPoints::Dispersed { .. } if chain == 0 && attempt == 0 => {}
            StartPoints::Dispersed { sd } => {
                // Chain 0 retries around init with the same spread.
                let mut rng = key.rng();
                for &p in &self.free {
                    let z: f64 = rng.sample(StandardNormal);
                    theta[p] = self.config.init[p] * (sd * z).exp();
                }
            }
            StartPoints::Prior => {
                let mut rng = key.rng();
                for &p in &self.free {
                    theta[p] = self.priors[p].sample(&mut rng);
                }
            }
        }
        theta
    }

    /// Starts chain `chain`: finds its starting point and evaluates the
    /// likelihood there (iteration 0). A point outside the prior's support,
    /// or whose estimate is −∞, is replaced by the next keyed draw, up to
    /// [`MAX_START_ATTEMPTS`] times (with [`StartPoints::Fixed`], `init` is
    /// the only point tried).
    ///
    /// # Errors
    /// Executor failures; [`Error::NoStart`] when every attempt failed.
    pub fn init_chain<E: LikelihoodExecutor + ?Sized>(
        &self,
        exec: &mut E,
        chain: u64,
    ) -> Result<(ChainState, IterationRecord)> {
        let attempts = match self.config.start {
            StartPoints::Fixed => 1,
            _ => MAX_START_ATTEMPTS,
        };
        let mut counters = SsaCounters::default();
        let mut collapses = 0;
        let mut last = None;
        let particles = self.config.checks.auto.map_or(0, |a| a.start as u64);
        let problem = self.problem_for(particles)?;
        for attempt in 0..attempts {
            let theta = self.start_point(chain, attempt);
            let lp = self.log_prior(&theta);
            if lp == f64::NEG_INFINITY || lp.is_nan() {
                continue;
            }
            let out = exec.log_likelihood(&problem, &theta, self.key(chain, 0))?;
            counters.add(&out.counters);
            let finite = out.loglik > f64::NEG_INFINITY;
            collapses += u64::from(!finite);
            last = Some((theta, lp, out));
            if finite {
                break;
            }
        }
        let Some((theta, log_prior, out)) = last else {
            return Err(Error::NoStart { chain, attempts });
        };
        if out.loglik == f64::NEG_INFINITY && attempts > 1 {
            return Err(Error::NoStart { chain, attempts });
        }
        let d = self.free.len();
        let mut st = ChainState {
            chain,
            iteration: 0,
            loglik: out.loglik,
            log_prior,
            theta: theta.clone(),
            proposed: 0,
            accepted: 0,
            accepted_after_burn_in: 0,
            outside_prior: 0,
            collapses,
            counters,
            current_counters: out.counters,
            current_intervals: problem.particles() as u64 * out.ess.len() as u64,
            early: EarlyRejections::default(),
            chol: self.chol0.clone(),
            adapt_n: 0,
            adapt_mean: vec![0.0; d],
            adapt_m2: vec![0.0; d * d],
            adapt_prev: Moments::default(),
            particles,
            accepted_at_check: 0,
            checks: Vec::new(),
            check_passes: 0,
            relocations: Vec::new(),
        };
        self.tune_at_start(exec, &mut st)?;
        let rec = IterationRecord {
            chain,
            iteration: 0,
            theta,
            loglik: st.loglik,
            accepted: true,
            kept: false,
            filter: Some(out),
        };
        Ok((st, rec))
    }

    /// The particles of `st`'s filter passes.
    pub fn particles_of(&self, st: &ChainState) -> u64 {
        if st.particles == 0 {
            self.problem.particles() as u64
        } else {
            st.particles
        }
    }

    /// The problem with `n` particles (0: the problem itself).
    fn problem_for(&self, n: u64) -> Result<std::borrow::Cow<'_, FilterProblem>> {
        if n == 0 || n == self.problem.particles() as u64 {
            Ok(std::borrow::Cow::Borrowed(&self.problem))
        } else {
            let n = usize::try_from(n)
                .map_err(|_| Error::setting("filter.particles", format!("{n} is too large")))?;
            Ok(std::borrow::Cow::Owned(self.problem.with_particles(n)?))
        }
    }

    /// The key of pass `index` of the check after `done` iterations, round
    /// `round`: its own streams, apart from every iteration's (the top bit
    /// of the iteration field is set; `done < 2^43`, `round < 256`,
    /// `index < 4096`).
    fn check_key(&self, chain: u64, done: u64, round: u32, index: u32) -> FilterKey {
        FilterKey {
            seed: self.config.seed,
            chain,
            iteration: (1 << 63) | (done << 20) | (u64::from(round) << 12) | u64::from(index),
        }
    }

    /// The check's passes at `st`'s θ with `n` particles.
    fn check_passes<E: LikelihoodExecutor + ?Sized>(
        &self,
        exec: &mut E,
        st: &mut ChainState,
        n: u64,
        round: u32,
    ) -> Result<Vec<FilterOutput>> {
        let problem = self.problem_for(n)?;
        let mut outs = Vec::with_capacity(self.config.checks.passes as usize);
        for i in 0..self.config.checks.passes {
            let key = self.check_key(st.chain, st.iteration, round, i);
            let out = exec.log_likelihood(&problem, &st.theta, key)?;
            st.counters.add(&out.counters);
            st.check_passes += 1;
            outs.push(out);
        }
        Ok(outs)
    }

    /// A fresh estimate at `st`'s θ with `n` particles: `reuse` if it was
    /// run with `n`, else one more keyed pass (index [`ChainChecks::passes`]
    /// of round `round`).
    fn refresh<E: LikelihoodExecutor + ?Sized>(
        &self,
        exec: &mut E,
        st: &mut ChainState,
        n: u64,
        round: u32,
        reuse: Option<&FilterOutput>,
    ) -> Result<()> {
        let fresh;
        let out = match reuse {
            Some(o) => o,
            None => {
                let key = self.check_key(st.chain, st.iteration, round, self.config.checks.passes);
                fresh = exec.log_likelihood(&*self.problem_for(n)?, &st.theta, key)?;
                st.counters.add(&fresh.counters);
                st.check_passes += 1;
                &fresh
            }
        };
        if out.loglik == f64::NEG_INFINITY {
            st.collapses += 1;
        }
        st.loglik = out.loglik;
        st.current_counters = out.counters;
        st.current_intervals = n * out.ess.len() as u64;
        st.particles = n;
        Ok(())
    }

    /// With the particle count on `auto`: up to [`START_ROUNDS`] rounds of
    /// rescaling at the starting point, then a fresh estimate at the chosen
    /// count.
    fn tune_at_start<E: LikelihoodExecutor + ?Sized>(
        &self,
        exec: &mut E,
        st: &mut ChainState,
    ) -> Result<()> {
        let Some(a) = self.config.checks.auto else {
            return Ok(());
        };
        let before = st.loglik;
        let mut n = self.particles_of(st);
        for round in 0..START_ROUNDS {
            let outs = self.check_passes(exec, st, n, round)?;
            let lls: Vec<f64> = outs.iter().map(|o| o.loglik).collect();
            let spread = Spread::of(&lls);
            let c = noise_constant(n, spread.estimator_sd());
            let next = rescaled(n as usize, &[c], &a) as u64;
            let last = next == n || round + 1 == START_ROUNDS;
            if last {
                self.refresh(exec, st, next, round, (next == n).then(|| &outs[0]))?;
            }
            st.checks.push(self.check_record(
                CheckKind::Start,
                st,
                n,
                spread,
                next,
                (0, false),
                before,
            ));
            if last {
                break;
            }
            n = next;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn check_record(
        &self,
        kind: CheckKind,
        st: &ChainState,
        particles: u64,
        spread: Spread,
        next: u64,
        (accepted_since, stuck): (u64, bool),
        loglik_before: f64,
    ) -> ParticleCheck {
        ParticleCheck {
            kind,
            iteration: st.iteration,
            particles,
            passes: self.config.checks.passes,
            mean: spread.mean,
            sd: spread.sd,
            collapsed: spread.collapsed,
            log_prior: st.log_prior,
            next,
            accepted_since,
            stuck,
            loglik_before,
            loglik_after: st.loglik,
        }
    }

    /// Whether a check is due after `done` iterations: every
    /// [`ChainChecks::every`] burn-in iterations, and at the end of burn-in
    /// with the particle count on `auto`.
    fn check_due(&self, done: u64) -> Option<CheckKind> {
        let c = &self.config.checks;
        let burn = self.config.burn_in;
        if c.auto.is_some() && burn > 0 && done == burn {
            Some(CheckKind::Kept)
        } else if c.active() && done > 0 && done < burn && done.is_multiple_of(c.every) {
            Some(CheckKind::BurnIn)
        } else {
            None
        }
    }

    /// The burn-in check due before iteration `st.iteration + 1`, if any
    /// ([`crate::tuning`]).
    fn burn_in_check<E: LikelihoodExecutor + ?Sized>(
        &self,
        exec: &mut E,
        st: &mut ChainState,
    ) -> Result<()> {
        let c = self.config.checks;
        let Some(kind) = self.check_due(st.iteration) else {
            return Ok(());
        };
        let accepted_since = st.accepted - st.accepted_at_check;
        st.accepted_at_check = st.accepted;
        let n = self.particles_of(st);
        let before = st.loglik;
        // The passes run at n, or at the kept count when burn-in ends.
        let mut at = match (c.auto, kind) {
            (Some(a), CheckKind::Kept) => {
                let half: Vec<f64> = st
                    .checks
                    .iter()
                    .filter(|k| k.kind == CheckKind::BurnIn && 2 * k.iteration >= st.iteration)
                    .map(ParticleCheck::noise)
                    .collect();
                kept_particles(&half, &a, n as usize) as u64
            }
            _ => n,
        };
        let mut outs = self.check_passes(exec, st, at, 0)?;
        let mut lls: Vec<f64> = outs.iter().map(|o| o.loglik).collect();
        let mut spread = Spread::of(&lls);
        let stuck = c.stuck && looks_stuck(accepted_since, before, &lls);
        // The kept count is measured, and corrected once if it misses.
        if let (Some(a), CheckKind::Kept) = (c.auto, kind)
            && let Some(better) = needs_correction(at as usize, spread.estimator_sd(), &a)
        {
            at = better as u64;
            outs = self.check_passes(exec, st, at, 1)?;
            lls = outs.iter().map(|o| o.loglik).collect();
            spread = Spread::of(&lls);
        }
        let next = match (c.auto, kind) {
            (Some(a), CheckKind::BurnIn) => {
                let mut recent: Vec<f64> = st
                    .checks
                    .iter()
                    .filter(|k| k.kind != CheckKind::Kept)
                    .map(ParticleCheck::noise)
                    .collect();
                recent.push(noise_constant(n, spread.estimator_sd()));
                rescaled(n as usize, &recent, &a) as u64
            }
            _ => at,
        };
        if kind == CheckKind::Kept || next != n || stuck {
            self.refresh(exec, st, next, 0, (next == at).then(|| &outs[0]))?;
        }
        st.checks.push(self.check_record(
            kind,
            st,
            at,
            spread,
            next,
            (accepted_since, stuck),
            before,
        ));
        Ok(())
    }

    /// Moves chains whose log posterior lies far below the best chain's to
    /// that chain's state, after iteration `done + 1` of burn-in when the
    /// chains were checked after `done` iterations ([`ChainChecks::relocate`];
    /// only from half to three quarters of burn-in: earlier, chains still on
    /// their way from dispersed starts differ by far more than modes do, and
    /// moving a chain to the least bad of them can carry it into a local
    /// mode; later, the moved chain would have too little burn-in left to
    /// part from the chain it joined). The log posterior of a chain is its
    /// check's mean estimate plus its log prior; a chain more than
    /// [`relocation_gap`] below the best takes the best chain's θ, estimate,
    /// particle count and proposal (its own random streams continue). Every
    /// worker holds every chain's state here, so every worker moves the same
    /// chains.
    pub fn relocate(&self, states: &mut [ChainState]) -> Vec<Relocation> {
        let c = &self.config.checks;
        let Some(first) = states.first() else {
            return Vec::new();
        };
        let it = first.iteration;
        if !c.relocate
            || states.len() < 2
            || it == 0
            || self.check_due(it - 1) != Some(CheckKind::BurnIn)
            || 2 * (it - 1) < self.config.burn_in
            || 4 * (it - 1) > 3 * self.config.burn_in
        {
            return Vec::new();
        }
        let level = |st: &ChainState| {
            st.checks
                .last()
                .filter(|k| k.iteration == it - 1 && st.iteration == it)
                .map(|k| (k.mean + k.log_prior, k.sd / f64::from(k.passes).sqrt()))
        };
        let levels: Vec<Option<(f64, f64)>> = states.iter().map(level).collect();
        if levels.iter().any(Option::is_none) {
            return Vec::new();
        }
        let levels: Vec<(f64, f64)> = levels.into_iter().flatten().collect();
        let best = (0..states.len())
            .filter(|i| levels[*i].0.is_finite())
            .max_by(|a, b| levels[*a].0.total_cmp(&levels[*b].0).then(b.cmp(a)));
        let Some(best) = best else {
            return Vec::new();
        };
        let (top, top_se) = levels[best];
        let d = self.free.len();
        let mut moved = Vec::new();
        for i in 0..states.len() {
            let (l, se) = levels[i];
            let se = if se.is_finite() {
                (se * se + top_se * top_se).sqrt()
            } else {
                0.0
            };
            let allowed = relocation_gap(d, se);
            let gap = top - l;
            if i == best || !(gap > allowed) {
                continue;
            }
            let b = states[best].clone();
            let st = &mut states[i];
            let r = Relocation {
                chain: st.chain,
                iteration: it,
                to: b.chain,
                gap,
                allowed,
                theta: st.theta.clone(),
            };
            st.theta = b.theta;
            st.loglik = b.loglik;
            st.log_prior = b.log_prior;
            st.current_counters = b.current_counters;
            st.current_intervals = b.current_intervals;
            st.particles = b.particles;
            st.chol = b.chol;
            st.adapt_n = b.adapt_n;
            st.adapt_mean = b.adapt_mean;
            st.adapt_m2 = b.adapt_m2;
            st.adapt_prev = b.adapt_prev;
            st.relocations.push(r.clone());
            moved.push(r);
        }
        moved
    }

    /// One Metropolis–Hastings iteration of a chain.
    ///
    /// # Errors
    /// Executor failures.
    pub fn step<E: LikelihoodExecutor + ?Sized>(
        &self,
        exec: &mut E,
        st: &mut ChainState,
    ) -> Result<IterationRecord> {
        self.burn_in_check(exec, st)?;
        let it = st.iteration + 1;
        let key = self.key(st.chain, it);
        let problem = self.problem_for(self.particles_of(st))?;
        let d = self.free.len();
        let mut rng = key.stream(Purpose::Proposal, 0, 0).rng();
        let z: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
        let mut prop = st.theta.clone();
        let mut log_jac = 0.0;
        for (a, &p) in self.free.iter().enumerate() {
            let eps: f64 = (0..=a).map(|b| st.chol[a * d + b] * z[b]).sum();
            let lx = st.theta[p].ln() + eps;
            prop[p] = lx.exp();
            log_jac += eps;
        }
        st.proposed += 1;
        let lp = self.log_prior(&prop);
        let test = AcceptTest {
            log_u: uniform_open0(&mut key.stream(Purpose::Accept, 0, 0).rng()).ln(),
            current_loglik: st.loglik,
            log_prior: lp,
            current_log_prior: st.log_prior,
            log_jacobian: log_jac,
        };
        let (accept, filter) = if lp == f64::NEG_INFINITY || lp.is_nan() {
            st.outside_prior += 1;
            (false, None)
        } else {
            let stop = self.config.early_rejection.then_some(&test);
            let out = exec.filter(&problem, &prop, key, stop)?;
            st.counters.add(&out.counters);
            let accept = if let Some(done) = out.stopped_after {
                st.early.record(
                    problem.particles() as u64,
                    self.problem.data().len(),
                    done,
                    out.counters.events,
                );
                false
            } else {
                if out.loglik == f64::NEG_INFINITY {
                    st.collapses += 1;
                }
                test.accepts(out.loglik)
            };
            (accept, Some(out))
        };
        let ll = filter.as_ref().map_or(f64::NEG_INFINITY, |f| f.loglik);
        if accept {
            if let Some(f) = &filter {
                st.current_counters = f.counters;
                st.current_intervals = problem.particles() as u64 * f.ess.len() as u64;
            }
            st.theta = prop;
            st.loglik = ll;
            st.log_prior = lp;
            st.accepted += 1;
            if it > self.config.burn_in {
                st.accepted_after_burn_in += 1;
            }
        }
        st.iteration = it;
        if it <= self.config.burn_in {
            self.adapt(st);
        }
        Ok(IterationRecord {
            chain: st.chain,
            iteration: it,
            theta: st.theta.clone(),
            loglik: st.loglik,
            accepted: accept,
            kept: self.is_kept(it),
            filter,
        })
    }

    fn adapt(&self, st: &mut ChainState) {
        let Some(cfg) = self.config.adapt else {
            return;
        };
        let d = self.free.len();
        let it = st.iteration;
        // Welford update of the current window's mean and co-moment of log θ.
        let x: Vec<f64> = self.free.iter().map(|&p| st.theta[p].ln()).collect();
        let mut window = Moments {
            n: st.adapt_n,
            mean: std::mem::take(&mut st.adapt_mean),
            m2: std::mem::take(&mut st.adapt_m2),
        };
        window.push(&x);
        if it >= ADAPT_FORGET_FROM && it.is_power_of_two() {
            st.adapt_prev = std::mem::replace(&mut window, Moments::empty(d));
        }
        // The two windows are merged only when the covariance is due.
        let all = (it >= cfg.start && it.is_multiple_of(cfg.every))
            .then(|| st.adapt_prev.merged(&window));
        st.adapt_n = window.n;
        st.adapt_mean = window.mean;
        st.adapt_m2 = window.m2;
        if let Some(all) = all.filter(|a| a.n > d as u64 + 1) {
            let scale = 2.38 * 2.38 / d as f64;
            let nf = all.n as f64;
            let mut cov = vec![0.0; d * d];
            for i in 0..d {
                for j in 0..d {
                    let c = 0.5 * (all.m2[i * d + j] + all.m2[j * d + i]) / (nf - 1.0);
                    cov[i * d + j] = scale * (c + if i == j { 1e-8 } else { 0.0 });
                }
            }
            if let Some(l) = cholesky(&cov, d) {
                st.chol = l;
            }
        }
    }

    /// Runs every chain from the start to the end, iteration by iteration
    /// (all chains advance together), calling `observe` with each record and
    /// the chain's state after it.
    ///
    /// # Errors
    /// Executor failures and errors returned by `observe`.
    pub fn run<E, F>(&self, exec: &mut E, mut observe: F) -> Result<Vec<ChainState>>
    where
        E: LikelihoodExecutor + ?Sized,
        F: FnMut(&IterationRecord, &ChainState) -> Result<()>,
    {
        let mut states = Vec::with_capacity(self.config.chains);
        for c in 0..self.config.chains as u64 {
            let (st, rec) = self.init_chain(exec, c)?;
            observe(&rec, &st)?;
            states.push(st);
        }
        for _ in 0..self.total_iterations() {
            for st in states.iter_mut() {
                let rec = self.step(exec, st)?;
                observe(&rec, st)?;
            }
            self.relocate(&mut states);
        }
        Ok(states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_saved_multiplies_before_dividing_and_start_stops_are_counted_apart() {
        let mut e = EarlyRejections::default();
        // 10 events over 4 of 12 steps: 2.5 per step, 8 steps left → 20
        // (dividing first gave 2 × 8 = 16).
        e.record(100, 12, 4, 10);
        assert_eq!(e.events_saved, 20);
        // Stopped before the first step: nothing to estimate from.
        e.record(100, 12, 0, 0);
        assert_eq!((e.events_saved, e.stopped_at_start, e.passes), (20, 1, 2));
        assert_eq!(e.intervals_skipped, 100 * 8 + 100 * 12);
        // Large counts do not overflow the product.
        let mut big = EarlyRejections::default();
        big.record(1, 1000, 1, u64::MAX / 2000);
        assert_eq!(big.events_saved, u64::MAX / 2000 * 999);
    }

    /// A chain that walks in from 2× away for its first 200 burn-in
    /// iterations and then jitters with log-scale sd 0.01: the covariance at
    /// the end of burn-in must be the jitter's, not the walk's. Without the
    /// forgetting the walk's variance ((ln 2)²/12 · 200/1000 ≈ 0.008, an sd
    /// of 0.09) would dominate.
    #[test]
    fn the_adapted_covariance_forgets_the_way_in() {
        use crate::filter::FilterConfig;
        use crate::model::Network;
        use crate::observation::{Data, InitialPrior, ObservationModel};
        let net = Network::immigration_death();
        let data = Data::new(
            &net,
            vec![1.0, 2.0],
            &["X".to_string()],
            vec![vec![14.0], vec![16.0]],
        )
        .unwrap();
        let problem = FilterProblem::new(
            net.clone(),
            data,
            ObservationModel::Gaussian { sd: vec![2.0] },
            InitialPrior::new(&net, vec![15.0]).unwrap(),
            0.0,
            FilterConfig::new(20, 1),
        )
        .unwrap();
        let prior = Prior::LogNormal {
            mu: 0.0,
            sigma: 3.0,
        };
        let burn_in = 1000;
        let pmmh = Pmmh::new(
            problem,
            vec![prior, prior],
            PmmhConfig {
                seed: 1,
                chains: 1,
                burn_in,
                iterations: 10,
                thin: 1,
                init: vec![20.0, 1.0],
                start: StartPoints::Fixed,
                proposal: ProposalCovariance::Diagonal(vec![0.05, 0.05]),
                adapt: Some(AdaptConfig {
                    start: 100,
                    every: 50,
                }),
                early_rejection: false,
                checks: ChainChecks::off(),
            },
        )
        .unwrap();
        let (mut st, _) = pmmh.init_chain(&mut crate::serial(), 0).unwrap();
        for it in 1..=burn_in {
            let f = it as f64;
            // The walk: from 2× down to 1×; then a deterministic jitter
            // with sd 0.01 (sin and cos of incommensurate phases).
            let walk = if it <= 200 {
                std::f64::consts::LN_2 * (1.0 - f / 200.0)
            } else {
                0.0
            };
            let jitter = |p: f64| 0.01 * std::f64::consts::SQRT_2 * (p * f).sin();
            st.theta = vec![
                (20f64.ln() + walk + jitter(0.7)).exp(),
                (walk + jitter(1.3)).exp(),
            ];
            st.iteration = it;
            pmmh.adapt(&mut st);
        }
        // Σ = 2.38²/2 · Cov: the proposal sd of each log-rate is 1.68 × 0.01.
        for (a, l) in [
            st.chol[0],
            (st.chol[2] * st.chol[2] + st.chol[3] * st.chol[3]).sqrt(),
        ]
        .into_iter()
        .enumerate()
        {
            let sd = l / (2.38 / std::f64::consts::SQRT_2);
            assert!((0.008..0.012).contains(&sd), "log-rate {a}: sd {sd}");
        }
    }

    #[test]
    fn merged_moments_equal_the_moments_of_all_vectors() {
        let xs: Vec<Vec<f64>> = (0..23)
            .map(|i| {
                let t = f64::from(i);
                vec![t.sin() * 3.0 + 1.0, (0.7 * t).cos() - t * 0.1]
            })
            .collect();
        let mut all = Moments::default();
        let (mut a, mut b) = (Moments::default(), Moments::default());
        for (i, x) in xs.iter().enumerate() {
            all.push(x);
            if i < 9 { a.push(x) } else { b.push(x) }
        }
        let m = a.merged(&b);
        assert_eq!(m.n, 23);
        for (u, v) in m.mean.iter().zip(&all.mean).chain(m.m2.iter().zip(&all.m2)) {
            assert!((u - v).abs() < 1e-12 * (1.0 + v.abs()), "{u} vs {v}");
        }
        // The co-moment against a direct two-pass computation.
        let mean0 = xs.iter().map(|x| x[0]).sum::<f64>() / 23.0;
        let mean1 = xs.iter().map(|x| x[1]).sum::<f64>() / 23.0;
        let c01: f64 = xs.iter().map(|x| (x[0] - mean0) * (x[1] - mean1)).sum();
        assert!((m.m2[1] - c01).abs() < 1e-12 * (1.0 + c01.abs()));
        assert_eq!(Moments::default().merged(&b), b);
    }

    #[test]
    fn cholesky_roundtrip() {
        let a = [4.0, 2.0, 0.4, 2.0, 2.0, 0.5, 0.4, 0.5, 3.0];
        let l = cholesky(&a, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let s: f64 = (0..3).map(|k| l[i * 3 + k] * l[j * 3 + k]).sum();
                assert!((s - a[i * 3 + j]).abs() < 1e-12);
            }
        }
        assert!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
    }
}

/// Serde for `f64` values that may be infinite or NaN (JSON has no such
/// numbers): finite values as numbers, others as the strings `"inf"`,
/// `"-inf"` and `"nan"`. Finite values round-trip exactly.
pub mod f64_ext {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises `x`.
    ///
    /// # Errors
    /// Those of the serializer.
    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_finite() {
            s.serialize_f64(*x)
        } else if x.is_nan() {
            s.serialize_str("nan")
        } else if *x > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Num(f64),
        Str(String),
    }

    /// Deserialises a value written by [`serialize`].
    ///
    /// # Errors
    /// For anything but a number or one of the three strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Num(x) => Ok(x),
            Repr::Str(s) => match s.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "nan" => Ok(f64::NAN),
                _ => Err(serde::de::Error::custom(format!("{s:?} is not a number"))),
            },
        }
    }
}
