//! Text-only editing with InstructPix2Pix on SDXL, after diffusers
//! `StableDiffusionXLInstructPix2PixPipeline.__call__`: the UNet has 8 input channels (the
//! noisy latents and the original's latents, unscaled VAE mode), and guidance has three
//! branches — [instruction + image, no text + image, no text + no image] — combined as
//! `uncond + guidance_scale·(text − image) + image_guidance_scale·(image − uncond)`.

use candle_core::{DType, Tensor};

use super::edit_inputs::{check_image_size, image_to_tensor};
use super::guidance::rescale_noise_cfg;
use super::latents::{decode_latents, micro_conditioning, prepare_latents};
use super::progress::{Progress, ProgressSink};
use super::prompt_encoding::encode_prompt_pair;
use super::settings::GenerationSettings;
use super::stable_diffusion_xl::GeneratedImage;
use crate::loading::SdxlComponents;
use crate::models::unet_2d_condition::AddedConditions;
use crate::schedulers::NoiseSource;
use crate::{Error, Result};
use huatu_imaging::RgbImage;

fn validate(
    components: &SdxlComponents,
    settings: &GenerationSettings,
    image: &RgbImage,
    image_guidance_scale: f64,
) -> Result<()> {
    settings.validate()?;
    check_image_size("the image", image.width() as usize, image.height() as usize)?;
    if !image_guidance_scale.is_finite() || image_guidance_scale < 0.0 {
        return Err(Error::InvalidRequest(format!(
            "image_guidance_scale must be a finite number ≥ 0, got {image_guidance_scale}"
        )));
    }
    let channels = components.unet.config().in_channels;
    if channels != 8 {
        return Err(Error::InvalidRequest(format!(
            "InstructPix2Pix needs an 8-channel UNet (an InstructPix2Pix model); this model's has {channels} input channels"
        )));
    }
    Ok(())
}

/// Edits `image` as `settings.prompt` instructs ("make it look like winter");
/// `image_guidance_scale` is how closely to follow the original (diffusers' default 1.5;
/// ≥ 1 enables it).
pub fn instruct_pix2pix(
    components: &SdxlComponents,
    settings: &GenerationSettings,
    image: &RgbImage,
    image_guidance_scale: f64,
    progress: &mut dyn ProgressSink,
) -> Result<GeneratedImage> {
    validate(components, settings, image, image_guidance_scale)?;
    let device = &components.device;
    let dtype = components.dtype;
    let (height, width) = (image.height() as usize, image.width() as usize);
    let do_classifier_free_guidance = settings.guidance_scale > 1.0 && image_guidance_scale >= 1.0;

    // Encode prompt: [text, negative, negative].
    progress.report(Progress::EncodingPrompt)?;
    let (positive, negative) = encode_prompt_pair(
        components,
        &settings.prompt,
        settings.negative_prompt.as_deref(),
        do_classifier_free_guidance,
    )?;
    let time_ids = micro_conditioning(&settings.micro_conditioning, height, width, device)?;
    let (prompt_embeds, added) = match &negative {
        Some(negative) => (
            Tensor::cat(
                &[
                    &positive.prompt_embeds,
                    &negative.prompt_embeds,
                    &negative.prompt_embeds,
                ],
                0,
            )?,
            AddedConditions {
                text_embeds: Tensor::cat(
                    &[
                        &positive.pooled_prompt_embeds,
                        &negative.pooled_prompt_embeds,
                        &negative.pooled_prompt_embeds,
                    ],
                    0,
                )?,
                time_ids: Tensor::cat(&[&time_ids, &time_ids, &time_ids], 0)?,
            },
        ),
        None => (
            positive.prompt_embeds.clone(),
            AddedConditions {
                text_embeds: positive.pooled_prompt_embeds.clone(),
                time_ids,
            },
        ),
    };
    let prompt_embeds = prompt_embeds.to_dtype(dtype)?;
    let added = AddedConditions {
        text_embeds: added.text_embeds.to_dtype(dtype)?,
        time_ids: added.time_ids.to_dtype(dtype)?,
    };

    let mut scheduler = settings
        .scheduler
        .build(&components.scheduler_config, settings.num_inference_steps)?;
    let timesteps = scheduler.timesteps().to_vec();

    // Image latents: the VAE's mode, unscaled; [image, image, zeros] under guidance.
    let image = image_to_tensor(image, device)?.to_dtype(components.vae_dtype)?;
    let image_latents = components.vae.encode(&image)?.mode().to_dtype(dtype)?;
    let image_latents = if do_classifier_free_guidance {
        Tensor::cat(
            &[&image_latents, &image_latents, &image_latents.zeros_like()?],
            0,
        )?
    } else {
        image_latents
    };

    let mut noise_source = NoiseSource::new(settings.seed);
    let mut latents = prepare_latents(
        settings.noise.as_ref(),
        &mut noise_source,
        4,
        height,
        width,
        scheduler.init_noise_sigma(),
        dtype,
        device,
    )?;

    for (index, &timestep) in timesteps.iter().enumerate() {
        let model_input = if do_classifier_free_guidance {
            Tensor::cat(&[&latents, &latents, &latents], 0)?
        } else {
            latents.clone()
        };
        let model_input = Tensor::cat(
            &[
                &scheduler.scale_model_input(&model_input, timestep)?,
                &image_latents,
            ],
            1,
        )?;
        let noise_pred =
            components
                .unet
                .forward(&model_input, timestep, &prompt_embeds, &added, None)?;
        let noise_pred = if do_classifier_free_guidance {
            let text = noise_pred.narrow(0, 0, 1)?;
            let image = noise_pred.narrow(0, 1, 1)?;
            let uncond = noise_pred.narrow(0, 2, 1)?;
            let guided = ((&uncond + ((&text - &image)? * settings.guidance_scale)?)?
                + ((&image - &uncond)? * image_guidance_scale)?)?;
            if settings.guidance_rescale > 0.0 {
                rescale_noise_cfg(&guided, &text, settings.guidance_rescale)?
            } else {
                guided
            }
        } else {
            noise_pred
        };
        latents = scheduler.step(&noise_pred, timestep, &latents, &mut noise_source)?;
        progress.report(Progress::Step {
            step: index + 1,
            total: timesteps.len(),
        })?;
    }

    progress.report(Progress::Decoding)?;
    let image = decode_latents(components, &latents, &settings.decode)?;
    Ok(GeneratedImage {
        latents: latents.to_dtype(DType::F32)?,
        image,
    })
}
