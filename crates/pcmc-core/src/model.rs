//! Mass-action reaction networks: the stochastic kinetic models pcmc infers.
//!
//! A [`Network`] has named species, named rate parameters and reactions. A
//! reaction `j` has reactant and product stoichiometries and a rate parameter
//! `θ_j`; its hazard in state `x` is the mass-action form with the
//! combinatorial factor for repeated reactants (Gillespie, 1977):
//!
//! ```text
//! h_j(x, θ) = θ_j · Π_s C(x_s, r_js)      (C = binomial coefficient)
//! ```
//!
//! so `X → 2X` has hazard `θ·x`, `X + Y → 2Y` has `θ·x·y` and `2X → ∅` has
//! `θ·x(x−1)/2`.
//!
//! Presets: [`Network::lotka_volterra`] (one prey, `k` predators) and
//! [`Network::immigration_death`] (whose transition law is known exactly,
//! used in tests).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A species and its stoichiometric coefficient on one side of a reaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    /// Species name.
    pub species: String,
    /// Stoichiometric coefficient (≥ 1).
    pub count: u32,
}

/// A reaction as declared by a user, before validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReactionSpec {
    /// A name for messages and plots.
    pub name: String,
    /// Reactants (left-hand side); empty for a source reaction `∅ → …`.
    pub reactants: Vec<Term>,
    /// Products (right-hand side); empty for a sink `… → ∅`.
    pub products: Vec<Term>,
    /// The name of the rate parameter.
    pub rate: String,
}

/// One validated reaction in index form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    /// Name for messages.
    pub name: String,
    /// Index of the rate parameter in [`Network::parameters`]; `None` for a
    /// reaction whose rate constant is fixed ([`Network::with_fixed`]).
    pub rate: Option<usize>,
    /// A known factor of the rate constant, `c_j = factor · θ_rate` (or
    /// `factor` alone when `rate` is `None`): 1 unless set by
    /// [`Network::with_factor`] or [`Network::with_fixed`] (an SBML
    /// kinetic law's compartment volume and fixed parameters).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub factor: f64,
    /// `(species index, order)` for each distinct reactant.
    pub reactants: Vec<(usize, u32)>,
    /// `(species index, net change)` for each species whose count changes.
    pub change: Vec<(usize, i64)>,
}

/// A validated mass-action reaction network.
///
/// Serialisable so that a filtering problem can travel to remote executors
/// (the Ballista executor); a decoded network is checked again on arrival
/// (indices in range, orders and changes in bounds, rate factors finite
/// and positive), so a hostile peer cannot hand a kernel an index out of
/// range or a negative hazard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NetworkWire", into = "NetworkWire")]
pub struct Network {
    species: Vec<String>,
    parameters: Vec<String>,
    reactions: Vec<Reaction>,
    /// Incidence counters ([`Network::with_counter`]): species that count
    /// how often some reactions fired since the last observation.
    #[serde(default)]
    counters: Vec<usize>,
    /// Per reaction, the covariate its rate is multiplied by
    /// ([`Network::with_covariate`]).
    #[serde(default)]
    covariates: Vec<Option<String>>,
}

/// The wire form of a [`Network`]: the same fields, checked on arrival.
#[derive(Serialize, Deserialize)]
struct NetworkWire {
    species: Vec<String>,
    parameters: Vec<String>,
    reactions: Vec<Reaction>,
    #[serde(default)]
    counters: Vec<usize>,
    #[serde(default)]
    covariates: Vec<Option<String>>,
}

impl From<Network> for NetworkWire {
    fn from(n: Network) -> Self {
        NetworkWire {
            species: n.species,
            parameters: n.parameters,
            reactions: n.reactions,
            counters: n.counters,
            covariates: n.covariates,
        }
    }
}

impl TryFrom<NetworkWire> for Network {
    type Error = Error;
    fn try_from(w: NetworkWire) -> Result<Self> {
        let bad = |why: String| Err(Error::Model(format!("a network on the wire: {why}")));
        let n = w.species.len();
        if n == 0 || w.reactions.is_empty() {
            return bad("no species or no reactions".into());
        }
        for (kind, list) in [("species", &w.species), ("parameter", &w.parameters)] {
            for (i, name) in list.iter().enumerate() {
                check_name(kind, name)?;
                if list[..i].contains(name) {
                    return bad(format!("{kind} {name:?} twice"));
                }
            }
        }
        for (j, r) in w.reactions.iter().enumerate() {
            if r.rate.is_some_and(|i| i >= w.parameters.len()) {
                return bad(format!("reaction {j}: rate index out of range"));
            }
            if !(r.factor.is_finite() && r.factor > 0.0) {
                return bad(format!(
                    "reaction {j}: rate factor {} is not finite and positive",
                    r.factor
                ));
            }
            for (k, &(s, o)) in r.reactants.iter().enumerate() {
                if s >= n || !(1..=1000).contains(&o) || r.reactants[..k].iter().any(|t| t.0 == s) {
                    return bad(format!(
                        "reaction {j}: reactant ({s}, {o}) out of range or repeated"
                    ));
                }
            }
            if r.change.is_empty() {
                return bad(format!("reaction {j}: no change"));
            }
            for (k, &(s, d)) in r.change.iter().enumerate() {
                if s >= n
                    || d == 0
                    || d.unsigned_abs() > 1000
                    || r.change[..k].iter().any(|t| t.0 == s)
                {
                    return bad(format!(
                        "reaction {j}: change ({s}, {d}) out of range or repeated"
                    ));
                }
            }
        }
        for (i, _) in w.parameters.iter().enumerate() {
            if !w.reactions.iter().any(|r| r.rate == Some(i)) {
                return bad(format!("parameter {i} is the rate of no reaction"));
            }
        }
        for (k, &c) in w.counters.iter().enumerate() {
            if c >= n
                || w.counters[..k].contains(&c)
                || w.reactions
                    .iter()
                    .any(|r| r.reactants.iter().any(|t| t.0 == c))
            {
                return bad(format!("counter {c} out of range, repeated or a reactant"));
            }
        }
        if w.covariates.len() > w.reactions.len() {
            return bad("more covariates than reactions".into());
        }
        for c in w.covariates.iter().flatten() {
            check_name("covariate", c)?;
        }
        Ok(Network {
            species: w.species,
            parameters: w.parameters,
            reactions: w.reactions,
            counters: w.counters,
            covariates: w.covariates,
        })
    }
}

fn one() -> f64 {
    1.0
}

/// Reaction `r`'s rate factor times `x`, if finite and positive.
fn scaled(r: &Reaction, x: f64) -> Result<f64> {
    let f = r.factor * x;
    if f.is_finite() && f > 0.0 {
        Ok(f)
    } else {
        Err(Error::Model(format!(
            "reaction {:?}: its rate factor {f} is not finite and positive",
            r.name
        )))
    }
}

#[allow(clippy::trivially_copy_pass_by_ref, clippy::float_cmp)]
fn is_one(x: &f64) -> bool {
    *x == 1.0
}

/// The population cap of an incidence counter: far above any count, and
/// within every kernel's range.
pub const COUNTER_CAP: u64 = 1 << 50;

fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(Error::Model(format!(
            "{kind} name {name:?} must be 1–64 characters of letters, digits, '_', '-' or '.'"
        )))
    }
}

impl Network {
    /// Builds and validates a network.
    ///
    /// `parameters` lists the rate parameter names in their order in θ; every
    /// reaction's `rate` must be one of them, and every parameter must be used.
    ///
    /// # Errors
    /// [`Error::Model`] for an empty network, duplicate or malformed names, an
    /// unknown species or parameter, a zero stoichiometric coefficient, a
    /// reaction with no net effect, or an unused parameter.
    pub fn new(
        species: Vec<String>,
        parameters: Vec<String>,
        reactions: &[ReactionSpec],
    ) -> Result<Self> {
        if species.is_empty() {
            return Err(Error::Model("the network has no species".into()));
        }
        if reactions.is_empty() {
            return Err(Error::Model("the network has no reactions".into()));
        }
        for (kind, list) in [("species", &species), ("parameter", &parameters)] {
            for (i, name) in list.iter().enumerate() {
                check_name(kind, name)?;
                if list[..i].contains(name) {
                    return Err(Error::Model(format!("{kind} {name:?} is declared twice")));
                }
            }
        }
        let find = |name: &str| species.iter().position(|s| s == name);
        let mut out = Vec::with_capacity(reactions.len());
        for spec in reactions {
            let label = if spec.name.is_empty() {
                format!("reaction {}", out.len() + 1)
            } else {
                format!("reaction {:?}", spec.name)
            };
            let rate = parameters
                .iter()
                .position(|p| *p == spec.rate)
                .ok_or_else(|| {
                    Error::Model(format!("{label}: unknown rate parameter {:?}", spec.rate))
                })?;
            let mut net = vec![0i64; species.len()];
            let mut order = vec![0u32; species.len()];
            for (side, terms, sign) in [
                ("reactant", &spec.reactants, -1i64),
                ("product", &spec.products, 1),
            ] {
                for t in terms {
                    let s = find(&t.species).ok_or_else(|| {
                        Error::Model(format!("{label}: unknown {side} species {:?}", t.species))
                    })?;
                    if t.count == 0 {
                        return Err(Error::Model(format!(
                            "{label}: {side} {:?} has stoichiometric coefficient 0",
                            t.species
                        )));
                    }
                    if t.count > 1000 {
                        return Err(Error::Model(format!(
                            "{label}: {side} {:?} has stoichiometric coefficient {} (at most 1000)",
                            t.species, t.count
                        )));
                    }
                    net[s] += sign * i64::from(t.count);
                    if sign < 0 {
                        order[s] += t.count;
                    }
                }
            }
            let change: Vec<(usize, i64)> = net
                .iter()
                .enumerate()
                .filter(|(_, d)| **d != 0)
                .map(|(s, d)| (s, *d))
                .collect();
            if change.is_empty() {
                return Err(Error::Model(format!(
                    "{label} has no net effect on any species"
                )));
            }
            let reactants = order
                .iter()
                .enumerate()
                .filter(|(_, o)| **o > 0)
                .map(|(s, o)| (s, *o))
                .collect();
            out.push(Reaction {
                name: if spec.name.is_empty() {
                    format!("r{}", out.len() + 1)
                } else {
                    spec.name.clone()
                },
                rate: Some(rate),
                factor: 1.0,
                reactants,
                change,
            });
        }
        for (i, p) in parameters.iter().enumerate() {
            if !out.iter().any(|r| r.rate == Some(i)) {
                return Err(Error::Model(format!(
                    "parameter {p:?} is not the rate of any reaction"
                )));
            }
        }
        Ok(Network {
            species,
            parameters,
            reactions: out,
            counters: Vec::new(),
            covariates: Vec::new(),
        })
    }

    /// The network with one more species, `name`, that counts the firings
    /// of `reactions` (indices): each of them adds 1 to it. It is a
    /// reactant of nothing, so it changes no hazard, and filters set it to
    /// 0 at the start of every observation interval
    /// ([`Network::reset_counters`]): at an observation it holds the
    /// *incidence* of those reactions since the previous one (since the
    /// initial time for the first).
    ///
    /// # Errors
    /// [`Error::Model`] for a name already used, no reaction, or an index
    /// out of range.
    pub fn with_counter(&self, name: &str, reactions: &[usize]) -> Result<Network> {
        check_name("species", name)?;
        if self.species.iter().any(|s| s == name) {
            return Err(Error::Model(format!(
                "the incidence counter {name:?} has the name of a species"
            )));
        }
        if reactions.is_empty() {
            return Err(Error::Model(format!(
                "the incidence counter {name:?} counts no reaction"
            )));
        }
        let mut net = self.clone();
        let c = net.species.len();
        net.species.push(name.to_string());
        for (i, &j) in reactions.iter().enumerate() {
            let r = net.reactions.get_mut(j).ok_or_else(|| {
                Error::Model(format!("the incidence counter {name:?}: no reaction {j}"))
            })?;
            if reactions[..i].contains(&j) {
                return Err(Error::Model(format!(
                    "the incidence counter {name:?} counts reaction {:?} twice",
                    r.name
                )));
            }
            r.change.push((c, 1));
        }
        net.counters.push(c);
        Ok(net)
    }

    /// The network with reaction `j`'s rate multiplied by the
    /// piecewise-constant covariate `name` (`rate = "beta * name"`): its
    /// hazard is `θ_j · c(t) · Π C(x_s, r_js)`.
    ///
    /// # Errors
    /// [`Error::Model`] for a reaction index out of range, a malformed
    /// name, or a reaction that already has a covariate.
    pub fn with_covariate(&self, j: usize, name: &str) -> Result<Network> {
        check_name("covariate", name)?;
        let mut net = self.clone();
        net.covariates.resize(net.reactions.len(), None);
        let slot = net
            .covariates
            .get_mut(j)
            .ok_or_else(|| Error::Model(format!("no reaction {j}")))?;
        if slot.is_some() {
            return Err(Error::Model(format!(
                "reaction {:?} already has a covariate",
                self.reactions[j].name
            )));
        }
        *slot = Some(name.to_string());
        Ok(net)
    }

    /// Reaction `j`'s covariate, if its rate has one.
    pub fn covariate_of(&self, j: usize) -> Option<&str> {
        self.covariates.get(j).and_then(|c| c.as_deref())
    }

    /// The covariates the rates use (each once, in reaction order).
    pub fn covariate_names(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for c in self.covariates.iter().flatten() {
            if !v.contains(c) {
                v.push(c.clone());
            }
        }
        v
    }

    /// The incidence counters' species indices.
    pub fn counters(&self) -> &[usize] {
        &self.counters
    }

    /// Sets every incidence counter of the first `len` particles of a
    /// structure-of-arrays block (species `s` of particle `j` at
    /// `block[s * stride + j]`) to 0: what every executor does before it
    /// propagates an observation interval.
    #[inline]
    pub fn reset_counters(&self, block: &mut [u64], stride: usize, len: usize) {
        for &c in &self.counters {
            block[c * stride..c * stride + len].fill(0);
        }
    }

    /// Lotka–Volterra with one prey `prey` and `k` predators `pred1..predk`
    /// (1 ≤ k ≤ 8):
    ///
    /// | reaction | hazard | parameter |
    /// |---|---|---|
    /// | prey → 2 prey | θ₀·x | `birth` |
    /// | prey + pred*i* → 2 pred*i* | θ_i·x·y_i | `predation`*i* |
    /// | pred*i* → ∅ | θ_{k+i}·y_i | `death`*i* |
    ///
    /// θ = (birth, predation1..k, death1..k), 2k+1 parameters, as in the 2018
    /// Uppsala study (lv11: θ = (1, 0.005, 0.6)).
    ///
    /// # Errors
    /// [`Error::Model`] if `k` is 0 or more than 8.
    pub fn lotka_volterra(k: usize) -> Result<Self> {
        if !(1..=8).contains(&k) {
            return Err(Error::Model(format!(
                "Lotka–Volterra needs 1 to 8 predators, got {k}"
            )));
        }
        let term = |s: &str, c: u32| Term {
            species: s.to_string(),
            count: c,
        };
        let mut species = vec!["prey".to_string()];
        let mut parameters = vec!["birth".to_string()];
        let mut reactions = vec![ReactionSpec {
            name: "birth".into(),
            reactants: vec![term("prey", 1)],
            products: vec![term("prey", 2)],
            rate: "birth".into(),
        }];
        for i in 1..=k {
            let y = format!("pred{i}");
            species.push(y.clone());
            parameters.push(format!("predation{i}"));
            reactions.push(ReactionSpec {
                name: format!("predation{i}"),
                reactants: vec![term("prey", 1), term(&y, 1)],
                products: vec![term(&y, 2)],
                rate: format!("predation{i}"),
            });
        }
        for i in 1..=k {
            parameters.push(format!("death{i}"));
            reactions.push(ReactionSpec {
                name: format!("death{i}"),
                reactants: vec![term(&format!("pred{i}"), 1)],
                products: vec![],
                rate: format!("death{i}"),
            });
        }
        Network::new(species, parameters, &reactions)
    }

    /// Immigration–death: `∅ → X` at rate `lambda`, `X → ∅` at `mu·x`.
    ///
    /// From `X(0) = x0` the count at time t is Binomial(x0, e^{−μt}) plus an
    /// independent Poisson(λ/μ·(1 − e^{−μt})), so from 0 it is Poisson; used
    /// in exact-law tests.
    pub fn immigration_death() -> Self {
        Network::new(
            vec!["X".into()],
            vec!["lambda".into(), "mu".into()],
            &[
                ReactionSpec {
                    name: "immigration".into(),
                    reactants: vec![],
                    products: vec![Term {
                        species: "X".into(),
                        count: 1,
                    }],
                    rate: "lambda".into(),
                },
                ReactionSpec {
                    name: "death".into(),
                    reactants: vec![Term {
                        species: "X".into(),
                        count: 1,
                    }],
                    products: vec![],
                    rate: "mu".into(),
                },
            ],
        )
        .expect("the immigration–death preset is valid")
    }

    /// The hare–lynx job's predator–prey network (`jobs/hare-lynx.toml`):
    /// species `hare, lynx`; reactions prey birth `hare → 2 hare` (rate
    /// `a`), predation `hare + lynx → lynx` (`b`), predator birth
    /// `hare + lynx → hare + 2 lynx` (`c`) and predator death `lynx → ∅`
    /// (`d`): predation and predator reproduction with separate rates,
    /// unlike [`Network::lotka_volterra`].
    pub fn predation_birth() -> Self {
        Self::predation_birth_with(2)
    }

    /// [`Network::predation_birth`] with `lynx_born` lynx made by predator
    /// birth (2 in the model; other values for tests of exact structure
    /// recognition).
    pub(crate) fn predation_birth_with(lynx_born: u32) -> Self {
        let side = |terms: &[(&str, u32)]| {
            terms
                .iter()
                .map(|&(species, count)| Term {
                    species: species.into(),
                    count,
                })
                .collect()
        };
        let reaction = |name: &str, rate: &str, reactants, products| ReactionSpec {
            name: name.into(),
            reactants,
            products,
            rate: rate.into(),
        };
        let both = [("hare", 1), ("lynx", 1)];
        Network::new(
            vec!["hare".into(), "lynx".into()],
            ["a", "b", "c", "d"].map(String::from).to_vec(),
            &[
                reaction(
                    "prey-birth",
                    "a",
                    side(&[("hare", 1)]),
                    side(&[("hare", 2)]),
                ),
                reaction("predation", "b", side(&both), side(&[("lynx", 1)])),
                reaction(
                    "predator-birth",
                    "c",
                    side(&both),
                    side(&[("hare", 1), ("lynx", lynx_born)]),
                ),
                reaction("predator-death", "d", side(&[("lynx", 1)]), side(&[])),
            ],
        )
        .expect("the predation–birth network is valid")
    }

    /// Species names, in state-vector order.
    pub fn species(&self) -> &[String] {
        &self.species
    }

    /// Parameter names, in θ order.
    pub fn parameters(&self) -> &[String] {
        &self.parameters
    }

    /// The reactions.
    pub fn reactions(&self) -> &[Reaction] {
        &self.reactions
    }

    /// Index of a species by name.
    pub fn species_index(&self, name: &str) -> Option<usize> {
        self.species.iter().position(|s| s == name)
    }

    /// Per-reaction rate constants for parameter vector `theta`.
    ///
    /// # Panics
    /// If `theta` is shorter than the parameter list (a programming error).
    pub fn rates(&self, theta: &[f64]) -> Vec<f64> {
        self.reactions
            .iter()
            .map(|r| match r.rate {
                Some(i) => r.factor * theta[i],
                None => r.factor,
            })
            .collect()
    }

    /// The network with reaction `j`'s rate constant multiplied by the
    /// known `factor`: `c_j = factor · θ_j` (a kinetic law's compartment
    /// volume or fixed parameters folded in).
    ///
    /// # Errors
    /// [`Error::Model`] for a reaction index out of range or a factor that
    /// is not finite and positive.
    pub fn with_factor(&self, j: usize, factor: f64) -> Result<Network> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(Error::Model(format!(
                "a rate factor must be finite and positive, got {factor}"
            )));
        }
        let mut net = self.clone();
        let r = net
            .reactions
            .get_mut(j)
            .ok_or_else(|| Error::Model(format!("no reaction {j}")))?;
        r.factor = scaled(r, factor)?;
        Ok(net)
    }

    /// The network with parameter `name` fixed at `value`: it leaves θ
    /// (the parameters after it move down one place), and each reaction
    /// whose rate it was gets the constant rate `factor · value`.
    ///
    /// # Errors
    /// [`Error::Model`] for an unknown parameter or a value that is not
    /// finite and positive.
    pub fn with_fixed(&self, name: &str, value: f64) -> Result<Network> {
        let i = self
            .parameters
            .iter()
            .position(|p| p == name)
            .ok_or_else(|| Error::Model(format!("no rate parameter {name:?}")))?;
        if !(value.is_finite() && value > 0.0) {
            return Err(Error::Model(format!(
                "parameter {name:?}: a fixed rate must be finite and positive, got {value}"
            )));
        }
        let mut net = self.clone();
        net.parameters.remove(i);
        for r in &mut net.reactions {
            match r.rate {
                Some(k) if k == i => {
                    r.factor = scaled(r, value)?;
                    r.rate = None;
                }
                Some(k) if k > i => r.rate = Some(k - 1),
                _ => {}
            }
        }
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str, c: u32) -> Term {
        Term {
            species: s.into(),
            count: c,
        }
    }

    #[test]
    fn lv_presets() {
        let n = Network::lotka_volterra(2).unwrap();
        assert_eq!(n.species(), ["prey", "pred1", "pred2"]);
        assert_eq!(
            n.parameters(),
            ["birth", "predation1", "predation2", "death1", "death2"]
        );
        assert_eq!(n.reactions()[1].change, vec![(0, -1), (1, 1)]);
        assert_eq!(n.reactions()[1].reactants, vec![(0, 1), (1, 1)]);
        assert!(Network::lotka_volterra(0).is_err());
        assert!(Network::lotka_volterra(9).is_err());
        assert!(Network::lotka_volterra(8).is_ok());
    }

    #[test]
    fn validation_errors() {
        let sp = || vec!["A".to_string(), "B".to_string()];
        let r = |re: Vec<Term>, pr: Vec<Term>, rate: &str| ReactionSpec {
            name: "r".into(),
            reactants: re,
            products: pr,
            rate: rate.into(),
        };
        let cases = [
            (
                vec![],
                vec!["k".to_string()],
                vec![r(vec![], vec![t("A", 1)], "k")],
                "no species",
            ),
            (sp(), vec!["k".into()], vec![], "no reactions"),
            (
                sp(),
                vec!["k".into()],
                vec![r(vec![t("C", 1)], vec![], "k")],
                "unknown reactant",
            ),
            (
                sp(),
                vec!["k".into()],
                vec![r(vec![t("A", 1)], vec![], "q")],
                "unknown rate",
            ),
            (
                sp(),
                vec!["k".into()],
                vec![r(vec![t("A", 0)], vec![], "k")],
                "coefficient 0",
            ),
            (
                sp(),
                vec!["k".into()],
                vec![r(vec![t("A", 1)], vec![t("A", 1)], "k")],
                "no net effect",
            ),
            (
                sp(),
                vec!["k".into(), "q".into()],
                vec![r(vec![t("A", 1)], vec![], "k")],
                "not the rate",
            ),
            (
                vec!["A".into(), "A".into()],
                vec!["k".into()],
                vec![r(vec![t("A", 1)], vec![], "k")],
                "twice",
            ),
            (
                vec!["A B".into()],
                vec!["k".into()],
                vec![r(vec![], vec![t("A B", 1)], "k")],
                "must be",
            ),
        ];
        for (species, params, reactions, needle) in cases {
            let e = Network::new(species, params, &reactions).unwrap_err();
            assert!(
                e.to_string().contains(needle),
                "{e} should mention {needle}"
            );
        }
    }

    #[test]
    fn dimerisation_order() {
        let n = Network::new(
            vec!["A".into(), "B".into()],
            vec!["k".into()],
            &[ReactionSpec {
                name: "dim".into(),
                reactants: vec![t("A", 2)],
                products: vec![t("B", 1)],
                rate: "k".into(),
            }],
        )
        .unwrap();
        assert_eq!(n.reactions()[0].reactants, vec![(0, 2)]);
        assert_eq!(n.reactions()[0].change, vec![(0, -2), (1, 1)]);
    }
}
