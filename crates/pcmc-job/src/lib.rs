//! pcmc's jobs and their outputs, without the command line: job files
//! (TOML, with SBML models), data and covariate files, chain files
//! (`chain.csv`, `chain.parquet`) and run summaries (R̂, ESS,
//! `summary.json`). The `pcmc` command line and the Python entry both use
//! it; errors are [`error::InputError`] (bad input, naming file, field and
//! reason) and [`error::OutputError`].
#![deny(missing_docs)]

pub mod data;
pub mod error;
pub mod job;
pub mod output;
pub mod summary;
