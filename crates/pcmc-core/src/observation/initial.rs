//! The initial-state law: per species a Poisson count around a mean, or a
//! fixed count.

use super::poisson::draw;
use crate::error::{Error, Result};
use crate::model::Network;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The initial law of one species' count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum InitialCount {
    /// `Poisson(mean)` (a mean of 0 gives a fixed 0).
    Poisson(f64),
    /// Exactly this count.
    Fixed(u64),
}

/// The initial-state prior: independent counts per species.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitialPrior {
    counts: Vec<InitialCount>,
    /// Each species' mean (the fixed count for a fixed one).
    means: Vec<f64>,
}

/// Largest initial mean or count.
const MAX_INITIAL: f64 = 1e12;

impl InitialPrior {
    /// Poisson means per species, in state-vector order (0 gives a fixed 0).
    ///
    /// # Errors
    /// [`Error::Setting`] for a wrong length or a mean that is negative, not
    /// finite, or above 10^12.
    pub fn new(net: &Network, means: Vec<f64>) -> Result<Self> {
        Self::with_counts(net, means.into_iter().map(InitialCount::Poisson).collect())
    }

    /// A law per species, in state-vector order.
    ///
    /// # Errors
    /// [`Error::Setting`] for a wrong length, a Poisson mean that is
    /// negative, not finite or above 10^12, or a fixed count above 10^12.
    pub fn with_counts(net: &Network, counts: Vec<InitialCount>) -> Result<Self> {
        if counts.len() != net.species().len() {
            return Err(Error::setting(
                "initial.means",
                format!(
                    "{} initial counts for {} species",
                    counts.len(),
                    net.species().len()
                ),
            ));
        }
        let mut means = Vec::with_capacity(counts.len());
        for (c, s) in counts.iter().zip(net.species()) {
            let m = match *c {
                InitialCount::Poisson(m) => {
                    if !(m.is_finite() && (0.0..=MAX_INITIAL).contains(&m)) {
                        return Err(Error::setting(
                            "initial.means",
                            format!("{s}: {m} is not a mean in [0, 1e12]"),
                        ));
                    }
                    m
                }
                InitialCount::Fixed(n) => {
                    if n as f64 > MAX_INITIAL {
                        return Err(Error::setting(
                            "initial.counts",
                            format!("{s}: {n} is above 1e12"),
                        ));
                    }
                    n as f64
                }
            };
            means.push(m);
        }
        Ok(InitialPrior { counts, means })
    }

    /// Each species' initial mean (its count, when fixed).
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// Each species' initial law.
    pub fn counts(&self) -> &[InitialCount] {
        &self.counts
    }

    /// Draws one initial state into `x` through `set(species, count)`. A
    /// fixed count draws nothing.
    pub fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, mut set: impl FnMut(usize, u64)) {
        for (s, c) in self.counts.iter().enumerate() {
            match *c {
                InitialCount::Poisson(m) => set(s, draw(m, rng)),
                InitialCount::Fixed(n) => set(s, n),
            }
        }
    }
}
