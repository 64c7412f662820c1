//! Bulk ESS, tail ESS and rank-normalised split-R̂ equal ArviZ's, the
//! reference implementation of Vehtari et al. (2021).
//!
//! The fixture `fixtures/arviz_ess.json` was produced by
//! `fixtures/arviz_ess.py` with ArviZ 0.23.4 from `fixtures/draws.csv` (the
//! kept rows of a 3-chain × 400-draw lv11-quick run whose chains had not
//! converged) and from four AR(1) chains stored in the JSON itself; see the
//! script's docstring.

use pcmc_core::diagnostics::{ess_bulk, ess_tail, rhat};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/arviz_ess.json")).unwrap()
}

/// draws.csv as parameter → chains of draws.
fn lv11_draws(param: &str) -> Vec<Vec<f64>> {
    let text = include_str!("fixtures/draws.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == param).unwrap();
    let mut chains: Vec<Vec<f64>> = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let c: usize = f[0].parse().unwrap();
        if chains.len() <= c {
            chains.resize(c + 1, Vec::new());
        }
        chains[c].push(f[col].parse().unwrap());
    }
    chains
}

fn close(ours: f64, theirs: f64, what: &str) {
    let rel = (ours - theirs).abs() / theirs.abs();
    assert!(
        rel < 1e-6,
        "{what}: pcmc {ours} vs ArviZ {theirs} (relative {rel:.2e})"
    );
}

#[test]
fn ess_and_rhat_equal_arviz() {
    let fx = fixture();
    let mut checked = 0;
    for set in fx["sets"].as_array().unwrap() {
        for (param, v) in set["parameters"].as_object().unwrap() {
            let chains: Vec<Vec<f64>> = match v["draws"].as_array() {
                Some(cs) => cs
                    .iter()
                    .map(|c| {
                        c.as_array()
                            .unwrap()
                            .iter()
                            .map(|x| x.as_f64().unwrap())
                            .collect()
                    })
                    .collect(),
                None => lv11_draws(param),
            };
            let refs: Vec<&[f64]> = chains.iter().map(|c| c.as_slice()).collect();
            let what = format!("{} {param}", set["name"]);
            close(
                ess_bulk(&refs).unwrap(),
                v["ess_bulk"].as_f64().unwrap(),
                &format!("{what} bulk ESS"),
            );
            close(
                ess_tail(&refs).unwrap(),
                v["ess_tail"].as_f64().unwrap(),
                &format!("{what} tail ESS"),
            );
            close(
                rhat(&refs).unwrap(),
                v["rhat"].as_f64().unwrap(),
                &format!("{what} R-hat"),
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}
