//! Prior distributions for the rate parameters.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use statrs::function::gamma::ln_gamma;

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// A prior on one positive rate parameter. Densities are on the natural
/// scale; PMMH adds the Jacobian of its log-scale proposal itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Prior {
    /// Density ∝ 1/θ on `[lower, upper]` (uniform in log θ).
    LogUniform {
        /// Lower bound (> 0).
        lower: f64,
        /// Upper bound (> lower).
        upper: f64,
    },
    /// Uniform on `[lower, upper]`, `0 ≤ lower < upper`.
    Uniform {
        /// Lower bound (≥ 0).
        lower: f64,
        /// Upper bound.
        upper: f64,
    },
    /// `ln θ ~ Normal(mu, sigma²)`.
    LogNormal {
        /// Mean of ln θ.
        mu: f64,
        /// Standard deviation of ln θ (> 0).
        sigma: f64,
    },
    /// Gamma with `shape` and `rate` (mean shape/rate).
    Gamma {
        /// Shape (> 0).
        shape: f64,
        /// Rate (> 0).
        rate: f64,
    },
    /// The parameter is not inferred: it stays at `value`.
    Fixed {
        /// The value (> 0).
        value: f64,
    },
}

impl Prior {
    /// Checks the hyper-parameters. `name` names the parameter in messages.
    ///
    /// # Errors
    /// [`Error::Setting`] for out-of-range hyper-parameters.
    pub fn validate(&self, name: &str) -> Result<()> {
        let bad = |why: String| Err(Error::setting(format!("parameters.{name}.prior"), why));
        let fin = |x: f64| x.is_finite();
        match *self {
            Prior::LogUniform { lower, upper } => {
                if !(fin(lower) && fin(upper) && lower > 0.0 && upper > lower) {
                    return bad(format!(
                        "log-uniform needs 0 < lower < upper, both finite; found lower = {lower}, upper = {upper}"
                    ));
                }
            }
            Prior::Uniform { lower, upper } => {
                if !(fin(lower) && fin(upper) && lower >= 0.0 && upper > lower) {
                    return bad(format!(
                        "uniform needs 0 <= lower < upper, both finite; found lower = {lower}, upper = {upper}"
                    ));
                }
            }
            Prior::LogNormal { mu, sigma } => {
                if !(fin(mu) && fin(sigma) && sigma > 0.0) {
                    return bad(format!(
                        "log-normal needs a finite mu and a finite sigma > 0; found mu = {mu}, sigma = {sigma}"
                    ));
                }
            }
            Prior::Gamma { shape, rate } => {
                if !(fin(shape) && fin(rate) && shape > 0.0 && rate > 0.0) {
                    return bad(format!(
                        "gamma needs finite shape > 0 and rate > 0; found shape = {shape}, rate = {rate}"
                    ));
                }
            }
            Prior::Fixed { value } => {
                if !(fin(value) && value > 0.0) {
                    return bad(format!(
                        "fixed needs a finite value > 0; found value = {value}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the parameter is fixed.
    pub fn is_fixed(&self) -> bool {
        matches!(self, Prior::Fixed { .. })
    }

    /// Log-density at `x` (−∞ outside the support). For [`Prior::Fixed`],
    /// 0 at the value and −∞ elsewhere.
    pub fn log_density(&self, x: f64) -> f64 {
        if !(x.is_finite() && x > 0.0) {
            return f64::NEG_INFINITY;
        }
        match *self {
            Prior::LogUniform { lower, upper } => {
                if x < lower || x > upper {
                    f64::NEG_INFINITY
                } else {
                    -x.ln() - (upper.ln() - lower.ln()).ln()
                }
            }
            Prior::Uniform { lower, upper } => {
                if x < lower || x > upper {
                    f64::NEG_INFINITY
                } else {
                    -(upper - lower).ln()
                }
            }
            Prior::LogNormal { mu, sigma } => {
                let z = (x.ln() - mu) / sigma;
                -x.ln() - sigma.ln() - LN_SQRT_2PI - 0.5 * z * z
            }
            Prior::Gamma { shape, rate } => {
                shape * rate.ln() - ln_gamma(shape) + (shape - 1.0) * x.ln() - rate * x
            }
            Prior::Fixed { value } => {
                if x == value {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            }
        }
    }

    /// A draw from the prior (the value itself for [`Prior::Fixed`]). A
    /// uniform prior with `lower = 0` can return 0, which is outside the
    /// support: callers that need a valid point check [`Prior::log_density`].
    pub fn sample<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        use crate::rng::uniform_open0 as u;
        use rand_distr::{Distribution, StandardNormal};
        match *self {
            Prior::LogUniform { lower, upper } => {
                (lower.ln() + u(rng) * (upper.ln() - lower.ln())).exp()
            }
            Prior::Uniform { lower, upper } => lower + u(rng) * (upper - lower),
            Prior::LogNormal { mu, sigma } => {
                let z: f64 = StandardNormal.sample(rng);
                (mu + sigma * z).exp()
            }
            Prior::Gamma { shape, rate } => rand_distr::Gamma::new(shape, 1.0 / rate)
                .map(|g| g.sample(rng))
                .unwrap_or(f64::NAN),
            Prior::Fixed { value } => value,
        }
    }

    /// A central value: the geometric mid-point, mid-point, median, mean or
    /// value. Used as a default starting point.
    pub fn centre(&self) -> f64 {
        match *self {
            Prior::LogUniform { lower, upper } => (lower * upper).sqrt(),
            Prior::Uniform { lower, upper } => 0.5 * (lower + upper),
            Prior::LogNormal { mu, .. } => mu.exp(),
            Prior::Gamma { shape, rate } => shape / rate,
            Prior::Fixed { value } => value,
        }
    }
}

/// Checks one prior per parameter (`names`, the network's) and each prior's
/// settings, and returns the indices of the free (not fixed) parameters.
///
/// # Errors
/// [`Error::Setting`] for a list of the wrong length, an invalid prior, or
/// no free parameter.
pub fn free_parameters(names: &[String], priors: &[Prior]) -> Result<Vec<usize>> {
    if priors.len() != names.len() {
        return Err(Error::setting(
            "priors",
            format!("{} priors for {} parameters", priors.len(), names.len()),
        ));
    }
    for (p, name) in priors.iter().zip(names) {
        p.validate(name)?;
    }
    let free: Vec<usize> = (0..priors.len())
        .filter(|i| !priors[*i].is_fixed())
        .collect();
    if free.is_empty() {
        return Err(Error::setting(
            "priors",
            "every parameter is fixed: nothing to infer",
        ));
    }
    Ok(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each density integrates to 1 (trapezoid rule in log space).
    #[test]
    fn densities_normalised() {
        let priors = [
            Prior::LogUniform {
                lower: 0.01,
                upper: 10.0,
            },
            Prior::Uniform {
                lower: 0.5,
                upper: 2.0,
            },
            Prior::LogNormal {
                mu: 0.3,
                sigma: 0.7,
            },
            Prior::Gamma {
                shape: 2.5,
                rate: 3.0,
            },
        ];
        for p in priors {
            p.validate("x").unwrap();
            let (a, b, m) = (1e-6f64.ln(), 1e3f64.ln(), 400_000);
            let h = (b - a) / m as f64;
            let mut s = 0.0;
            for i in 0..=m {
                let u = a + h * i as f64;
                let x = u.exp();
                let f = (p.log_density(x)).exp() * x;
                s += if i == 0 || i == m { 0.5 * f } else { f };
            }
            assert!((s * h - 1.0).abs() < 2e-3, "{p:?}: {}", s * h);
        }
    }

    #[test]
    fn invalid_hyperparameters() {
        for p in [
            Prior::LogUniform {
                lower: 0.0,
                upper: 1.0,
            },
            Prior::LogUniform {
                lower: 2.0,
                upper: 1.0,
            },
            Prior::Uniform {
                lower: -1.0,
                upper: 1.0,
            },
            Prior::LogNormal {
                mu: 0.0,
                sigma: 0.0,
            },
            Prior::Gamma {
                shape: 1.0,
                rate: f64::NAN,
            },
            Prior::Fixed { value: 0.0 },
        ] {
            assert!(p.validate("x").is_err(), "{p:?}");
        }
        let p = Prior::LogUniform {
            lower: 1.0,
            upper: 2.0,
        };
        assert_eq!(p.log_density(f64::NAN), f64::NEG_INFINITY);
        assert_eq!(p.log_density(3.0), f64::NEG_INFINITY);
        assert_eq!(p.log_density(1e300), f64::NEG_INFINITY);
    }
}
