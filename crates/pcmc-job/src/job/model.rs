//! `[model]`: a preset or a declared network.

use super::ModelSection;
use crate::error::Result;
use crate::error::input;
use pcmc_core::model::{Network, ReactionSpec, Term};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The largest SBML file read.
const MAX_SBML_BYTES: u64 = 64 << 20;

/// A model read from `[model]`.
pub(super) struct Built {
    /// The network.
    pub network: Network,
    /// Initial counts the model file gives (SBML), per species.
    pub initial: Vec<Option<u64>>,
    /// The SBML file's path and bytes.
    pub sbml: Option<(PathBuf, Vec<u8>)>,
}

/// Reads the SBML file `[model] sbml` names: from `inputs` (a run
/// directory's copy, `model.xml`) when given, else relative to the job.
fn read_sbml(path: &Path, file: &str, inputs: Option<&Path>) -> Result<(PathBuf, Vec<u8>)> {
    let p = match inputs {
        Some(dir) => dir.join(super::SBML_COPY),
        None => path.parent().unwrap_or(Path::new("")).join(file),
    };
    let meta = std::fs::metadata(&p).map_err(|e| {
        input(
            path,
            format!("model.sbml: cannot read {}: {e}", p.display()),
        )
    })?;
    if !meta.is_file() {
        return Err(input(
            path,
            format!("model.sbml: {} is not a regular file", p.display()),
        ));
    }
    if meta.len() > MAX_SBML_BYTES {
        return Err(input(
            &p,
            format!("the SBML file is larger than {} MiB", MAX_SBML_BYTES >> 20),
        ));
    }
    let bytes = std::fs::read(&p).map_err(|e| input(&p, format!("cannot read: {e}")))?;
    Ok((p, bytes))
}

/// The network `[model]` describes; an SBML model infers the parameters
/// named in `infer` and fixes every other one.
///
/// # Errors
/// An input error naming `model` (or the SBML file, its element, id and
/// line) and the reason.
pub(super) fn build(
    path: &Path,
    m: &ModelSection,
    infer: &[String],
    inputs: Option<&Path>,
) -> Result<Built> {
    if let Some(file) = &m.sbml {
        if m.preset.is_some()
            || m.species.is_some()
            || m.reactions.is_some()
            || m.predators.is_some()
        {
            return Err(input(
                path,
                "model.sbml: give either `sbml` or `preset`/`species`/`reactions`, not both",
            ));
        }
        let (p, bytes) = read_sbml(path, file, inputs)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| input(&p, "the SBML file is not UTF-8 text"))?;
        let imported = super::sbml::read(text, infer).map_err(|e| input(&p, e.to_string()))?;
        return Ok(Built {
            network: imported.network,
            initial: imported.initial,
            sbml: Some((p, bytes)),
        });
    }
    let network = build_network(path, m)?;
    let n = network.species().len();
    Ok(Built {
        network,
        initial: vec![None; n],
        sbml: None,
    })
}

/// The network `[model]` declares (a preset or species and reactions).
///
/// # Errors
/// An input error naming `model` and the reason.
fn build_network(path: &Path, m: &ModelSection) -> Result<Network> {
    let err = |e: pcmc_core::Error| input(path, format!("model: {e}"));
    match (&m.preset, &m.reactions) {
        (Some(_), Some(_)) => Err(input(
            path,
            "model: give either `preset` or `reactions`, not both",
        )),
        (Some(p), None) => {
            if m.species.is_some() {
                return Err(input(
                    path,
                    "model.species: only for declared networks (remove it or the preset)",
                ));
            }
            match p.as_str() {
                "lotka-volterra" => {
                    let k = m.predators.ok_or_else(|| {
                        input(path, "model.predators: required for lotka-volterra")
                    })?;
                    Network::lotka_volterra(k).map_err(err)
                }
                "immigration-death" => {
                    if m.predators.is_some() {
                        return Err(input(path, "model.predators: only for lotka-volterra"));
                    }
                    Ok(Network::immigration_death())
                }
                other => Err(input(
                    path,
                    format!(
                        "model.preset: {other:?} is not one of lotka-volterra, immigration-death"
                    ),
                )),
            }
        }
        (None, Some(reactions)) => {
            if m.predators.is_some() {
                return Err(input(
                    path,
                    "model.predators: only for the lotka-volterra preset",
                ));
            }
            let species = m
                .species
                .clone()
                .ok_or_else(|| input(path, "model.species: required with model.reactions"))?;
            let mut params: Vec<String> = Vec::new();
            // `rate = "beta * school_open"`: a parameter times a covariate.
            let mut covs: Vec<(usize, String)> = Vec::new();
            let specs: Vec<ReactionSpec> = reactions
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let rate = match r.rate.split_once('*') {
                        Some((p, c)) => {
                            let (p, c) = (p.trim(), c.trim());
                            if c.is_empty() || c.contains('*') || p.is_empty() {
                                return Err(input(
                                    path,
                                    format!(
                                        "model.reactions[{i}].rate: {:?} must be a parameter, or a parameter times one covariate (\"beta * school_open\")",
                                        r.rate
                                    ),
                                ));
                            }
                            covs.push((i, c.to_string()));
                            p.to_string()
                        }
                        None => r.rate.trim().to_string(),
                    };
                    if !params.contains(&rate) {
                        params.push(rate.clone());
                    }
                    let terms = |m: &BTreeMap<String, u32>| {
                        m.iter()
                            .map(|(s, c)| Term {
                                species: s.clone(),
                                count: *c,
                            })
                            .collect()
                    };
                    Ok(ReactionSpec {
                        name: r.name.clone().unwrap_or_else(|| format!("r{}", i + 1)),
                        reactants: terms(&r.reactants),
                        products: terms(&r.products),
                        rate,
                    })
                })
                .collect::<Result<_>>()?;
            let mut net = Network::new(species, params, &specs).map_err(err)?;
            for (i, c) in covs {
                net = net
                    .with_covariate(i, &c)
                    .map_err(|e| input(path, format!("model.reactions[{i}].rate: {e}")))?;
            }
            Ok(net)
        }
        (None, None) => Err(input(
            path,
            "model: needs `preset`, `species` and `reactions`, or `sbml`",
        )),
    }
}
