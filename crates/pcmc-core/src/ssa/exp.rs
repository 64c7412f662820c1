//! Unit exponential waiting times by the ziggurat method (Marsaglia & Tsang,
//! 2000, "The ziggurat method for generating random variables", J. Stat.
//! Softw. 5(8)), written so that the scalar and the AVX2 kernels draw the
//! same bits from each stream and return the same value; and [`ln_unit`],
//! pcmc's own logarithm, which the slow path and the kernels share.
//!
//! The density `e^{−x}` is covered by 256 layers of equal area: a base strip
//! with the tail beyond `r ≈ 7.697`, and 255 rectangles (tables in
//! `exp/tables.rs`, generated once by `scripts/ziggurat_tables.py` and
//! stored as exact bit patterns). One 64-bit draw picks a layer `i` (its low
//! 8 bits) and a uniform `u ∈ (0, 1)` (its high 52 bits); `x = u·X_i` is
//! accepted at once when `x < X_{i+1}`, which happens for 97.8 % of
//! draws. That fast path (`first_try`) costs an integer mask, a shift, two
//! table reads, a multiplication and a comparison: no logarithm, no
//! division. The rest (`exp1_slow`: the tail of the base strip, or a
//! wedge of a rectangle) is the rare slow path, shared by every kernel.
//!
//! The slow path decides a wedge point `(x, y)` by `ln y < −x` with
//! [`ln_unit`] (pcmc's own logarithm, operation for operation the same on
//! every machine) rather than `y < e^{−x}` with the C library's `exp`, so
//! that no chain depends on a platform's libm. The draws are the same as
//! `rand_distr::Exp1`'s in layout (rand_distr uses this construction too),
//! but the tables and the slow path are pcmc's, hence so are the values.

mod tables;

pub(crate) use tables::ZIG_EXP_X;
use tables::{ZIG_EXP_F, ZIG_EXP_R};

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

/// A source of 64-bit random words: any `rand::Rng`, or one AVX2 lane's
/// xoshiro256++ state taken out of its registers for the slow path.
pub trait Bits {
    /// The next 64 random bits.
    fn next_bits(&mut self) -> u64;
}

impl<R: rand::Rng + ?Sized> Bits for R {
    #[inline(always)]
    fn next_bits(&mut self) -> u64 {
        self.next_u64()
    }
}

/// One xoshiro256++ generator as four bare words (Blackman & Vigna): the
/// same sequence as `rand_xoshiro::Xoshiro256PlusPlus` from the same state,
/// for the AVX2 kernel's slow path, which must read and write a lane's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LaneRng(pub(crate) [u64; 4]);

impl Bits for LaneRng {
    #[inline]
    fn next_bits(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }
}

/// `1 − 2^−53`: subtracted from a double in `[1, 2)` to give `(0, 1)`.
pub(crate) const ONE_MINUS_HALF_EPS: f64 = 1.0 - f64::EPSILON / 2.0;

/// The fast path's candidate from one 64-bit draw: the layer `i` (low 8
/// bits) and `x = u·X_i` with `u = 1.b₁…b₅₂ − (1 − 2^−53) ∈ (0, 1)` from the
/// high 52 bits. The candidate is accepted iff `x < X_{i+1}`.
#[inline(always)]
pub(crate) fn first_try(bits: u64) -> (f64, usize) {
    let i = (bits & 0xff) as usize;
    let u = f64::from_bits((bits >> 12) | 1.0f64.to_bits()) - ONE_MINUS_HALF_EPS;
    (u * ZIG_EXP_X[i], i)
}

/// A `[0, 1)` double from 53 random bits (rand's standard conversion).
#[inline(always)]
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

/// A unit exponential draw. Consumes one 64-bit word on the fast path.
#[inline(always)]
pub fn exp1<B: Bits + ?Sized>(rng: &mut B) -> f64 {
    let (x, i) = first_try(rng.next_bits());
    if x < ZIG_EXP_X[i + 1] {
        return x;
    }
    exp1_slow(rng, x, i)
}

/// A draw from the tail beyond r from one 64-bit word: r + Exp(1)
/// (memorylessness).
#[inline]
pub(crate) fn tail_draw(bits: u64) -> f64 {
    ZIG_EXP_R - ln_unit(1.0 - unit(bits))
}

/// The wedge test of layer `i ≥ 1` for a candidate `x ∈ [X_{i+1}, X_i)`
/// from one 64-bit word: a point `y` of the rectangle's band
/// `[F_i, F_{i+1}]` above `x` is under the curve iff `y < e^{−x}`, i.e.
/// `ln y < −x`.
#[inline]
pub(crate) fn wedge_accepts(x: f64, i: usize, bits: u64) -> bool {
    let y = ZIG_EXP_F[i + 1] + (ZIG_EXP_F[i] - ZIG_EXP_F[i + 1]) * unit(bits);
    ln_unit(y) < -x
}

/// The slow path after a rejected fast-path candidate `x` in layer `i`:
/// the tail (layer 0) or the wedge test, then new draws until one is
/// accepted. The AVX2 kernel calls this for a lane whose fast path failed,
/// with that lane's generator, so both kernels consume the same words.
#[cold]
#[inline(never)]
pub(crate) fn exp1_slow<B: Bits + ?Sized>(rng: &mut B, mut x: f64, mut i: usize) -> f64 {
    loop {
        if i == 0 {
            return tail_draw(rng.next_bits());
        }
        if wedge_accepts(x, i, rng.next_bits()) {
            return x;
        }
        (x, i) = first_try(rng.next_bits());
        if x < ZIG_EXP_X[i + 1] {
            return x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, StreamKey};
    use rand::Rng;

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
    fn lane_generator_matches_rand_xoshiro() {
        let key = StreamKey::new(3, 1, 4, 1, 5, Purpose::Test);
        let mut a = key.rng();
        let mut b = LaneRng(key.state());
        for _ in 0..10_000 {
            assert_eq!(a.next_u64(), b.next_bits());
        }
    }

    #[test]
    fn tables_are_monotone_and_consistent() {
        assert_eq!(ZIG_EXP_X[1], ZIG_EXP_R);
        assert_eq!(ZIG_EXP_X[256], 0.0);
        assert_eq!(ZIG_EXP_F[256], 1.0);
        for i in 1..256 {
            assert!(ZIG_EXP_X[i + 1] < ZIG_EXP_X[i]);
            assert!(ZIG_EXP_F[i + 1] > ZIG_EXP_F[i]);
            // F_i = e^{−X_i} to within rounding of the generator's output.
            assert!((ZIG_EXP_F[i] - (-ZIG_EXP_X[i]).exp()).abs() <= 2e-15 * ZIG_EXP_F[i]);
            // Equal areas: X_i (F_{i+1} − F_i) = v.
            let area = ZIG_EXP_X[i] * (ZIG_EXP_F[i + 1] - ZIG_EXP_F[i]);
            assert!((area / 3.949_659_822_581_557e-3 - 1.0).abs() < 1e-12, "{i}");
        }
        // The base strip: x_0·f(r) = v = (r + 1)e^{−r}.
        let v = ZIG_EXP_X[0] * ZIG_EXP_F[1];
        assert!((v / ((ZIG_EXP_R + 1.0) * (-ZIG_EXP_R).exp()) - 1.0).abs() < 1e-14);
    }

    // Tests with power where a ziggurat's errors hide: the 2·10⁶-draw law
    // tests in tests/exponential_law.rs would miss one layer's boundary 3 %
    // off or the tail start moved by 0.05. Each tolerance below is a z (or
    // KS) bound at a false-alarm rate of ~10⁻⁸ per comparison.

    /// Kolmogorov–Smirnov distance of `xs` (sorted) from Exp(1).
    fn ks_exp1(xs: &[f64]) -> f64 {
        let n = xs.len() as f64;
        xs.iter()
            .enumerate()
            .map(|(k, &x)| {
                let f = 1.0 - (-x).exp();
                (f - k as f64 / n).abs().max(((k + 1) as f64 / n - f).abs())
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn the_tail_is_r_plus_an_exponential_beyond_the_first_layer() {
        // 4·10⁵ tail draws (the sampler reaches the tail once in ~2200
        // draws): every one beyond X_1 = r, and X − X_1 ~ Exp(1) with KS
        // distance below √(ln(2/10⁻⁸)/2n) = 0.0072 (a tail start moved by
        // 0.05 gives 0.049).
        let mut rng = StreamKey::new(41, 0, 0, 0, 0, Purpose::Test).rng();
        let n = 400_000;
        let mut xs: Vec<f64> = (0..n)
            .map(|_| tail_draw(rng.next_u64()) - ZIG_EXP_X[1])
            .collect();
        assert!(xs.iter().all(|&x| x >= 0.0), "a tail draw below r");
        xs.sort_by(f64::total_cmp);
        let d = ks_exp1(&xs);
        let crit = ((2.0f64 / 1e-8).ln() / (2.0 * n as f64)).sqrt();
        assert!(d < crit, "tail: KS {d} ≥ {crit}");
        let mean = xs.iter().sum::<f64>() / n as f64;
        assert!(
            (mean - 1.0).abs() < 6.0 / (n as f64).sqrt(),
            "tail mean {mean}"
        );
    }

    #[test]
    fn each_layer_wedge_accepts_at_its_exact_rate() {
        // Layer i's wedge: x uniform on [X_{i+1}, X_i), accepted with
        // probability (e^{−x} − F_i)/(F_{i+1} − F_i); averaged over x that
        // is ((F_{i+1} − F_i)/(X_i − X_{i+1}) − F_i)/(F_{i+1} − F_i). 2·10⁴
        // trials per layer, |z| < 6 for each of the 255 layers (a wedge
        // test broken in one layer moves its rate by far more).
        let mut rng = StreamKey::new(43, 0, 0, 0, 0, Purpose::Test).rng();
        let n = 20_000;
        for i in 1..256 {
            let (lo, hi) = (ZIG_EXP_X[i + 1], ZIG_EXP_X[i]);
            let (fi, fi1) = ((-hi).exp(), (-lo).exp());
            let p = ((fi1 - fi) / (hi - lo) - fi) / (fi1 - fi);
            let hits = (0..n)
                .filter(|_| {
                    let x = lo + (hi - lo) * unit(rng.next_u64());
                    wedge_accepts(x, i, rng.next_u64())
                })
                .count();
            let z = (hits as f64 / n as f64 - p) / (p * (1.0 - p) / n as f64).sqrt();
            assert!(
                z.abs() < 6.0,
                "layer {i}: wedge rate z = {z:.1} (exact {p:.4})"
            );
        }
    }

    #[test]
    fn each_layer_region_holds_its_exact_mass_with_the_right_shape() {
        // 1.6·10⁷ draws of the sampler itself. For each layer i ≥ 1 the
        // region [X_{i+1}, X_i) must hold e^{−X_{i+1}} − e^{−X_i} of them,
        // spread inside it as e^{−x}: four sub-bins of equal exact mass per
        // region, each count within 6 standard deviations (binomial). A
        // boundary 3 % off moves thousands of draws across bins whose
        // standard deviation is at most ~130.
        let mut rng = StreamKey::new(47, 0, 0, 0, 0, Purpose::Test).rng();
        let n = 16_000_000usize;
        const SUB: usize = 4;
        // Bin edges, ascending: 0 = X_256 < … < X_1 = r, each region split
        // into SUB parts of equal mass under e^{−x}; then the tail.
        let mut edges = Vec::with_capacity(256 * SUB + 1);
        for i in (1..256).rev() {
            let (lo, hi) = (ZIG_EXP_X[i + 1], ZIG_EXP_X[i]);
            let (a, b) = ((-lo).exp(), (-hi).exp());
            for k in 0..SUB {
                edges.push(-(a - (a - b) * k as f64 / SUB as f64).ln());
            }
        }
        edges.push(ZIG_EXP_X[1]);
        let mut counts = vec![0u64; edges.len()];
        for _ in 0..n {
            let x = exp1(&mut rng);
            let b = edges.partition_point(|&e| e <= x); // 1 ..= edges.len()
            counts[b - 1] += 1;
        }
        let cdf = |x: f64| 1.0 - (-x).exp();
        for b in 0..edges.len() {
            let p = if b + 1 < edges.len() {
                cdf(edges[b + 1]) - cdf(edges[b])
            } else {
                1.0 - cdf(edges[b])
            };
            let expect = n as f64 * p;
            let z = (counts[b] as f64 - expect) / (expect * (1.0 - p)).sqrt();
            assert!(
                z.abs() < 6.0,
                "bin [{}, {}): {} draws, {expect:.0} expected (z = {z:.1})",
                edges[b],
                edges.get(b + 1).copied().unwrap_or(f64::INFINITY),
                counts[b]
            );
        }
    }

    #[test]
    fn fast_path_takes_most_draws() {
        let mut rng = StreamKey::new(1, 0, 0, 0, 0, Purpose::Test).rng();
        let n = 1_000_000;
        let fast = (0..n)
            .filter(|_| {
                let (x, i) = first_try(rng.next_u64());
                x < ZIG_EXP_X[i + 1]
            })
            .count();
        // The fast region's share of the 256 layers' area: the base strip's
        // [0, r] × [0, f(r)] and each rectangle's part left of X_{i+1}
        // (≈ 0.9778; the base strip alone rejects 1/(r + 1) of its draws).
        let v = ZIG_EXP_X[0] * ZIG_EXP_F[1];
        let area: f64 = ZIG_EXP_X[1] * ZIG_EXP_F[1]
            + (1..256)
                .map(|i| ZIG_EXP_X[i + 1] * (ZIG_EXP_F[i + 1] - ZIG_EXP_F[i]))
                .sum::<f64>();
        let p = area / (256.0 * v);
        let rate = fast as f64 / n as f64;
        let se = (p * (1.0 - p) / n as f64).sqrt();
        assert!((rate - p).abs() < 5.0 * se, "{rate} vs {p}");
    }
}
