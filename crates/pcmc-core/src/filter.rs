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
//!    (stream: `Initial`, step 0, particle index).
//! 2. For each observation `k` at time `t_k`: propagate every particle exactly
//!    from `t_{k−1}` (or `t0`) to `t_k` (stream: `Propagate`, step `k`, particle
//!    index); weight it by the observation density; add
//!    `M + ln(Σ q_i / 2^62) − ln N` to the log-likelihood; unless `k` is the last
//!    observation, resample (stream: `Resample`, step `k`).
//! 3. If every weight is zero (all particles capped or impossible), the
//!    estimate is −∞ and the pass stops: no NaN is ever produced.

use crate::error::{Error, Result};
use crate::model::Network;
use crate::observation::{Data, InitialPrior, ObservationModel};
use crate::resample::{self, MAX_PARTICLES, Resampling};
use crate::rng::{Purpose, StreamKey, Xoshiro256PlusPlus};
use crate::ssa::{BlockScratch, Outcome, Ssa, SsaCounters};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Particles per block: the unit of parallel work and of the batch kernel.
pub const BLOCK: usize = 16;

/// Which SSA kernel propagates particles. Both give identical results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelChoice {
    /// One particle at a time ([`Ssa::advance`]).
    #[default]
    Scalar,
    /// A block in lock-step ([`Ssa::advance_block`]).
    Batch,
}

/// Settings of the particle filter.
#[derive(Debug, Clone, PartialEq)]
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

impl FilterConfig {
    /// Defaults for `n_species` species: systematic resampling, scalar
    /// kernel, every species capped at [`DEFAULT_CAP`], event limit
    /// [`DEFAULT_MAX_EVENTS`].
    pub fn new(particles: usize, n_species: usize) -> Self {
        FilterConfig {
            particles,
            resampling: Resampling::Systematic,
            kernel: KernelChoice::Scalar,
            caps: vec![DEFAULT_CAP; n_species],
            max_events: DEFAULT_MAX_EVENTS,
        }
    }
}

/// Everything a filter pass needs except θ and the random key.
#[derive(Debug, Clone)]
pub struct FilterProblem {
    network: Network,
    data: Data,
    observation: ObservationModel,
    initial: InitialPrior,
    t0: f64,
    config: FilterConfig,
}

impl FilterProblem {
    /// Validates and assembles a filtering problem. `t0` is the time of the
    /// initial state (at most the first observation time).
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
        observation.validate(&data)?;
        if initial.means().len() != network.species().len() {
            return Err(Error::setting(
                "initial.means",
                "one mean per species is needed",
            ));
        }
        if !t0.is_finite() || t0 > data.times()[0] {
            return Err(Error::setting(
                "initial.time",
                format!(
                    "{t0} must be finite and not after the first observation time {}",
                    data.times()[0]
                ),
            ));
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
        if data
            .observed()
            .iter()
            .any(|s| *s >= network.species().len())
        {
            return Err(Error::Data("the data were built for another model".into()));
        }
        Ok(FilterProblem {
            network,
            data,
            observation,
            initial,
            t0,
            config,
        })
    }

    /// The model.
    pub fn network(&self) -> &Network {
        &self.network
    }
    /// The data.
    pub fn data(&self) -> &Data {
        &self.data
    }
    /// The observation model.
    pub fn observation(&self) -> &ObservationModel {
        &self.observation
    }
    /// The initial-state prior.
    pub fn initial(&self) -> &InitialPrior {
        &self.initial
    }
    /// Time of the initial state.
    pub fn t0(&self) -> f64 {
        self.t0
    }
    /// Filter settings.
    pub fn config(&self) -> &FilterConfig {
        &self.config
    }
    /// Number of particles.
    pub fn particles(&self) -> usize {
        self.config.particles
    }
    /// Returns a copy with another particle count.
    ///
    /// # Errors
    /// [`Error::Setting`] if `n` is 0 or above 2^32.
    pub fn with_particles(&self, n: usize) -> Result<Self> {
        let mut config = self.config.clone();
        config.particles = n;
        FilterProblem::new(
            self.network.clone(),
            self.data.clone(),
            self.observation.clone(),
            self.initial.clone(),
            self.t0,
            config,
        )
    }
}

/// Identifies one filter pass: its random streams are keyed by these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
}

impl StageTimes {
    /// Adds another set of stage times.
    pub fn add(&mut self, o: &StageTimes) {
        self.propagate += o.propagate;
        self.weight += o.weight;
        self.resample += o.resample;
        self.communicate += o.communicate;
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
}

/// Maps a function over blocks, serially or in parallel.
///
/// Implementations must call `f` exactly once per item and return the results
/// in item order; they may use any number of threads.
pub trait BlockRunner: Sync {
    /// Number of worker threads used.
    fn workers(&self) -> usize;
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

/// Per-block scratch space reused across passes.
#[derive(Debug, Default, Clone)]
struct BlockWork {
    scratch: BlockScratch,
    rngs: Vec<Xoshiro256PlusPlus>,
    outcomes: Vec<Outcome>,
    cum: Vec<f64>,
    x: Vec<u64>,
    offspring: Vec<u64>,
}

/// Buffers of a filter, reused across passes so that the hot loop does not
/// allocate.
#[derive(Debug, Default)]
pub struct Workspace {
    counts: Vec<u64>,
    next: Vec<u64>,
    lw: Vec<f64>,
    q: Vec<u64>,
    ancestors: Vec<usize>,
    offspring: Vec<u64>,
    work: Vec<BlockWork>,
}

struct Item<'a> {
    block: usize,
    len: usize,
    counts: &'a mut [u64],
    lw: &'a mut [f64],
    q: &'a mut [u64],
    work: &'a mut BlockWork,
}

impl Workspace {
    fn prepare(&mut self, n: usize, species: usize) {
        let blocks = n.div_ceil(BLOCK);
        let cells = blocks * BLOCK * species;
        self.counts.resize(cells, 0);
        self.next.resize(cells, 0);
        self.lw.resize(blocks * BLOCK, 0.0);
        self.q.resize(blocks * BLOCK, 0);
        self.ancestors.resize(n, 0);
        self.offspring.resize(n, 0);
        self.work.resize_with(blocks, BlockWork::default);
    }

    fn items(&mut self, n: usize, species: usize) -> Vec<Item<'_>> {
        let blocks = n.div_ceil(BLOCK);
        self.counts
            .chunks_mut(BLOCK * species)
            .zip(self.lw.chunks_mut(BLOCK))
            .zip(self.q.chunks_mut(BLOCK))
            .zip(self.work.iter_mut())
            .take(blocks)
            .enumerate()
            .map(|(b, (((counts, lw), q), work))| Item {
                block: b,
                len: BLOCK.min(n - b * BLOCK),
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
/// on `runner`, reusing the buffers of `ws`.
///
/// A `theta` with a negative or non-finite entry gives a log-likelihood of −∞.
pub fn run_filter<R: BlockRunner>(
    runner: &R,
    problem: &FilterProblem,
    theta: &[f64],
    key: FilterKey,
    ws: &mut Workspace,
) -> FilterOutput {
    let net = &problem.network;
    let cfg = &problem.config;
    let data = &problem.data;
    let n = cfg.particles;
    let species = net.species().len();
    let mut out = FilterOutput {
        loglik: 0.0,
        collapsed_at: None,
        ess: Vec::with_capacity(data.len()),
        counters: SsaCounters::default(),
        times: StageTimes::default(),
    };
    if theta.len() != net.parameters().len() || theta.iter().any(|t| !(t.is_finite() && *t >= 0.0))
    {
        out.loglik = f64::NEG_INFINITY;
        return out;
    }
    let ssa = Ssa::new(net, theta, &cfg.caps, cfg.max_events);
    ws.prepare(n, species);
    let stride = BLOCK;

    // Initial states.
    let t = Instant::now();
    {
        let mut items = ws.items(n, species);
        runner.map(&mut items, |it| {
            for j in 0..it.len {
                let i = (it.block * BLOCK + j) as u64;
                let mut rng = key.stream(Purpose::Initial, 0, i).rng();
                let counts = &mut *it.counts;
                problem
                    .initial
                    .sample_into(&mut rng, |s, v| counts[s * stride + j] = v);
                it.lw[j] = 0.0;
            }
        });
    }
    out.times.propagate += elapsed(t);

    let mut t_prev = problem.t0;
    let ln_n = (n as f64).ln();
    for k in 0..data.len() {
        let t_k = data.times()[k];
        // Propagate.
        if t_k > t_prev {
            let t = Instant::now();
            let mut items = ws.items(n, species);
            let counters = runner.map(&mut items, |it| {
                propagate_block(&ssa, cfg.kernel, it, key, k as u64, t_prev, t_k, species)
            });
            for c in &counters {
                out.counters.add(c);
            }
            out.times.propagate += elapsed(t);
        }
        // Weight and reduce.
        let t = Instant::now();
        let y = data.row(k);
        let obs = data.observed();
        let mut items = ws.items(n, species);
        let maxes = runner.map(&mut items, |it| {
            let mut m = f64::NEG_INFINITY;
            for j in 0..it.len {
                if it.lw[j] == f64::NEG_INFINITY {
                    continue;
                }
                let counts = &*it.counts;
                let lw = problem
                    .observation
                    .log_density(y, obs.iter().map(|s| counts[s * stride + j]));
                it.lw[j] = lw;
                m = m.max(lw);
            }
            m
        });
        let max = maxes.into_iter().fold(f64::NEG_INFINITY, f64::max);
        if max == f64::NEG_INFINITY {
            out.times.weight += elapsed(t);
            out.loglik = f64::NEG_INFINITY;
            out.collapsed_at = Some(k);
            out.ess.push(0.0);
            return out;
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
        let (mut total, mut a1, mut a2) = (0u128, 0u128, 0u128);
        for (s, x, y) in &sums {
            total += s;
            a1 += x;
            a2 += y;
        }
        out.loglik += max + resample::ln_total(total) - ln_n;
        out.ess.push(if a2 == 0 {
            1.0
        } else {
            (a1 as f64) * (a1 as f64) / (a2 as f64)
        });
        out.times.weight += elapsed(t);

        // Resample.
        if k + 1 < data.len() {
            let t = Instant::now();
            resample_population(
                runner,
                cfg.resampling,
                ws,
                n,
                species,
                total,
                &sums,
                key.stream(Purpose::Resample, k as u64, 0),
            );
            out.times.resample += elapsed(t);
        }
        t_prev = t_k;
    }
    out
}

fn propagate_block(
    ssa: &Ssa,
    kernel: KernelChoice,
    it: &mut Item<'_>,
    key: FilterKey,
    step: u64,
    t0: f64,
    t1: f64,
    species: usize,
) -> SsaCounters {
    let w = &mut *it.work;
    let first = (it.block * BLOCK) as u64;
    match kernel {
        KernelChoice::Scalar => {
            let mut counters = SsaCounters::default();
            w.cum.resize(ssa.n_reactions(), 0.0);
            w.x.resize(species, 0);
            for j in 0..it.len {
                if it.lw[j] == f64::NEG_INFINITY {
                    continue;
                }
                for s in 0..species {
                    w.x[s] = it.counts[s * BLOCK + j];
                }
                let mut rng = key.stream(Purpose::Propagate, step, first + j as u64).rng();
                let o = ssa.advance_counted(&mut w.x, t0, t1, &mut rng, &mut w.cum, &mut counters);
                for s in 0..species {
                    it.counts[s * BLOCK + j] = w.x[s];
                }
                if o != Outcome::Reached {
                    it.lw[j] = f64::NEG_INFINITY;
                }
            }
            counters
        }
        KernelChoice::Batch => {
            // All lanes are alive here: propagation follows initialisation or
            // resampling, both of which leave every particle alive.
            w.rngs.clear();
            w.rngs.extend(
                (0..it.len).map(|j| key.stream(Purpose::Propagate, step, first + j as u64).rng()),
            );
            w.outcomes.clear();
            w.outcomes.resize(it.len, Outcome::Reached);
            let c = ssa.advance_block(
                it.counts,
                BLOCK,
                t0,
                t1,
                &mut w.rngs,
                &mut w.outcomes,
                &mut w.scratch,
            );
            for j in 0..it.len {
                if w.outcomes[j] != Outcome::Reached {
                    it.lw[j] = f64::NEG_INFINITY;
                }
            }
            c
        }
    }
}

fn resample_population<R: BlockRunner>(
    runner: &R,
    scheme: Resampling,
    ws: &mut Workspace,
    n: usize,
    species: usize,
    total: u128,
    sums: &[(u128, u128, u128)],
    key: StreamKey,
) {
    if scheme.is_distributable() {
        let mut before = Vec::with_capacity(sums.len());
        let mut c = 0u128;
        for (s, _, _) in sums {
            before.push(c);
            c += s;
        }
        let mut items = ws.items(n, species);
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
        let mut dst = 0;
        for (b, w) in ws.work.iter().enumerate().take(n.div_ceil(BLOCK)) {
            for (j, o) in w.offspring.iter().enumerate() {
                for _ in 0..*o {
                    ws.ancestors[dst] = b * BLOCK + j;
                    dst += 1;
                }
            }
        }
        debug_assert_eq!(dst, n);
    } else {
        resample::offspring_all(scheme, &ws.q[..n], total, n as u64, key, &mut ws.offspring);
        let mut dst = 0;
        for (i, o) in ws.offspring.iter().enumerate() {
            for _ in 0..*o {
                ws.ancestors[dst] = i;
                dst += 1;
            }
        }
    }
    // Copy ancestors into the next buffer, block by block.
    let src = std::mem::take(&mut ws.counts);
    std::mem::swap(&mut ws.counts, &mut ws.next);
    let ancestors_buf = std::mem::take(&mut ws.ancestors);
    {
        let (ancestors, src) = (&ancestors_buf, &src);
        let mut items = ws.items(n, species);
        runner.map(&mut items, |it| {
            for j in 0..it.len {
                let a = ancestors[it.block * BLOCK + j];
                let (ab, aj) = (a / BLOCK, a % BLOCK);
                let base = ab * BLOCK * species;
                for s in 0..species {
                    it.counts[s * BLOCK + j] = src[base + s * BLOCK + aj];
                }
                it.lw[j] = 0.0;
            }
        });
    }
    ws.ancestors = ancestors_buf;
    ws.next = src;
}
