//! Exact, partition-independent resampling.
//!
//! # Quantised weights
//! With `M` the largest log-weight, particle `i` gets the integer weight
//! `q_i = round(exp(lw_i − M) · 2^62)` (a `u64`), and every total is an exact
//! `u128` sum, so reduction order (threads, ranks, partitions) cannot change a
//! bit. A weight below `2^−63` of the largest becomes 0 and never survives
//! resampling, an effect far below Monte Carlo error (it would need N ≈ 2^63
//! particles to matter). The largest particle has `q = 2^62`, so the total is
//! positive whenever any weight is.
//!
//! # Schemes
//! All schemes map the integer weights, their exact total `S` and the number of
//! offspring `N` to offspring counts `o_i` with `Σ o_i = N`, `E[o_i] = N q_i / S`.
//!
//! - **systematic** (default): one uniform integer `V ∈ [0, S)`; pointer `k` is
//!   at `(k·S + V)/N` in weight space, and particle `i` receives the pointers
//!   falling in `[C_{i−1}, C_i)`. Counts are within ±1 of `N q_i / S`.
//! - **stratified**: as systematic, with an independent `V_k` per pointer.
//! - **multinomial**: `N` independent pointers, uniform on `[0, S)`.
//! - **residual**: `⌊N q_i / S⌋` copies, then multinomial on the remainders.
//!
//! Systematic and stratified work on any contiguous slice of the particles
//! given the exact prefix sum before it ([`offspring_slice`]), which is what the
//! distributed executors need. All arithmetic is integer: `N·C_i ≤ N²·2^62`
//! fits in a u128 for `N ≤ 2^32`, the particle limit.

use crate::error::{Error, Result};
use crate::rng::StreamKey;
use rand::RngExt;
use serde::{Deserialize, Serialize};

/// Bits of precision of the quantised weights.
pub const WEIGHT_BITS: i32 = 62;

/// The largest particle count the exact arithmetic supports.
pub const MAX_PARTICLES: usize = 1 << 32;

/// A resampling scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resampling {
    /// Systematic resampling (Kitagawa, 1996; Carpenter et al., 1999).
    #[default]
    Systematic,
    /// Stratified resampling (Kitagawa, 1996).
    Stratified,
    /// Multinomial resampling (Gordon et al., 1993).
    Multinomial,
    /// Residual resampling (Liu & Chen, 1998).
    Residual,
}

impl Resampling {
    /// Whether the scheme works on slices with only the global prefix known,
    /// as the distributed executors need.
    pub fn is_distributable(self) -> bool {
        matches!(self, Resampling::Systematic | Resampling::Stratified)
    }

    /// Parses `systematic`, `stratified`, `multinomial` or `residual`.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the accepted values.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "systematic" => Ok(Resampling::Systematic),
            "stratified" => Ok(Resampling::Stratified),
            "multinomial" => Ok(Resampling::Multinomial),
            "residual" => Ok(Resampling::Residual),
            _ => Err(Error::setting(
                "filter.resampling",
                format!("{s:?} is not one of systematic, stratified, multinomial, residual"),
            )),
        }
    }
}

/// The quantised weight of a particle with log-weight `lw` when the largest
/// log-weight is `max` (finite).
#[inline]
pub fn quantise(lw: f64, max: f64) -> u64 {
    let w = (lw - max).exp();
    (w * (1u64 << WEIGHT_BITS) as f64).round() as u64
}

/// `ln(S / 2^62)`: the log of the exact total as a multiple of the largest
/// weight.
pub fn ln_total(total: u128) -> f64 {
    (total as f64).ln() - f64::from(WEIGHT_BITS) * std::f64::consts::LN_2
}

/// The log of the mean weight, `M + ln(S / 2^62) − ln n`, the filter's
/// increment at one observation: exactly `M` when every one of the `n`
/// quantised weights is `2^62` (all particles alive with equal weights, as
/// at a row of missing values, or `n = 1`), which the formula would round.
/// (Systematic and stratified resampling at equal weights keep every
/// particle once: such a row leaves the population as it is.)
pub fn log_mean_weight(max: f64, total: u128, n: usize) -> f64 {
    if total == (n as u128) << WEIGHT_BITS {
        max
    } else {
        max + ln_total(total) - (n as f64).ln()
    }
}

/// The number of pointers `k ∈ [0, n)` with `k·S + v < x`, for the systematic
/// scheme.
#[inline]
fn below(x: u128, v: u128, total: u128, n: u128) -> u128 {
    if x <= v {
        0
    } else {
        (x - v).div_ceil(total).min(n)
    }
}

/// The systematic uniform `V ∈ [0, S)` for a resampling step.
pub fn systematic_uniform(key: StreamKey, total: u128) -> u128 {
    key.with_index(0).rng().random_range(0..total)
}

/// Offspring counts for a contiguous slice `q` of the particles whose weights
/// before it sum to `before`, for a distributable scheme.
///
/// `total` is the exact total `S > 0`, `n` the number of offspring overall and
/// `key` the step's resampling key. Writes one count per particle into `out`.
///
/// # Panics
/// If the scheme is not distributable (a programming error: the filter checks).
pub fn offspring_slice(
    scheme: Resampling,
    q: &[u64],
    before: u128,
    total: u128,
    n: u64,
    key: StreamKey,
    out: &mut [u64],
) {
    let n = u128::from(n);
    match scheme {
        Resampling::Systematic => {
            let v = systematic_uniform(key, total);
            let mut c = before;
            let mut prev = below(n * c, v, total, n);
            for (qi, o) in q.iter().zip(out.iter_mut()) {
                c += u128::from(*qi);
                let cur = below(n * c, v, total, n);
                *o = (cur - prev) as u64;
                prev = cur;
            }
        }
        Resampling::Stratified => {
            let lo = n * before;
            let sum: u128 = q.iter().map(|x| u128::from(*x)).sum();
            let hi = n * (before + sum);
            out[..q.len()].fill(0);
            if hi == lo {
                return;
            }
            // Pointer k lies in [kS, (k+1)S): only these k can land in [lo, hi).
            let k_first = lo / total;
            let k_end = hi.div_ceil(total).min(n);
            let mut i = 0usize;
            let mut edge = n * (before + u128::from(q[0]));
            for k in k_first..k_end {
                let p = k * total + key.with_index(k as u64).rng().random_range(0..total);
                if p < lo || p >= hi {
                    continue;
                }
                while p >= edge {
                    i += 1;
                    edge += n * u128::from(q[i]);
                }
                out[i] += 1;
            }
        }
        Resampling::Multinomial | Resampling::Residual => {
            panic!("{scheme:?} resampling is not distributable")
        }
    }
}

/// The number of offspring of all particles before a point whose weights
/// sum to `before`, for a distributable scheme: the global index of that
/// point's first offspring after resampling. Equals the sum of
/// [`offspring_slice`]'s counts over every particle before it.
///
/// # Panics
/// If the scheme is not distributable (a programming error).
pub fn offspring_before(
    scheme: Resampling,
    before: u128,
    total: u128,
    n: u64,
    key: StreamKey,
) -> u64 {
    let nn = u128::from(n);
    let lo = nn * before;
    match scheme {
        Resampling::Systematic => below(lo, systematic_uniform(key, total), total, nn) as u64,
        Resampling::Stratified => {
            // Pointers of strata k < ⌊lo/S⌋ all lie below lo; the pointer of
            // stratum ⌊lo/S⌋ does if its uniform is below lo mod S.
            let k = lo / total;
            if k >= nn {
                return n;
            }
            let r = lo % total;
            let v = key.with_index(k as u64).rng().random_range(0..total);
            (k + u128::from(r > 0 && v < r)) as u64
        }
        Resampling::Multinomial | Resampling::Residual => {
            panic!("{scheme:?} resampling is not distributable")
        }
    }
}

/// Offspring counts for all particles at once, for any scheme. `out` must have
/// the length of `q`; `n` is the number of offspring.
pub fn offspring_all(
    scheme: Resampling,
    q: &[u64],
    total: u128,
    n: u64,
    key: StreamKey,
    out: &mut [u64],
) {
    match scheme {
        Resampling::Systematic | Resampling::Stratified => {
            offspring_slice(scheme, q, 0, total, n, key, out)
        }
        Resampling::Multinomial => {
            let mut rng = key.with_index(0).rng();
            let mut pointers: Vec<u128> = (0..n).map(|_| rng.random_range(0..total)).collect();
            pointers.sort_unstable();
            out.fill(0);
            walk_sorted(q.iter().map(|x| u128::from(*x)), &pointers, out);
        }
        Resampling::Residual => {
            let nn = u128::from(n);
            let mut assigned = 0u128;
            for (qi, o) in q.iter().zip(out.iter_mut()) {
                let f = nn * u128::from(*qi) / total;
                *o = f as u64;
                assigned += f;
            }
            let rest = nn - assigned;
            if rest == 0 {
                return;
            }
            let mut rng = key.with_index(0).rng();
            let mut pointers: Vec<u128> = (0..rest)
                .map(|_| rng.random_range(0..rest * total))
                .collect();
            pointers.sort_unstable();
            let residuals = q
                .iter()
                .zip(out.iter())
                .map(|(qi, o)| nn * u128::from(*qi) - u128::from(*o) * total);
            let mut extra = vec![0u64; q.len()];
            walk_sorted(residuals, &pointers, &mut extra);
            for (o, e) in out.iter_mut().zip(extra) {
                *o += e;
            }
        }
    }
}

/// Counts sorted `pointers` falling in each weight's interval of the prefix
/// sums of `weights`.
fn walk_sorted(weights: impl Iterator<Item = u128>, pointers: &[u128], out: &mut [u64]) {
    let mut k = 0;
    let mut c = 0u128;
    for (w, o) in weights.zip(out.iter_mut()) {
        c += w;
        while k < pointers.len() && pointers[k] < c {
            *o += 1;
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Purpose;

    fn key(step: u64) -> StreamKey {
        StreamKey::new(3, 0, 0, step, 0, Purpose::Resample)
    }

    #[test]
    fn quantise_range() {
        assert_eq!(quantise(0.0, 0.0), 1 << 62);
        assert_eq!(quantise(f64::NEG_INFINITY, 0.0), 0);
        assert_eq!(quantise(-100.0, 0.0), 0);
        assert!(quantise(-1.0, 0.0) > 0);
        assert!((ln_total(1 << 62)).abs() < 1e-15);
    }

    fn weights(n: usize, seed: u64) -> Vec<u64> {
        let mut rng = StreamKey::new(seed, 0, 0, 0, 0, Purpose::Test).rng();
        (0..n)
            .map(|i| {
                if i % 7 == 3 {
                    0
                } else {
                    quantise(-4.0 * rng.random::<f64>(), 0.0)
                }
            })
            .collect()
    }

    #[test]
    fn all_schemes_conserve_count_and_skip_zeros() {
        for scheme in [
            Resampling::Systematic,
            Resampling::Stratified,
            Resampling::Multinomial,
            Resampling::Residual,
        ] {
            for n in [1usize, 2, 5, 64, 1000] {
                let q = weights(n, n as u64);
                let total: u128 = q.iter().map(|x| u128::from(*x)).sum();
                let mut out = vec![0; n];
                offspring_all(scheme, &q, total, n as u64, key(1), &mut out);
                assert_eq!(out.iter().sum::<u64>(), n as u64, "{scheme:?} n={n}");
                for (qi, o) in q.iter().zip(&out) {
                    if *qi == 0 {
                        assert_eq!(*o, 0);
                    }
                }
            }
        }
    }
}
