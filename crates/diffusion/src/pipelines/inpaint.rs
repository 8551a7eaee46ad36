//! Inpainting with SDXL, optionally guided by ControlNets: after diffusers
//! `StableDiffusionXLInpaintPipeline.__call__` and, with ControlNets,
//! `StableDiffusionXLControlNetInpaintPipeline.__call__` (which is the same loop plus the
//! ControlNet residuals). Works with dedicated 9-channel inpainting UNets (latents, mask and
//! masked-image latents concatenated) and with ordinary 4-channel UNets (the known region
//! re-noised and blended back after every step). validate → encode prompt → timesteps cut by
//! strength → prepare latents, mask and masked-image latents → denoise → decode → paste the
//! result into the original inside the mask, so every pixel outside it is the original's.

use candle_core::{DType, Tensor};

use super::edit_inputs::{
    check_image_size, check_same_size, control_image_to_tensor, encode_image, image_to_tensor,
    mask_at_latent_size, mask_to_tensor, timesteps_for_strength,
};
use super::guidance;
use super::latents::decode_latents;
use super::progress::{Progress, ProgressSink};
use super::settings::GenerationSettings;
use crate::loading::SdxlComponents;
use crate::models::controlnet::ControlNetModel;
use crate::models::unet_2d_condition::{AddedConditions, ControlResiduals};
use crate::schedulers::NoiseSource;
use crate::{Error, Result};
use huatu_imaging::edit::{feathered_mask, paste_inside_mask};
use huatu_imaging::{GrayImage, RgbImage};

/// One ControlNet and its control image (already processed: edges, pose…), the size of
/// the original image.
#[derive(Debug, Clone)]
pub struct ControlNetUnit<'a> {
    pub controlnet: &'a ControlNetModel,
    pub control_image: RgbImage,
    pub controlnet_conditioning_scale: f64,
    /// The fraction of the steps where this ControlNet starts / stops acting.
    pub control_guidance_start: f64,
    pub control_guidance_end: f64,
}

/// What inpainting adds to the settings and the image: where to repaint, how much, and
/// the ControlNets that guide it.
#[derive(Debug, Clone)]
pub struct Inpainting<'a> {
    /// White (≥ 128) = repaint, black = keep.
    pub mask_image: GrayImage,
    /// diffusers' default is 0.9999; 1.0 starts from pure noise.
    pub strength: f64,
    /// Feathering of the final paste, in pixels, inside the mask only.
    pub mask_blur: usize,
    pub controlnets: Vec<ControlNetUnit<'a>>,
    /// ControlNet on the conditional branch only, residuals scaled 0.1 → 1.0 over the blocks.
    pub guess_mode: bool,
}

impl<'a> Inpainting<'a> {
    /// Repaint inside `mask_image` with diffusers' defaults (strength 0.9999, no feathering,
    /// no ControlNet).
    pub fn new(mask_image: GrayImage) -> Self {
        Self {
            mask_image,
            strength: 0.9999,
            mask_blur: 0,
            controlnets: Vec::new(),
            guess_mode: false,
        }
    }
}

/// The final latents, the decoded picture as diffusers returns it, and that picture pasted
/// into the original inside the mask.
#[derive(Debug, Clone)]
pub struct InpaintOutput {
    pub latents: Tensor,
    pub decoded: RgbImage,
    pub image: RgbImage,
}

impl Inpainting<'_> {
    fn validate(
        &self,
        components: &SdxlComponents,
        settings: &GenerationSettings,
        image: &RgbImage,
    ) -> Result<()> {
        settings.validate()?;
        check_image_size("the image", image.width() as usize, image.height() as usize)?;
        check_same_size(
            "the mask",
            self.mask_image.width() as usize,
            self.mask_image.height() as usize,
            image,
        )?;
        let painted = self
            .mask_image
            .as_raw()
            .iter()
            .filter(|&&p| p >= 128)
            .count();
        if painted == 0 {
            return Err(Error::InvalidRequest(
                "the mask is empty (no pixel ≥ 128): there is nothing to repaint".into(),
            ));
        }
        if painted == self.mask_image.as_raw().len() && self.controlnets.is_empty() {
            return Err(Error::InvalidRequest(
                "the mask covers the whole image: that is image generation, not inpainting (use generate, or img2img)"
                    .into(),
            ));
        }
        let channels = components.unet.config().in_channels;
        if channels != 4 && channels != 9 {
            return Err(Error::InvalidRequest(format!(
                "inpainting needs a 4-channel or a 9-channel (inpainting) UNet; this model's has {channels} input channels"
            )));
        }
        for unit in &self.controlnets {
            check_same_size(
                "the control image",
                unit.control_image.width() as usize,
                unit.control_image.height() as usize,
                image,
            )?;
            let (start, end) = (unit.control_guidance_start, unit.control_guidance_end);
            if !(0.0..=1.0).contains(&start) || !(0.0..=1.0).contains(&end) || start >= end {
                return Err(Error::InvalidRequest(format!(
                    "control guidance must satisfy 0 ≤ start < end ≤ 1, got start {start}, end {end}"
                )));
            }
        }
        Ok(())
    }
}

/// The two halves [uncond; cond] of a guidance batch, or the whole when there is one.
fn conditional_half(xs: &Tensor) -> Result<Tensor> {
    let half = xs.dim(0)? / 2;
    Ok(xs.narrow(0, half, half)?)
}

fn add_residuals(
    total: Option<ControlResiduals>,
    more: ControlResiduals,
) -> Result<ControlResiduals> {
    let Some(total) = total else { return Ok(more) };
    let down = total
        .down_block_residuals
        .iter()
        .zip(&more.down_block_residuals)
        .map(|(a, b)| a + b)
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(ControlResiduals {
        down_block_residuals: down,
        mid_block_residual: (total.mid_block_residual + more.mid_block_residual)?,
    })
}

/// Repaints `image` inside `inpainting.mask_image` following `settings`.
pub fn inpaint(
    components: &SdxlComponents,
    settings: &GenerationSettings,
    image: &RgbImage,
    inpainting: &Inpainting<'_>,
    progress: &mut dyn ProgressSink,
) -> Result<InpaintOutput> {
    inpainting.validate(components, settings, image)?;
    let original = image;
    let device = &components.device;
    let dtype = components.dtype;
    let (height, width) = (image.height() as usize, image.width() as usize);
    let do_classifier_free_guidance = settings.guidance_scale > 1.0;
    let unet_channels = components.unet.config().in_channels;

    // Encode prompt.
    progress.report(Progress::EncodingPrompt)?;
    let (prompt_embeds, added) =
        settings.conditioning(components, width, height, do_classifier_free_guidance)?;

    // Timesteps.
    let mut scheduler = settings
        .scheduler
        .build(&components.scheduler_config, settings.num_inference_steps)?;
    let timesteps = timesteps_for_strength(
        scheduler.as_mut(),
        settings.num_inference_steps,
        inpainting.strength,
    )?;
    let is_strength_max = inpainting.strength == 1.0;

    // Prepare latents, mask and masked-image latents.
    let mut noise_source = NoiseSource::new(settings.seed);
    let sampling = settings.noise.is_none();
    let image = image_to_tensor(original, device)?;
    let mask = mask_to_tensor(&inpainting.mask_image, device)?; // [1, 1, h, w]
    let needs_image_latents = unet_channels == 4 || !is_strength_max;
    let image_latents = if needs_image_latents {
        Some(encode_image(
            components,
            &image,
            sampling.then_some(&mut noise_source),
        )?)
    } else {
        None
    };
    let noise = settings
        .initial_noise(&mut noise_source, &[1, 4, height / 8, width / 8], device)?
        .to_dtype(dtype)?;
    let mut latents = match (&image_latents, is_strength_max) {
        (Some(image_latents), false) => scheduler.add_noise(image_latents, &noise, timesteps[0])?,
        _ => (&noise * scheduler.init_noise_sigma())?,
    };
    let latent_mask = mask_at_latent_size(&mask)?.to_dtype(dtype)?; // [1, 1, h/8, w/8]
    let masked_image_latents = if unet_channels == 9 {
        let keep = mask.lt(0.5)?.to_dtype(DType::F32)?; // masked_image = image · (mask < 0.5)
        Some(encode_image(
            components,
            &image.broadcast_mul(&keep)?,
            sampling.then_some(&mut noise_source),
        )?)
    } else {
        None
    };
    let batch = if do_classifier_free_guidance { 2 } else { 1 };
    let unet_extra = match &masked_image_latents {
        Some(masked) => Some(Tensor::cat(
            &[
                &latent_mask.repeat((batch, 1, 1, 1))?,
                &masked.repeat((batch, 1, 1, 1))?,
            ],
            1,
        )?),
        None => None,
    };
    let control_images = inpainting
        .controlnets
        .iter()
        .map(|unit| {
            let image = control_image_to_tensor(&unit.control_image, device)?.to_dtype(dtype)?;
            let copies = if do_classifier_free_guidance && !inpainting.guess_mode {
                2
            } else {
                1
            };
            Ok(image.repeat((copies, 1, 1, 1))?)
        })
        .collect::<Result<Vec<_>>>()?;
    let controlnet_added = if inpainting.guess_mode && do_classifier_free_guidance {
        AddedConditions {
            text_embeds: conditional_half(&added.text_embeds)?,
            time_ids: conditional_half(&added.time_ids)?,
        }
    } else {
        added.clone()
    };
    let controlnet_prompt_embeds = if inpainting.guess_mode && do_classifier_free_guidance {
        conditional_half(&prompt_embeds)?
    } else {
        prompt_embeds.clone()
    };

    // Denoise.
    let steps = timesteps.len();
    for (index, &timestep) in timesteps.iter().enumerate() {
        let model_input = if do_classifier_free_guidance {
            Tensor::cat(&[&latents, &latents], 0)?
        } else {
            latents.clone()
        };
        let model_input = scheduler.scale_model_input(&model_input, timestep)?;

        let mut control: Option<ControlResiduals> = None;
        for (unit, control_image) in inpainting.controlnets.iter().zip(&control_images) {
            let keep = index as f64 / steps as f64 >= unit.control_guidance_start
                && (index + 1) as f64 / steps as f64 <= unit.control_guidance_end;
            if !keep {
                continue; // diffusers runs it at scale 0: residuals of zeros
            }
            let control_input = if inpainting.guess_mode && do_classifier_free_guidance {
                scheduler.scale_model_input(&latents, timestep)?
            } else {
                model_input.clone()
            };
            let residuals = unit.controlnet.forward(
                &control_input,
                timestep,
                &controlnet_prompt_embeds,
                control_image,
                &controlnet_added,
                unit.controlnet_conditioning_scale,
                inpainting.guess_mode,
            )?;
            control = Some(add_residuals(control, residuals)?);
        }
        if inpainting.guess_mode && do_classifier_free_guidance {
            // Only the conditional half saw the ControlNet; the unconditional half gets zeros.
            control = control
                .map(|c| -> Result<ControlResiduals> {
                    let pad = |t: &Tensor| -> Result<Tensor> {
                        Ok(Tensor::cat(&[&t.zeros_like()?, t], 0)?)
                    };
                    Ok(ControlResiduals {
                        down_block_residuals: c
                            .down_block_residuals
                            .iter()
                            .map(pad)
                            .collect::<Result<_>>()?,
                        mid_block_residual: pad(&c.mid_block_residual)?,
                    })
                })
                .transpose()?;
        }

        let unet_input = match &unet_extra {
            Some(extra) => Tensor::cat(&[&model_input, extra], 1)?, // [b, 4 + 1 + 4, h/8, w/8]
            None => model_input,
        };
        let noise_pred = components.unet.forward(
            &unet_input,
            timestep,
            &prompt_embeds,
            &added,
            control.as_ref(),
        )?;
        let noise_pred = if do_classifier_free_guidance {
            guidance::combine(
                &noise_pred,
                settings.guidance_scale,
                settings.guidance_rescale,
            )?
        } else {
            noise_pred
        };
        latents = scheduler.step(&noise_pred, timestep, &latents, &mut noise_source)?;

        if let (4, Some(image_latents)) = (unet_channels, &image_latents) {
            // Keep the known region: the original's latents at the next step's noise level.
            let known = match timesteps.get(index + 1) {
                Some(&next) => scheduler.add_noise(image_latents, &noise, next)?,
                None => image_latents.clone(),
            };
            let inverse = latent_mask.affine(-1.0, 1.0)?;
            latents = (known.broadcast_mul(&inverse)? + latents.broadcast_mul(&latent_mask)?)?;
        }
        progress.report(Progress::Step {
            step: index + 1,
            total: steps,
        })?;
    }

    // Decode and paste into the original.
    progress.report(Progress::Decoding)?;
    let decoded = decode_latents(components, &latents, &settings.decode)?;
    let weights = feathered_mask(&inpainting.mask_image, inpainting.mask_blur);
    let image = paste_inside_mask(original, &decoded, &weights)?;
    Ok(InpaintOutput {
        latents: latents.to_dtype(DType::F32)?,
        decoded,
        image,
    })
}
