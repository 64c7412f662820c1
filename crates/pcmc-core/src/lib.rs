//! # pcmc-core
//!
//! The kernel of pcmc: stochastic kinetic models, keyed random streams, the
//! exact SSA (scalar and block kernels), observation models, exact
//! resampling, the bootstrap particle filter, particle marginal
//! Metropolis–Hastings and MCMC diagnostics, plus a serial executor.
//!
//! It knows nothing of threads, ranks, partitions or files: executors
//! (`pcmc-rayon`, `pcmc-mpi`, `pcmc-dataflow`) implement
//! [`LikelihoodExecutor`] by mapping the filter's per-block work onto their
//! workers, and the PMMH loop ([`pmmh::Pmmh`]) is written once over that trait.
//!
//! ## Determinism
//! Same problem + same seed ⇒ bit-identical chain on every executor and every
//! worker count: every random draw comes from a stream keyed by its place in
//! the computation ([`rng`]), and every weight sum is an exact integer sum
//! ([`resample`]).
//!
//! ## Example
//! ```
//! use pcmc_core::{prelude::*, serial};
//! let net = Network::lotka_volterra(1).unwrap();
//! let prey = vec!["prey".to_string()];
//! let data = Data::new(&net, vec![0.0, 2.0], &prey, vec![vec![50.0], vec![60.0]]).unwrap();
//! let problem = FilterProblem::new(
//!     net.clone(),
//!     data,
//!     ObservationModel::Gaussian { sd: vec![10.0] },
//!     InitialPrior::new(&net, vec![50.0, 100.0]).unwrap(),
//!     0.0,
//!     FilterConfig::new(100, 2),
//! )
//! .unwrap();
//! let key = FilterKey { seed: 1, chain: 0, iteration: 0 };
//! let out = serial().log_likelihood(&problem, &[1.0, 0.005, 0.6], key).unwrap();
//! assert!(out.loglik.is_finite());
//! ```
#![deny(missing_docs)]

pub mod accept;
pub mod covariate;
pub mod diagnostics;
pub mod error;
pub mod executor;
pub mod filter;
pub mod model;
pub mod observation;
pub mod pmmh;
pub mod prior;
pub mod resample;
pub mod rng;
pub mod simulate;
pub mod smc2;
pub mod ssa;
pub mod tuning;
pub mod workloads;

pub use error::{Error, Result};
pub use executor::{BlockExecutor, ChainGroup, LikelihoodExecutor, SerialExecutor, serial};

/// The commonly used types.
pub mod prelude {
    pub use crate::accept::AcceptTest;
    pub use crate::executor::LikelihoodExecutor;
    pub use crate::filter::{FilterConfig, FilterKey, FilterOutput, FilterProblem, KernelChoice};
    pub use crate::model::{Network, ReactionSpec, Term};
    pub use crate::observation::{Data, InitialPrior, ObservationModel, Observations};
    pub use crate::pmmh::{
        AdaptConfig, ChainState, CheckKind, EarlyRejections, IterationRecord, Moments,
        ParticleCheck, Pmmh, PmmhConfig, ProposalCovariance, StartPoints,
    };
    pub use crate::prior::Prior;
    pub use crate::resample::Resampling;
    pub use crate::tuning::{AutoParticles, ChainChecks};
}
