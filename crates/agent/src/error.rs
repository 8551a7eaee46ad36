//! Errors of the agent crate: each variant carries what a user needs to act on it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A diffusion pipeline or model failed during a step of a plan.
    #[error("{step} failed")]
    Diffusion {
        step: &'static str,
        #[source]
        source: Box<huatu_diffusion::Error>,
    },
    /// An image operation (enhancer, crop, mask) failed during a step of a plan.
    #[error("{step} failed")]
    Imaging {
        step: &'static str,
        #[source]
        source: Box<huatu_imaging::ImagingError>,
    },
    /// A step of a plan lacks an input it needs (the rule, in words).
    #[error("{step}: {rule}")]
    MissingInput { step: &'static str, rule: String },
    /// An input of a step breaks a rule (an image too small, a mask of another size).
    #[error("{step}: {rule}")]
    BadInput { step: &'static str, rule: String },
    /// The progress sink stopped the run (a cancelled job).
    #[error("cancelled")]
    Cancelled,
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
    #[error("{path} is not valid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}, line {line}: {message}")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("model folder {dir} lacks {file} (a trained intent model has config.json, vocab.txt and model.safetensors; training writes one)")]
    MissingModelFile { dir: PathBuf, file: String },
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("unknown intent `{0}` (known: generate.poster, generate.portrait, generate.background, generate.icon, generate.free, edit.reference, edit.instruct, other)")]
    UnknownIntent(String),
    #[error("unknown slot `{0}` (known: subject, style, aspect, count, target, content, region)")]
    UnknownSlot(String),
    #[error("unknown pipeline `{0}` (known: text2img, controlnet-inpaint, instruct-pix2pix)")]
    UnknownPipeline(String),
    #[error("unknown tag `{0}` (tags are O, B-<slot>, I-<slot>)")]
    UnknownTag(String),
    #[error("vocabulary {path} lacks the special token {token}")]
    MissingSpecialToken { path: PathBuf, token: String },
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("invalid weight initialisation")]
    Initialisation(#[source] rand_distr::NormalError),
    #[error("invalid training option: {0}")]
    TrainOption(String),
    #[error("the training data is empty")]
    EmptyData,
    #[error("cannot read the scenes file {path}")]
    SceneFile {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("invalid scenes file {path}: {message}")]
    Scenes { path: PathBuf, message: String },
    #[error("prompt server {url} cannot be reached")]
    PromptBackendRequest {
        url: String,
        #[source]
        source: Box<ureq::Transport>,
    },
    #[error("prompt server {url} answered HTTP {status}: {reply}")]
    PromptBackendStatus {
        url: String,
        status: u16,
        reply: String,
    },
    #[error("prompt server {url}: cannot read the reply")]
    PromptBackendReply {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("prompt server {url}: the reply is not JSON")]
    PromptBackendJson {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("prompt server {url}: {message}")]
    PromptBackend { url: String, message: String },
    #[error("prompt model {path}")]
    PromptModel {
        path: PathBuf,
        #[source]
        source: Box<huatu_llm::LlmError>,
    },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, AgentError>;
