//! Building a job from arbitrary bytes returns an error or a valid job, never
//! panics; a valid job's derived settings (observables, noise parameters,
//! incidence counters) are computed too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    if let Ok(job) = pcmc_job::job::Job::parse(Path::new("fuzz.toml"), text) {
        let _ = job.simulate_times();
        let cols = job.data_columns();
        let _ = job.observables(&cols.names);
        let _ = job.noise_parameters();
        let _ = job.model_tag();
        let _ = job.data_path();
        let _ = job.result_fields();
        let _ = job.ignored_fields(pcmc_job::job::Method::Smc2);
        let _ = job.ignored_fields(pcmc_job::job::Method::Pmmh);
    }
});
