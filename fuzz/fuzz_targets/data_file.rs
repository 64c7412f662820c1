//! Reading a data file from arbitrary bytes returns an error or valid data,
//! never panics; valid data then go through the observation-model checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pcmc_core::model::Network;
use pcmc_core::observation::ObservationModel;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let net = Network::lotka_volterra(2).expect("preset");
    if let Ok(d) = pcmc_cli::data::parse_data(Path::new("fuzz.csv"), data, &net) {
        let _ = ObservationModel::Poisson.validate(&d);
        let _ = ObservationModel::Poisson.invalid_value(&d);
        let sd = vec![1.0; d.observed().len()];
        let _ = ObservationModel::Gaussian { sd }.validate(&d);
        let _ = d.max_per_column();
    }
});
