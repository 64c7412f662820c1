//! Negative-binomial noise (NB2): `y ~ NB(mean μ = ρ·v, size k)`, variance
//! `μ + μ²/k`. The dispersion may be given as `k` or as its inverse
//! `φ = 1/k` (variance `μ + φμ²`; `φ = 0` is Poisson noise).
//!
//! `ln P(y) = ln Γ(y+k) − ln Γ(k) − ln Γ(y+1) − k ln(1 + μ/k) − y ln(1 + k/μ)`.

use rand::Rng;
use rand_distr::{Distribution, Gamma};
use statrs::function::gamma::ln_gamma;

/// Negative-binomial noise with resolved `ρ > 0` and finite `k > 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NegativeBinomial {
    rho: f64,
    k: f64,
}

impl NegativeBinomial {
    /// `None` unless `rho` and `k` are finite and positive.
    pub fn new(rho: f64, k: f64) -> Option<Self> {
        (rho.is_finite() && rho > 0.0 && k.is_finite() && k > 0.0)
            .then_some(NegativeBinomial { rho, k })
    }

    /// The size `k`.
    pub fn size(&self) -> f64 {
        self.k
    }

    /// The per-cell constant `ln Γ(y+k) − ln Γ(k) − ln Γ(y+1)`, computed once
    /// per θ and shared by the densities and the bound.
    pub fn constant(&self, y: f64) -> f64 {
        ln_gamma(y + self.k) - ln_gamma(self.k) - ln_gamma(y + 1.0)
    }

    /// The part that depends on the mean.
    #[inline]
    fn g(&self, y: f64, mu: f64) -> f64 {
        if mu <= 0.0 {
            return if y == 0.0 { 0.0 } else { f64::NEG_INFINITY };
        }
        let a = -self.k * (mu / self.k).ln_1p();
        if y == 0.0 {
            a
        } else {
            a - y * (self.k / mu).ln_1p()
        }
    }

    /// `ln P(y; ρv, k)` with `c` = [`NegativeBinomial::constant`]`(y)`.
    #[inline]
    pub fn ln_density(&self, y: f64, c: f64, v: f64) -> f64 {
        let mu = if self.rho == 1.0 { v } else { self.rho * v };
        let g = self.g(y, mu);
        if g == f64::NEG_INFINITY { g } else { c + g }
    }

    /// The density at `μ = y`: `d/dμ [−k ln(k+μ) + y ln μ − y ln(k+μ)]`
    /// `= y/μ − (k+y)/(k+μ)` vanishes only there, so it is the largest over
    /// every real `μ ≥ 0` and every `ρ·v`; at `y = 0` the largest is at
    /// `μ = 0`. Computed by the density's own expression.
    pub fn bound(&self, y: f64, c: f64) -> f64 {
        c + self.g(y, y)
    }

    /// How far rounding can lift a computed density above the computed
    /// bound. The constant `c` is the same number in both; `g(μ)` is a
    /// handful of correctly rounded operations (`ρ·v`, two divisions, two
    /// `ln_1p`, two products, a subtraction, the final addition), each
    /// within `u = 2⁻⁵³` of its magnitude, which near the mode (the only
    /// place rounding can matter) is that at `μ = y` within a factor 2.
    /// `256 u (|c| + y + y ln(1 + k/y) + k ln(1 + y/k)) + 2⁻⁴⁰` covers it
    /// several times over.
    pub fn rounding(&self, y: f64, c: f64) -> f64 {
        if y == 0.0 {
            return 2f64.powi(-40);
        }
        let mag = c.abs() + y + y * (self.k / y).ln_1p() + self.k * (y / self.k).ln_1p();
        256.0 * f64::EPSILON / 2.0 * mag + 2f64.powi(-40)
    }

    /// One observation of value `v` (a Gamma–Poisson mixture).
    pub fn sample<R: Rng + ?Sized>(&self, v: f64, rng: &mut R) -> f64 {
        let mu = self.rho * v;
        if mu <= 0.0 {
            return 0.0;
        }
        let lambda = Gamma::new(self.k, mu / self.k)
            .expect("validated shape and scale")
            .sample(rng);
        super::poisson::draw(lambda, rng) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pmf against the textbook form `C(y+k−1, y) p^k (1−p)^y`,
    /// `p = k/(k+μ)`, for integer `k`, and the mean and variance of the
    /// NB2 law from the pmf.
    #[test]
    fn density_matches_the_nb2_law() {
        let nb = NegativeBinomial::new(0.5, 3.0).unwrap();
        let v = 8.0; // μ = 4
        let p: f64 = 3.0 / 7.0;
        let mut mean = 0.0;
        let mut second = 0.0;
        let mut total = 0.0;
        for y in 0..400u64 {
            let yf = y as f64;
            let binom = ((y + 1) * (y + 2)) as f64 / 2.0; // C(y+2, y)
            let expect = binom * p.powi(3) * (1.0 - p).powi(y as i32);
            let got = nb.ln_density(yf, nb.constant(yf), v).exp();
            assert!((got - expect).abs() <= 1e-12 * expect.max(1e-300), "{y}");
            total += got;
            mean += yf * got;
            second += yf * yf * got;
        }
        assert!((total - 1.0).abs() < 1e-12);
        assert!((mean - 4.0).abs() < 1e-10);
        // NB2: Var = μ + μ²/k = 4 + 16/3.
        assert!((second - mean * mean - (4.0 + 16.0 / 3.0)).abs() < 1e-9);
    }

    #[test]
    fn bound_is_the_largest_density() {
        for k in [0.3, 1.0, 7.5, 1e4] {
            let nb = NegativeBinomial::new(1.0, k).unwrap();
            for y in [0.0, 1.0, 5.0, 120.0] {
                let c = nb.constant(y);
                let b = nb.bound(y, c);
                for v in 0..1000 {
                    let d = nb.ln_density(y, c, v as f64 * 0.37);
                    assert!(d <= b + nb.rounding(y, c), "k {k} y {y} v {v}: {d} > {b}");
                }
                assert_eq!(nb.ln_density(y, c, y), b, "k {k} y {y}");
            }
        }
    }
}
