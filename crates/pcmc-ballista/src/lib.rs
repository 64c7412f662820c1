//! # pcmc-ballista
//!
//! The dataflow executor on an Apache DataFusion Ballista cluster: the same
//! filter steps as distributed jobs, with pcmc's own scheduler and executor
//! processes ([`cluster`]).
//!
//! - [`plans`]: each observation step is two single-stage jobs of `P`
//!   tasks — *advance* (form the population — the shuffle is a pull from
//!   shared storage —, `pcmc_propagate`, `pcmc_log_weight`, spill) and
//!   *sums* (the exact weight sums as aggregate UDFs) — over particles kept
//!   as Arrow IPC files in a work directory that the driver and every
//!   executor see at the same path.
//! - SMC²'s batches of filter passes ([`plans::Smc2PassExec`]): one job of
//!   `P` tasks per batch, the batch inside the plan, the log-likelihoods
//!   returned as rows.
//! - [`codec`]: how the operators and functions travel, with the step's
//!   values, from the driver to the scheduler and on to the executors.
//! - [`driver`]: the [`pcmc_core::LikelihoodExecutor`]; it holds only
//!   scalars between jobs (the largest log-weight, `P` exact sums, counters)
//!   and submits a failed job again (every job is deterministic: the chain
//!   is unchanged). A scheduler that cannot be reached ends the pass with
//!   [`pcmc_core::Error::Unavailable`].
//!
//! Every draw is keyed by the particle's global index and every sum is
//! exact, so the chain is bit for bit the serial executor's for any number
//! of executors, slots and partitions.

#![deny(missing_docs)]

pub mod auth;
pub mod cluster;
pub mod codec;
pub mod driver;
pub mod guard;
pub mod longpoll;
pub mod plans;

pub use driver::{BallistaExecutor, ClusterConfig};

/// The crates a stock Ballista client is made of (the `ballista` client,
/// Ballista's gRPC protocol, Arrow Flight, tonic, prost, tokio), for tests
/// that play a stranger on the cluster with no pcmc code and no secret.
#[doc(hidden)]
pub mod deps {
    pub use arrow_flight;
    pub use ballista;
    pub use ballista_core;
    pub use datafusion;
    pub use datafusion_proto;
    pub use futures;
    pub use prost;
    pub use tokio;
    pub use tonic;
}

/// Name of the directory of per-task attempt marks in a step's directory.
pub const ATTEMPTS: &str = "attempts";
