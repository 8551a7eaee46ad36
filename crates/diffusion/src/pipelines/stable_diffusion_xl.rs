//! Text-to-image with SDXL, after diffusers `StableDiffusionXLPipeline.__call__`:
//! validate → encode prompt → timesteps → prepare latents → denoise → decode.

use candle_core::{DType, Tensor};

use super::guidance;
use super::latents::{decode_latents, prepare_latents};
use super::progress::{Progress, ProgressSink};
use super::settings::GenerationSettings;
use crate::loading::SdxlComponents;
use crate::schedulers::NoiseSource;
use crate::{Error, Result};
use huatu_imaging::RgbImage;

/// One text-to-image request: the settings every request has and the image size.
#[derive(Debug, Clone)]
pub struct Text2ImageRequest {
    pub settings: GenerationSettings,
    pub height: usize,
    pub width: usize,
}

impl Text2ImageRequest {
    /// SDXL's defaults (1024², 30 Euler steps, guidance 5) for everything but the prompt.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            settings: GenerationSettings::new(prompt),
            height: 1024,
            width: 1024,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.height == 0
            || self.width == 0
            || !self.height.is_multiple_of(8)
            || !self.width.is_multiple_of(8)
        {
            return Err(Error::InvalidRequest(format!(
                "height and width must be positive multiples of 8, got {}×{} (width×height)",
                self.width, self.height
            )));
        }
        self.settings.validate()
    }
}

/// What text-to-image, image-to-image and InstructPix2Pix return: the denoised latents
/// (before VAE scaling) and the decoded image.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub latents: Tensor,
    pub image: RgbImage,
}

/// Runs one text-to-image request. `progress` hears about every step and may cancel.
pub fn text_to_image(
    components: &SdxlComponents,
    request: &Text2ImageRequest,
    progress: &mut dyn ProgressSink,
) -> Result<GeneratedImage> {
    request.validate()?;
    let settings = &request.settings;
    let (height, width) = (request.height, request.width);
    let device = &components.device;
    let dtype = components.dtype;
    let do_classifier_free_guidance = settings.guidance_scale > 1.0;

    // Encode prompt.
    progress.report(Progress::EncodingPrompt)?;
    let (prompt_embeds, added) =
        settings.conditioning(components, width, height, do_classifier_free_guidance)?;

    // Timesteps.
    let mut scheduler = settings
        .scheduler
        .build(&components.scheduler_config, settings.num_inference_steps)?;
    let timesteps = scheduler.timesteps().to_vec();

    // Prepare latents.
    let mut noise = NoiseSource::new(settings.seed);
    let latent_channels = components.unet.config().in_channels;
    let mut latents = prepare_latents(
        settings.noise.as_ref(),
        &mut noise,
        latent_channels,
        height,
        width,
        scheduler.init_noise_sigma(),
        dtype,
        device,
    )?;

    // Denoise.
    for (index, &timestep) in timesteps.iter().enumerate() {
        let model_input = if do_classifier_free_guidance {
            Tensor::cat(&[&latents, &latents], 0)?
        } else {
            latents.clone()
        };
        let model_input = scheduler.scale_model_input(&model_input, timestep)?;
        let noise_pred =
            components
                .unet
                .forward(&model_input, timestep, &prompt_embeds, &added, None)?;
        let noise_pred = if do_classifier_free_guidance {
            guidance::combine(
                &noise_pred,
                settings.guidance_scale,
                settings.guidance_rescale,
            )?
        } else {
            noise_pred
        };
        latents = scheduler.step(&noise_pred, timestep, &latents, &mut noise)?;
        progress.report(Progress::Step {
            step: index + 1,
            total: timesteps.len(),
        })?;
    }

    // Decode.
    progress.report(Progress::Decoding)?;
    let image = decode_latents(components, &latents, &settings.decode)?;
    Ok(GeneratedImage {
        latents: latents.to_dtype(DType::F32)?,
        image,
    })
}
