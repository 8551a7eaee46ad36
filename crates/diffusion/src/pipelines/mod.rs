//! Pipelines: a typed request in, images out. One file per task; the helpers they share
//! (prompt encoding, latents, guidance, image conversion) are plain functions.

pub mod guidance;
pub mod image;
pub mod latents;
pub mod progress;
pub mod prompt_encoding;
pub mod stable_diffusion_xl;

pub use image::RgbImage;
pub use latents::{DecodeOptions, MicroConditioning, VaeTiling};
pub use progress::{NoProgress, Progress, ProgressSink};
pub use stable_diffusion_xl::{text_to_image, Text2ImageOutput, Text2ImageRequest};
