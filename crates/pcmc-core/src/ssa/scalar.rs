//! The scalar kernel: Gillespie's direct method one particle at a time
//! ([`Ssa::step`], [`Ssa::advance`]), with the paths written out per network
//! [`Shape`] and for small product networks.

use super::exp::exp1;
use super::shape::{
    Kind, KnownShape, LotkaVolterra, PredationBirth, SMALL, SMALL_REACTIONS, SMALL_SPECIES, Shape,
    SmallNet, falling,
};
use super::{Outcome, Ssa, StateView, Step};
use rand::{Rng, RngExt};

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
}
