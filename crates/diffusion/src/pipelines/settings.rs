//! What every request has — prompt, negative prompt, sampler, steps, guidance, seed,
//! initial noise, micro-conditioning and decoding — with its checks, the conditioning it
//! encodes to and the initial noise it starts from.

use candle_core::{DType, Device, Tensor};

use super::latents::{micro_conditioning, DecodeOptions, MicroConditioning};
use super::prompt_encoding::{encode_prompt_pair, PromptEmbeddings};
use crate::loading::SdxlComponents;
use crate::models::unet_2d_condition::AddedConditions;
use crate::schedulers::{NoiseSource, SchedulerKind};
use crate::{Error, Result};

/// What every request has, text-to-image and the edits alike; names as in diffusers.
#[derive(Debug, Clone)]
pub struct GenerationSettings {
    pub prompt: String,
    /// `None`: not given (zeros with `force_zeros_for_empty_prompt`); `Some("")` is encoded.
    pub negative_prompt: Option<String>,
    pub num_inference_steps: usize,
    pub guidance_scale: f64,
    pub guidance_rescale: f64,
    pub scheduler: SchedulerKind,
    pub seed: u64,
    /// The initial noise [1, 4, h/8, w/8] (diffusers' `latents`), replacing the seeded
    /// noise; when given, edits encode their image with the VAE distribution's mean instead
    /// of a sample, so runs are comparable with the reference.
    pub noise: Option<Tensor>,
    pub micro_conditioning: MicroConditioning,
    pub decode: DecodeOptions,
}

impl GenerationSettings {
    /// SDXL's defaults for everything but the prompt.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            negative_prompt: None,
            num_inference_steps: 30,
            guidance_scale: 5.0,
            guidance_rescale: 0.0,
            scheduler: SchedulerKind::Euler,
            seed: 0,
            noise: None,
            micro_conditioning: MicroConditioning::default(),
            decode: DecodeOptions::default(),
        }
    }

    /// At least one step, a finite guidance scale ≥ 0 and a rescale within [0, 1].
    pub fn validate(&self) -> Result<()> {
        let fail = |message: String| Err(Error::InvalidRequest(message));
        if self.num_inference_steps == 0 {
            return fail("num_inference_steps must be at least 1".into());
        }
        if !self.guidance_scale.is_finite() || self.guidance_scale < 0.0 {
            return fail(format!(
                "guidance_scale must be a finite number ≥ 0, got {}",
                self.guidance_scale
            ));
        }
        if !(0.0..=1.0).contains(&self.guidance_rescale) {
            return fail(format!(
                "guidance_rescale must be within [0, 1], got {}",
                self.guidance_rescale
            ));
        }
        Ok(())
    }

    /// The prompt and negative prompt encoded and stacked for guidance with the time ids
    /// of a `width`×`height` image ([negative; positive] when guidance is on), in the UNet's
    /// dtype, as `StableDiffusionXLPipeline.encode_prompt` + `_get_add_time_ids` give them.
    pub fn conditioning(
        &self,
        components: &SdxlComponents,
        width: usize,
        height: usize,
        do_classifier_free_guidance: bool,
    ) -> Result<(Tensor, AddedConditions)> {
        let (positive, negative) = encode_prompt_pair(
            components,
            &self.prompt,
            self.negative_prompt.as_deref(),
            do_classifier_free_guidance,
        )?;
        let time_ids =
            micro_conditioning(&self.micro_conditioning, height, width, &components.device)?;
        batch_conditioning(&positive, negative.as_ref(), &time_ids, components.dtype)
    }

    /// The injected noise (checked against the image size) or seeded noise.
    pub fn initial_noise(
        &self,
        noise: &mut NoiseSource,
        shape: &[usize; 4],
        device: &Device,
    ) -> Result<Tensor> {
        match &self.noise {
            Some(given) if given.dims() == shape => {
                Ok(given.to_device(device)?.to_dtype(DType::F32)?)
            }
            Some(given) => Err(Error::InvalidRequest(format!(
                "latents must have shape {shape:?} for a {}×{} image, got {:?}",
                shape[3] * 8,
                shape[2] * 8,
                given.dims()
            ))),
            None => noise.randn(shape, device, DType::F32),
        }
    }
}

/// Stacks [negative; positive] conditioning for guidance (diffusers' order) or returns the
/// positive alone.
fn batch_conditioning(
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
