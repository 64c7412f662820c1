//! Network structures the kernels compile in ([`Shape`]: Lotka–Volterra with
//! 1–3 predators, the hare–lynx predation/predator-birth network), the small
//! product-network layout of the scalar kernel and the per-reaction hazard
//! forms shared by every kernel.

use super::Ssa;

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
pub(crate) struct SmallNet {
    pub(crate) reactions: usize,
    pub(crate) rate: [f64; SMALL_REACTIONS],
    pub(crate) a: [usize; SMALL_REACTIONS],
    pub(crate) b: [usize; SMALL_REACTIONS],
    /// Net change of each species per reaction (0 for padding species).
    pub(crate) delta: [[i64; SMALL_SPECIES]; SMALL_REACTIONS],
    /// Whether the reaction increases the species (the cap test).
    pub(crate) grows: [[bool; SMALL_SPECIES]; SMALL_REACTIONS],
    pub(crate) caps: [u64; SMALL_SPECIES],
    /// The network's [`Shape`], if the kernels know it: then
    /// [`Ssa::advance_shape`] runs it, with its structure compiled in.
    pub(crate) shape: Option<KnownShape>,
}

impl SmallNet {
    /// Whether this network, of `ns` species, has shape `S`.
    pub(crate) fn has<S: Shape>(&self, ns: usize) -> bool {
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
    pub(crate) fn known_shape(&self, ns: usize) -> Option<KnownShape> {
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

    pub(crate) fn new(ssa: &Ssa) -> Option<SmallNet> {
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
pub(crate) const SMALL: usize = 16;

/// Binomial coefficient C(x, k) as f64, 0 when x < k.
#[inline(always)]
pub(crate) fn falling(x: u64, k: u32) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falling_factors() {
        assert_eq!(falling(5, 1), 5.0);
        assert_eq!(falling(5, 2), 10.0);
        assert_eq!(falling(1, 2), 0.0);
        assert_eq!(falling(6, 3), 20.0);
        assert_eq!(falling(2, 3), 0.0);
    }
}
