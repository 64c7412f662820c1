//! # pcmc-cli
//!
//! The library behind the `pcmc` binary: job files, data files, chain
//! outputs, summaries and plots. The binary is a thin clap front end.
#![deny(missing_docs)]

pub mod bench;
pub mod checkpoint;
pub mod cluster;
pub mod data;
pub mod error;
pub mod fsio;
pub mod job;
pub mod launch;
pub mod output;
pub mod plots;
pub mod run;
pub mod settings;
pub mod summary;
pub mod tools;
