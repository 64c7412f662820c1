//! The AVX2 lock-step SSA kernel: four particles per 256-bit register, one
//! particle per lane, each drawing from its own xoshiro256++ stream.
//!
//! A round performs one step of Gillespie's direct method
//! ([`Ssa::step`](crate::ssa::Ssa::step)) in every lane with exactly the
//! scalar kernel's operations: hazards as products and a running sum, the
//! generator's update in 64-bit integer lanes, exact integer → double
//! conversions, the ziggurat exponential's fast path with the same table
//! reads and operations (its rare slow path runs per lane through the
//! scalar code on the lane's own generator), the branch-free reaction count
//! and the state update with the same cap test. The results are therefore bit-identical to the
//! scalar kernel (a property test checks this on random networks).
//!
//! Networks of a shape the kernel knows (Lotka–Volterra with 1 to 3
//! predators, the hare–lynx predator–prey network; recognised by their
//! structure) run a version with the structure compiled in: hazards written
//! out, the state change computed from the independent comparisons
//! `target ≥ cum[k]`, every index a constant, so that counts and
//! cumulative hazards stay in registers. Other networks read their hazards
//! and state changes from the kernel's plan. Both perform the same
//! operations per lane.
//!
//! Lanes whose particle is done (target time reached, cap, event limit) are
//! refilled at once with the next particle of the block, so one long
//! trajectory holds up only its own lane. Only the last particles of a
//! block run with idle lanes.
//!
//! Supported: networks whose reactions have at most two reactant molecules
//! (every mass-action hazard but the general product), at most
//! [`MAX_SPECIES`] species and [`MAX_REACTIONS`] reactions, and caps below
//! 2^51 so that counts stay below 2^52 where the conversion trick is exact.
//! A particle whose initial count is 2^51 or more runs through the scalar
//! kernel. Everything else falls back to the block kernel as a whole
//! ([`Ssa::simd_active`](crate::ssa::Ssa::simd_active) tells which runs).

// Species and lane indices address several parallel arrays at once.
#![allow(clippy::needless_range_loop)]

use super::exp::{self, LaneRng, ZIG_EXP_X};
use super::shape::{Kind, Propensity, SMALL_REACTIONS, SMALL_SPECIES, Shape};
use super::{Outcome, Ssa, SsaCounters};
use crate::rng::{Xoshiro256PlusPlus, rng_from_state};
use std::arch::x86_64::*;

/// Most species the AVX2 kernel handles.
pub const MAX_SPECIES: usize = 16;
/// Most reactions the AVX2 kernel handles.
pub const MAX_REACTIONS: usize = 32;
/// Counts and caps must stay below this for the exact u64 → f64 trick.
const COUNT_LIMIT: u64 = 1 << 51;

/// An [`Ssa`] laid out for the AVX2 kernel.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    species: usize,
    /// The scalar kernel's hazards (no [`Kind::General`]).
    hazards: Vec<Propensity>,
    /// Per species, `(reaction, net change)` for every reaction changing it.
    changes: Vec<Vec<(usize, i64)>>,
    caps: Vec<i64>,
    /// `max_events − 1` as i64 (`events > limit` ⇔ `events ≥ max_events`).
    limit: i64,
}

impl Plan {
    /// The plan for `ssa`'s network, or `None` when the network is outside
    /// what the AVX2 kernel handles (see the module documentation).
    pub(crate) fn new(
        hazards: &[Propensity],
        changes: Vec<Vec<(usize, i64)>>,
        caps: &[u64],
        max_events: u64,
    ) -> Option<Plan> {
        let species = changes.len();
        if hazards.is_empty()
            || hazards.len() > MAX_REACTIONS
            || hazards.iter().any(|p| p.kind == Kind::General)
            || species > MAX_SPECIES
            || caps.iter().any(|&c| c >= COUNT_LIMIT)
            || changes
                .iter()
                .flatten()
                .any(|&(_, d)| d.unsigned_abs() >= 1 << 32)
        {
            return None;
        }
        Some(Plan {
            species,
            hazards: hazards.to_vec(),
            changes,
            caps: caps.iter().map(|&c| c as i64).collect(),
            limit: i64::try_from(max_events).unwrap_or(i64::MAX) - 1,
        })
    }
}

/// Whether this CPU runs the AVX2 kernel (checked once, then cached by std).
pub fn available() -> bool {
    is_x86_feature_detected!("avx2")
}

/// A vector's four 64-bit lanes.
#[inline(always)]
fn lanes_i(v: __m256i) -> [i64; 4] {
    // SAFETY: __m256i and [i64; 4] have the same size and any bits are valid.
    unsafe { std::mem::transmute(v) }
}

#[inline(always)]
fn from_lanes_i(a: [i64; 4]) -> __m256i {
    // SAFETY: as above.
    unsafe { std::mem::transmute(a) }
}

#[inline(always)]
fn lanes_d(v: __m256d) -> [f64; 4] {
    // SAFETY: as above.
    unsafe { std::mem::transmute(v) }
}

#[inline(always)]
fn from_lanes_d(a: [f64; 4]) -> __m256d {
    // SAFETY: as above.
    unsafe { std::mem::transmute(a) }
}

/// Exact conversion of lanes holding integers in `[0, 2^52)` to f64:
/// `bits(2^52) | x` is the double `2^52 + x`.
#[inline]
#[target_feature(enable = "avx2")]
fn small_to_f64(x: __m256i) -> __m256d {
    let magic = _mm256_set1_epi64x(0x4330_0000_0000_0000);
    _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(x, magic)),
        _mm256_set1_pd(4_503_599_627_370_496.0),
    )
}

/// `(r >> 11) as f64 · 2^−53` for every lane (rand's `[0, 1)` double),
/// exactly: the 53-bit integer is split into 21 high and 32 low bits, each
/// converted exactly; their sum is an integer below 2^53, hence exact.
#[inline]
#[target_feature(enable = "avx2")]
fn unit_f64(r: __m256i) -> __m256d {
    let v = _mm256_srli_epi64::<11>(r);
    let hi = small_to_f64(_mm256_srli_epi64::<32>(v));
    let lo = small_to_f64(_mm256_and_si256(v, _mm256_set1_epi64x(0xFFFF_FFFF)));
    let x = _mm256_add_pd(_mm256_mul_pd(hi, _mm256_set1_pd(4_294_967_296.0)), lo);
    _mm256_mul_pd(x, _mm256_set1_pd(1.0 / 9_007_199_254_740_992.0))
}

#[inline]
#[target_feature(enable = "avx2")]
fn rotl<const L: i32, const R: i32>(x: __m256i) -> __m256i {
    _mm256_or_si256(_mm256_slli_epi64::<L>(x), _mm256_srli_epi64::<R>(x))
}

/// One xoshiro256++ step in every lane (Blackman & Vigna): returns the
/// output and updates the state, as `rand_xoshiro`'s `next_u64`.
#[inline]
#[target_feature(enable = "avx2")]
fn next(s: &mut [__m256i; 4]) -> __m256i {
    let out = _mm256_add_epi64(rotl::<23, 41>(_mm256_add_epi64(s[0], s[3])), s[0]);
    let t = _mm256_slli_epi64::<17>(s[1]);
    s[2] = _mm256_xor_si256(s[2], s[0]);
    s[3] = _mm256_xor_si256(s[3], s[1]);
    s[1] = _mm256_xor_si256(s[1], s[2]);
    s[0] = _mm256_xor_si256(s[0], s[3]);
    s[2] = _mm256_xor_si256(s[2], t);
    s[3] = rotl::<45, 19>(s[3]);
    out
}

/// [`exp::exp1`] in every lane: the fast path four lanes at a time
/// (two table gathers), then, for each active lane whose candidate was
/// rejected (about 2 % of draws), the scalar slow path on that lane's
/// generator, taken out of the registers and put back. Lanes that will not
/// use the draw (absorbed or overflowed: the scalar kernel draws nothing
/// there, and the particle is done) skip the slow path.
#[inline]
#[target_feature(enable = "avx2")]
fn exp1(l: &mut Lanes, absorbed: __m256d, overflow: __m256d) -> __m256d {
    let bits = next(&mut l.rng);
    let i = _mm256_and_si256(bits, _mm256_set1_epi64x(0xff));
    let u = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(
            _mm256_srli_epi64::<12>(bits),
            _mm256_set1_epi64x(1.0f64.to_bits() as i64),
        )),
        _mm256_set1_pd(exp::ONE_MINUS_HALF_EPS),
    );
    let table = ZIG_EXP_X.as_ptr();
    // SAFETY: every index is in 0..=255 and the table has 257 entries, so
    // both `i` and `i + 1` are in bounds.
    let (xi, next_x) = unsafe {
        (
            _mm256_i64gather_pd::<8>(table, i),
            _mm256_i64gather_pd::<8>(table.add(1), i),
        )
    };
    let x = _mm256_mul_pd(u, xi);
    let rejected = _mm256_andnot_pd(
        _mm256_or_pd(absorbed, overflow),
        _mm256_and_pd(
            _mm256_cmp_pd::<_CMP_NLT_UQ>(x, next_x),
            _mm256_castsi256_pd(l.active),
        ),
    );
    let slow = _mm256_movemask_pd(rejected);
    if slow == 0 {
        return x;
    }
    let mut xs = lanes_d(x);
    let is = lanes_i(i);
    let mut words: [[i64; 4]; 4] = std::array::from_fn(|w| lanes_i(l.rng[w]));
    for lane in 0..4 {
        if slow & (1 << lane) == 0 {
            continue;
        }
        let mut rng = LaneRng(std::array::from_fn(|w| words[w][lane] as u64));
        xs[lane] = exp::exp1_slow(&mut rng, xs[lane], is[lane] as usize);
        for w in 0..4 {
            words[w][lane] = rng.0[w] as i64;
        }
    }
    for w in 0..4 {
        l.rng[w] = from_lanes_i(words[w]);
    }
    from_lanes_d(xs)
}

/// The register state of the four lanes.
struct Lanes {
    x: [__m256i; MAX_SPECIES],
    t: __m256d,
    events: __m256i,
    rng: [__m256i; 4],
    /// All-ones in lanes that hold a particle.
    active: __m256i,
    /// The particle in each lane.
    slot: [usize; 4],
}

/// Advances particles `0..states.len()` of a structure-of-arrays block
/// (`block[s * stride + p]`) from `t0` to `t_end`; particle `p` draws from
/// the xoshiro256++ stream with state `states[p]`. Writes outcomes and
/// returns the summed counters, exactly as the scalar kernel would.
///
/// `S = AnyNetwork` runs any supported network (hazards and state changes
/// read from the plan); another `S` runs a network of that shape
/// ([`Ssa::known_shape`]) with its structure compiled in. Both perform the
/// same operations per lane.
///
/// # Safety
/// The CPU must support AVX2 ([`available`]), and `S` must be
/// `AnyNetwork` or the network's shape.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn advance<S: Shape>(
    ssa: &Ssa,
    plan: &Plan,
    block: &mut [u64],
    stride: usize,
    t0: f64,
    t_end: f64,
    states: &[[u64; 4]],
    outcomes: &mut [Outcome],
) -> SsaCounters {
    let sp = plan.species;
    let nr = plan.hazards.len();
    let zero_i = _mm256_setzero_si256();
    let mut l = Lanes {
        x: [zero_i; MAX_SPECIES],
        t: _mm256_set1_pd(t0),
        events: zero_i,
        rng: [zero_i; 4],
        active: zero_i,
        slot: [usize::MAX; 4],
    };
    let mut feed = Feed {
        ssa,
        plan,
        block,
        stride,
        t0,
        t_end,
        states,
        outcomes,
        counters: SsaCounters::default(),
        next: 0,
    };
    for lane in 0..4 {
        feed.refill(&mut l, lane);
    }
    let t_end_v = _mm256_set1_pd(t_end);
    let caps: [__m256i; MAX_SPECIES] =
        std::array::from_fn(|s| _mm256_set1_epi64x(plan.caps.get(s).copied().unwrap_or(0)));
    let limit = _mm256_set1_epi64x(plan.limit);
    let mut cum = [_mm256_setzero_pd(); MAX_REACTIONS];
    let mut xf = [_mm256_setzero_pd(); MAX_SPECIES];
    let shaped = S::NR > 0;
    // A known shape: `+ 0.0` turns a −0.0 first rate into +0.0, so that
    // the first hazard is bitwise the generic `0 + h₀` (as in the scalar
    // kernel); `rates[j]` is θ_j for the written-out hazards.
    let rates: [__m256d; SMALL_REACTIONS] = std::array::from_fn(|j| {
        let r = plan.hazards.get(j).map_or(0.0, |h| h.rate);
        _mm256_set1_pd(if j == 0 { r + 0.0 } else { r })
    });
    let one = _mm256_set1_pd(1.0);
    while _mm256_movemask_pd(_mm256_castsi256_pd(l.active)) != 0 {
        // A known shape: the cumulative hazards in registers (copied to
        // `cum` only for the rare fix-up) and the comparisons
        // `target ≥ cum[k]`, k < NR − 1.
        let mut sh = [_mm256_setzero_pd(); SMALL_REACTIONS];
        let mut ge = [zero_i; SMALL_REACTIONS];
        let mut acc = _mm256_setzero_pd();
        if shaped {
            // Species NS stands for the constant 1 (exact factors).
            let xs: [__m256d; SMALL_SPECIES + 1] =
                std::array::from_fn(|s| if s < S::NS { small_to_f64(l.x[s]) } else { one });
            for j in 0..S::NR {
                let h = _mm256_mul_pd(_mm256_mul_pd(rates[j], xs[S::A[j]]), xs[S::B[j]]);
                acc = if j == 0 { h } else { _mm256_add_pd(acc, h) };
                sh[j] = acc;
            }
        } else {
            for s in 0..sp {
                xf[s] = small_to_f64(l.x[s]);
            }
            for (i, h) in plan.hazards.iter().enumerate() {
                let (r, a, b) = (_mm256_set1_pd(h.rate), h.a, h.b);
                let h = match h.kind {
                    Kind::Source => r,
                    Kind::First => _mm256_mul_pd(r, xf[a]),
                    Kind::Second => _mm256_mul_pd(_mm256_mul_pd(r, xf[a]), xf[b]),
                    Kind::Dimer => {
                        let x = xf[a];
                        let c = _mm256_mul_pd(
                            _mm256_mul_pd(x, _mm256_sub_pd(x, _mm256_set1_pd(1.0))),
                            _mm256_set1_pd(0.5),
                        );
                        let c =
                            _mm256_and_pd(c, _mm256_cmp_pd::<_CMP_GE_OQ>(x, _mm256_set1_pd(2.0)));
                        _mm256_mul_pd(r, c)
                    }
                    Kind::General => unreachable!("Plan::new refuses general hazards"),
                };
                acc = _mm256_add_pd(acc, h);
                cum[i] = acc;
            }
        }
        let h0 = acc;
        let absorbed = _mm256_cmp_pd::<_CMP_LE_OQ>(h0, _mm256_setzero_pd());
        let overflow = _mm256_cmp_pd::<_CMP_NLT_UQ>(h0, _mm256_set1_pd(f64::INFINITY));
        let e = exp1(&mut l, absorbed, overflow);
        let tn = _mm256_add_pd(l.t, _mm256_div_pd(e, h0));
        let beyond = _mm256_cmp_pd::<_CMP_GT_OQ>(tn, t_end_v);
        let target = _mm256_mul_pd(unit_f64(next(&mut l.rng)), h0);
        let mut j = zero_i;
        if shaped {
            for k in 0..S::NR - 1 {
                ge[k] = _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_GE_OQ>(target, sh[k]));
                j = _mm256_sub_epi64(j, ge[k]);
            }
        } else {
            for c in &cum[..nr - 1] {
                j = _mm256_sub_epi64(
                    j,
                    _mm256_castpd_si256(_mm256_cmp_pd::<_CMP_GE_OQ>(target, *c)),
                );
            }
        }
        if nr > 1 {
            let last = _mm256_cmpeq_epi64(j, _mm256_set1_epi64x(nr as i64 - 1));
            let flat = if shaped {
                _mm256_cmp_pd::<_CMP_LE_OQ>(sh[nr - 1], sh[nr - 2])
            } else {
                _mm256_cmp_pd::<_CMP_LE_OQ>(cum[nr - 1], cum[nr - 2])
            };
            let fix = _mm256_and_pd(_mm256_castsi256_pd(last), flat);
            if _mm256_movemask_pd(fix) != 0 {
                if shaped {
                    cum[..nr].copy_from_slice(&sh[..nr]);
                }
                // target rounded up to h0 and the last hazard is zero: as
                // the scalar kernel, take the last reaction with a positive
                // hazard (lanes without an event ignore j anyway).
                let mut jl = lanes_i(j);
                for (lane, jv) in jl.iter_mut().enumerate() {
                    let mut jj = *jv as usize;
                    if jj == nr - 1 {
                        while jj > 0 && lanes_d(cum[jj])[lane] <= lanes_d(cum[jj - 1])[lane] {
                            jj -= 1;
                        }
                    }
                    *jv = jj as i64;
                }
                j = from_lanes_i(jl);
                for k in 0..S::NR.saturating_sub(1) {
                    ge[k] = _mm256_cmpgt_epi64(j, _mm256_set1_epi64x(k as i64));
                }
            }
        }
        let stopped = _mm256_or_pd(_mm256_or_pd(absorbed, overflow), beyond);
        let event = _mm256_andnot_si256(_mm256_castpd_si256(stopped), l.active);
        let mut capped = zero_i;
        if shaped {
            // Reaction j fires iff target ≥ cum[j − 1] and target < cum[j]
            // (ge[NR − 1] is never set); a mask is −1, so subtracting it
            // adds one.
            let fired: [__m256i; SMALL_REACTIONS] = std::array::from_fn(|j| {
                let above = if j == 0 {
                    event
                } else {
                    _mm256_and_si256(ge[j - 1], event)
                };
                _mm256_andnot_si256(ge[j], above)
            });
            for s in 0..S::NS {
                let mut grew = zero_i;
                for j in 0..S::NR {
                    let d = S::D[j][s];
                    l.x[s] = match d {
                        0 => l.x[s],
                        1 => _mm256_sub_epi64(l.x[s], fired[j]),
                        -1 => _mm256_add_epi64(l.x[s], fired[j]),
                        d => _mm256_add_epi64(
                            l.x[s],
                            _mm256_and_si256(fired[j], _mm256_set1_epi64x(d)),
                        ),
                    };
                    if d > 0 {
                        grew = _mm256_or_si256(grew, fired[j]);
                    }
                }
                let over = _mm256_cmpgt_epi64(l.x[s], caps[s]);
                capped = _mm256_or_si256(capped, _mm256_and_si256(grew, over));
            }
        } else {
            for s in 0..sp {
                let mut delta = zero_i;
                let mut grew = zero_i;
                for &(r, d) in &plan.changes[s] {
                    let hit = _mm256_cmpeq_epi64(j, _mm256_set1_epi64x(r as i64));
                    delta = _mm256_add_epi64(delta, _mm256_and_si256(hit, _mm256_set1_epi64x(d)));
                    if d > 0 {
                        grew = _mm256_or_si256(grew, hit);
                    }
                }
                l.x[s] = _mm256_add_epi64(l.x[s], _mm256_and_si256(delta, event));
                let over = _mm256_cmpgt_epi64(l.x[s], caps[s]);
                capped = _mm256_or_si256(capped, _mm256_and_si256(grew, over));
            }
        }
        capped = _mm256_and_si256(capped, event);
        l.t = tn;
        l.events = _mm256_sub_epi64(l.events, event);
        let at_limit = _mm256_and_si256(_mm256_cmpgt_epi64(l.events, limit), event);
        let done = _mm256_and_si256(
            _mm256_or_si256(
                _mm256_castpd_si256(stopped),
                _mm256_or_si256(capped, at_limit),
            ),
            l.active,
        );
        let done_bits = _mm256_movemask_pd(_mm256_castsi256_pd(done));
        if done_bits != 0 {
            let absorbed = lanes_d(absorbed);
            let overflow = lanes_d(overflow);
            let beyond = lanes_d(beyond);
            let capped = lanes_i(capped);
            let events = lanes_i(l.events);
            for lane in 0..4 {
                if done_bits & (1 << lane) == 0 {
                    continue;
                }
                let outcome = if absorbed[lane] != 0.0 || beyond[lane] != 0.0 {
                    Outcome::Reached
                } else if overflow[lane] != 0.0 || capped[lane] != 0 {
                    Outcome::Capped
                } else {
                    Outcome::EventLimit
                };
                let p = l.slot[lane];
                for s in 0..sp {
                    feed.block[s * stride + p] = lanes_i(l.x[s])[lane] as u64;
                }
                feed.outcomes[p] = outcome;
                feed.counters.record(outcome, events[lane] as u64);
                feed.refill(&mut l, lane);
            }
        }
    }
    feed.counters
}

/// Where the lanes' particles come from and their results go.
struct Feed<'a> {
    ssa: &'a Ssa,
    plan: &'a Plan,
    block: &'a mut [u64],
    stride: usize,
    t0: f64,
    t_end: f64,
    states: &'a [[u64; 4]],
    outcomes: &'a mut [Outcome],
    counters: SsaCounters,
    /// The next particle to load.
    next: usize,
}

impl Feed<'_> {
    /// Loads the next particle that the AVX2 lanes can run into `lane`, running
    /// any particle with a count of 2^51 or more through the scalar kernel, or
    /// marks the lane idle when the block is exhausted.
    #[inline(never)]
    #[target_feature(enable = "avx2")]
    fn refill(&mut self, l: &mut Lanes, lane: usize) {
        let sp = self.plan.species;
        let stride = self.stride;
        let set = |v: &mut __m256i, x: i64| {
            let mut a = lanes_i(*v);
            a[lane] = x;
            *v = from_lanes_i(a);
        };
        while self.next < self.states.len() {
            let p = self.next;
            self.next += 1;
            if (0..sp).any(|s| self.block[s * stride + p] >= COUNT_LIMIT) {
                let mut rng: Xoshiro256PlusPlus = rng_from_state(self.states[p]);
                self.outcomes[p] = self.ssa.advance_in_block(
                    self.block,
                    stride,
                    p,
                    self.t0,
                    self.t_end,
                    &mut rng,
                    &mut [0; MAX_SPECIES],
                    &mut [0.0; MAX_REACTIONS],
                    &mut self.counters,
                );
                continue;
            }
            for s in 0..sp {
                set(&mut l.x[s], self.block[s * stride + p] as i64);
            }
            let mut t = lanes_d(l.t);
            t[lane] = self.t0;
            l.t = from_lanes_d(t);
            set(&mut l.events, 0);
            for w in 0..4 {
                set(&mut l.rng[w], self.states[p][w] as i64);
            }
            set(&mut l.active, -1);
            l.slot[lane] = p;
            return;
        }
        set(&mut l.active, 0);
        l.slot[lane] = usize::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, StreamKey};
    use rand::Rng;

    #[test]
    fn vector_generator_and_uniforms_match_rand() {
        if !available() {
            return;
        }
        let states: Vec<[u64; 4]> = (0..4)
            .map(|i| StreamKey::new(7, 1, 2, 3, i, Purpose::Test).state())
            .collect();
        let mut rngs: Vec<_> = states.iter().map(|s| rng_from_state(*s)).collect();
        // SAFETY: AVX2 is available (checked above).
        unsafe {
            let mut s: [__m256i; 4] =
                std::array::from_fn(|w| from_lanes_i(std::array::from_fn(|l| states[l][w] as i64)));
            for _ in 0..1000 {
                let r = next(&mut s);
                let want: [u64; 4] = std::array::from_fn(|l| rngs[l].next_u64());
                assert_eq!(lanes_i(r).map(|v| v as u64), want);
                let u = lanes_d(unit_f64(r));
                for l in 0..4 {
                    assert_eq!(u[l], (want[l] >> 11) as f64 / 9_007_199_254_740_992.0);
                }
            }
        }
    }

    #[test]
    fn vector_exponential_matches_scalar_bit_for_bit() {
        if !available() {
            return;
        }
        // SAFETY: AVX2 is available (checked above).
        unsafe { exponential_check() }
    }

    #[target_feature(enable = "avx2")]
    fn exponential_check() {
        let states: Vec<[u64; 4]> = (0..4)
            .map(|i| StreamKey::new(9, 0, 0, 0, i, Purpose::Test).state())
            .collect();
        let mut rngs: Vec<_> = states.iter().map(|s| rng_from_state(*s)).collect();
        let zero = _mm256_setzero_si256();
        let mut l = Lanes {
            x: [zero; MAX_SPECIES],
            t: _mm256_setzero_pd(),
            events: zero,
            rng: std::array::from_fn(|w| {
                from_lanes_i(std::array::from_fn(|l| states[l][w] as i64))
            }),
            active: _mm256_set1_epi64x(-1),
            slot: [0; 4],
        };
        let mut slow = 0;
        for _ in 0..200_000 {
            let got = lanes_d(exp1(&mut l, _mm256_setzero_pd(), _mm256_setzero_pd()));
            for lane in 0..4 {
                let before = rngs[lane].clone();
                let want = exp::exp1(&mut rngs[lane]);
                let mut probe = before;
                let (x, i) = exp::first_try(probe.next_u64());
                slow += usize::from(x >= ZIG_EXP_X[i + 1]);
                assert_eq!(got[lane].to_bits(), want.to_bits());
            }
            // Both generators are at the same place afterwards.
            let words: [[i64; 4]; 4] = std::array::from_fn(|w| lanes_i(l.rng[w]));
            for lane in 0..4 {
                let mut probe = rngs[lane].clone();
                let mut lane_rng = LaneRng(std::array::from_fn(|w| words[w][lane] as u64));
                assert_eq!(probe.next_u64(), exp::Bits::next_bits(&mut lane_rng));
            }
        }
        // About 2 % of 800 000 draws take the slow path: it was exercised.
        assert!(slow > 4000, "{slow}");
    }
}
