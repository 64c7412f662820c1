//! Observed data, observation models and the initial-state prior.

use crate::error::{Error, Result};
use crate::model::Network;
use rand::Rng;
use rand_distr::{Distribution, Normal, Poisson};
use serde::{Deserialize, Serialize};
use statrs::function::factorial::ln_factorial;

/// A time series of observations of some species of a network.
/// (Serialisable as a wire format between pcmc processes.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Data {
    times: Vec<f64>,
    observed: Vec<usize>,
    names: Vec<String>,
    values: Vec<f64>,
}

impl Data {
    /// Builds a dataset: `times[i]` is the time of row `i`, `values[i]` its
    /// observations of the species named in `observed`, in that order.
    ///
    /// # Errors
    /// [`Error::Data`] if there are no rows or no observed species, a species
    /// is unknown or repeated, times are not finite and strictly increasing,
    /// a row has the wrong length, or a value is not finite.
    pub fn new(
        net: &Network,
        times: Vec<f64>,
        observed: &[String],
        values: Vec<Vec<f64>>,
    ) -> Result<Self> {
        if times.is_empty() {
            return Err(Error::Data("the data have no rows".into()));
        }
        if observed.is_empty() {
            return Err(Error::Data("the data observe no species".into()));
        }
        let mut idx = Vec::with_capacity(observed.len());
        for (i, name) in observed.iter().enumerate() {
            let s = net.species_index(name).ok_or_else(|| {
                Error::Data(format!(
                    "column {name:?} is not a species of the model (species: {})",
                    net.species().join(", ")
                ))
            })?;
            if observed[..i].contains(name) {
                return Err(Error::Data(format!("column {name:?} appears twice")));
            }
            idx.push(s);
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
        let mut flat = Vec::with_capacity(values.len() * idx.len());
        for (i, row) in values.iter().enumerate() {
            if row.len() != idx.len() {
                return Err(Error::Data(format!(
                    "row {}: {} values for {} observed species",
                    i + 1,
                    row.len(),
                    idx.len()
                )));
            }
            for (v, name) in row.iter().zip(observed) {
                if !v.is_finite() {
                    return Err(Error::Data(format!(
                        "row {}, column {name:?}: value {v} is not finite",
                        i + 1
                    )));
                }
            }
            flat.extend_from_slice(row);
        }
        Ok(Data {
            times,
            observed: idx,
            names: observed.to_vec(),
            values: flat,
        })
    }

    /// Observation times.
    pub fn times(&self) -> &[f64] {
        &self.times
    }
    /// Indices of the observed species in the network's state vector.
    pub fn observed(&self) -> &[usize] {
        &self.observed
    }
    /// Names of the observed species (the data's columns).
    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// The observations at row `i`, in [`Data::observed`] order.
    pub fn row(&self, i: usize) -> &[f64] {
        let m = self.observed.len();
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
    /// Largest observed value of each observed species.
    pub fn max_per_column(&self) -> Vec<f64> {
        let m = self.observed.len();
        (0..m)
            .map(|c| {
                (0..self.len())
                    .map(|i| self.values[i * m + c])
                    .fold(f64::MIN, f64::max)
            })
            .collect()
    }
}

/// How observations arise from the hidden state.
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

/// Data together with the fixed observation model that scores them, and
/// each observation's density bound under that model, for early rejection
/// ([`crate::filter::FilterProblem::cannot_accept`]).
///
/// Early rejection is exact only while every weight the filter computes is
/// at most the bound computed here. This type makes that hold by
/// construction: the filter scores particles only through
/// [`Observations::log_density`], which uses the very model the bounds were
/// computed from; the fields are private, so neither part can change alone;
/// and the model takes no θ. An observation model whose parameters were
/// inferred (a noise sd in θ) would need a new `Observations` per θ, whose
/// constructor computes its bounds again. A deserialised value recomputes its
/// bounds from the model and data too (bounds never travel on the wire).
///
/// ```compile_fail
/// # use pcmc_core::observation::{Observations, ObservationModel};
/// fn widen(o: &mut Observations) {
///     // The model cannot be swapped under its bounds.
///     o.model = ObservationModel::Gaussian { sd: vec![1.0] };
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ObservationsWire", into = "ObservationsWire")]
pub struct Observations {
    data: Data,
    model: ObservationModel,
    /// `Σ_{j ≥ k} B_j`, `B_j` the density bound at observation `j`
    /// (length `K + 1`).
    bound_suffix: Vec<f64>,
    /// `Σ_{j ≥ k} |B_j|`.
    bound_abs_suffix: Vec<f64>,
    /// `Σ_{j ≥ k} R_j`, `R_j` how far rounding can lift a computed density
    /// above the computed bound `B_j` ([`ObservationModel::log_density_rounding`]).
    bound_rounding: Vec<f64>,
}

/// What an [`Observations`] is built from, and its wire form.
#[derive(Serialize, Deserialize)]
struct ObservationsWire {
    data: Data,
    model: ObservationModel,
}

impl TryFrom<ObservationsWire> for Observations {
    type Error = Error;
    fn try_from(w: ObservationsWire) -> Result<Self> {
        Observations::new(w.model, w.data)
    }
}

impl From<Observations> for ObservationsWire {
    fn from(o: Observations) -> Self {
        ObservationsWire {
            data: o.data,
            model: o.model,
        }
    }
}

impl Observations {
    /// Checks `model` against `data` ([`ObservationModel::validate`]) and
    /// computes the density bounds.
    ///
    /// # Errors
    /// As [`ObservationModel::validate`].
    pub fn new(model: ObservationModel, data: Data) -> Result<Self> {
        model.validate(&data)?;
        let k = data.len();
        let mut bound_suffix = vec![0.0; k + 1];
        let mut bound_abs_suffix = vec![0.0; k + 1];
        let mut bound_rounding = vec![0.0; k + 1];
        for j in (0..k).rev() {
            let b = model.log_density_bound(data.row(j));
            bound_suffix[j] = bound_suffix[j + 1] + b;
            bound_abs_suffix[j] = bound_abs_suffix[j + 1] + b.abs();
            bound_rounding[j] = bound_rounding[j + 1] + model.log_density_rounding(data.row(j));
        }
        Ok(Observations {
            data,
            model,
            bound_suffix,
            bound_abs_suffix,
            bound_rounding,
        })
    }

    /// The data.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The observation model.
    pub fn model(&self) -> &ObservationModel {
        &self.model
    }

    /// Log density of observation `j` given the observed species' counts
    /// `x`: the only way the filter scores particles.
    pub fn log_density(&self, j: usize, x: impl Iterator<Item = u64>) -> f64 {
        self.model.log_density(self.data.row(j), x)
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

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

impl ObservationModel {
    /// Checks the model against a dataset.
    ///
    /// # Errors
    /// [`Error::Setting`] for a wrong number of sds or a non-positive sd;
    /// [`Error::Data`] for non-integer or negative data under Poisson noise.
    pub fn validate(&self, data: &Data) -> Result<()> {
        match self {
            ObservationModel::Gaussian { sd } => {
                if sd.len() != data.observed().len() {
                    return Err(Error::setting(
                        "observation.sd",
                        format!(
                            "{} sds for {} observed species",
                            sd.len(),
                            data.observed().len()
                        ),
                    ));
                }
                if let Some(s) = sd.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(Error::setting(
                        "observation.sd",
                        format!("{s} is not a finite positive number"),
                    ));
                }
            }
            ObservationModel::Poisson => {
                if let Some((i, c, v)) = self.invalid_value(data) {
                    return Err(Error::Data(format!(
                        "the observation at time {} (data row {}), column {:?}: {v} is not a count \
                         (Poisson observations need non-negative integers)",
                        data.times()[i],
                        i + 1,
                        data.names()[c]
                    )));
                }
            }
        }
        Ok(())
    }

    /// The first data value this model cannot have produced, as (row,
    /// column, value): under Poisson noise a value that is not a count.
    pub fn invalid_value(&self, data: &Data) -> Option<(usize, usize, f64)> {
        match self {
            ObservationModel::Gaussian { .. } => None,
            ObservationModel::Poisson => (0..data.len()).find_map(|i| {
                data.row(i)
                    .iter()
                    .position(|v| *v < 0.0 || v.fract() != 0.0 || *v > 9.0e15)
                    .map(|c| (i, c, data.row(i)[c]))
            }),
        }
    }

    /// An upper bound on [`ObservationModel::log_density`]`(y, x)` over every
    /// state `x`: the log-density of `y` at the state that explains it best.
    ///
    /// - Gaussian: `Σ −ln(σ_i √(2π))`, the density at `x_i = y_i` (the
    ///   quadratic term is ≤ 0);
    /// - Poisson: `Σ ln p(y_i; λ = y_i)`, since `λ ↦ y ln λ − λ` is largest at
    ///   `λ = y` over all real `λ ≥ 0`, so over the integer counts too
    ///   (`p(0; 0) = 1`).
    ///
    /// Each term is computed by the same expression as the density itself, so
    /// the bound is the density's value at its mode to the last bit; the
    /// early-rejection rule adds a margin for rounding on top.
    pub fn log_density_bound(&self, y: &[f64]) -> f64 {
        let mut lp = 0.0;
        match self {
            ObservationModel::Gaussian { sd } => {
                for s in sd.iter().take(y.len()) {
                    // −0.5·0² − ln σ is −ln σ exactly.
                    lp += -s.ln() - LN_SQRT_2PI;
                }
            }
            ObservationModel::Poisson => {
                for yv in y {
                    lp += poisson_ln_pmf(*yv, *yv);
                }
            }
        }
        lp
    }

    /// A bound on how far rounding can lift a computed
    /// [`ObservationModel::log_density`]`(y, x)` above the computed
    /// [`ObservationModel::log_density_bound`]`(y)` for any state `x`
    /// (the exact density never exceeds the exact bound).
    ///
    /// - Gaussian: 0. Each term is `(−½z² − ln σ) − ln√(2π)` against
    ///   `(−ln σ) − ln√(2π)` with `−½z² ≤ 0`, and rounding is monotone,
    ///   so the computed density is at most the computed bound bit for bit.
    /// - Poisson: `y ln x − x − ln Γ(y+1)` and the bound at `x = y` are
    ///   rounded independently (the logarithm, the product, two
    ///   subtractions each within one unit roundoff `u = 2⁻⁵³` of their
    ///   magnitudes, `ln Γ` within 16 u), so each differs from its exact
    ///   value by at most `u·(4|y ln x| + 2x + 17 ln Γ(y+1))`. Rounding can
    ///   matter only where the exact density is within that of the bound,
    ///   i.e. `x` within a small relative distance of `y`, where the
    ///   magnitudes are those at `x = y` to within a factor 2: the bound
    ///   per count is `64 u (y |ln y| + y + ln Γ(y+1)) + 2⁻⁴⁰`, twice the
    ///   worst case. At `y = 8.7·10⁸` that is 2.6·10⁻⁴ nats, while the
    ///   density can exceed the bound there by 3.8·10⁻⁶ (2⁻¹⁸).
    pub fn log_density_rounding(&self, y: &[f64]) -> f64 {
        match self {
            ObservationModel::Gaussian { .. } => 0.0,
            ObservationModel::Poisson => y
                .iter()
                .map(|&yv| {
                    let mag = if yv > 0.0 {
                        yv * yv.ln().abs() + yv + ln_factorial(yv as u64)
                    } else {
                        0.0
                    };
                    64.0 * f64::EPSILON / 2.0 * mag + 2f64.powi(-40)
                })
                .sum(),
        }
    }

    /// Log-density of observation row `y` given the observed counts `x`
    /// (one per observed species, same order as `y`).
    #[inline]
    pub fn log_density(&self, y: &[f64], x: impl Iterator<Item = u64>) -> f64 {
        let mut lp = 0.0;
        match self {
            ObservationModel::Gaussian { sd } => {
                for ((yv, xv), s) in y.iter().zip(x).zip(sd) {
                    let z = (yv - xv as f64) / s;
                    lp += -0.5 * z * z - s.ln() - LN_SQRT_2PI;
                }
            }
            ObservationModel::Poisson => {
                for (yv, xv) in y.iter().zip(x) {
                    lp += poisson_ln_pmf(*yv, xv as f64);
                }
            }
        }
        lp
    }

    /// Draws one observation row given the observed counts `x`.
    pub fn sample<R: Rng + ?Sized>(&self, x: &[u64], rng: &mut R) -> Vec<f64> {
        match self {
            ObservationModel::Gaussian { sd } => x
                .iter()
                .zip(sd)
                .map(|(xv, s)| {
                    Normal::new(*xv as f64, *s)
                        .expect("validated sd")
                        .sample(rng)
                })
                .collect(),
            ObservationModel::Poisson => x
                .iter()
                .map(|xv| poisson_draw(*xv as f64, rng) as f64)
                .collect(),
        }
    }
}

/// `ln P(Y = y)` for `Y ~ Poisson(lambda)`; `y` a non-negative integer.
pub fn poisson_ln_pmf(y: f64, lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return if y == 0.0 { 0.0 } else { f64::NEG_INFINITY };
    }
    y * lambda.ln() - lambda - ln_factorial(y as u64)
}

/// One Poisson(`lambda`) draw as a count (0 when `lambda` is 0).
pub fn poisson_draw<R: Rng + ?Sized>(lambda: f64, rng: &mut R) -> u64 {
    if lambda <= 0.0 {
        return 0;
    }
    Poisson::new(lambda)
        .expect("finite positive mean")
        .sample(rng) as u64
}

/// The initial-state prior: independent Poisson counts per species.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitialPrior {
    means: Vec<f64>,
}

impl InitialPrior {
    /// Poisson means per species, in state-vector order (0 gives a fixed 0).
    ///
    /// # Errors
    /// [`Error::Setting`] for a wrong length or a mean that is negative, not
    /// finite, or above 10^12.
    pub fn new(net: &Network, means: Vec<f64>) -> Result<Self> {
        if means.len() != net.species().len() {
            return Err(Error::setting(
                "initial.means",
                format!("{} means for {} species", means.len(), net.species().len()),
            ));
        }
        if let Some(m) = means
            .iter()
            .find(|m| !(m.is_finite() && **m >= 0.0 && **m <= 1e12))
        {
            return Err(Error::setting(
                "initial.means",
                format!("{m} is not a mean in [0, 1e12]"),
            ));
        }
        Ok(InitialPrior { means })
    }

    /// The Poisson means.
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// Draws one initial state into `x` through `set(species, count)`.
    pub fn sample_into<R: Rng + ?Sized>(&self, rng: &mut R, mut set: impl FnMut(usize, u64)) {
        for (s, m) in self.means.iter().enumerate() {
            set(s, poisson_draw(*m, rng));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_density() {
        let m = ObservationModel::Gaussian { sd: vec![2.0] };
        let lp = m.log_density(&[3.0], [1u64].into_iter());
        let expect = -0.5 - 2f64.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln();
        assert!((lp - expect).abs() < 1e-14);
    }

    #[test]
    fn observations_rebuild_their_bounds_from_the_wire_and_refuse_bad_parts() {
        let net = Network::lotka_volterra(1).unwrap();
        let names = vec!["prey".to_string(), "pred1".to_string()];
        let data = Data::new(
            &net,
            vec![0.0, 1.0, 2.0],
            &names,
            vec![vec![10.0, 3.0], vec![12.0, 0.0], vec![7.0, 5.0]],
        )
        .unwrap();
        let model = ObservationModel::Poisson;
        let o = Observations::new(model.clone(), data.clone()).unwrap();
        let bound = |j: usize| model.log_density_bound(data.row(j));
        assert_eq!(o.bound_from(3), 0.0);
        assert_eq!(o.bound_from(2), bound(2));
        assert_eq!(o.bound_from(0), bound(0) + bound(1) + bound(2));
        assert_eq!(o.bound_magnitude_from(1), bound(1).abs() + bound(2).abs());
        assert!(o.rounding_from(0) > 0.0);
        // Bounds are not part of the wire form: they are computed again.
        let wire = serde_json::to_value(&o).unwrap();
        assert_eq!(wire.as_object().unwrap().len(), 2, "{wire}");
        let back: Observations = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(back, o);
        // A model that does not fit the data is refused on the wire too.
        let mut bad = wire;
        bad["model"] = serde_json::json!({ "Gaussian": { "sd": [1.0] } });
        let err = serde_json::from_value::<Observations>(bad).unwrap_err();
        assert!(err.to_string().contains("sd"), "{err}");
    }

    #[test]
    fn poisson_density() {
        assert_eq!(poisson_ln_pmf(0.0, 0.0), 0.0);
        assert_eq!(poisson_ln_pmf(1.0, 0.0), f64::NEG_INFINITY);
        let expect = 3.0 * 2f64.ln() - 2.0 - 6f64.ln();
        assert!((poisson_ln_pmf(3.0, 2.0) - expect).abs() < 1e-14);
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
            (vec![0.0], prey.clone(), vec![vec![f64::NAN]], "not finite"),
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
        assert!(ObservationModel::Poisson.validate(&d).is_err());
        assert!(
            ObservationModel::Gaussian { sd: vec![0.0] }
                .validate(&d)
                .is_err()
        );
        assert!(
            ObservationModel::Gaussian { sd: vec![1.0, 1.0] }
                .validate(&d)
                .is_err()
        );
    }
}
