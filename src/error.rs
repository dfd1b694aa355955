//! The library's error type. Every variant names the thing and the place it concerns, so a user can
//! act on the message alone: the file, the column and, for data errors, the row.

use std::path::PathBuf;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in softlabel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is invalid (checked before any work starts).
    #[error("invalid setting: {0}")]
    Config(String),

    /// A file could not be read, written or renamed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error (in the message; not a separate `source`, so it prints once).
        error: std::io::Error,
    },

    /// A file is not valid Parquet (truncated, corrupt footer, empty, ...).
    #[error("{}: not a readable Parquet file: {error}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What the Parquet reader said (in the message; not a separate `source`, so it prints once).
        error: parquet::errors::ParquetError,
    },

    /// A data file's content is wrong: a missing column, a wrong type, a bad value.
    #[error("{}: {message}", path.display())]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the column and, where it applies, the row.
        message: String,
    },

    /// A soft-label dataset (folder with _manifest.json) is malformed or inconsistent.
    #[error("{}: {message}", path.display())]
    Dataset {
        /// The dataset folder or one of its files.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// The teacher model cannot be used.
    #[error("{}: {message}", path.display())]
    Model {
        /// The ONNX file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("{0}")]
    Runtime(String),

    /// Training produced a NaN or infinite loss.
    #[error(
        "training diverged at epoch {epoch}, step {step}: loss is {loss}; lower --lr, set --clip-norm, \
         or lower --temperature"
    )]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// The non-finite loss.
        loss: f32,
    },

    /// A bug in softlabel: please report it.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io { path: path.into(), error }
    }

    /// Shorthand for [`Error::Data`].
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data { path: path.into(), message: message.into() }
    }

    /// Shorthand for [`Error::Dataset`].
    pub fn dataset(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Dataset { path: path.into(), message: message.into() }
    }

    /// Shorthand for [`Error::Model`].
    pub fn model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Model { path: path.into(), message: message.into() }
    }

    /// The process exit code for this error: 2 for internal errors, 1 for everything the user can fix.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Internal(_) => 2,
            _ => 1,
        }
    }
}
