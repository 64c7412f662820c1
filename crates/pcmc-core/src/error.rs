//! The error type of `pcmc-core`.

/// Everything that can go wrong when building a model, a filter problem or a
/// PMMH configuration in `pcmc-core`.
///
/// Constructors validate their input and return this error; running a kernel,
/// a filter or a PMMH step on validated input cannot fail except through an
/// executor (which reports [`Error::Executor`]). Recoverable numerical events
/// (particle collapse, the population cap, the event limit) are not errors:
/// they give a log-likelihood of −∞ and are counted in the diagnostics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model (reaction network) is malformed.
    #[error("invalid model: {0}")]
    Model(String),
    /// Observed data are malformed or inconsistent with the model.
    #[error("invalid data: {0}")]
    Data(String),
    /// A filter, observation or prior setting is out of range.
    #[error("invalid setting `{field}`: {reason}")]
    Setting {
        /// The setting's name, as in the job file.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// No starting point with a finite log-likelihood estimate was found for
    /// a chain within the bounded number of attempts.
    #[error(
        "chain {chain}: no starting point with a finite log-likelihood in {attempts} attempts \
         (every filter pass collapsed or the point left the prior's support): \
         choose `init` values closer to the data, a narrower `mcmc.init_sd`, or more particles"
    )]
    NoStart {
        /// The chain.
        chain: u64,
        /// Attempts made.
        attempts: u32,
    },
    /// An executor failed (thread pool, communication, task failure).
    #[error("executor failure: {0}")]
    Executor(String),
    /// The executor's cluster cannot be reached (a scheduler that is down or
    /// does not answer): the run can continue from its checkpoint once the
    /// cluster is back.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The run's stop flag was set (a signal) while a likelihood estimate
    /// was in progress: the estimate was abandoned between two of the
    /// executor's jobs, and the iteration must be taken again on resume.
    #[error("interrupted by a signal during a likelihood estimate")]
    Interrupted,
}

impl Error {
    /// A [`Error::Setting`] for `field` with `reason`.
    pub fn setting(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Setting {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// `Result` with [`Error`] as its error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
