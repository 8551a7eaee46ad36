//! Pipelines: a typed request in, images out. One file per task; the helpers they share
//! (prompt encoding, latents, guidance, image conversion) are plain functions. Images are
//! `huatu_imaging`'s RGB and gray buffers; pixel work (crops, mask composites) lives there.

pub mod edit;
pub mod edit_inputs;
pub mod guidance;
pub mod image;
pub mod img2img;
pub mod inpaint;
pub mod instruct_pix2pix;
pub mod latents;
pub mod progress;
pub mod prompt_encoding;
pub mod prompt_to_prompt;
pub mod settings;
pub mod stable_diffusion_xl;
pub mod token_alignment;

pub use edit::{edit, EditMode, EditModels, EditRequest};
pub use img2img::image_to_image;
pub use inpaint::{inpaint, ControlNetUnit, InpaintOutput, Inpainting};
pub use instruct_pix2pix::instruct_pix2pix;
pub use latents::{DecodeOptions, MicroConditioning, VaeTiling};
pub use progress::{NoProgress, Progress, ProgressSink};
pub use prompt_to_prompt::{edit_pair, EditPairOutput, EditPairRequest};
pub use settings::GenerationSettings;
pub use stable_diffusion_xl::{text_to_image, GeneratedImage, Text2ImageRequest};
pub use token_alignment::CrossAttentionMode;
