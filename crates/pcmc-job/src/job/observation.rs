//! `[observables.NAME]`: what each data column observes and through which
//! noise, with noise parameters that are numbers or parameters of θ; and
//! the first versions' `[observation]`, which still means what it meant.

use super::file::{Names, ObservableSection, ParamSpec};
use crate::error::Result;
use crate::error::input;
use pcmc_core::model::Network;
use pcmc_core::observation::{Noise, Observable, Param};
use std::collections::BTreeMap;
use std::path::Path;

/// The species name of the counter behind an incidence column.
pub fn counter_name(col: &str) -> String {
    format!("incidence_{col}")
}

/// The network with an incidence counter for each `[observables.NAME]`
/// that has `incidence` (in column order).
///
/// # Errors
/// An input error naming `observables.NAME.incidence` for an unknown or
/// repeated reaction, or `of` given too.
pub fn with_counters(
    path: &Path,
    observables: &BTreeMap<String, ObservableSection>,
    net: Network,
) -> Result<Network> {
    let mut net = net;
    for (col, o) in observables {
        let Some(Names(list)) = &o.incidence else {
            continue;
        };
        let field = format!("observables.{col}.incidence");
        if o.of.is_some() {
            return Err(input(
                path,
                format!(
                    "{field}: give `of` (a value) or `incidence` (a count of reactions), not both"
                ),
            ));
        }
        let names: Vec<&str> = net.reactions().iter().map(|r| r.name.as_str()).collect();
        let idx = list
            .iter()
            .map(|r| {
                names.iter().position(|n| n == r).ok_or_else(|| {
                    input(
                        path,
                        format!(
                            "{field}: {r:?} is not a reaction of the model ({})",
                            names.join(", ")
                        ),
                    )
                })
            })
            .collect::<Result<Vec<usize>>>()?;
        net = net
            .with_counter(&counter_name(col), &idx)
            .map_err(|e| input(path, format!("{field}: {e}")))?;
    }
    Ok(net)
}

/// The noise models and the fields each takes (required, optional).
const NOISES: [(&str, &[&str], &[&str]); 5] = [
    ("gaussian", &["sd"], &[]),
    ("poisson", &[], &["rho"]),
    ("negative-binomial", &[], &["rho", "k", "phi"]),
    ("binomial", &["rho"], &[]),
    ("log-normal", &["sd"], &[]),
];

impl ObservableSection {
    fn fields(&self) -> [(&'static str, Option<&ParamSpec>); 4] {
        [
            ("sd", self.sd.as_ref()),
            ("rho", self.rho.as_ref()),
            ("k", self.k.as_ref()),
            ("phi", self.phi.as_ref()),
        ]
    }
}

/// The names of the noise parameters the observables infer, in θ order
/// (after the rate parameters): by observable, then field, first use
/// first. Checks each observable's fields against its noise model.
///
/// # Errors
/// An input error naming `observables.NAME.FIELD` for an unknown noise
/// model, a missing or unused field, both `k` and `phi`, or a parameter
/// name that is a rate of the model.
pub fn noise_parameters(
    path: &Path,
    observables: &BTreeMap<String, ObservableSection>,
    net: &Network,
) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for (col, o) in observables {
        let at = |f: &str| format!("observables.{col}.{f}");
        check_column_name(path, col)?;
        let Some((_, required, optional)) = NOISES.iter().find(|(n, _, _)| *n == o.noise) else {
            return Err(input(
                path,
                format!(
                    "{}: {:?} is not one of {}",
                    at("noise"),
                    o.noise,
                    NOISES.map(|n| n.0).join(", ")
                ),
            ));
        };
        for (f, v) in o.fields() {
            let allowed = required.contains(&f) || optional.contains(&f);
            match v {
                Some(_) if !allowed => {
                    return Err(input(
                        path,
                        format!("{}: not used by {} noise; remove it", at(f), o.noise),
                    ));
                }
                None if required.contains(&f) => {
                    return Err(input(
                        path,
                        format!("{}: required for {} noise", at(f), o.noise),
                    ));
                }
                _ => {}
            }
        }
        if o.noise == "negative-binomial" {
            match (&o.k, &o.phi) {
                (Some(_), Some(_)) => {
                    return Err(input(
                        path,
                        format!("{}: give k or phi (= 1/k), not both", at("phi")),
                    ));
                }
                (None, None) => {
                    return Err(input(
                        path,
                        format!(
                            "{}: negative-binomial noise needs its dispersion: k (size) or phi (= 1/k)",
                            at("k")
                        ),
                    ));
                }
                _ => {}
            }
        }
        for (f, v) in o.fields() {
            if let Some(ParamSpec::Name(p)) = v {
                if net.parameters().contains(p) {
                    return Err(input(
                        path,
                        format!(
                            "{}: {p:?} is a rate parameter of the model; a noise parameter needs a name of its own",
                            at(f)
                        ),
                    ));
                }
                if !crate::job::is_plain_name(p) {
                    return Err(input(
                        path,
                        format!(
                            "{}: {p:?} is not a parameter name (1–64 letters, digits, '_', '-' or '.')",
                            at(f)
                        ),
                    ));
                }
                if !names.contains(p) {
                    names.push(p.clone());
                }
            }
        }
    }
    Ok(names)
}

fn check_column_name(path: &Path, col: &str) -> Result<()> {
    if col == "time" || !crate::job::is_plain_name(col) {
        return Err(input(
            path,
            format!(
                "observables.{col}: a data column's name must be 1–64 letters, digits, '_', '-' or '.', and not \"time\""
            ),
        ));
    }
    Ok(())
}

/// Parses `of`: `term (+ term)*`, each term `name` or `c*name` (c a whole
/// number ≥ 1), into (species index, coefficient).
fn linear_combination(
    path: &Path,
    field: &str,
    text: &str,
    net: &Network,
) -> Result<Vec<(usize, u64)>> {
    let bad = |why: String| input(path, format!("{field}: {text:?}: {why}"));
    let mut terms: Vec<(usize, u64)> = Vec::new();
    if text.trim().is_empty() {
        return Err(bad("names no species".into()));
    }
    for part in text.split('+') {
        let part = part.trim();
        let (coef, name) = match part.split_once('*') {
            Some((c, n)) => {
                let c = c.trim();
                let v: u64 = c
                    .parse()
                    .ok()
                    .filter(|v| (1..=1_000_000).contains(v))
                    .ok_or_else(|| {
                        bad(format!("{c:?} is not a whole coefficient from 1 to 10^6"))
                    })?;
                (v, n.trim())
            }
            None => (1, part),
        };
        let s = net.species_index(name).ok_or_else(|| {
            bad(format!(
                "{name:?} is not a species of the model ({})",
                net.species().join(", ")
            ))
        })?;
        if terms.iter().any(|t| t.0 == s) {
            return Err(bad(format!("{name:?} appears twice")));
        }
        terms.push((s, coef));
    }
    Ok(terms)
}

/// The observables of the job, one per `[observables.NAME]`, their noise
/// parameters resolved against `parameters` (the names of θ).
///
/// # Errors
/// An input error naming the field.
pub fn build(
    path: &Path,
    observables: &BTreeMap<String, ObservableSection>,
    net: &Network,
    parameters: &[String],
) -> Result<Vec<Observable>> {
    observables
        .iter()
        .map(|(col, o)| {
            let field = format!("observables.{col}.of");
            let terms = match (&o.of, &o.incidence) {
                (_, Some(_)) => vec![(
                    net.species_index(&counter_name(col))
                        .expect("with_counters added the counter"),
                    1,
                )],
                (Some(text), None) => linear_combination(path, &field, text, net)?,
                (None, None) => vec![(
                    net.species_index(col).ok_or_else(|| {
                        input(
                            path,
                            format!(
                                "{field}: missing, and {col:?} is not a species ({}): say what the column observes, e.g. of = \"I + R\"",
                                net.species().join(", ")
                            ),
                        )
                    })?,
                    1,
                )],
            };
            let param = |f: &str, spec: Option<&ParamSpec>, default: f64| -> Param {
                match spec {
                    None => Param::Fixed(default),
                    Some(ParamSpec::Value(v)) => Param::Fixed(*v),
                    Some(ParamSpec::Name(n)) => Param::Theta(
                        parameters
                            .iter()
                            .position(|p| p == n)
                            .unwrap_or_else(|| panic!("{f}: {n} was listed by noise_parameters")),
                    ),
                }
            };
            let noise = match o.noise.as_str() {
                "gaussian" => Noise::Gaussian {
                    sd: param("sd", o.sd.as_ref(), 1.0),
                },
                "log-normal" => Noise::LogNormal {
                    sd: param("sd", o.sd.as_ref(), 1.0),
                },
                "poisson" => Noise::Poisson {
                    rho: param("rho", o.rho.as_ref(), 1.0),
                },
                "binomial" => Noise::Binomial {
                    rho: param("rho", o.rho.as_ref(), 1.0),
                },
                _ => Noise::NegativeBinomial {
                    rho: param("rho", o.rho.as_ref(), 1.0),
                    dispersion: match &o.phi {
                        Some(phi) => param("phi", Some(phi), 0.0),
                        None => param("k", o.k.as_ref(), 1.0),
                    },
                    inverse: o.phi.is_some(),
                },
            };
            for (f, p) in noise.params() {
                if let Param::Fixed(v) = p
                    && let Err(range) = noise.check_value(f, v)
                {
                    return Err(input(
                        path,
                        format!("observables.{col}.{f}: {v} is not {range}"),
                    ));
                }
            }
            Ok(Observable {
                name: col.clone(),
                terms,
                noise,
            })
        })
        .collect()
}
