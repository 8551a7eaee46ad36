//! The one error type of `huatu-imaging`: every variant carries what a user needs to act
//! on it (the file, the step, the parameter, the value and the rule it broke), with the
//! underlying cause chained through `#[source]`.

use std::path::PathBuf;

/// Everything that can go wrong while reading, preparing or enhancing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    #[error("cannot read image {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    #[error("cannot decode {what}: {reason}")]
    Decode { what: String, reason: String },

    #[error("{what} is {width}×{height} pixels; images may be at most {max_side} pixels a side and {max_pixels} pixels in all")]
    ImageTooLarge {
        what: String,
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },

    #[error("cannot write image {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    #[error("cannot write {path}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot encode a {width}×{height} image as PNG")]
    PngEncode {
        width: u32,
        height: u32,
        #[source]
        source: png::EncodingError,
    },

    #[error("`{name}` is neither an enhancer preset, a scenario nor a step list: {reason}")]
    UnknownEnhancer { name: String, reason: String },

    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} has zero size ({width}×{height}); an image needs at least one pixel")]
    EmptyImage {
        what: String,
        width: u32,
        height: u32,
    },

    #[error("invalid size {text:?}: expected WIDTHxHEIGHT with both at least 1 and at most {max}, e.g. 1024x768")]
    InvalidSize { text: String, max: u32 },

    #[error("unknown {what} {given:?}; known: {known}")]
    UnknownName {
        what: &'static str,
        given: String,
        known: String,
    },

    #[error("step {step}: unknown parameter {name:?}; known: {known}")]
    UnknownParameter {
        step: &'static str,
        name: String,
        known: String,
    },

    #[error("step {step}: parameter {name} must be a number, got {value:?}")]
    NotANumber {
        step: &'static str,
        name: String,
        value: String,
    },

    #[error("step {step}: parameter {name} must be between {min} and {max}, got {value}")]
    OutOfRange {
        step: &'static str,
        name: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },

    #[error("invalid step list {text:?}: {reason}")]
    StepSyntax { text: String, reason: String },

    #[error("step {step}: {reason}")]
    InvalidStep { step: &'static str, reason: String },

    #[error(
        "the upscale step needs Real-ESRGAN weights (a .pth or .safetensors file); none were given"
    )]
    UpscalerMissing,

    #[error("cannot load Real-ESRGAN weights from {path}")]
    ModelLoad {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },

    #[error("cannot load Real-ESRGAN weights from {path}: {reason}")]
    WeightFile { path: PathBuf, reason: String },

    #[error("{path} is not a Real-ESRGAN model huatu knows (RRDBNet ×1/×2/×4 or SRVGGNetCompact): {reason}")]
    UnknownModel { path: PathBuf, reason: String },

    #[error("super-resolution failed on a {width}×{height} input")]
    Inference {
        width: u32,
        height: u32,
        #[source]
        source: candle_core::Error,
    },

    #[error("resizing {from_width}×{from_height} to {to_width}×{to_height} failed: {reason}")]
    Resize {
        from_width: u32,
        from_height: u32,
        to_width: u32,
        to_height: u32,
        reason: String,
    },

    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    #[error("region (center {x}, {y}, size {width}×{height}) must lie inside the {image_width}×{image_height} original image")]
    RegionOutside {
        x: f64,
        y: f64,
        width: f64,
        height: f64,
        image_width: u32,
        image_height: u32,
    },
}

pub type Result<T, E = ImagingError> = std::result::Result<T, E>;
