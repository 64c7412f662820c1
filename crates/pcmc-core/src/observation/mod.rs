//! Observed data and the observation models that score them, and the
//! initial-state law.
//!
//! A data column is an [`Observable`]: a linear combination of species
//! counts with positive integer coefficients (`I + R`, or one species),
//! seen through its own noise model ([`Noise`]), one per file below, like
//! `rand_distr`'s distributions:
//!
//! | noise | law of a datum `y` given the value `v` | parameters |
//! |---|---|---|
//! | [`gaussian`] | `Normal(v, sd²)` | `sd` |
//! | [`poisson`] | `Poisson(ρ·v)` | `ρ` (default 1) |
//! | [`negative_binomial`] | NB2: mean `ρ·v`, variance `μ + μ²/k` | `ρ`, `k` (or `φ = 1/k`) |
//! | [`binomial`] | `Binomial(v, ρ)` | `ρ` |
//! | [`log_normal`] | `ln y ~ Normal(ln v, sd²)` | `sd` |
//!
//! Each parameter is a number or an entry of θ ([`Param`]), so noise
//! parameters are inferred like rate constants. A missing datum (NaN in
//! [`Data`]) contributes nothing.
//!
//! Early rejection needs, for each observation, a bound on the density over
//! every state. With parameters in θ the bound depends on θ, so the filter
//! scores particles only through a [`Scoring`]: made by
//! [`Observations::at`] for one θ, holding the resolved noise laws *and*
//! the bounds computed from them, with private fields, so no bound can be
//! paired with another law than the one that scores.

pub mod binomial;
pub mod gaussian;
mod initial;
pub mod log_normal;
pub mod negative_binomial;
pub mod poisson;

pub use initial::{InitialCount, InitialPrior, round_count};
pub use poisson::draw as poisson_draw;

use crate::error::{Error, Result};
use crate::model::Network;
use binomial::Binomial;
use gaussian::Gaussian;
use log_normal::LogNormal;
use negative_binomial::NegativeBinomial;
use poisson::Poisson;
use rand::Rng;
use serde::{Deserialize, Serialize};

pub(crate) const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// `ln P(Y = y)` for `Y ~ Poisson(lambda)`; `y` a non-negative integer.
pub fn poisson_ln_pmf(y: f64, lambda: f64) -> f64 {
    poisson::ln_pmf(y, poisson::ln_fact(y), lambda)
}

/// A time series of observations: one column per observable, NaN where a
/// value was not observed. (Serialisable as a wire format between pcmc
/// processes.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Data {
    times: Vec<f64>,
    names: Vec<String>,
    /// Row-major, NaN for a missing value (`null` in JSON, which has no
    /// NaN).
    #[serde(with = "nan_as_null")]
    values: Vec<f64>,
    /// The first row of each data set ([`Data::concat`]): `[0]` for one.
    #[serde(default = "one_set")]
    sets: Vec<usize>,
}

fn one_set() -> Vec<usize> {
    vec![0]
}

/// Missing values (NaN) travel as `null`: JSON has no NaN, and serde_json
/// writes NaN as `null`, which would not read back as a number.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let o: Vec<Option<f64>> = v.iter().map(|x| (!x.is_nan()).then_some(*x)).collect();
        o.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let o = Vec::<Option<f64>>::deserialize(d)?;
        Ok(o.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }
}

impl Data {
    /// A dataset whose columns are species of `net` (each observed
    /// directly): `times[i]` is the time of row `i`, `values[i]` its
    /// observations of the species named in `observed`, in that order; NaN
    /// marks a value not observed.
    ///
    /// # Errors
    /// As [`Data::from_columns`], and a column that is not a species.
    pub fn new(
        net: &Network,
        times: Vec<f64>,
        observed: &[String],
        values: Vec<Vec<f64>>,
    ) -> Result<Self> {
        for name in observed {
            if net.species_index(name).is_none() {
                return Err(Error::Data(format!(
                    "column {name:?} is not a species of the model (species: {})",
                    net.species().join(", ")
                )));
            }
        }
        Self::from_columns(times, observed, values)
    }

    /// A dataset with named columns (the observables' names).
    ///
    /// # Errors
    /// [`Error::Data`] if there are no rows or no columns, a name is
    /// repeated, times are not finite and strictly increasing, a row has
    /// the wrong length, a value is infinite, or a column has no observed
    /// value at all.
    pub fn from_columns(times: Vec<f64>, names: &[String], values: Vec<Vec<f64>>) -> Result<Self> {
        if times.is_empty() {
            return Err(Error::Data("the data have no rows".into()));
        }
        if names.is_empty() {
            return Err(Error::Data("the data observe nothing".into()));
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(Error::Data(format!("column {name:?} appears twice")));
            }
        }
        if times.len() != values.len() {
            return Err(Error::Data(format!(
                "{} times but {} rows of values",
                times.len(),
                values.len()
            )));
        }
        for (i, t) in times.iter().enumerate() {
            if !t.is_finite() {
                return Err(Error::Data(format!(
                    "row {}: time {t} is not finite",
                    i + 1
                )));
            }
            if i > 0 && *t <= times[i - 1] {
                return Err(Error::Data(format!(
                    "row {}: time {t} is not after the previous time {}",
                    i + 1,
                    times[i - 1]
                )));
            }
        }
        let mut flat = Vec::with_capacity(values.len() * names.len());
        for (i, row) in values.iter().enumerate() {
            if row.len() != names.len() {
                return Err(Error::Data(format!(
                    "row {}: {} values for {} columns",
                    i + 1,
                    row.len(),
                    names.len()
                )));
            }
            for (v, name) in row.iter().zip(names) {
                if v.is_infinite() {
                    return Err(Error::Data(format!(
                        "row {}, column {name:?}: value {v} is not finite",
                        i + 1
                    )));
                }
            }
            flat.extend_from_slice(row);
        }
        let data = Data {
            times,
            names: names.to_vec(),
            values: flat,
            sets: one_set(),
        };
        for (c, name) in names.iter().enumerate() {
            if (0..data.len()).all(|i| data.row(i)[c].is_nan()) {
                return Err(Error::Data(format!(
                    "column {name:?} has no observed value (every row is missing)"
                )));
            }
        }
        Ok(data)
    }

    /// Several data sets with the same columns, one after the other: each
    /// keeps its own times (strictly increasing within a set), and a filter
    /// starts every set from its own initial state.
    ///
    /// # Errors
    /// [`Error::Data`] for no set, or sets with other columns.
    pub fn concat(parts: Vec<Data>) -> Result<Data> {
        let mut it = parts.into_iter();
        let mut out = it.next().ok_or_else(|| Error::Data("no data set".into()))?;
        for (i, d) in it.enumerate() {
            if d.names != out.names {
                return Err(Error::Data(format!(
                    "data set {} has the columns {} where the first has {}",
                    i + 2,
                    d.names.join(", "),
                    out.names.join(", ")
                )));
            }
            let base = out.times.len();
            out.sets.extend(d.sets.iter().map(|s| s + base));
            out.times.extend(d.times);
            out.values.extend(d.values);
        }
        Ok(out)
    }

    /// Number of data sets.
    pub fn n_sets(&self) -> usize {
        self.sets.len()
    }

    /// The rows of data set `d`.
    pub fn set_rows(&self, d: usize) -> std::ops::Range<usize> {
        let end = self.sets.get(d + 1).copied().unwrap_or(self.times.len());
        self.sets[d]..end
    }

    /// The data set row `k` belongs to.
    pub fn set_of(&self, k: usize) -> usize {
        self.sets.partition_point(|s| *s <= k) - 1
    }

    /// Whether row `k` is the first of a data set.
    pub fn starts_set(&self, k: usize) -> bool {
        self.sets.binary_search(&k).is_ok()
    }

    /// Observation times (each data set's own; strictly increasing within
    /// a set).
    pub fn times(&self) -> &[f64] {
        &self.times
    }
    /// The columns' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// The observations at row `i`, in column order (NaN: not observed).
    pub fn row(&self, i: usize) -> &[f64] {
        let m = self.names.len();
        &self.values[i * m..(i + 1) * m]
    }
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.times.len()
    }
    /// Whether there are no rows (never true for a validated dataset).
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }
    /// Number of missing values.
    pub fn missing(&self) -> usize {
        self.values.iter().filter(|v| v.is_nan()).count()
    }
    /// Largest observed value of each column.
    pub fn max_per_column(&self) -> Vec<f64> {
        let m = self.names.len();
        (0..m)
            .map(|c| {
                (0..self.len())
                    .map(|i| self.values[i * m + c])
                    .filter(|v| !v.is_nan())
                    .fold(f64::MIN, f64::max)
            })
            .collect()
    }
}

/// A noise parameter: a number, or an entry of θ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Param {
    /// A fixed value.
    Fixed(f64),
    /// `θ[i]`.
    Theta(usize),
}

impl Param {
    /// The value at `theta`.
    #[inline]
    pub fn value(&self, theta: &[f64]) -> f64 {
        match *self {
            Param::Fixed(v) => v,
            Param::Theta(i) => theta[i],
        }
    }
    fn theta_index(&self) -> Option<usize> {
        match *self {
            Param::Fixed(_) => None,
            Param::Theta(i) => Some(i),
        }
    }
}

/// The noise model of one observable (see the module table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Noise {
    /// `y ~ Normal(v, sd²)`.
    Gaussian {
        /// Standard deviation (> 0).
        sd: Param,
    },
    /// `y ~ Poisson(ρ·v)`.
    Poisson {
        /// Reporting rate (> 0; 1 for the value itself).
        rho: Param,
    },
    /// NB2 with mean `ρ·v` and size `k` (variance `μ + μ²/k`).
    NegativeBinomial {
        /// Reporting rate (> 0).
        rho: Param,
        /// `k`, or `φ = 1/k` when `inverse` (`φ = 0`: Poisson).
        dispersion: Param,
        /// Whether `dispersion` is `φ = 1/k` rather than `k`.
        inverse: bool,
    },
    /// `y ~ Binomial(v, ρ)`.
    Binomial {
        /// Ascertainment probability (in (0, 1]).
        rho: Param,
    },
    /// `ln y ~ Normal(ln v, sd²)`.
    LogNormal {
        /// Standard deviation of `ln y` (> 0).
        sd: Param,
    },
}

impl Noise {
    /// The model's name as job files write it.
    pub fn name(&self) -> &'static str {
        match self {
            Noise::Gaussian { .. } => "gaussian",
            Noise::Poisson { .. } => "poisson",
            Noise::NegativeBinomial { .. } => "negative-binomial",
            Noise::Binomial { .. } => "binomial",
            Noise::LogNormal { .. } => "log-normal",
        }
    }

    /// Its parameters as (field name, parameter).
    pub fn params(&self) -> Vec<(&'static str, Param)> {
        match *self {
            Noise::Gaussian { sd } | Noise::LogNormal { sd } => vec![("sd", sd)],
            Noise::Poisson { rho } | Noise::Binomial { rho } => vec![("rho", rho)],
            Noise::NegativeBinomial {
                rho,
                dispersion,
                inverse,
            } => vec![
                ("rho", rho),
                (if inverse { "phi" } else { "k" }, dispersion),
            ],
        }
    }

    /// The law at `theta`, or `None` where a parameter is outside its range
    /// (the likelihood is then 0).
    pub fn resolve(&self, theta: &[f64]) -> Option<Law> {
        Some(match *self {
            Noise::Gaussian { sd } => Law::Gaussian(Gaussian::new(sd.value(theta))?),
            Noise::Poisson { rho } => Law::Poisson(Poisson::new(rho.value(theta))?),
            Noise::NegativeBinomial {
                rho,
                dispersion,
                inverse,
            } => {
                let (r, d) = (rho.value(theta), dispersion.value(theta));
                if inverse && d == 0.0 {
                    // φ = 0: no over-dispersion.
                    Law::Poisson(Poisson::new(r)?)
                } else {
                    let k = if inverse { 1.0 / d } else { d };
                    if !(d.is_finite() && d > 0.0) {
                        return None;
                    }
                    Law::NegativeBinomial(NegativeBinomial::new(r, k)?)
                }
            }
            Noise::Binomial { rho } => Law::Binomial(Binomial::new(rho.value(theta))?),
            Noise::LogNormal { sd } => Law::LogNormal(LogNormal::new(sd.value(theta))?),
        })
    }

    /// Checks a value of the parameter `field` (as [`Noise::params`] names
    /// it); on failure, the allowed range in words. A binomial `rho` is a
    /// probability in (0, 1], `phi` is ≥ 0, every other parameter > 0.
    ///
    /// # Errors
    /// The range, in words, when `v` is outside it.
    pub fn check_value(&self, field: &str, v: f64) -> std::result::Result<(), &'static str> {
        let (ok, range) = match (self, field) {
            (Noise::Binomial { .. }, "rho") => (v > 0.0 && v <= 1.0, "a probability in (0, 1]"),
            (_, "phi") => (v.is_finite() && v >= 0.0, "a finite number ≥ 0"),
            _ => (v.is_finite() && v > 0.0, "a finite number > 0"),
        };
        if ok { Ok(()) } else { Err(range) }
    }

    /// Why a datum `y` cannot come from this noise, if it cannot.
    pub fn refuses(&self, y: f64) -> Option<&'static str> {
        match self {
            Noise::Gaussian { .. } => None,
            Noise::LogNormal { .. } => {
                (y <= 0.0).then_some("is not positive (log-normal observations need data > 0)")
            }
            _ => (y < 0.0 || y.fract() != 0.0 || y > 9.0e15)
                .then_some("is not a count (this observation model needs non-negative integers)"),
        }
    }

    /// Whether the value is observed directly (`ρ` fixed at 1, or noise
    /// without `ρ`): population caps may then be set from the data.
    pub fn centred_on_value(&self) -> bool {
        match *self {
            Noise::Gaussian { .. } | Noise::LogNormal { .. } => true,
            Noise::Poisson { rho }
            | Noise::Binomial { rho }
            | Noise::NegativeBinomial { rho, .. } => rho == Param::Fixed(1.0),
        }
    }
}

/// A noise law with its parameters resolved at one θ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Law {
    /// See [`gaussian`].
    Gaussian(Gaussian),
    /// See [`poisson`].
    Poisson(Poisson),
    /// See [`negative_binomial`].
    NegativeBinomial(NegativeBinomial),
    /// See [`binomial`].
    Binomial(Binomial),
    /// See [`log_normal`].
    LogNormal(LogNormal),
}

impl Law {
    /// The per-datum constant shared by the densities and the bound.
    fn constant(&self, y: f64) -> f64 {
        match self {
            Law::Gaussian(_) => 0.0,
            Law::Poisson(_) => poisson::ln_fact(y),
            Law::NegativeBinomial(l) => l.constant(y),
            Law::Binomial(l) => l.constant(y),
            Law::LogNormal(_) => LogNormal::constant(y),
        }
    }

    /// `ln p(y | v)` with `c` = the datum's constant.
    #[inline]
    pub fn ln_density(&self, y: f64, c: f64, v: u64) -> f64 {
        let v = v as f64;
        match self {
            Law::Gaussian(l) => l.ln_density(y, v),
            Law::Poisson(l) => l.ln_density(y, c, v),
            Law::NegativeBinomial(l) => l.ln_density(y, c, v),
            Law::Binomial(l) => l.ln_density(y, c, v),
            Law::LogNormal(l) => l.ln_density(c, v),
        }
    }

    fn bound(&self, y: f64, c: f64) -> f64 {
        match self {
            Law::Gaussian(l) => l.bound(),
            Law::Poisson(l) => l.bound(y, c),
            Law::NegativeBinomial(l) => l.bound(y, c),
            Law::Binomial(l) => l.bound(y, c),
            Law::LogNormal(l) => l.bound(c),
        }
    }

    fn rounding(&self, y: f64, c: f64) -> f64 {
        match self {
            Law::Gaussian(_) | Law::LogNormal(_) => 0.0,
            Law::Poisson(_) => Poisson::rounding(y, c),
            Law::NegativeBinomial(l) => l.rounding(y, c),
            Law::Binomial(l) => l.rounding(y, c),
        }
    }

    /// One datum given the value `v`.
    pub fn sample<R: Rng + ?Sized>(&self, v: u64, rng: &mut R) -> f64 {
        let v = v as f64;
        match self {
            Law::Gaussian(l) => l.sample(v, rng),
            Law::Poisson(l) => l.sample(v, rng),
            Law::NegativeBinomial(l) => l.sample(v, rng),
            Law::Binomial(l) => l.sample(v, rng),
            Law::LogNormal(l) => l.sample(v, rng),
        }
    }
}

/// What a data column observes: `Σ c_s·x_s` through a noise model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observable {
    /// The data column.
    pub name: String,
    /// `(species index, coefficient ≥ 1)`, at least one.
    pub terms: Vec<(usize, u64)>,
    /// The noise model.
    pub noise: Noise,
}

impl Observable {
    /// The value in state `x` (`x(s)` the count of species `s`), saturating.
    #[inline]
    pub fn value(&self, x: impl Fn(usize) -> u64) -> u64 {
        match self.terms.as_slice() {
            [(s, 1)] => x(*s),
            terms => terms
                .iter()
                .fold(0u64, |a, (s, c)| a.saturating_add(c.saturating_mul(x(*s)))),
        }
    }
}

/// The fixed observation models of the first versions, one law for every
/// column, each column a species: still accepted everywhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ObservationModel {
    /// `y_s ~ Normal(x_s, sd_s²)`, one sd per observed species.
    Gaussian {
        /// Standard deviation per observed species (all > 0).
        sd: Vec<f64>,
    },
    /// `y_s ~ Poisson(x_s)`; the data must be non-negative integers.
    Poisson,
}

impl ObservationModel {
    /// The observables of data whose columns `names` are species of `net`.
    ///
    /// # Errors
    /// [`Error::Setting`] for a wrong number of sds or a non-positive sd;
    /// [`Error::Data`] for a column that is not a species.
    pub fn observables(&self, net: &Network, names: &[String]) -> Result<Vec<Observable>> {
        if let ObservationModel::Gaussian { sd } = self {
            if sd.len() != names.len() {
                return Err(Error::setting(
                    "observation.sd",
                    format!("{} sds for {} observed species", sd.len(), names.len()),
                ));
            }
            if let Some(s) = sd.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return Err(Error::setting(
                    "observation.sd",
                    format!("{s} is not a finite positive number"),
                ));
            }
        }
        names
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let s = net.species_index(name).ok_or_else(|| {
                    Error::Data(format!(
                        "column {name:?} is not a species of the model (species: {})",
                        net.species().join(", ")
                    ))
                })?;
                let noise = match self {
                    ObservationModel::Gaussian { sd } => Noise::Gaussian {
                        sd: Param::Fixed(sd[c]),
                    },
                    ObservationModel::Poisson => Noise::Poisson {
                        rho: Param::Fixed(1.0),
                    },
                };
                Ok(Observable {
                    name: name.clone(),
                    terms: vec![(s, 1)],
                    noise,
                })
            })
            .collect()
    }
}

impl ObservationModel {
    fn law(&self, c: usize) -> Law {
        match self {
            ObservationModel::Gaussian { sd } => Law::Gaussian(
                Gaussian::new(sd[c]).unwrap_or_else(|| panic!("sd {} is not positive", sd[c])),
            ),
            ObservationModel::Poisson => Law::Poisson(Poisson::new(1.0).expect("ρ = 1")),
        }
    }

    /// Log-density of observation row `y` given the observed counts `x`
    /// (one per column, same order as `y`; missing values skipped), by the
    /// same laws as [`Scoring::log_density`].
    ///
    /// # Panics
    /// For a Gaussian sd that is not positive (validated models never have
    /// one).
    pub fn log_density(&self, y: &[f64], x: impl Iterator<Item = u64>) -> f64 {
        let mut lp = 0.0;
        for (c, (yv, xv)) in y.iter().zip(x).enumerate() {
            if yv.is_nan() {
                continue;
            }
            let law = self.law(c);
            lp += law.ln_density(*yv, law.constant(*yv), xv);
        }
        lp
    }

    /// The bound of [`ObservationModel::log_density`]`(y, ·)` over every
    /// state, as [`Scoring::bound_from`] sums it.
    ///
    /// # Panics
    /// As [`ObservationModel::log_density`].
    pub fn log_density_bound(&self, y: &[f64]) -> f64 {
        let mut b = 0.0;
        for (c, yv) in y.iter().enumerate() {
            if yv.is_nan() {
                continue;
            }
            let law = self.law(c);
            b += law.bound(*yv, law.constant(*yv));
        }
        b
    }
}

/// The data with their observables: what a filter scores particles against.
///
/// Early rejection is exact only while every weight the filter computes is
/// at most the bound used for it. This type and [`Scoring`] make that hold
/// by construction: the filter scores particles only through
/// [`Scoring::log_density`], and a [`Scoring`] is made only by
/// [`Observations::at`], which resolves the noise laws at θ and computes
/// the bounds from those very laws; the fields are private, so neither part
/// can change alone. A deserialised value is validated again, and bounds
/// never travel on the wire.
///
/// ```compile_fail
/// # use pcmc_core::observation::{Observations, Observable};
/// fn widen(o: &mut Observations, other: Vec<Observable>) {
///     // The observables cannot be swapped under their data.
///     o.observables = other;
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ObservationsWire", into = "ObservationsWire")]
pub struct Observations {
    data: Data,
    observables: Vec<Observable>,
    parameters: Vec<String>,
    n_species: usize,
    /// The scoring, when no noise parameter is in θ (the same at every θ).
    fixed: Option<Scoring>,
}

/// What an [`Observations`] is built from, and its wire form.
#[derive(Serialize, Deserialize)]
struct ObservationsWire {
    data: Data,
    observables: Vec<Observable>,
    parameters: Vec<String>,
    n_species: usize,
}

impl TryFrom<ObservationsWire> for Observations {
    type Error = Error;
    fn try_from(w: ObservationsWire) -> Result<Self> {
        Observations::new(w.observables, w.data, w.parameters, w.n_species)
    }
}

impl From<Observations> for ObservationsWire {
    fn from(o: Observations) -> Self {
        ObservationsWire {
            data: o.data,
            observables: o.observables,
            parameters: o.parameters,
            n_species: o.n_species,
        }
    }
}

impl Observations {
    /// Checks `observables` against `data` and the parameter list, and puts
    /// them in the data's column order.
    ///
    /// `parameters` names every entry of θ; `n_species` is the length of
    /// the state vector.
    ///
    /// # Errors
    /// [`Error::Data`] for a column without an observable or an observable
    /// without a column, or a datum its noise cannot produce (naming the
    /// row, time and column); [`Error::Setting`] for an empty or invalid
    /// linear combination, a θ index out of range, or a fixed noise
    /// parameter out of its range.
    pub fn new(
        observables: Vec<Observable>,
        data: Data,
        parameters: Vec<String>,
        n_species: usize,
    ) -> Result<Self> {
        let starts = &data.sets;
        if starts.first() != Some(&0)
            || starts.windows(2).any(|w| w[0] >= w[1])
            || starts.last().is_some_and(|s| *s >= data.len())
        {
            return Err(Error::Data(
                "the data sets' first rows are out of order".into(),
            ));
        }
        let mut ordered = Vec::with_capacity(data.names().len());
        for name in data.names() {
            let mut found = observables.iter().filter(|o| &o.name == name);
            let o = found.next().ok_or_else(|| {
                Error::Data(format!("column {name:?} is not an observable of the job"))
            })?;
            if found.next().is_some() {
                return Err(Error::setting(
                    "observables",
                    format!("{name:?} is declared twice"),
                ));
            }
            ordered.push(o.clone());
        }
        if let Some(o) = observables.iter().find(|o| !data.names().contains(&o.name)) {
            return Err(Error::Data(format!(
                "the data have no column {:?} (observable {:?}; columns: {})",
                o.name,
                o.name,
                data.names().join(", ")
            )));
        }
        for o in &ordered {
            let field = format!("observables.{}", o.name);
            if o.terms.is_empty() {
                return Err(Error::setting(&field, "observes no species"));
            }
            for (i, &(s, c)) in o.terms.iter().enumerate() {
                if s >= n_species {
                    return Err(Error::setting(
                        &field,
                        format!("species index {s} out of range"),
                    ));
                }
                if c == 0 || c > 1_000_000 {
                    return Err(Error::setting(
                        &field,
                        format!("coefficient {c} is not in 1..=10^6"),
                    ));
                }
                if o.terms[..i].iter().any(|t| t.0 == s) {
                    return Err(Error::setting(&field, "a species appears twice"));
                }
            }
            for (name, p) in o.noise.params() {
                match p {
                    Param::Theta(i) if i >= parameters.len() => {
                        return Err(Error::setting(
                            format!("{field}.{name}"),
                            format!(
                                "θ index {i} is out of range ({} parameters)",
                                parameters.len()
                            ),
                        ));
                    }
                    Param::Fixed(v) => {
                        if let Err(range) = o.noise.check_value(name, v) {
                            return Err(Error::setting(
                                format!("{field}.{name}"),
                                format!("{v} is not {range} ({} noise)", o.noise.name()),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        for i in 0..data.len() {
            for (c, o) in ordered.iter().enumerate() {
                let y = data.row(i)[c];
                if y.is_nan() {
                    continue;
                }
                if let Some(why) = o.noise.refuses(y) {
                    return Err(Error::Data(format!(
                        "the observation at time {} (data row {}), column {:?}: {y} {why}",
                        data.times()[i],
                        i + 1,
                        o.name
                    )));
                }
            }
        }
        let mut obs = Observations {
            data,
            observables: ordered,
            parameters,
            n_species,
            fixed: None,
        };
        if obs.inferred().is_empty() {
            obs.fixed = obs.resolve(&[]);
            debug_assert!(obs.fixed.is_some(), "fixed parameters were checked");
        }
        Ok(obs)
    }

    /// The data (the first versions' form): every column a species of
    /// `net`, one law for all.
    ///
    /// # Errors
    /// As [`ObservationModel::observables`] and [`Observations::new`].
    pub fn from_model(net: &Network, model: &ObservationModel, data: Data) -> Result<Self> {
        let observables = model.observables(net, data.names())?;
        Observations::new(
            observables,
            data,
            net.parameters().to_vec(),
            net.species().len(),
        )
    }

    /// The data.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The observables, in the data's column order.
    pub fn observables(&self) -> &[Observable] {
        &self.observables
    }

    /// The names of θ's entries.
    pub fn parameters(&self) -> &[String] {
        &self.parameters
    }

    /// The θ indices the noise models read (sorted, each once).
    pub fn inferred(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .observables
            .iter()
            .flat_map(|o| o.noise.params())
            .filter_map(|(_, p)| p.theta_index())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The species any observable reads (sorted, each once).
    pub fn species_used(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .observables
            .iter()
            .flat_map(|o| o.terms.iter().map(|t| t.0))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The scoring of particles at `theta`: the noise laws resolved and
    /// their bounds; `None` when a noise parameter in θ is outside its
    /// range (a likelihood of zero).
    pub fn at(&self, theta: &[f64]) -> Option<std::borrow::Cow<'_, Scoring>> {
        match &self.fixed {
            Some(s) => Some(std::borrow::Cow::Borrowed(s)),
            None => self.resolve(theta).map(std::borrow::Cow::Owned),
        }
    }

    fn resolve(&self, theta: &[f64]) -> Option<Scoring> {
        let laws = self
            .observables
            .iter()
            .map(|o| o.noise.resolve(theta))
            .collect::<Option<Vec<Law>>>()?;
        let (k, m) = (self.data.len(), laws.len());
        let mut cells = Vec::with_capacity(k * m);
        let mut observed = Vec::with_capacity(k);
        let mut bound_suffix = vec![0.0; k + 1];
        let mut bound_abs_suffix = vec![0.0; k + 1];
        let mut bound_rounding = vec![0.0; k + 1];
        let mut bounds = vec![(0.0, 0.0); k];
        for (i, b) in bounds.iter_mut().enumerate() {
            let row = self.data.row(i);
            observed.push(row.iter().any(|y| !y.is_nan()));
            for (law, &y) in laws.iter().zip(row) {
                if y.is_nan() {
                    cells.push((y, 0.0));
                    continue;
                }
                let c = law.constant(y);
                cells.push((y, c));
                b.0 += law.bound(y, c);
                b.1 += law.rounding(y, c);
            }
        }
        for j in (0..k).rev() {
            let (b, r) = bounds[j];
            bound_suffix[j] = bound_suffix[j + 1] + b;
            bound_abs_suffix[j] = bound_abs_suffix[j + 1] + b.abs();
            bound_rounding[j] = bound_rounding[j + 1] + r;
        }
        Some(Scoring {
            observables: self.observables.clone(),
            laws,
            cells,
            observed,
            bound_suffix,
            bound_abs_suffix,
            bound_rounding,
        })
    }
}

/// The observations' densities and bounds at one θ (made only by
/// [`Observations::at`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    observables: Vec<Observable>,
    laws: Vec<Law>,
    /// `(y, the law's constant for y)` per cell, row-major; `y` NaN where
    /// missing.
    cells: Vec<(f64, f64)>,
    /// Whether row `k` observes anything.
    observed: Vec<bool>,
    /// `Σ_{j ≥ k} B_j`, `B_j` the density bound at observation `j`
    /// (length `K + 1`).
    bound_suffix: Vec<f64>,
    /// `Σ_{j ≥ k} |B_j|`.
    bound_abs_suffix: Vec<f64>,
    /// `Σ_{j ≥ k} R_j`, `R_j` how far rounding can lift a computed density
    /// above the computed bound `B_j`.
    bound_rounding: Vec<f64>,
}

impl Scoring {
    /// Log density of observation `k` in the state whose count of species
    /// `s` is `x(s)`: the only way the filter scores particles. A missing
    /// datum contributes nothing.
    #[inline]
    pub fn log_density(&self, k: usize, x: impl Fn(usize) -> u64) -> f64 {
        let m = self.laws.len();
        let cells = &self.cells[k * m..(k + 1) * m];
        let mut lp = 0.0;
        for ((o, law), &(y, c)) in self.observables.iter().zip(&self.laws).zip(cells) {
            if y.is_nan() {
                continue;
            }
            lp += law.ln_density(y, c, o.value(&x));
        }
        lp
    }

    /// Whether observation `k` observes anything (a row of missing values
    /// only sets a time).
    pub fn observes(&self, k: usize) -> bool {
        self.observed[k]
    }

    /// The resolved laws, in column order.
    pub fn laws(&self) -> &[Law] {
        &self.laws
    }

    /// One draw of every column in the state `x`.
    pub fn sample<R: Rng + ?Sized>(&self, x: impl Fn(usize) -> u64, rng: &mut R) -> Vec<f64> {
        self.observables
            .iter()
            .zip(&self.laws)
            .map(|(o, law)| law.sample(o.value(&x), rng))
            .collect()
    }

    /// `Σ_{j ≥ k} B_j`: no pass that has processed `k` observations can add
    /// more than this (before rounding).
    pub fn bound_from(&self, k: usize) -> f64 {
        self.bound_suffix[k]
    }

    /// `Σ_{j ≥ k} |B_j|`: the bounds' magnitude, for relative rounding.
    pub fn bound_magnitude_from(&self, k: usize) -> f64 {
        self.bound_abs_suffix[k]
    }

    /// `Σ_{j ≥ k} R_j`: how far rounding can lift the computed densities of
    /// the observations from `k` on above their computed bounds.
    pub fn rounding_from(&self, k: usize) -> f64 {
        self.bound_rounding[k]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv_data(rows: Vec<Vec<f64>>) -> (Network, Data) {
        let net = Network::lotka_volterra(1).unwrap();
        let names = vec!["prey".to_string(), "pred1".to_string()];
        let times = (0..rows.len()).map(|i| i as f64).collect();
        let data = Data::new(&net, times, &names, rows).unwrap();
        (net, data)
    }

    #[test]
    fn observations_rebuild_their_bounds_from_the_wire_and_refuse_bad_parts() {
        let (net, data) = lv_data(vec![vec![10.0, 3.0], vec![12.0, 0.0], vec![7.0, 5.0]]);
        let o = Observations::from_model(&net, &ObservationModel::Poisson, data.clone()).unwrap();
        let s = o.at(&[1.0, 0.005, 0.6]).unwrap();
        let bound = |j: usize| {
            data.row(j)
                .iter()
                .map(|y| poisson_ln_pmf(*y, *y))
                .sum::<f64>()
        };
        assert_eq!(s.bound_from(3), 0.0);
        assert_eq!(s.bound_from(2), bound(2));
        assert_eq!(s.bound_from(0), bound(0) + bound(1) + bound(2));
        assert_eq!(s.bound_magnitude_from(1), bound(1).abs() + bound(2).abs());
        assert!(s.rounding_from(0) > 0.0);
        // Bounds are not part of the wire form: they are computed again.
        let wire = serde_json::to_value(&o).unwrap();
        assert_eq!(wire.as_object().unwrap().len(), 4, "{wire}");
        let back: Observations = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(back, o);
        // Observables that do not fit the data are refused on the wire too.
        let mut bad = wire;
        bad["observables"][0]["noise"] =
            serde_json::json!({ "Gaussian": { "sd": { "Fixed": -1.0 } } });
        let err = serde_json::from_value::<Observations>(bad).unwrap_err();
        assert!(err.to_string().contains("sd"), "{err}");
    }

    #[test]
    fn missing_values_are_left_out() {
        let nan = f64::NAN;
        let (net, data) = lv_data(vec![vec![10.0, nan], vec![nan, nan], vec![7.0, 5.0]]);
        let model = ObservationModel::Gaussian { sd: vec![2.0, 3.0] };
        let o = Observations::from_model(&net, &model, data).unwrap();
        let s = o.at(&[1.0; 3]).unwrap();
        let g = |y: f64, x: f64, sd: f64| gaussian::Gaussian::new(sd).unwrap().ln_density(y, x);
        let x = |s: usize| [9u64, 4][s];
        assert_eq!(s.log_density(0, x), g(10.0, 9.0, 2.0));
        assert_eq!(s.log_density(1, x), 0.0);
        assert_eq!(s.log_density(2, x), g(7.0, 9.0, 2.0) + g(5.0, 4.0, 3.0));
        assert!(s.observes(0) && !s.observes(1) && s.observes(2));
        assert_eq!(s.bound_from(1), s.bound_from(2));
        // Missing values survive the (JSON) wire.
        let back: Observations = serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
        assert!(back.data().row(1)[0].is_nan() && back.data().row(2)[0] == 7.0);
        // A column with no value at all is refused, naming it.
        let e = Data::new(
            &net,
            vec![0.0, 1.0],
            &["prey".into(), "pred1".into()],
            vec![vec![1.0, nan], vec![2.0, nan]],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("\"pred1\"") && e.contains("no observed value"),
            "{e}"
        );
    }

    #[test]
    fn noise_parameters_come_from_theta_and_are_checked() {
        let (_, data) = lv_data(vec![vec![10.0, 3.0], vec![12.0, 0.0]]);
        let names: Vec<String> = ["birth", "predation1", "death1", "rho", "k"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let obs = vec![
            Observable {
                name: "prey".into(),
                terms: vec![(0, 1), (1, 2)],
                noise: Noise::NegativeBinomial {
                    rho: Param::Theta(3),
                    dispersion: Param::Theta(4),
                    inverse: false,
                },
            },
            Observable {
                name: "pred1".into(),
                terms: vec![(1, 1)],
                noise: Noise::Binomial {
                    rho: Param::Theta(3),
                },
            },
        ];
        let o = Observations::new(obs.clone(), data.clone(), names.clone(), 2).unwrap();
        assert_eq!(o.inferred(), vec![3, 4]);
        assert_eq!(o.species_used(), vec![0, 1]);
        let s = o.at(&[1.0, 0.005, 0.6, 0.5, 2.0]).unwrap();
        let nb = negative_binomial::NegativeBinomial::new(0.5, 2.0).unwrap();
        let bi = binomial::Binomial::new(0.5).unwrap();
        // prey + 2·pred1 = 6 + 8 = 14.
        let x = |s: usize| [6u64, 4][s];
        let expect = nb.ln_density(10.0, nb.constant(10.0), 14.0)
            + bi.ln_density(3.0, bi.constant(3.0), 4.0);
        assert_eq!(s.log_density(0, x), expect);
        // A binomial datum above its value is impossible.
        assert_eq!(s.log_density(0, |s| [6u64, 2][s]), f64::NEG_INFINITY);
        // Out-of-range θ: no scoring (likelihood 0).
        assert!(o.at(&[1.0, 0.005, 0.6, 1.5, 2.0]).is_none());
        assert!(o.at(&[1.0, 0.005, 0.6, 0.5, 0.0]).is_none());
        // A θ index beyond the parameters, a fixed value out of range, a
        // missing column, a non-count datum: refused, naming the field.
        for (bad, needle) in [
            (
                vec![
                    Observable {
                        noise: Noise::Poisson {
                            rho: Param::Theta(9),
                        },
                        ..obs[0].clone()
                    },
                    obs[1].clone(),
                ],
                "observables.prey.rho",
            ),
            (
                vec![
                    obs[0].clone(),
                    Observable {
                        noise: Noise::Binomial {
                            rho: Param::Fixed(1.5),
                        },
                        ..obs[1].clone()
                    },
                ],
                "observables.pred1.rho",
            ),
            (vec![obs[0].clone()], "\"pred1\""),
        ] {
            let e = Observations::new(bad, data.clone(), names.clone(), 2)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e}");
        }
        let (_, frac) = lv_data(vec![vec![10.5, 3.0]]);
        let e = Observations::new(obs, frac, names, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a count") && e.contains("\"prey\""), "{e}");
    }

    #[test]
    fn data_validation() {
        let net = Network::lotka_volterra(1).unwrap();
        let prey = vec!["prey".to_string()];
        assert!(Data::new(&net, vec![0.0, 1.0], &prey, vec![vec![1.0], vec![2.0]]).is_ok());
        for (times, cols, vals, needle) in [
            (vec![], prey.clone(), vec![], "no rows"),
            (
                vec![0.0, 0.0],
                prey.clone(),
                vec![vec![1.0], vec![1.0]],
                "not after",
            ),
            (
                vec![0.0],
                vec!["wolf".to_string()],
                vec![vec![1.0]],
                "not a species",
            ),
            (
                vec![0.0],
                prey.clone(),
                vec![vec![f64::INFINITY]],
                "not finite",
            ),
            (
                vec![0.0],
                prey.clone(),
                vec![vec![f64::NAN]],
                "no observed value",
            ),
            (vec![0.0], prey.clone(), vec![vec![1.0, 2.0]], "2 values"),
            (
                vec![f64::INFINITY],
                prey.clone(),
                vec![vec![1.0]],
                "not finite",
            ),
        ] {
            let e = Data::new(&net, times, &cols, vals).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let d = Data::new(&net, vec![0.0], &prey, vec![vec![1.5]]).unwrap();
        assert!(Observations::from_model(&net, &ObservationModel::Poisson, d.clone()).is_err());
        assert!(
            Observations::from_model(
                &net,
                &ObservationModel::Gaussian { sd: vec![0.0] },
                d.clone()
            )
            .is_err()
        );
        assert!(
            Observations::from_model(&net, &ObservationModel::Gaussian { sd: vec![1.0, 1.0] }, d)
                .is_err()
        );
    }
}
