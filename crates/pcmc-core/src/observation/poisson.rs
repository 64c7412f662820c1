//! Poisson noise: `y ~ Poisson(ρ·v)` (`ρ = 1`: the value itself is the
//! mean).

use rand::Rng;
use rand_distr::{Distribution, Poisson as PoissonDist};
use statrs::function::factorial::ln_factorial;

/// Poisson noise with a resolved reporting rate `ρ > 0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Poisson {
    rho: f64,
}

/// `ln y!`, the per-cell constant of the Poisson and binomial densities.
pub(crate) fn ln_fact(y: f64) -> f64 {
    ln_factorial(y as u64)
}

impl Poisson {
    /// `None` unless `rho` is finite and positive.
    pub fn new(rho: f64) -> Option<Self> {
        (rho.is_finite() && rho > 0.0).then_some(Poisson { rho })
    }

    /// The mean for value `v`: `v` itself when `ρ = 1` (no rounding added).
    #[inline]
    fn mean(&self, v: f64) -> f64 {
        if self.rho == 1.0 { v } else { self.rho * v }
    }

    /// `ln P(y; ρv)` with `c = ln y!`.
    #[inline]
    pub fn ln_density(&self, y: f64, c: f64, v: f64) -> f64 {
        ln_pmf(y, c, self.mean(v))
    }

    /// `ln P(y; λ = y)`: `λ ↦ y ln λ − λ` is largest at `λ = y` over all
    /// real `λ ≥ 0`, so over every `ρ·v` too (`p(0; 0) = 1`).
    pub fn bound(&self, y: f64, c: f64) -> f64 {
        ln_pmf(y, c, y)
    }

    /// How far rounding can lift a computed density above the computed
    /// bound. `y ln λ − λ − ln y!` and the bound at `λ = y` are rounded
    /// independently (the product `ρ·v`, the logarithm, the product and two
    /// subtractions each within one unit roundoff `u = 2⁻⁵³` of their
    /// magnitudes, `ln Γ` within 16 u), so each differs from its exact
    /// value by at most `u·(5|y ln λ| + 3λ + 17 ln Γ(y+1))`. Rounding can
    /// matter only where the exact density is within that of the bound,
    /// i.e. `λ` within a small relative distance of `y`, where the
    /// magnitudes are those at `λ = y` to within a factor 2: the bound per
    /// count is `64 u (y |ln y| + y + ln Γ(y+1)) + 2⁻⁴⁰`, over twice the
    /// worst case. At `y = 8.7·10⁸` that is 2.6·10⁻⁴ nats, while the
    /// density can exceed the bound there by 3.8·10⁻⁶ (2⁻¹⁸).
    pub fn rounding(y: f64, c: f64) -> f64 {
        let mag = if y > 0.0 {
            y * y.ln().abs() + y + c
        } else {
            0.0
        };
        64.0 * f64::EPSILON / 2.0 * mag + 2f64.powi(-40)
    }

    /// One observation of value `v`.
    pub fn sample<R: Rng + ?Sized>(&self, v: f64, rng: &mut R) -> f64 {
        draw(self.mean(v), rng) as f64
    }
}

/// `ln P(Y = y)` for `Y ~ Poisson(λ)` with `c = ln y!`.
#[inline]
pub(crate) fn ln_pmf(y: f64, c: f64, lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return if y == 0.0 { 0.0 } else { f64::NEG_INFINITY };
    }
    y * lambda.ln() - lambda - c
}

/// One Poisson(`lambda`) draw as a count (0 when `lambda` is 0).
pub fn draw<R: Rng + ?Sized>(lambda: f64, rng: &mut R) -> u64 {
    if lambda <= 0.0 {
        return 0;
    }
    PoissonDist::new(lambda)
        .expect("finite positive mean")
        .sample(rng) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn density_and_bound() {
        let p = Poisson::new(0.5).unwrap();
        let c = ln_fact(3.0);
        let expect = 3.0 * 2f64.ln() - 2.0 - 6f64.ln();
        assert!((p.ln_density(3.0, c, 4.0) - expect).abs() < 1e-14);
        assert_eq!(p.ln_density(3.0, c, 6.0), p.bound(3.0, c));
        assert_eq!(ln_pmf(0.0, 0.0, 0.0), 0.0);
        assert_eq!(ln_pmf(1.0, 0.0, 0.0), f64::NEG_INFINITY);
    }
}
