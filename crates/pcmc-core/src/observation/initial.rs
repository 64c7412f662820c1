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

/// The initial-state prior: independent counts per species. (On the wire
/// only the laws travel; each is checked again on arrival.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "InitialWire", into = "InitialWire")]
pub struct InitialPrior {
    counts: Vec<InitialCount>,
    /// Each species' mean (the fixed count for a fixed one).
    means: Vec<f64>,
}

/// The wire form of an [`InitialPrior`].
#[derive(Serialize, Deserialize)]
struct InitialWire {
    counts: Vec<InitialCount>,
}

impl TryFrom<InitialWire> for InitialPrior {
    type Error = Error;
    fn try_from(w: InitialWire) -> Result<Self> {
        let means = w
            .counts
            .iter()
            .map(|c| check_count(c, "a species"))
            .collect::<Result<Vec<f64>>>()?;
        Ok(InitialPrior {
            counts: w.counts,
            means,
        })
    }
}

impl From<InitialPrior> for InitialWire {
    fn from(p: InitialPrior) -> Self {
        InitialWire { counts: p.counts }
    }
}

/// The mean of one species' law, if it is in range.
fn check_count(c: &InitialCount, s: &str) -> Result<f64> {
    match *c {
        InitialCount::Poisson(m) => {
            if !(m.is_finite() && (0.0..=MAX_INITIAL).contains(&m)) {
                return Err(Error::setting(
                    "initial.means",
                    format!("{s}: {m} is not a mean in [0, 1e12]"),
                ));
            }
            Ok(m)
        }
        InitialCount::Fixed(n) => {
            if n as f64 > MAX_INITIAL {
                return Err(Error::setting(
                    "initial.counts",
                    format!("{s}: {n} is above 1e12"),
                ));
            }
            Ok(n as f64)
        }
    }
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
        let means = counts
            .iter()
            .zip(net.species())
            .map(|(c, s)| check_count(c, s))
            .collect::<Result<Vec<f64>>>()?;
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
