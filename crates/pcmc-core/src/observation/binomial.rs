//! Binomial noise: `y ~ Binomial(n = v, p = ρ)`, partial ascertainment of a
//! count; a datum above the value has likelihood zero.
//!
//! `ln P(y) = ln v! − ln (v−y)! − ln y! + y ln ρ + (v−y) ln(1−ρ)`.

use super::poisson::ln_fact;
use rand::Rng;
use rand_distr::{Binomial as BinomialDist, Distribution};

/// Binomial noise with a resolved `ρ ∈ (0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Binomial {
    rho: f64,
    ln_rho: f64,
    /// `ln(1 − ρ)` (−∞ at `ρ = 1`).
    ln_miss: f64,
}

/// Counts above this are treated as this (beyond any population cap).
const N_MAX: f64 = 9.0e15;

impl Binomial {
    /// `None` unless `0 < rho ≤ 1`.
    pub fn new(rho: f64) -> Option<Self> {
        (rho > 0.0 && rho <= 1.0).then(|| Binomial {
            rho,
            ln_rho: rho.ln(),
            ln_miss: (-rho).ln_1p(),
        })
    }

    /// The per-cell constant `y ln ρ − ln y!`.
    pub fn constant(&self, y: f64) -> f64 {
        y * self.ln_rho - ln_fact(y)
    }

    /// The part that depends on the value `n`: `ln n! − ln (n−y)! + (n−y) ln(1−ρ)`.
    #[inline]
    fn g(&self, y: f64, n: f64) -> f64 {
        if n < y {
            return f64::NEG_INFINITY;
        }
        let d = n - y;
        let miss = if d == 0.0 { 0.0 } else { d * self.ln_miss };
        ln_fact(n) - ln_fact(d) + miss
    }

    /// `ln P(y; n = v, ρ)` with `c` = [`Binomial::constant`]`(y)`.
    #[inline]
    pub fn ln_density(&self, y: f64, c: f64, v: f64) -> f64 {
        let g = self.g(y, v.min(N_MAX));
        if g == f64::NEG_INFINITY { g } else { c + g }
    }

    /// The value that explains `y` best: `P(y; n+1)/P(y; n) =
    /// (n+1)(1−ρ)/(n+1−y) ≥ 1` exactly while `n + 1 ≤ y/ρ`, so the mode is
    /// `⌊y/ρ⌋` (tied with its predecessor when `y/ρ` is a whole number).
    fn mode(&self, y: f64) -> f64 {
        (y / self.rho).floor().clamp(y, N_MAX)
    }

    /// The largest density over every count `n ≥ y`: the computed density
    /// at the mode and its two neighbours (so that a tie or the rounding of
    /// `y/ρ` cannot pick the wrong one).
    pub fn bound(&self, y: f64, c: f64) -> f64 {
        let m = self.mode(y);
        [m - 1.0, m, m + 1.0]
            .into_iter()
            .filter(|n| *n >= y)
            .map(|n| self.ln_density(y, c, n))
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// How far rounding can lift a computed density above the computed
    /// bound: the terms `ln n!`, `ln (n−y)!` (each within 16 u of their
    /// magnitude), the product and the additions, near the mode (where
    /// rounding can matter), covered by
    /// `256 u (|c| + ln n*! + ln (n*−y)! + (n*−y)|ln(1−ρ)|) + 2⁻⁴⁰`.
    pub fn rounding(&self, y: f64, c: f64) -> f64 {
        let m = self.mode(y);
        let d = m - y;
        let miss = if d == 0.0 {
            0.0
        } else {
            d * self.ln_miss.abs()
        };
        let mag = c.abs() + ln_fact(m) + ln_fact(d) + miss;
        256.0 * f64::EPSILON / 2.0 * mag + 2f64.powi(-40)
    }

    /// One observation of value `v`.
    pub fn sample<R: Rng + ?Sized>(&self, v: f64, rng: &mut R) -> f64 {
        BinomialDist::new(v as u64, self.rho)
            .expect("validated probability")
            .sample(rng) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn density_and_bound() {
        let b = Binomial::new(0.3).unwrap();
        let (y, n) = (2.0, 5.0);
        // C(5,2) 0.3² 0.7³ = 10 · 0.09 · 0.343.
        let expect: f64 = 10.0 * 0.09 * 0.343;
        let got = b.ln_density(y, b.constant(y), n).exp();
        assert!((got - expect).abs() < 1e-14, "{got} vs {expect}");
        assert_eq!(b.ln_density(3.0, b.constant(3.0), 2.0), f64::NEG_INFINITY);
        for rho in [0.05, 0.3, 0.5, 0.999, 1.0] {
            let b = Binomial::new(rho).unwrap();
            for y in [0.0, 1.0, 3.0, 40.0] {
                let c = b.constant(y);
                let bound = b.bound(y, c);
                let best = (0..2000)
                    .map(|n| b.ln_density(y, c, n as f64))
                    .fold(f64::NEG_INFINITY, f64::max);
                assert_eq!(best, bound, "ρ {rho} y {y}");
            }
        }
        let one = Binomial::new(1.0).unwrap();
        assert_eq!(one.ln_density(4.0, one.constant(4.0), 4.0), 0.0);
        assert_eq!(
            one.ln_density(4.0, one.constant(4.0), 5.0),
            f64::NEG_INFINITY
        );
        assert!(Binomial::new(0.0).is_none() && Binomial::new(1.5).is_none());
    }
}
