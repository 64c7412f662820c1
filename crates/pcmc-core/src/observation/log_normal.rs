//! Log-normal noise for positive continuous data: `ln y ~ Normal(ln v, sd²)`
//! (the value is the median). A value of 0 cannot produce a datum.

use super::LN_SQRT_2PI;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Log-normal noise with a resolved sd of `ln y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogNormal {
    sd: f64,
    ln_sd: f64,
}

impl LogNormal {
    /// `None` unless `sd` is finite and positive.
    pub fn new(sd: f64) -> Option<Self> {
        (sd.is_finite() && sd > 0.0).then(|| LogNormal { sd, ln_sd: sd.ln() })
    }

    /// The per-cell constant `ln y`.
    pub fn constant(y: f64) -> f64 {
        y.ln()
    }

    /// `ln p(y; v)` with `c = ln y`: `((−½z² − ln sd) − ln√(2π)) − ln y`,
    /// `z = (ln y − ln v)/sd`.
    #[inline]
    pub fn ln_density(&self, c: f64, v: f64) -> f64 {
        if v <= 0.0 {
            return f64::NEG_INFINITY;
        }
        let z = (c - v.ln()) / self.sd;
        -0.5 * z * z - self.ln_sd - LN_SQRT_2PI - c
    }

    /// The density at `v = y`, evaluated by the same expression with the
    /// quadratic term 0: rounding is monotone, so no computed density
    /// exceeds it (rounding margin 0).
    pub fn bound(&self, c: f64) -> f64 {
        -self.ln_sd - LN_SQRT_2PI - c
    }

    /// One observation of value `v` (0 for a value of 0).
    pub fn sample<R: Rng + ?Sized>(&self, v: f64, rng: &mut R) -> f64 {
        if v <= 0.0 {
            return 0.0;
        }
        let e: f64 = Normal::new(0.0, self.sd).expect("validated sd").sample(rng);
        v * e.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn density_and_bound() {
        let l = LogNormal::new(0.5).unwrap();
        let (y, v) = (3.0f64, 2.0f64);
        let z = (y.ln() - v.ln()) / 0.5;
        let expect = -0.5 * z * z - 0.5f64.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() - y.ln();
        assert!((l.ln_density(y.ln(), v) - expect).abs() < 1e-14);
        assert_eq!(l.ln_density(y.ln(), y), l.bound(y.ln()));
        assert_eq!(l.ln_density(y.ln(), 0.0), f64::NEG_INFINITY);
    }
}
