//! Errors of the diffusion crate: each variant carries what a user needs to act on it.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
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

    #[error("model part missing: {what} (looked for {path})")]
    MissingModelPart { what: String, path: PathBuf },

    #[error("{path}: {message}")]
    BadModelFile { path: PathBuf, message: String },

    #[error("weight `{name}` has shape {actual:?}, expected {expected:?}")]
    WeightShape {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("invalid configuration: {0}")]
    Config(String),

    /// A device that cannot be opened, or a precision it cannot compute in.
    #[error("{0}")]
    Device(String),

    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A request needs a model the caller holds none of.
    #[error("{needs} needs {model}, and none is loaded")]
    ModelNotLoaded {
        needs: &'static str,
        model: &'static str,
    },

    #[error("unknown scheduler `{0}` (expected one of: euler, euler-a, ddim, dpmpp-2m, dpmpp-2m-karras)")]
    UnknownScheduler(String),

    #[error("{path}: {count} LoRA modules match no layer of the model: {keys} (allow a partial match to skip them)")]
    LoraUnmatched {
        path: PathBuf,
        count: usize,
        keys: String,
    },

    #[error("LoRA module {modules}: merging it into `{weight}` gives NaN or infinite weights (its values overflow {dtype}); the model was put back to its base weights")]
    LoraOverflow {
        modules: String,
        weight: String,
        dtype: String,
    },

    #[error("cancelled")]
    Cancelled,

    /// A pixel operation of the imaging crate (the mask composite); boxed, as imaging's
    /// errors are large and this type travels in every `Result` of the pipelines.
    #[error(transparent)]
    Imaging(Box<huatu_imaging::ImagingError>),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<huatu_imaging::ImagingError> for Error {
    fn from(error: huatu_imaging::ImagingError) -> Self {
        Error::Imaging(Box::new(error))
    }
}
