//! Errors of the training crate: each names the file, setting or tensor at fault.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },

    #[error("training data in {path}: {message}")]
    Dataset { path: PathBuf, message: String },

    #[error("invalid training setting: {0}")]
    Setting(String),

    #[error("resume state {path} does not fit this run: {message}")]
    Resume { path: PathBuf, message: String },

    #[error(transparent)]
    Diffusion(#[from] huatu_diffusion::Error),

    #[error(transparent)]
    Imaging(#[from] huatu_imaging::ImagingError),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
