//! Text-to-image with SDXL, after diffusers `StableDiffusionXLPipeline.__call__`:
//! validate → encode prompt → timesteps → prepare latents → denoise → decode.

use candle_core::{DType, Tensor};

use super::guidance;
use super::latents::{
    decode_latents, micro_conditioning, prepare_latents, DecodeOptions, MicroConditioning,
};
use super::progress::{Progress, ProgressSink};
use super::prompt_encoding::{encode_prompt_pair, PromptEmbeddings};
use crate::loading::SdxlComponents;
use crate::models::unet_2d_condition::AddedConditions;
use crate::schedulers::{NoiseSource, SchedulerKind};
use crate::{Error, Result};
use huatu_imaging::RgbImage;

/// One text-to-image request; field names follow diffusers.
#[derive(Debug, Clone)]
pub struct Text2ImageRequest {
    pub prompt: String,
    /// `None` means "not given": with `force_zeros_for_empty_prompt` the negative
    /// conditioning is zeros. `Some("")` is encoded like any prompt.
    pub negative_prompt: Option<String>,
    pub height: usize,
    pub width: usize,
    pub num_inference_steps: usize,
    pub guidance_scale: f64,
    pub guidance_rescale: f64,
    pub scheduler: SchedulerKind,
    /// Seed of the initial noise (and of euler-a's per-step noise).
    pub seed: u64,
    /// Initial latents [1, 4, h/8, w/8]; replaces the seeded noise when given.
    pub latents: Option<Tensor>,
    pub micro_conditioning: MicroConditioning,
    pub decode: DecodeOptions,
}

impl Text2ImageRequest {
    /// SDXL's defaults for everything but the prompt.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            negative_prompt: None,
            height: 1024,
            width: 1024,
            num_inference_steps: 30,
            guidance_scale: 5.0,
            guidance_rescale: 0.0,
            scheduler: SchedulerKind::Euler,
            seed: 0,
            latents: None,
            micro_conditioning: MicroConditioning::default(),
            decode: DecodeOptions::default(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let fail = |message: String| Err(Error::InvalidRequest(message));
        if self.height == 0
            || self.width == 0
            || !self.height.is_multiple_of(8)
            || !self.width.is_multiple_of(8)
        {
            return fail(format!(
                "height and width must be positive multiples of 8, got {}×{} (width×height)",
                self.width, self.height
            ));
        }
        check_sampling(
            self.num_inference_steps,
            self.guidance_scale,
            self.guidance_rescale,
        )
    }
}

/// The sampling settings every request has (text-to-image and the edits): at least one
/// step, a finite guidance scale ≥ 0 and a rescale within [0, 1].
pub fn check_sampling(
    num_inference_steps: usize,
    guidance_scale: f64,
    guidance_rescale: f64,
) -> Result<()> {
    let fail = |message: String| Err(Error::InvalidRequest(message));
    if num_inference_steps == 0 {
        return fail("num_inference_steps must be at least 1".into());
    }
    if !guidance_scale.is_finite() || guidance_scale < 0.0 {
        return fail(format!(
            "guidance_scale must be a finite number ≥ 0, got {guidance_scale}"
        ));
    }
    if !(0.0..=1.0).contains(&guidance_rescale) {
        return fail(format!(
            "guidance_rescale must be within [0, 1], got {guidance_rescale}"
        ));
    }
    Ok(())
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
    let device = &components.device;
    let dtype = components.dtype;
    let do_classifier_free_guidance = request.guidance_scale > 1.0;

    // Encode prompt.
    progress.report(Progress::EncodingPrompt)?;
    let (positive, negative) = encode_prompt_pair(
        components,
        &request.prompt,
        request.negative_prompt.as_deref(),
        do_classifier_free_guidance,
    )?;
    let time_ids = micro_conditioning(
        &request.micro_conditioning,
        request.height,
        request.width,
        device,
    )?;
    let (prompt_embeds, added) =
        batch_conditioning(&positive, negative.as_ref(), &time_ids, dtype)?;

    // Timesteps.
    let mut scheduler = request
        .scheduler
        .build(&components.scheduler_config, request.num_inference_steps)?;
    let timesteps = scheduler.timesteps().to_vec();

    // Prepare latents.
    let mut noise = NoiseSource::new(request.seed);
    let latent_channels = components.unet.config().in_channels;
    let mut latents = prepare_latents(
        request.latents.as_ref(),
        &mut noise,
        latent_channels,
        request.height,
        request.width,
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
                request.guidance_scale,
                request.guidance_rescale,
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
    let image = decode_latents(components, &latents, &request.decode)?;
    Ok(GeneratedImage {
        latents: latents.to_dtype(DType::F32)?,
        image,
    })
}

/// Stacks [negative; positive] conditioning for guidance (diffusers' order) or returns the
/// positive alone.
pub fn batch_conditioning(
    positive: &PromptEmbeddings,
    negative: Option<&PromptEmbeddings>,
    time_ids: &Tensor,
    dtype: DType,
) -> Result<(Tensor, AddedConditions)> {
    let (prompt_embeds, text_embeds, time_ids) = match negative {
        Some(negative) => (
            Tensor::cat(&[&negative.prompt_embeds, &positive.prompt_embeds], 0)?,
            Tensor::cat(
                &[
                    &negative.pooled_prompt_embeds,
                    &positive.pooled_prompt_embeds,
                ],
                0,
            )?,
            Tensor::cat(&[time_ids, time_ids], 0)?,
        ),
        None => (
            positive.prompt_embeds.clone(),
            positive.pooled_prompt_embeds.clone(),
            time_ids.clone(),
        ),
    };
    Ok((
        prompt_embeds.to_dtype(dtype)?,
        AddedConditions {
            text_embeds: text_embeds.to_dtype(dtype)?,
            time_ids: time_ids.to_dtype(dtype)?,
        },
    ))
}
