//! # pcmc-cli
//!
//! The library behind the `pcmc` binary: job files, data files, chain
//! outputs, summaries and plots. The binary is a thin clap front end.
#![deny(missing_docs)]

pub use pcmc_job::{data, job, output, summary};

pub mod bench;
pub mod checkpoint;
pub mod cluster;
pub mod error;
pub mod fsio;
pub mod launch;
pub mod plots;
pub mod run;
pub mod settings;
pub mod tools;
