//! Errors at the library boundary. Every message says what went wrong and,
//! where there is one, what the user can do about it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SgrafError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A file or folder could not be created or written.
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A `.npy` file is malformed, truncated, of the wrong dtype or rank.
    #[error("{path}: {msg}")]
    Npy { path: String, msg: String },

    /// A vocabulary JSON that does not parse or is inconsistent.
    #[error("vocabulary {path}: {msg}")]
    Vocab { path: String, msg: String },

    /// A caption file problem (empty line, too long, not UTF-8).
    #[error("{path}: {msg}")]
    Captions { path: String, msg: String },

    /// A checkpoint that is missing a key, has an extra key or a mis-shaped tensor.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: String, msg: String },

    /// A PyTorch checkpoint (`.pth.tar`) that is malformed, truncated, unsafe or not an SGRAF checkpoint.
    #[error("PyTorch checkpoint {path}: {msg}")]
    Pth { path: String, msg: String },

    /// Inputs that do not fit the model (feature size, region count, NaN features).
    #[error("{0}")]
    Input(String),

    /// No GPU adapter or device could be had.
    #[error("{0}")]
    NoGpu(String),

    /// A GPU operation failed (buffer mapping, validation).
    #[error("GPU error: {0}")]
    Gpu(String),
}

pub type Result<T> = std::result::Result<T, SgrafError>;

impl SgrafError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        SgrafError::Io { path: path.as_ref().display().to_string(), source }
    }

    pub fn write(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        SgrafError::Write { path: path.as_ref().display().to_string(), source }
    }
}
