//! Errors of the local language model: each names the file and what is wrong with it.

use std::path::PathBuf;

pub type Result<T, E = LlmError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid config for a Qwen model")]
    Config {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    BadModel { path: PathBuf, message: String },
    #[error("{path}: weight `{name}` is missing")]
    MissingWeight { path: PathBuf, name: String },
    #[error("{path}: weight `{name}` has shape {actual:?}, expected {expected:?}")]
    WeightShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("the prompt has {tokens} tokens; this model reads at most {limit}")]
    PromptTooLong { tokens: usize, limit: usize },
    #[error("invalid sampling settings: {0}")]
    Sampling(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
