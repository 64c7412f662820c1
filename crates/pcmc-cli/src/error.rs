//! User-facing errors: bad input exits with status 2, everything else with 1.

use std::path::Path;

pub use pcmc_job::error::{InputError, OutputError};

/// Shorthand for a boxed [`InputError`] inside `anyhow`.
pub fn input(source_name: impl AsRef<Path>, message: impl Into<String>) -> anyhow::Error {
    InputError::new(source_name, message).into()
}

/// Exit status for an error: 2 if any cause is an [`InputError`] (or an
/// [`OutputError`] that is one), else 1.
pub fn exit_status(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| {
        c.downcast_ref::<InputError>().is_some()
            || matches!(c.downcast_ref::<OutputError>(), Some(OutputError::Input(_)))
    }) {
        2
    } else {
        1
    }
}
