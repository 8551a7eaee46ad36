//! One edit request and one entry point for every way huatu changes a picture: the
//! settings every request has, the original, and the mode — image-to-image over the whole
//! picture, inpainting inside a mask (with ControlNets when given), or an InstructPix2Pix
//! text edit. The CLI, the server and the agent build an [`EditRequest`] and call [`edit`];
//! only this file chooses the pipeline and the model it runs on.

use super::img2img::image_to_image;
use super::inpaint::{inpaint, Inpainting};
use super::instruct_pix2pix::instruct_pix2pix;
use super::progress::ProgressSink;
use super::settings::GenerationSettings;
use super::stable_diffusion_xl::GeneratedImage;
use crate::loading::SdxlComponents;
use crate::{Error, Result};
use huatu_imaging::RgbImage;

#[derive(Debug, Clone)]
pub struct EditRequest<'a> {
    /// For a text edit, `settings.prompt` is the instruction ("make it look like winter").
    pub settings: GenerationSettings,
    /// The original; sides multiples of 8.
    pub image: RgbImage,
    pub mode: EditMode<'a>,
}

/// How the original is changed.
#[derive(Debug, Clone)]
pub enum EditMode<'a> {
    /// The whole picture redrawn: `strength` of it replaced (0 keeps it, 1 starts from noise).
    ImageToImage { strength: f64 },
    /// Repainted inside a mask, optionally guided by ControlNets.
    Inpaint(Inpainting<'a>),
    /// Changed as the prompt instructs, by an InstructPix2Pix model; `image_guidance_scale`
    /// is how closely to follow the original (diffusers' default 1.5).
    InstructPix2Pix { image_guidance_scale: f64 },
}

impl EditMode<'_> {
    /// Denoising steps this mode runs out of `num_inference_steps` (diffusers
    /// `get_timesteps`: the strength cuts the schedule).
    pub fn steps_run(&self, num_inference_steps: usize) -> usize {
        let strength = match self {
            EditMode::ImageToImage { strength } => *strength,
            EditMode::Inpaint(inpainting) => inpainting.strength,
            EditMode::InstructPix2Pix { .. } => 1.0,
        };
        ((num_inference_steps as f64 * strength) as usize).clamp(1, num_inference_steps.max(1))
    }
}

/// The models edits run on: the base SDXL (image-to-image and inpainting; a 9-channel
/// inpainting model works too) and, for text edits, an InstructPix2Pix SDXL.
#[derive(Clone, Copy)]
pub struct EditModels<'a> {
    pub base: &'a SdxlComponents,
    pub instruct: Option<&'a SdxlComponents>,
}

/// Runs one edit on the model its mode needs; the image returned is the finished picture
/// (for inpainting, the result pasted into the original inside the mask).
pub fn edit(
    models: EditModels<'_>,
    request: &EditRequest<'_>,
    progress: &mut dyn ProgressSink,
) -> Result<GeneratedImage> {
    let EditRequest {
        settings,
        image,
        mode,
    } = request;
    match mode {
        EditMode::ImageToImage { strength } => {
            image_to_image(models.base, settings, image, *strength, progress)
        }
        EditMode::Inpaint(inpainting) => {
            let output = inpaint(models.base, settings, image, inpainting, progress)?;
            Ok(GeneratedImage {
                latents: output.latents,
                image: output.image,
            })
        }
        EditMode::InstructPix2Pix {
            image_guidance_scale,
        } => {
            let instruct = models.instruct.ok_or(Error::ModelNotLoaded {
                needs: "a text edit",
                model: "an InstructPix2Pix SDXL model (8-channel UNet)",
            })?;
            instruct_pix2pix(instruct, settings, image, *image_guidance_scale, progress)
        }
    }
}
