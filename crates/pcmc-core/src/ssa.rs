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
//! particles at a time in AVX2 registers (module `simd`, x86-64 only,
//! chosen at run time when the CPU has AVX2), refilling a register lane
//! with the next particle as soon as its particle is done.
//!
//! Per event the kernel draws from the particle's stream a unit exponential
//! `E` for the waiting time `E/h₀` (by the ziggurat method,
//! [`crate::ziggurat`]: one 64-bit word on its fast path, no logarithm) and
//! then a uniform `u ∈ [0, 1)` for the reaction, chosen as the first `j`
//! with `u·h₀ < Σ_{i≤j} h_i`.
//!
//! # Bit identity between kernels
//! Every kernel performs, for every particle, the same IEEE-754 operations
//! in the same order: only `+ − × ÷` and exact conversions, never a fused
//! multiply-add, so the results do not depend on the instruction set. The
//! exponential's tables are stored bit patterns and its rare slow path uses
//! [`ln_unit`], fdlibm's logarithm written with those operations only, never
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

use crate::model::Network;
use crate::rng::{StreamKey, Xoshiro256PlusPlus, rng_from_state};
use crate::ziggurat::exp1;
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

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
    simd: Option<crate::simd::Plan>,
}

/// Most species of the specialised scalar kernel.
pub(crate) const SMALL_SPECIES: usize = 4;
/// Most reactions of the specialised scalar kernel.
pub(crate) const SMALL_REACTIONS: usize = 8;

/// A network structure known at compile time, for kernels written out per
/// structure (every index a constant, so that counts and hazards stay in
/// registers): `NS ≤ SMALL_SPECIES` species, `NR ≤ SMALL_REACTIONS`
/// reactions, each with hazard `(θ_j·x_{A[j]})·x_{B[j]}` (an index `≥ NS`
/// stands for the constant 1) and net change `D[j][s]` of species `s`.
/// `NR = 0` stands for "any network" (the kernel's generic path).
pub(crate) trait Shape {
    const NS: usize;
    const NR: usize;
    const A: [usize; SMALL_REACTIONS];
    const B: [usize; SMALL_REACTIONS];
    const D: [[i64; SMALL_SPECIES]; SMALL_REACTIONS];
}

/// No structure known at compile time.
pub(crate) struct AnyNetwork;

impl Shape for AnyNetwork {
    const NS: usize = 0;
    const NR: usize = 0;
    const A: [usize; SMALL_REACTIONS] = [0; SMALL_REACTIONS];
    const B: [usize; SMALL_REACTIONS] = [0; SMALL_REACTIONS];
    const D: [[i64; SMALL_SPECIES]; SMALL_REACTIONS] = [[0; SMALL_SPECIES]; SMALL_REACTIONS];
}

/// Lotka–Volterra with `K` predators (1 to 3) in
/// [`Network::lotka_volterra`]'s order: species `prey, pred1..K`,
/// reactions `birth, predation1..K, death1..K`.
pub(crate) struct LotkaVolterra<const K: usize>;

impl<const K: usize> Shape for LotkaVolterra<K> {
    const NS: usize = K + 1;
    const NR: usize = 2 * K + 1;
    const A: [usize; SMALL_REACTIONS] = {
        // birth and predation: the prey; death i: predator i.
        let mut a = [0; SMALL_REACTIONS];
        let mut i = 0;
        while i < K {
            a[1 + K + i] = 1 + i;
            i += 1;
        }
        a
    };
    const B: [usize; SMALL_REACTIONS] = {
        // birth and deaths: 1; predation i: predator i.
        let mut b = [K + 1; SMALL_REACTIONS];
        let mut i = 0;
        while i < K {
            b[1 + i] = 1 + i;
            i += 1;
        }
        b
    };
    const D: [[i64; SMALL_SPECIES]; SMALL_REACTIONS] = {
        let mut d = [[0; SMALL_SPECIES]; SMALL_REACTIONS];
        d[0][0] = 1;
        let mut i = 0;
        while i < K {
            d[1 + i][0] = -1;
            d[1 + i][1 + i] = 1;
            d[1 + K + i][1 + i] = -1;
            i += 1;
        }
        d
    };
}

/// The hare–lynx job's predator–prey network: species `prey, predator`,
/// reactions prey birth `x → 2x`, predation `x + y → y`, predator birth
/// `x + y → x + 2y`, predator death `y → ∅` (predation and predator
/// reproduction with separate rates).
pub(crate) struct PredationBirth;

impl Shape for PredationBirth {
    const NS: usize = 2;
    const NR: usize = 4;
    const A: [usize; SMALL_REACTIONS] = [0, 0, 0, 1, 0, 0, 0, 0];
    const B: [usize; SMALL_REACTIONS] = [2, 1, 1, 2, 2, 2, 2, 2];
    const D: [[i64; SMALL_SPECIES]; SMALL_REACTIONS] = {
        let mut d = [[0; SMALL_SPECIES]; SMALL_REACTIONS];
        d[0][0] = 1;
        d[1][0] = -1;
        d[2][1] = 1;
        d[3][1] = -1;
        d
    };
}

/// The [`Shape`]s the kernels have written out, as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KnownShape {
    LotkaVolterra(usize),
    PredationBirth,
}

/// A small product network (at most [`SMALL_SPECIES`] species and
/// [`SMALL_REACTIONS`] reactions, every hazard `(θ·x_a)·x_b`, caps below
/// 2^51) laid out for [`Ssa::advance_small`]: fixed-size arrays that the
/// compiler keeps in registers and unrolls, one instance per reaction
/// count. Index [`SMALL_SPECIES`] of the state stands for the constant 1.
#[derive(Debug, Clone)]
struct SmallNet {
    reactions: usize,
    rate: [f64; SMALL_REACTIONS],
    a: [usize; SMALL_REACTIONS],
    b: [usize; SMALL_REACTIONS],
    /// Net change of each species per reaction (0 for padding species).
    delta: [[i64; SMALL_SPECIES]; SMALL_REACTIONS],
    /// Whether the reaction increases the species (the cap test).
    grows: [[bool; SMALL_SPECIES]; SMALL_REACTIONS],
    caps: [u64; SMALL_SPECIES],
    /// The network's [`Shape`], if the kernels know it: then
    /// [`Ssa::advance_shape`] runs it, with its structure compiled in.
    shape: Option<KnownShape>,
}

impl SmallNet {
    /// Whether this network, of `ns` species, has shape `S`.
    fn has<S: Shape>(&self, ns: usize) -> bool {
        let one = |i: usize| i.min(ns);
        ns == S::NS
            && self.reactions == S::NR
            && (0..S::NR).all(|j| {
                one(self.a[j]) == one(S::A[j])
                    && one(self.b[j]) == one(S::B[j])
                    && self.delta[j][..ns] == S::D[j][..ns]
            })
    }

    /// The network's shape among those the kernels know.
    fn known_shape(&self, ns: usize) -> Option<KnownShape> {
        if self.has::<LotkaVolterra<1>>(ns) {
            Some(KnownShape::LotkaVolterra(1))
        } else if self.has::<LotkaVolterra<2>>(ns) {
            Some(KnownShape::LotkaVolterra(2))
        } else if self.has::<LotkaVolterra<3>>(ns) {
            Some(KnownShape::LotkaVolterra(3))
        } else if self.has::<PredationBirth>(ns) {
            Some(KnownShape::PredationBirth)
        } else {
            None
        }
    }

    fn new(ssa: &Ssa) -> Option<SmallNet> {
        let (ns, nr) = (ssa.n_species, ssa.rates.len());
        if !ssa.products
            || ns > SMALL_SPECIES
            || nr == 0
            || nr > SMALL_REACTIONS
            || ssa.caps.iter().any(|&c| c >= 1 << 51)
            || ssa.change.iter().any(|&(_, d)| d.unsigned_abs() >= 1 << 32)
        {
            return None;
        }
        let one = |i: usize| if i == ns { SMALL_SPECIES } else { i };
        let mut net = SmallNet {
            reactions: nr,
            rate: [0.0; SMALL_REACTIONS],
            a: [SMALL_SPECIES; SMALL_REACTIONS],
            b: [SMALL_SPECIES; SMALL_REACTIONS],
            delta: [[0; SMALL_SPECIES]; SMALL_REACTIONS],
            grows: [[false; SMALL_SPECIES]; SMALL_REACTIONS],
            caps: [u64::MAX; SMALL_SPECIES],
            shape: None,
        };
        for (j, p) in ssa.props.iter().enumerate() {
            net.rate[j] = p.rate;
            net.a[j] = one(p.a);
            net.b[j] = one(p.b);
            for &(s, d) in &ssa.change[j * ssa.width..(j + 1) * ssa.width] {
                net.delta[j][s] += d;
                net.grows[j][s] |= d > 0;
            }
        }
        net.caps[..ns].copy_from_slice(&ssa.caps);
        net.shape = net.known_shape(ns);
        Some(net)
    }
}

/// The shape of a reaction's hazard, so that the common mass-action forms
/// are evaluated without a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `θ` (no reactants).
    Source,
    /// `θ·x_a`.
    First,
    /// `θ·x_a·x_b`, a ≠ b.
    Second,
    /// `θ·x_a(x_a − 1)/2`.
    Dimer,
    /// Anything else: the general product of binomial coefficients.
    General,
}

/// One reaction's hazard: `kind` with rate constant `rate` and reactant
/// species `a`, `b` (shared by the scalar and AVX2 kernels).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Propensity {
    pub(crate) rate: f64,
    pub(crate) a: usize,
    pub(crate) b: usize,
    pub(crate) kind: Kind,
}

/// Networks of at most this many species get the branch-free hazard path.
const SMALL: usize = 16;

/// Binomial coefficient C(x, k) as f64, 0 when x < k.
#[inline(always)]
fn falling(x: u64, k: u32) -> f64 {
    match k {
        1 => x as f64,
        2 => {
            if x < 2 {
                0.0
            } else {
                (x as f64) * ((x - 1) as f64) * 0.5
            }
        }
        _ => {
            if x < u64::from(k) {
                return 0.0;
            }
            let mut c = 1.0;
            for i in 0..u64::from(k) {
                c *= (x - i) as f64 / (i + 1) as f64;
            }
            c
        }
    }
}

/// fdlibm's polynomial coefficients for `ln((1+s)/(1−s)) = 2s + s·R(s²)`
/// (Sun Microsystems' `e_log.c`, freely distributable).
pub(crate) const LG: [f64; 7] = [
    f64::from_bits(0x3FE5_5555_5555_5593),
    f64::from_bits(0x3FD9_9999_9997_FA04),
    f64::from_bits(0x3FD2_4924_9422_9359),
    f64::from_bits(0x3FCC_71C5_1D8E_78AF),
    f64::from_bits(0x3FC7_4664_96CB_03DE),
    f64::from_bits(0x3FC3_9A09_D078_C69F),
    f64::from_bits(0x3FC2_F112_DF3E_5244),
];
/// `ln 2` split so that `k·LN2_HI` is exact for |k| < 2^11.
pub(crate) const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
/// The rest of `ln 2`.
pub(crate) const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
/// Mantissa bits of an f64.
pub(crate) const MANTISSA: u64 = (1 << 52) - 1;

/// Natural logarithm of a positive normal `x` (used for `x ∈ (0, 1]`),
/// within 1 ulp, by fdlibm's method (Sun Microsystems, `e_log.c`): write
/// `x = 2^k·m` with `m ∈ [√½, √2)`, `f = m − 1`, `s = f/(2+f)`, and
/// `ln m = f − (f²/2 − s·(f²/2 + R(s²)))` with a degree-14 polynomial `R`.
///
/// It uses only `+ − × ÷` in a fixed order (no fused multiply-add), so the
/// AVX2 kernel, which performs the same operations four lanes at a time,
/// gets the same bits. Not for zero, subnormal, negative or non-finite `x`.
#[inline(always)]
pub fn ln_unit(x: f64) -> f64 {
    let bits = x.to_bits();
    let m = f64::from_bits((bits & MANTISSA) | 1.0f64.to_bits());
    let e = (bits >> 52) as f64 - 1023.0;
    let (m, k) = if m > std::f64::consts::SQRT_2 {
        (m * 0.5, e + 1.0)
    } else {
        (m, e)
    };
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG[1] + w * (LG[3] + w * LG[5]));
    let t2 = z * (LG[0] + w * (LG[2] + w * (LG[4] + w * LG[6])));
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// The time part of one event of the direct method, shared by every scalar
/// path: with total hazard `h0` at time `*t`, either the particle stops
/// (`Err`: zero hazard or the target time passed — `*t` becomes `t_end` —
/// or an overflowed hazard) or the event happens at `*t + E/h0`, `E` a unit
/// exponential, and the reaction's target `u·h0` is returned.
#[inline(always)]
fn waiting_time<R: Rng + ?Sized>(
    h0: f64,
    t: &mut f64,
    t_end: f64,
    rng: &mut R,
) -> Result<f64, Outcome> {
    // One integer test for the rare cases: the bits of a positive finite
    // double are 1..2^63 − 2^52 (exclusive), those of ±0, negatives,
    // infinities and NaNs are not. Keeps two constants out of the
    // registers the hazards need.
    if h0.to_bits().wrapping_sub(1) >= f64::INFINITY.to_bits() - 1 {
        if h0 <= 0.0 {
            *t = t_end;
            return Err(Outcome::Reached);
        }
        return Err(Outcome::Capped);
    }
    let tn = *t + exp1(rng) / h0;
    if tn > t_end {
        *t = t_end;
        return Err(Outcome::Reached);
    }
    *t = tn;
    Ok(rng.random::<f64>() * h0)
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
        let rates = net.rates(theta);
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
            crate::simd::Plan::new(&props, changes, &caps[..net.species().len()], max_events)
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

    /// Writes the cumulative hazards into `cum` and returns the total.
    #[inline(always)]
    fn hazards<V: StateView + ?Sized>(&self, x: &V, cum: &mut [f64]) -> f64 {
        let mut acc = 0.0;
        if self.products {
            // Every hazard is (θ·x_a)·x_b with x = 1 past the last species:
            // multiplying by 1 is exact, so this equals the cases below bit
            // for bit, without a branch per reaction.
            let mut xf = [1.0f64; SMALL + 1];
            for (s, v) in xf.iter_mut().take(self.n_species).enumerate() {
                *v = x.get(s) as f64;
            }
            for (p, c) in self.props.iter().zip(cum.iter_mut()) {
                acc += p.rate * xf[p.a] * xf[p.b];
                *c = acc;
            }
            return acc;
        }
        for ((j, p), c) in self.props.iter().enumerate().zip(cum.iter_mut()) {
            let h = match p.kind {
                Kind::Source => p.rate,
                Kind::First => p.rate * x.get(p.a) as f64,
                Kind::Second => p.rate * x.get(p.a) as f64 * x.get(p.b) as f64,
                Kind::Dimer => p.rate * falling(x.get(p.a), 2),
                Kind::General => {
                    let mut h = p.rate;
                    for &(s, k) in &self.react[self.react_off[j]..self.react_off[j + 1]] {
                        h *= falling(x.get(s), k);
                    }
                    h
                }
            };
            acc += h;
            *c = acc;
        }
        acc
    }

    /// One event of Gillespie's direct method: draws the waiting time from the
    /// current state at time `*t`; if the event falls beyond `t_end`, sets
    /// `*t = t_end` and reports [`Outcome::Reached`], otherwise applies the
    /// chosen reaction and advances `*t`.
    ///
    /// `cum` is scratch space of at least [`Ssa::n_reactions`] values.
    #[inline(always)]
    pub fn step<V: StateView + ?Sized, R: Rng + ?Sized>(
        &self,
        x: &mut V,
        t: &mut f64,
        t_end: f64,
        rng: &mut R,
        cum: &mut [f64],
    ) -> Step {
        let h0 = self.hazards(x, cum);
        let target = match waiting_time(h0, t, t_end, rng) {
            Ok(target) => target,
            Err(o) => return Step::Done(o),
        };
        // The first j with target < cum[j] is the number of cum[i] ≤ target
        // (cum is non-decreasing): counted without branches.
        let nr = self.rates.len();
        let mut j = 0;
        for c in &cum[..nr - 1] {
            j += usize::from(target >= *c);
        }
        // The rare, predictable condition first: `j` itself is random.
        if nr > 1 && cum[nr - 1] <= cum[nr - 2] && j == nr - 1 {
            // target rounded up to h0 and the last hazard is zero: take the
            // last reaction with a positive hazard.
            while j > 0 && cum[j] <= cum[j - 1] {
                j -= 1;
            }
        }
        let mut capped = false;
        for &(s, d) in &self.change[j * self.width..(j + 1) * self.width] {
            x.add(s, d);
            capped |= (d > 0) & (x.get(s) > self.caps[s]);
        }
        if capped {
            Step::CappedEvent
        } else {
            Step::Event
        }
    }

    /// Advances one particle with state `x` from time `t` to `t_end`.
    /// Returns the outcome and the number of events.
    pub fn advance<R: Rng + ?Sized>(
        &self,
        x: &mut [u64],
        mut t: f64,
        t_end: f64,
        rng: &mut R,
        cum: &mut [f64],
    ) -> (Outcome, u64) {
        if let Some(net) = &self.small
            && x[..self.n_species].iter().all(|&v| v < 1 << 51)
        {
            macro_rules! dispatch {
                ($($s:literal),*) => {
                    match self.n_species {
                        $($s => match net.reactions {
                            1 => self.advance_small::<$s, 1, R>(net, x, t, t_end, rng),
                            2 => self.advance_small::<$s, 2, R>(net, x, t, t_end, rng),
                            3 => self.advance_small::<$s, 3, R>(net, x, t, t_end, rng),
                            4 => self.advance_small::<$s, 4, R>(net, x, t, t_end, rng),
                            5 => self.advance_small::<$s, 5, R>(net, x, t, t_end, rng),
                            6 => self.advance_small::<$s, 6, R>(net, x, t, t_end, rng),
                            7 => self.advance_small::<$s, 7, R>(net, x, t, t_end, rng),
                            _ => self.advance_small::<$s, 8, R>(net, x, t, t_end, rng),
                        },)*
                        _ => unreachable!("SmallNet::new admits 1 to 4 species"),
                    }
                };
            }
            return match net.shape {
                Some(KnownShape::LotkaVolterra(1)) => {
                    self.advance_shape::<LotkaVolterra<1>, R>(net, x, t, t_end, rng)
                }
                Some(KnownShape::LotkaVolterra(2)) => {
                    self.advance_shape::<LotkaVolterra<2>, R>(net, x, t, t_end, rng)
                }
                Some(KnownShape::LotkaVolterra(3)) => {
                    self.advance_shape::<LotkaVolterra<3>, R>(net, x, t, t_end, rng)
                }
                Some(KnownShape::PredationBirth) => {
                    self.advance_shape::<PredationBirth, R>(net, x, t, t_end, rng)
                }
                _ => dispatch!(1, 2, 3, 4),
            };
        }
        let mut events = 0u64;
        loop {
            let (e, done) = self.step(x, &mut t, t_end, rng, cum).resolve();
            events += e;
            if let Some(o) = done {
                return (o, events);
            }
            if events >= self.max_events {
                return (Outcome::EventLimit, events);
            }
        }
    }

    /// [`Ssa::advance`] for a [`SmallNet`] of `NR` reactions: the same
    /// operations in the same order as [`Ssa::step`] (hazards `(θ·x_a)·x_b`
    /// summed in reaction order, `t + E/h₀`, the branch-free reaction count
    /// and its fix-up, the state update and cap test), so the same bits,
    /// with the state and hazards in fixed-size arrays, the loops unrolled
    /// and no bounds checks.
    #[inline(never)]
    fn advance_small<const NS: usize, const NR: usize, R: Rng + ?Sized>(
        &self,
        net: &SmallNet,
        x: &mut [u64],
        mut t: f64,
        t_end: f64,
        rng: &mut R,
    ) -> (Outcome, u64) {
        // The state as doubles, slots NS.. holding the constant 1 (eight
        // slots, indices masked with 7: no bounds checks). Counts start below
        // 2^51 (checked by the caller) and stop at a cap below 2^51 plus one
        // increment below 2^32, so every value is an integer below 2^53,
        // exact in a double: the same doubles the generic step converts its
        // counts to, with no conversion per event.
        let mut xf = [1.0f64; 8];
        for s in 0..NS {
            xf[s] = x[s] as f64;
        }
        let rate: [f64; NR] = std::array::from_fn(|j| net.rate[j]);
        // Index NS stands for the constant 1 here (SMALL_SPECIES in `net`).
        let one = |i: usize| if i >= NS { NS } else { i };
        let a: [usize; NR] = std::array::from_fn(|j| one(net.a[j]));
        let b: [usize; NR] = std::array::from_fn(|j| one(net.b[j]));
        let delta: [[f64; NS]; NR] =
            std::array::from_fn(|j| std::array::from_fn(|s| net.delta[j][s] as f64));
        let grows: [[bool; NS]; NR] =
            std::array::from_fn(|j| std::array::from_fn(|s| net.grows[j][s]));
        let caps: [f64; NS] = std::array::from_fn(|s| net.caps[s] as f64);
        let mut events = 0u64;
        let outcome = loop {
            let mut cum = [0.0f64; NR];
            let mut acc = 0.0;
            for j in 0..NR {
                acc += rate[j] * xf[a[j] & 7] * xf[b[j] & 7];
                cum[j] = acc;
            }
            let target = match waiting_time(acc, &mut t, t_end, rng) {
                Ok(target) => target,
                Err(o) => break o,
            };
            let mut j = 0;
            for c in &cum[..NR - 1] {
                j += usize::from(target >= *c);
            }
            if NR > 1 && cum[NR - 1] <= cum[NR.saturating_sub(2)] && j == NR - 1 {
                while j > 0 && cum[j] <= cum[j - 1] {
                    j -= 1;
                }
            }
            let j = j.min(NR - 1);
            let (delta, grows) = (&delta[j], &grows[j]);
            let mut capped = false;
            for s in 0..NS {
                xf[s] += delta[s];
                capped |= grows[s] & (xf[s] > caps[s]);
            }
            events += 1;
            if capped {
                break Outcome::Capped;
            }
            if events >= self.max_events {
                break Outcome::EventLimit;
            }
        };
        for s in 0..NS {
            x[s] = xf[s] as u64;
        }
        (outcome, events)
    }

    /// [`Ssa::advance`] for a network of shape `S` (see [`Shape`]): the
    /// structure compiled in, every index a constant, so that the counts and
    /// cumulative hazards stay in registers, and the reaction's effect
    /// applied without a branch on which reaction it is (that branch would
    /// be mispredicted on most events: the choice is random). The same
    /// floating-point operations in the same order as [`Ssa::step`] —
    /// `(θ_j·x_a)·x_b` summed in reaction order, the generic step's `·1`
    /// being exact — so the same bits.
    #[inline(never)]
    fn advance_shape<S: Shape, R: Rng + ?Sized>(
        &self,
        net: &SmallNet,
        x: &mut [u64],
        mut t: f64,
        t_end: f64,
        rng: &mut R,
    ) -> (Outcome, u64) {
        // `+ 0.0` turns a −0.0 first rate into +0.0 (and changes nothing
        // else), so that the first hazard is bitwise the generic step's
        // `0 + h₀` without that addition on every event's critical path.
        let rate: [f64; SMALL_REACTIONS] = std::array::from_fn(|j| {
            if j == 0 {
                net.rate[0] + 0.0
            } else {
                net.rate[j]
            }
        });
        let caps = net.caps;
        let mut n: [u64; SMALL_SPECIES] = std::array::from_fn(|s| if s < S::NS { x[s] } else { 0 });
        let mut events = 0u64;
        let outcome = loop {
            // Counts below 2^51 (checked by the caller; caps below 2^51):
            // the signed conversion gives the same doubles. Index NS and
            // above stand for the constant 1.
            let xs: [f64; SMALL_SPECIES + 1] =
                std::array::from_fn(|s| if s < S::NS { n[s] as i64 as f64 } else { 1.0 });
            let mut cum = [0.0f64; SMALL_REACTIONS];
            let mut acc = 0.0;
            for j in 0..S::NR {
                let h = rate[j] * xs[S::A[j]] * xs[S::B[j]];
                acc = if j == 0 { h } else { acc + h };
                cum[j] = acc;
            }
            let target = match waiting_time(acc, &mut t, t_end, rng) {
                Ok(target) => target,
                Err(o) => break o,
            };
            // Reaction j is the first with target < cum[j] (the generic
            // step's count of cum[k] ≤ target, cum being non-decreasing):
            // it fires iff target ≥ cum[j − 1] and target < cum[j]. These
            // comparisons are independent of each other, and no branch
            // depends on them.
            let mut ge = [false; SMALL_REACTIONS];
            for k in 0..S::NR - 1 {
                ge[k] = target >= cum[k];
            }
            // The fix-up (target rounded up to h₀ and trailing zero
            // hazards: the last reaction with a positive hazard), testing
            // the rare, predictable condition first.
            if cum[S::NR - 1] <= cum[S::NR - 2] && ge[S::NR - 2] {
                let mut j = S::NR - 1;
                while j > 0 && cum[j] <= cum[j - 1] {
                    j -= 1;
                }
                for (k, g) in ge.iter_mut().enumerate() {
                    *g = k < j;
                }
            }
            events += 1;
            // The reaction's effect (ge[NR − 1] is never set).
            let fired: [bool; SMALL_REACTIONS] =
                std::array::from_fn(|j| (j == 0 || ge[j - 1]) & !ge[j]);
            let mut capped = false;
            for s in 0..S::NS {
                let mut grew = false;
                for (change, &f) in S::D.iter().zip(&fired).take(S::NR) {
                    let d = change[s];
                    if d != 0 {
                        n[s] = n[s].wrapping_add_signed(d * i64::from(f));
                    }
                    if d > 0 {
                        grew |= f;
                    }
                }
                capped |= grew & (n[s] > caps[s]);
            }
            if capped {
                break Outcome::Capped;
            }
            if events >= self.max_events {
                break Outcome::EventLimit;
            }
        };
        x[..S::NS].copy_from_slice(&n[..S::NS]);
        (outcome, events)
    }

    /// Advances every lane `0..rngs.len()` of a structure-of-arrays block
    /// (`block[s * stride + j]` is species `s` of lane `j`) from time `t0` to
    /// `t_end`, in lock-step. Lane `j` draws from `rngs[j]`. Writes each lane's
    /// outcome into `outcomes` and returns the summed counters.
    ///
    /// Bit-identical to calling [`Ssa::advance`] on each lane in turn.
    pub fn advance_block<R: Rng>(
        &self,
        block: &mut [u64],
        stride: usize,
        t0: f64,
        t_end: f64,
        rngs: &mut [R],
        outcomes: &mut [Outcome],
        scratch: &mut BlockScratch,
    ) -> SsaCounters {
        let n = rngs.len();
        let lanes = &mut scratch.lanes;
        lanes.prepare(n, self.rates.len(), t0);
        let LaneScratch {
            times,
            events,
            active,
            cum,
        } = lanes;
        let mut counters = SsaCounters::default();
        while !active.is_empty() {
            let mut i = 0;
            while i < active.len() {
                let j = active[i];
                let mut lane = Lane::new(block, j, stride);
                let (e, done) = self
                    .step(&mut lane, &mut times[j], t_end, &mut rngs[j], cum)
                    .resolve();
                events[j] += e;
                let done = done.or((events[j] >= self.max_events).then_some(Outcome::EventLimit));
                if let Some(o) = done {
                    outcomes[j] = o;
                    counters.record(o, events[j]);
                    active.swap_remove(i);
                } else {
                    i += 1;
                }
            }
        }
        counters
    }

    /// Whether [`Ssa::advance_block_simd`] runs the AVX2 kernel here: the
    /// CPU has AVX2 and the network is within the kernel's limits (reactions
    /// of at most two reactant molecules, at most 16 species and 32
    /// reactions, caps below 2^51).
    pub fn simd_active(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.simd.is_some() && crate::simd::available()
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
            && crate::simd::available()
        {
            use crate::simd::advance;
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

    /// Advances particle `j` of a structure-of-arrays block with the scalar
    /// kernel (copying its state through `x`, at least
    /// [`Ssa::n_species`] long).
    pub(crate) fn advance_in_block<R: Rng + ?Sized>(
        &self,
        block: &mut [u64],
        stride: usize,
        j: usize,
        t0: f64,
        t_end: f64,
        rng: &mut R,
        x: &mut [u64],
        cum: &mut [f64],
        counters: &mut SsaCounters,
    ) -> Outcome {
        let x = &mut x[..self.n_species];
        for (s, v) in x.iter_mut().enumerate() {
            *v = block[s * stride + j];
        }
        let o = self.advance_counted(x, t0, t_end, rng, cum, counters);
        for (s, v) in x.iter().enumerate() {
            block[s * stride + j] = *v;
        }
        o
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

/// Reusable scratch space for the block kernels ([`Ssa::advance_block`],
/// [`Ssa::advance_block_simd`], [`Ssa::propagate`]), so that propagation
/// does not allocate once warm.
#[derive(Debug, Default, Clone)]
pub struct BlockScratch {
    lanes: LaneScratch,
    rngs: Vec<Xoshiro256PlusPlus>,
    states: Vec<[u64; 4]>,
    x: Vec<u64>,
}

/// The block kernel's per-lane bookkeeping.
#[derive(Debug, Default, Clone)]
struct LaneScratch {
    times: Vec<f64>,
    events: Vec<u64>,
    active: Vec<usize>,
    cum: Vec<f64>,
}

impl LaneScratch {
    fn prepare(&mut self, lanes: usize, reactions: usize, t0: f64) {
        self.times.clear();
        self.times.resize(lanes, t0);
        self.events.clear();
        self.events.resize(lanes, 0);
        self.active.clear();
        self.active.extend(0..lanes);
        self.cum.resize(reactions.max(self.cum.len()), 0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, StreamKey};

    #[test]
    fn ln_unit_is_within_one_ulp_of_ln() {
        let mut rng = StreamKey::new(3, 0, 0, 0, 0, Purpose::Test).rng();
        let ulp = |x: f64| f64::from_bits(x.abs().to_bits() + 1) - x.abs();
        let check = |x: f64| {
            let (got, want) = (ln_unit(x), x.ln());
            assert!(
                (got - want).abs() <= ulp(want),
                "ln({x:e}) = {got:e}, want {want:e}"
            );
        };
        check(1.0);
        assert_eq!(ln_unit(1.0), 0.0);
        for k in 1..=53 {
            check(0.5f64.powi(k));
            check(1.0 - 0.5f64.powi(k));
        }
        check(std::f64::consts::FRAC_1_SQRT_2);
        for _ in 0..1_000_000 {
            let u = crate::rng::uniform_open0(&mut rng);
            check(u);
            check(u * u * u);
        }
    }

    #[test]
    fn falling_factors() {
        assert_eq!(falling(5, 1), 5.0);
        assert_eq!(falling(5, 2), 10.0);
        assert_eq!(falling(1, 2), 0.0);
        assert_eq!(falling(6, 3), 20.0);
        assert_eq!(falling(2, 3), 0.0);
    }

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
