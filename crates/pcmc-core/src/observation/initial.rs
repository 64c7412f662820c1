//! The initial-state law: per species a Poisson count around a mean, a
//! fixed count, or a count given by θ.
//!
//! An inferred count is a continuous parameter rounded to the nearest
//! whole number, `n = ⌊θ_i + ½⌋`: a prior on θ_i puts on `n` the mass of
//! `[n − ½, n + ½)` (a uniform prior on `[a − ½, b + ½)` is uniform on
//! `a..=b`), and PMMH's random walk moves θ_i as any other parameter (the
//! likelihood is a step function of it). A total ties two species: `S = N −
//! I0` is `constant + n_plus − n_minus` with either part a number or a
//! parameter. A θ that makes a count negative has likelihood 0.

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
    /// `constant + round(θ[plus]) − round(θ[minus])` ([`round_count`]).
    Theta {
        /// The whole-number part.
        constant: i64,
        /// A parameter added, rounded.
        plus: Option<usize>,
        /// A parameter subtracted, rounded.
        minus: Option<usize>,
    },
}

/// The whole count an inferred initial-count parameter stands for: the
/// nearest whole number, halves rounded up (`⌊x + ½⌋`).
pub fn round_count(x: f64) -> f64 {
    (x + 0.5).floor()
}

impl InitialCount {
    /// The count at `theta`, if this law is a fixed or θ-given count in
    /// `0..=10^12` (`None` for a Poisson law, or a θ-given count out of
    /// range or reading past θ).
    pub fn count_at(&self, theta: &[f64]) -> Option<u64> {
        match *self {
            InitialCount::Poisson(_) => None,
            InitialCount::Fixed(n) => Some(n),
            InitialCount::Theta {
                constant,
                plus,
                minus,
            } => {
                let part = |i: Option<usize>| match i {
                    None => Some(0.0),
                    Some(i) => theta
                        .get(i)
                        .filter(|v| v.is_finite() && **v >= 0.0)
                        .map(|v| round_count(*v)),
                };
                let n = constant as f64 + part(plus)? - part(minus)?;
                (0.0..=MAX_INITIAL).contains(&n).then_some(n as u64)
            }
        }
    }
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
        InitialCount::Theta {
            constant,
            plus,
            minus,
        } => {
            if (constant as f64).abs() > MAX_INITIAL || (plus.is_some() && plus == minus) {
                return Err(Error::setting(
                    "initial.counts",
                    format!(
                        "{s}: {constant} is out of range, or one parameter is added and subtracted"
                    ),
                ));
            }
            // Its mean depends on θ.
            Ok(f64::NAN)
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

    /// Each species' initial mean (its count, when fixed; NaN when θ gives
    /// it).
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// Each species' initial law.
    pub fn counts(&self) -> &[InitialCount] {
        &self.counts
    }

    /// The θ indices the counts read (sorted, each once).
    pub fn theta_indices(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .counts
            .iter()
            .flat_map(|c| match *c {
                InitialCount::Theta { plus, minus, .. } => [plus, minus],
                _ => [None, None],
            })
            .flatten()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether every θ-given count is in range at `theta` (anything else
    /// has likelihood 0).
    pub fn valid_at(&self, theta: &[f64]) -> bool {
        self.counts.iter().all(|c| match c {
            InitialCount::Theta { .. } => c.count_at(theta).is_some(),
            _ => true,
        })
    }

    /// Draws one initial state at `theta` into `x` through `set(species,
    /// count)`. A fixed or θ-given count draws nothing (a θ-given count out
    /// of range, which [`InitialPrior::valid_at`] refuses first, is 0).
    pub fn sample_into<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        theta: &[f64],
        mut set: impl FnMut(usize, u64),
    ) {
        for (s, c) in self.counts.iter().enumerate() {
            match *c {
                InitialCount::Poisson(m) => set(s, draw(m, rng)),
                InitialCount::Fixed(n) => set(s, n),
                InitialCount::Theta { .. } => set(s, c.count_at(theta).unwrap_or(0)),
            }
        }
    }
}
