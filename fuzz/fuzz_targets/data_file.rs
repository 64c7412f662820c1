//! Reading a data file (or a covariate file) from arbitrary bytes returns an
//! error or valid data, never panics; valid data then go through the
//! observables' checks and densities under every noise model.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pcmc_job::data::Columns;
use pcmc_core::model::Network;
use pcmc_core::observation::{Noise, Observable, Observations, Param};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // The same bytes as a covariate file.
    if let Ok(c) = pcmc_job::data::parse_covariates(Path::new("cov.csv"), data) {
        let _ = c.row_at(0.0);
    }
    let net = Network::lotka_volterra(2).expect("preset");
    let cols = Columns::species(&net);
    if let Ok(d) = pcmc_job::data::parse_data(Path::new("fuzz.csv"), data, &cols) {
        let _ = d.max_per_column();
        let rho = Param::Theta(5);
        for noise in [
            Noise::Gaussian { sd: Param::Fixed(1.0) },
            Noise::Poisson { rho },
            Noise::NegativeBinomial { rho, dispersion: Param::Theta(6), inverse: true },
            Noise::Binomial { rho },
            Noise::LogNormal { sd: Param::Theta(6) },
        ] {
            let obs: Vec<Observable> = d
                .names()
                .iter()
                .map(|n| Observable {
                    name: n.clone(),
                    terms: vec![(net.species_index(n).expect("checked"), 1), (0, 2)]
                        .into_iter()
                        .take(if n == "prey" { 1 } else { 2 })
                        .collect(),
                    noise,
                })
                .collect();
            let mut params = net.parameters().to_vec();
            params.extend(["rho".to_string(), "phi".to_string()]);
            if let Ok(o) = Observations::new(obs, d.clone(), params, 3) {
                if let Some(s) = o.at(&[1.0, 0.005, 0.005, 0.6, 0.6, 0.3, 0.2]) {
                    for k in 0..d.len() {
                        let _ = s.log_density(k, |s| [50u64, 100, 7][s]);
                    }
                    let _ = s.bound_from(0) + s.rounding_from(0);
                }
            }
        }
    }
});
