//! Weight loading: diffusers folders, single-file checkpoints (original Stability keys).

pub mod safetensors_files;
pub mod sdxl;

pub use sdxl::{LoadOptions, ModelSource, SdxlComponents};
pub mod latents_file;
