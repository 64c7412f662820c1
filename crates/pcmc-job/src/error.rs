//! Errors: bad input names the file (or flag), the field and the reason;
//! an output file that cannot be written or read names its path.

use std::path::{Path, PathBuf};

/// Bad input from the user: a job file, a data file, an SBML model or a
/// command-line value. The message names the file (or flag), the field and
/// the reason. (The command line exits with status 2 on it.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

/// Shorthand for an [`InputError`].
pub fn input(source_name: impl AsRef<Path>, message: impl Into<String>) -> InputError {
    InputError::new(source_name, message)
}

/// The result of reading or checking user input.
pub type Result<T, E = InputError> = std::result::Result<T, E>;

/// A chain file that cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The file is malformed or does not match the run (bad input).
    #[error(transparent)]
    Input(#[from] InputError),
    /// An I/O error on `path`.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Arrow could not build or read a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet could not write or read the file.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

impl OutputError {
    /// An I/O error on `path`.
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
        move |source| OutputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
