//! Exact stochastic simulation: Gillespie's direct method (Gillespie, 1977,
//! "Exact stochastic simulation of coupled chemical reactions", J. Phys. Chem.
//! 81:2340).
//!
//! Two kernels share one event step ([`Ssa::step`]):
//!
//! - [`Ssa::advance`] moves one particle (a contiguous state vector) to a
//!   target time;
//! - [`Ssa::advance_block`] moves a structure-of-arrays block of particles in
//!   lock-step, one event per active lane per round, compacting the list of
//!   active lanes as particles reach the target time. This is the seam where
//!   the SIMD kernel goes.
//!
//! Each particle consumes its own random stream, and both kernels perform the
//! same floating-point operations in the same order for every particle, so
//! they give bit-identical states, times and event counts (a property test
//! checks this on random networks).
//!
//! A third kernel, [`Ssa::advance_block_simd`], runs the same steps four
//! particles at a time in AVX2 registers ([`avx2`], x86-64 only,
//! chosen at run time when the CPU has AVX2), refilling a register lane
//! with the next particle as soon as its particle is done.
//!
//! Per event the kernel draws from the particle's stream a unit exponential
//! `E` for the waiting time `E/h₀` (by the ziggurat method,
//! [`exp`]: one 64-bit word on its fast path, no logarithm) and
//! then a uniform `u ∈ [0, 1)` for the reaction, chosen as the first `j`
//! with `u·h₀ < Σ_{i≤j} h_i`.
//!
//! # Bit identity between kernels
//! Every kernel performs, for every particle, the same IEEE-754 operations
//! in the same order: only `+ − × ÷` and exact conversions, never a fused
//! multiply-add, so the results do not depend on the instruction set. The
//! exponential's tables are stored bit patterns and its rare slow path uses
//! [`exp::ln_unit`], fdlibm's logarithm written with those operations only, never
//! the C library's `log` or `exp` (whose last bit differs between libraries
//! and cannot be vectorised identically).
//!
//! # Stopping rules
//! - zero total hazard: the state is absorbing and the particle jumps to the
//!   target time (this is exact, not an approximation);
//! - the population cap: a species whose count exceeds its cap stops the
//!   trajectory and the particle is flagged [`Outcome::Capped`]; the filter
//!   gives it weight zero (the model is the process killed at the cap). A
//!   non-finite total hazard (rates so large that the hazard overflows) counts
//!   as a cap hit too;
//! - the event limit: more than `max_events` events in one call flags
//!   [`Outcome::EventLimit`], also weight zero. It guards networks (e.g. fast
//!   reversible pairs at extreme rates) that the cap cannot stop.
//!
//! # Layout
//! This file is the face: [`Ssa`] (a network compiled at one θ), its shared
//! types and the dispatch to a kernel ([`Ssa::propagate`]). Beside it:
//! `shape` (network structures the kernels compile in), `scalar` (one
//! particle at a time, [`Ssa::advance`]), `block` (structure-of-arrays
//! lanes in lock-step, [`Ssa::advance_block`]), [`avx2`] (four lanes per
//! register) and [`exp`] (the ziggurat exponential and [`exp::ln_unit`]).

#[cfg(target_arch = "x86_64")]
pub mod avx2;
mod block;
pub mod exp;
mod scalar;
mod shape;

pub use block::BlockScratch;

use crate::model::Network;
use crate::rng::{StreamKey, rng_from_state};
use rand::Rng;
use serde::{Deserialize, Serialize};
use shape::{
    AnyNetwork, Kind, KnownShape, LotkaVolterra, PredationBirth, Propensity, SMALL, SmallNet,
};

/// Which SSA kernel propagates particles. All three give bit-identical
/// results; they differ only in speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelChoice {
    /// One particle at a time ([`Ssa::advance`]).
    Scalar,
    /// A block in lock-step, one particle after another per round
    /// ([`Ssa::advance_block`]).
    Batch,
    /// Four particles per AVX2 register ([`Ssa::advance_block_simd`]); the
    /// block kernel on CPUs without AVX2 or for networks it does not cover.
    /// The default: the fastest, with the same results.
    #[default]
    Simd,
}

impl KernelChoice {
    /// The kernel's name as written in job files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            KernelChoice::Scalar => "scalar",
            KernelChoice::Batch => "batch",
            KernelChoice::Simd => "simd",
        }
    }

    /// Parses a kernel name (`scalar`, `batch` or `simd`).
    pub fn parse(name: &str) -> Option<KernelChoice> {
        [
            KernelChoice::Scalar,
            KernelChoice::Batch,
            KernelChoice::Simd,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// A view of one particle's state, however it is laid out in memory.
pub trait StateView {
    /// Count of species `s`.
    fn get(&self, s: usize) -> u64;
    /// Adds `d` to species `s` (the caller guarantees the result is ≥ 0).
    fn add(&mut self, s: usize, d: i64);
}

impl StateView for [u64] {
    #[inline(always)]
    fn get(&self, s: usize) -> u64 {
        self[s]
    }
    #[inline(always)]
    fn add(&mut self, s: usize, d: i64) {
        self[s] = self[s].wrapping_add_signed(d);
    }
}

/// One lane of a structure-of-arrays block: species `s` of lane `j` is at
/// `data[s * stride + j]`.
pub struct Lane<'a> {
    data: &'a mut [u64],
    lane: usize,
    stride: usize,
}

impl<'a> Lane<'a> {
    /// A view of lane `lane` of a block with the given stride (block width).
    pub fn new(data: &'a mut [u64], lane: usize, stride: usize) -> Self {
        Lane { data, lane, stride }
    }
}

impl StateView for Lane<'_> {
    #[inline(always)]
    fn get(&self, s: usize) -> u64 {
        self.data[s * self.stride + self.lane]
    }
    #[inline(always)]
    fn add(&mut self, s: usize, d: i64) {
        let v = &mut self.data[s * self.stride + self.lane];
        *v = v.wrapping_add_signed(d);
    }
}

/// How a call to the kernel ended for one particle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The particle reached the target time.
    Reached,
    /// A species exceeded its population cap (or the hazard overflowed).
    Capped,
    /// The event limit was hit.
    EventLimit,
}

/// Result of one event step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// An event happened and the particle continues.
    Event,
    /// An event happened and took a species over its cap.
    CappedEvent,
    /// The particle stopped without an event: it reached the target time
    /// ([`Outcome::Reached`]) or its total hazard overflowed
    /// ([`Outcome::Capped`]).
    Done(Outcome),
}

impl Step {
    /// Whether this step is an event, and how the trajectory ends if it ends here.
    #[inline(always)]
    fn resolve(self) -> (u64, Option<Outcome>) {
        match self {
            Step::Event => (1, None),
            Step::CappedEvent => (1, Some(Outcome::Capped)),
            Step::Done(o) => (0, Some(o)),
        }
    }
}

/// Counters accumulated over kernel calls. Sums of integers, so they do not
/// depend on the order in which particles are processed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SsaCounters {
    /// Reaction events simulated.
    pub events: u64,
    /// Trajectories stopped by the population cap.
    pub cap_hits: u64,
    /// Events simulated by trajectories that then hit the cap.
    pub cap_events: u64,
    /// Trajectories stopped by the event limit.
    pub limit_hits: u64,
}

impl SsaCounters {
    /// Adds another set of counters to this one.
    pub fn add(&mut self, o: &SsaCounters) {
        self.events += o.events;
        self.cap_hits += o.cap_hits;
        self.cap_events += o.cap_events;
        self.limit_hits += o.limit_hits;
    }

    pub(crate) fn record(&mut self, outcome: Outcome, events: u64) {
        self.events += events;
        match outcome {
            Outcome::Reached => {}
            Outcome::Capped => {
                self.cap_hits += 1;
                self.cap_events += events;
            }
            Outcome::EventLimit => self.limit_hits += 1,
        }
    }
}

/// A network compiled for simulation at one parameter value: flat reactant
/// and change lists, per-reaction rate constants, caps and the event limit.
#[derive(Debug, Clone)]
pub struct Ssa {
    n_species: usize,
    rates: Vec<f64>,
    props: Vec<Propensity>,
    react_off: Vec<usize>,
    react: Vec<(usize, u32)>,
    /// Net changes, `width` entries per reaction, padded with `(0, 0)` so the
    /// update loop has a fixed trip count.
    change: Vec<(usize, i64)>,
    width: usize,
    caps: Vec<u64>,
    max_events: u64,
    /// Whether every hazard is a product `θ·x_a·x_b` (sources and first- and
    /// second-order reactions of at most [`SMALL`] species): the fast path
    /// of [`Ssa::hazards`], with `a`, `b` = `n_species` standing for 1.
    products: bool,
    /// The specialised scalar kernel's layout, when it covers this network
    /// and caps.
    small: Option<SmallNet>,
    /// The AVX2 kernel's layout, when it covers this network and caps.
    #[cfg(target_arch = "x86_64")]
    simd: Option<avx2::Plan>,
}

impl Ssa {
    /// Compiles `net` for simulation with parameters `theta`.
    ///
    /// `caps[s]` is the population cap of species `s` (`u64::MAX` for none)
    /// and `max_events` the event limit per call.
    ///
    /// # Panics
    /// If `theta` or `caps` are shorter than the network's parameter or
    /// species lists (programming errors; the filter validates both).
    pub fn new(net: &Network, theta: &[f64], caps: &[u64], max_events: u64) -> Self {
        Self::with_rates(net, net.rates(theta), caps, max_events)
    }

    /// Compiles `net` for simulation with per-reaction rate constants
    /// `rates` (θ's rates times any covariate factors).
    ///
    /// # Panics
    /// If `rates` or `caps` are shorter than the network's reaction or
    /// species lists.
    pub fn with_rates(net: &Network, rates: Vec<f64>, caps: &[u64], max_events: u64) -> Self {
        let mut react_off = vec![0];
        let mut react = Vec::new();
        let width = net
            .reactions()
            .iter()
            .map(|r| r.change.len())
            .max()
            .unwrap_or(1);
        let mut change = Vec::new();
        for r in net.reactions() {
            react.extend_from_slice(&r.reactants);
            react_off.push(react.len());
            change.extend_from_slice(&r.change);
            change.resize(change.len() + width - r.change.len(), (0, 0));
        }
        let mut props = net
            .reactions()
            .iter()
            .zip(&rates)
            .map(|(r, &rate)| {
                let (kind, a, b) = match r.reactants.as_slice() {
                    [] => (Kind::Source, 0, 0),
                    [(a, 1)] => (Kind::First, *a, 0),
                    [(a, 2)] => (Kind::Dimer, *a, 0),
                    [(a, 1), (b, 1)] => (Kind::Second, *a, *b),
                    _ => (Kind::General, 0, 0),
                };
                Propensity { rate, a, b, kind }
            })
            .collect::<Vec<_>>();
        #[cfg(target_arch = "x86_64")]
        let simd = {
            let mut changes = vec![Vec::new(); net.species().len()];
            for (j, r) in net.reactions().iter().enumerate() {
                for &(s, d) in &r.change {
                    changes[s].push((j, d));
                }
            }
            avx2::Plan::new(&props, changes, &caps[..net.species().len()], max_events)
        };
        let n_species = net.species().len();
        let products = n_species <= SMALL
            && props
                .iter()
                .all(|p| matches!(p.kind, Kind::Source | Kind::First | Kind::Second));
        if products {
            for p in &mut props {
                match p.kind {
                    Kind::Source => (p.a, p.b) = (n_species, n_species),
                    Kind::First => p.b = n_species,
                    _ => {}
                }
            }
        }
        let mut ssa = Ssa {
            products,
            n_species,
            small: None,
            #[cfg(target_arch = "x86_64")]
            simd,
            props,
            rates,
            react_off,
            react,
            change,
            width,
            caps: caps[..net.species().len()].to_vec(),
            max_events,
        };
        ssa.small = SmallNet::new(&ssa);
        ssa
    }

    /// Number of species.
    pub fn n_species(&self) -> usize {
        self.n_species
    }

    /// Number of reactions.
    pub fn n_reactions(&self) -> usize {
        self.rates.len()
    }

    /// The network's [`Shape`] when the kernels have it written out (and
    /// every cap is below 2^51).
    pub(crate) fn known_shape(&self) -> Option<KnownShape> {
        self.small.as_ref().and_then(|n| n.shape)
    }
    /// Whether [`Ssa::advance_block_simd`] runs the AVX2 kernel here: the
    /// CPU has AVX2 and the network is within the kernel's limits (reactions
    /// of at most two reactant molecules, at most 16 species and 32
    /// reactions, caps below 2^51).
    pub fn simd_active(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.simd.is_some() && avx2::available()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Like [`Ssa::advance_block`], lane `j` drawing from the xoshiro256++
    /// generator with state `states[j]` (see
    /// [`StreamKey::state`](crate::rng::StreamKey::state)), four lanes per
    /// AVX2 register when [`Ssa::simd_active`], else through the block
    /// kernel. Bit-identical to [`Ssa::advance`] on each lane either way.
    pub fn advance_block_simd(
        &self,
        block: &mut [u64],
        stride: usize,
        t0: f64,
        t_end: f64,
        states: &[[u64; 4]],
        outcomes: &mut [Outcome],
        scratch: &mut BlockScratch,
    ) -> SsaCounters {
        #[cfg(target_arch = "x86_64")]
        if let Some(plan) = &self.simd
            && avx2::available()
        {
            use avx2::advance;
            let run = match self.known_shape() {
                Some(KnownShape::LotkaVolterra(1)) => advance::<LotkaVolterra<1>>,
                Some(KnownShape::LotkaVolterra(2)) => advance::<LotkaVolterra<2>>,
                Some(KnownShape::LotkaVolterra(3)) => advance::<LotkaVolterra<3>>,
                Some(KnownShape::PredationBirth) => advance::<PredationBirth>,
                _ => advance::<AnyNetwork>,
            };
            // SAFETY: the CPU supports AVX2 (checked just above), and the
            // shape is the network's or `AnyNetwork`.
            return unsafe { run(self, plan, block, stride, t0, t_end, states, outcomes) };
        }
        let mut rngs = std::mem::take(&mut scratch.rngs);
        rngs.clear();
        rngs.extend(states.iter().map(|s| rng_from_state(*s)));
        let c = self.advance_block(block, stride, t0, t_end, &mut rngs, outcomes, scratch);
        scratch.rngs = rngs;
        c
    }
    /// Advances particles `0..len` of a structure-of-arrays block
    /// (`block[s * stride + j]`) from `t0` to `t_end` with the chosen
    /// kernel, particle `j` drawing from the stream `key(j)`. Writes
    /// outcomes into `outcomes[..len]` and returns the summed counters; the
    /// result does not depend on the kernel. This is the one entry point of
    /// every executor's propagation.
    pub fn propagate(
        &self,
        kernel: KernelChoice,
        block: &mut [u64],
        stride: usize,
        len: usize,
        t0: f64,
        t_end: f64,
        key: impl Fn(usize) -> StreamKey,
        outcomes: &mut [Outcome],
        scratch: &mut BlockScratch,
    ) -> SsaCounters {
        let outcomes = &mut outcomes[..len];
        match kernel {
            KernelChoice::Scalar => {
                let mut counters = SsaCounters::default();
                let BlockScratch { x, lanes, .. } = scratch;
                x.resize(self.n_species, 0);
                lanes.cum.resize(self.rates.len().max(lanes.cum.len()), 0.0);
                for (j, o) in outcomes.iter_mut().enumerate() {
                    for (s, v) in x.iter_mut().enumerate() {
                        *v = block[s * stride + j];
                    }
                    let mut rng = key(j).rng();
                    *o =
                        self.advance_counted(x, t0, t_end, &mut rng, &mut lanes.cum, &mut counters);
                    for (s, v) in x.iter().enumerate() {
                        block[s * stride + j] = *v;
                    }
                }
                counters
            }
            KernelChoice::Batch => {
                let mut rngs = std::mem::take(&mut scratch.rngs);
                rngs.clear();
                rngs.extend((0..len).map(|j| key(j).rng()));
                let c = self.advance_block(block, stride, t0, t_end, &mut rngs, outcomes, scratch);
                scratch.rngs = rngs;
                c
            }
            KernelChoice::Simd => {
                let mut states = std::mem::take(&mut scratch.states);
                states.clear();
                states.extend((0..len).map(|j| key(j).state()));
                let c =
                    self.advance_block_simd(block, stride, t0, t_end, &states, outcomes, scratch);
                scratch.states = states;
                c
            }
        }
    }

    /// Like [`Ssa::advance`], recording the outcome into `counters`.
    pub fn advance_counted<R: Rng + ?Sized>(
        &self,
        x: &mut [u64],
        t: f64,
        t_end: f64,
        rng: &mut R,
        cum: &mut [f64],
        counters: &mut SsaCounters,
    ) -> Outcome {
        let (o, e) = self.advance(x, t, t_end, rng, cum);
        counters.record(o, e);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, StreamKey};

    #[test]
    fn absorbing_state_jumps_to_end() {
        // LV with no prey and no predators: all hazards zero.
        let net = Network::lotka_volterra(1).unwrap();
        let ssa = Ssa::new(&net, &[1.0, 0.005, 0.6], &[u64::MAX; 2], u64::MAX);
        let mut x = [0u64, 0];
        let mut rng = StreamKey::new(1, 0, 0, 0, 0, Purpose::Test).rng();
        let mut cum = [0.0; 3];
        assert_eq!(
            ssa.advance(&mut x, 0.0, 10.0, &mut rng, &mut cum),
            (Outcome::Reached, 0)
        );
    }

    #[test]
    fn specialised_scalar_paths_are_chosen_by_shape() {
        for k in 1..=3 {
            let net = Network::lotka_volterra(k).unwrap();
            let theta = vec![1.0; net.parameters().len()];
            let ssa = Ssa::new(&net, &theta, &vec![1000; k + 1], 1000);
            assert_eq!(ssa.known_shape(), Some(KnownShape::LotkaVolterra(k)));
            // No cap below 2^51: the generic step.
            let ssa = Ssa::new(&net, &theta, &vec![u64::MAX; k + 1], 1000);
            assert!(ssa.small.is_none());
        }
        // Four predators: beyond the specialised sizes.
        let net = Network::lotka_volterra(4).unwrap();
        let ssa = Ssa::new(&net, &[1.0; 9], &[1000; 5], 1000);
        assert!(ssa.small.is_none());
        // A product network of another shape: the fixed-size path only.
        let net = Network::immigration_death();
        let ssa = Ssa::new(&net, &[1.0, 1.0], &[1000], 1000);
        assert!(ssa.small.is_some());
        assert_eq!(ssa.known_shape(), None);
    }

    #[test]
    fn written_out_shapes_are_recognised_exactly() {
        for k in 1..=3 {
            let net = Network::lotka_volterra(k).unwrap();
            let ssa = Ssa::new(&net, &vec![1.0; 2 * k + 1], &vec![1000; k + 1], 1000);
            assert_eq!(ssa.known_shape(), Some(KnownShape::LotkaVolterra(k)));
        }
        let hare_lynx = Network::predation_birth_with;
        let shape = |net: &Network| Ssa::new(net, &[1.0; 4], &[1000; 2], 1000).known_shape();
        assert_eq!(shape(&hare_lynx(2)), Some(KnownShape::PredationBirth));
        // One molecule more in a product: another network, the plan's path.
        assert_eq!(shape(&hare_lynx(3)), None);
        // No cap below 2^51: no written-out shape either.
        let net = hare_lynx(2);
        let ssa = Ssa::new(&net, &[1.0; 4], &[u64::MAX; 2], 1000);
        assert_eq!(ssa.known_shape(), None);
    }

    #[test]
    fn cap_and_limit() {
        // Prey only: pure birth explodes; the cap stops it.
        let net = Network::lotka_volterra(1).unwrap();
        let ssa = Ssa::new(&net, &[1.0, 0.005, 0.6], &[1000, u64::MAX], u64::MAX);
        let mut x = [10u64, 0];
        let mut rng = StreamKey::new(1, 0, 0, 0, 0, Purpose::Test).rng();
        let mut cum = [0.0; 3];
        let (o, e) = ssa.advance(&mut x, 0.0, 100.0, &mut rng, &mut cum);
        assert_eq!(o, Outcome::Capped);
        assert_eq!(x[0], 1001);
        assert_eq!(e, 991);
        let ssa = Ssa::new(&net, &[1.0, 0.005, 0.6], &[u64::MAX; 2], 50);
        let mut x = [10u64, 0];
        let (o, e) = ssa.advance(&mut x, 0.0, 100.0, &mut rng, &mut cum);
        assert_eq!((o, e), (Outcome::EventLimit, 50));
        // Overflowing hazard counts as a cap hit.
        let ssa = Ssa::new(&net, &[1e308, 1e308, 0.6], &[u64::MAX; 2], u64::MAX);
        let mut x = [10u64, 10];
        let (o, _) = ssa.advance(&mut x, 0.0, 1.0, &mut rng, &mut cum);
        assert_eq!(o, Outcome::Capped);
    }
}
