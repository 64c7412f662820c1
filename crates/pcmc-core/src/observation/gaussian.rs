//! Gaussian noise: `y ~ Normal(v, sd²)` around the observable's value `v`.

use super::LN_SQRT_2PI;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Gaussian noise with a resolved standard deviation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gaussian {
    sd: f64,
    ln_sd: f64,
}

impl Gaussian {
    /// `None` unless `sd` is finite and positive.
    pub fn new(sd: f64) -> Option<Self> {
        (sd.is_finite() && sd > 0.0).then(|| Gaussian { sd, ln_sd: sd.ln() })
    }

    /// `ln N(y; v, sd²)`, evaluated as `(−½z² − ln sd) − ln√(2π)`.
    #[inline]
    pub fn ln_density(&self, y: f64, v: f64) -> f64 {
        let z = (y - v) / self.sd;
        -0.5 * z * z - self.ln_sd - LN_SQRT_2PI
    }

    /// The density at `v = y`: `(−ln sd) − ln√(2π)`. The quadratic term
    /// is ≤ 0 and rounding is monotone, so no computed density exceeds this
    /// computed bound: the rounding margin is 0.
    pub fn bound(&self) -> f64 {
        -self.ln_sd - LN_SQRT_2PI
    }

    /// One observation of value `v`.
    pub fn sample<R: Rng + ?Sized>(&self, v: f64, rng: &mut R) -> f64 {
        Normal::new(v, self.sd).expect("validated sd").sample(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn density_and_bound() {
        let g = Gaussian::new(2.0).unwrap();
        let expect = -0.5 - 2f64.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
        assert!((g.ln_density(3.0, 1.0) - expect).abs() < 1e-14);
        assert_eq!(g.ln_density(5.0, 5.0), g.bound());
        assert!(Gaussian::new(0.0).is_none() && Gaussian::new(f64::NAN).is_none());
    }
}
