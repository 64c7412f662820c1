//! User-facing errors: bad input exits with status 2, everything else with 1.

use std::path::{Path, PathBuf};

/// Bad input from the user: a job file, a data file or a command-line value.
/// The message names the file (or flag), the field and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", source_name.display())]
pub struct InputError {
    /// The file or flag at fault.
    pub source_name: PathBuf,
    /// What is wrong, naming the field.
    pub message: String,
}

impl InputError {
    /// An input error about `source_name`.
    pub fn new(source_name: impl AsRef<Path>, message: impl Into<String>) -> Self {
        InputError {
            source_name: source_name.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// An error about a command-line flag.
    pub fn flag(flag: &str, message: impl Into<String>) -> Self {
        InputError::new(format!("command line ({flag})"), message)
    }
}

/// Shorthand for a boxed [`InputError`] inside `anyhow`.
pub fn input(source_name: impl AsRef<Path>, message: impl Into<String>) -> anyhow::Error {
    InputError::new(source_name, message).into()
}

/// Exit status for an error: 2 if any cause is an [`InputError`], else 1.
pub fn exit_status(e: &anyhow::Error) -> i32 {
    if e.chain().any(|c| c.downcast_ref::<InputError>().is_some()) {
        2
    } else {
        1
    }
}
