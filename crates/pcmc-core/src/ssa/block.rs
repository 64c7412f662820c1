//! The block kernel: a structure-of-arrays block of particles advanced in
//! lock-step, one event per active lane per round ([`Ssa::advance_block`]),
//! and the scratch space every block kernel reuses.

use super::{Lane, Outcome, Ssa, SsaCounters};
use crate::rng::Xoshiro256PlusPlus;
use rand::Rng;

impl Ssa {
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
}

/// Reusable scratch space for the block kernels ([`Ssa::advance_block`],
/// [`Ssa::advance_block_simd`], [`Ssa::propagate`]), so that propagation
/// does not allocate once warm.
#[derive(Debug, Default, Clone)]
pub struct BlockScratch {
    pub(super) lanes: LaneScratch,
    pub(super) rngs: Vec<Xoshiro256PlusPlus>,
    pub(super) states: Vec<[u64; 4]>,
    pub(super) x: Vec<u64>,
}

/// The block kernel's per-lane bookkeeping.
#[derive(Debug, Default, Clone)]
pub(super) struct LaneScratch {
    pub(super) times: Vec<f64>,
    pub(super) events: Vec<u64>,
    pub(super) active: Vec<usize>,
    pub(super) cum: Vec<f64>,
}

impl LaneScratch {
    pub(super) fn prepare(&mut self, lanes: usize, reactions: usize, t0: f64) {
        self.times.clear();
        self.times.resize(lanes, t0);
        self.events.clear();
        self.events.resize(lanes, 0);
        self.active.clear();
        self.active.extend(0..lanes);
        self.cum.resize(reactions.max(self.cum.len()), 0.0);
    }
}
