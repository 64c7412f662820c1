//! `[model]`: a preset or a declared network.

use super::ModelSection;
use crate::error::input;
use anyhow::Result;
use pcmc_core::model::{Network, ReactionSpec, Term};
use std::collections::BTreeMap;
use std::path::Path;

/// The network `[model]` describes.
///
/// # Errors
/// An input error naming `model` and the reason.
pub(super) fn build_network(path: &Path, m: &ModelSection) -> Result<Network> {
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
            "model: needs `preset` or `species` and `reactions`",
        )),
    }
}
