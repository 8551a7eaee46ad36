//! The one error type of `huatu-data`: every variant names what a user needs to act on
//! it (the file, the database, the model, the expected and actual values), with the
//! underlying cause chained through `#[source]`.

use std::path::PathBuf;

pub type Result<T, E = DataError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not valid JSON for {what}")]
    Json {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("{what} not found (looked for {path})")]
    MissingModelPart { what: String, path: PathBuf },

    #[error("{path}: {message}")]
    BadModelFile { path: PathBuf, message: String },

    #[error("cannot load the CLIP model in {path}")]
    Model {
        path: PathBuf,
        #[source]
        source: huatu_diffusion::Error,
    },

    #[error("cannot run the BLIP model in {path}")]
    Blip {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },

    #[error("no image database at {path} (create one with `huatu db add --db {path} --model CLIP_DIR IMAGES...`)")]
    MissingDatabase { path: PathBuf },

    #[error("image database {path}")]
    Database {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("image database {path}: {message}")]
    BadDatabase { path: PathBuf, message: String },

    #[error("{what} has dimension {actual}, but the database {path} holds {expected}-dimensional embeddings (built with the CLIP model at {model}); use that model or a new database")]
    DimensionMismatch {
        what: String,
        path: PathBuf,
        model: PathBuf,
        expected: usize,
        actual: usize,
    },

    #[error("invalid request: {0}")]
    InvalidRequest(String),

    #[error(transparent)]
    Image(#[from] huatu_imaging::ImagingError),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
