//! Weight loading: diffusers folders, single-file checkpoints (original Stability keys).

pub mod controlnet;
pub mod latents_file;
pub mod original_keys;
pub mod safetensors_files;
pub mod sdxl;
mod sdxl_parts;
mod single_file_model;
pub mod weight_table;

pub use sdxl::{LoadOptions, ModelSource, SdxlComponents};
