//! Image-to-image with SDXL, after diffusers `StableDiffusionXLImg2ImgPipeline.__call__`:
//! validate → encode prompt → timesteps cut by strength → encode the image and noise it to
//! the first kept timestep → denoise → decode. `strength` is how much of the original is
//! replaced: 0 keeps it, 1 starts from pure noise.

use candle_core::{DType, Tensor};

use super::edit_inputs::{check_image_size, encode_image, image_to_tensor, timesteps_for_strength};
use super::guidance;
use super::latents::decode_latents;
use super::progress::{Progress, ProgressSink};
use super::settings::GenerationSettings;
use super::stable_diffusion_xl::GeneratedImage;
use crate::loading::SdxlComponents;
use crate::schedulers::NoiseSource;
use crate::{Error, Result};
use huatu_imaging::RgbImage;

fn validate(
    components: &SdxlComponents,
    settings: &GenerationSettings,
    image: &RgbImage,
) -> Result<()> {
    settings.validate()?;
    check_image_size("the image", image.width() as usize, image.height() as usize)?;
    let channels = components.unet.config().in_channels;
    if channels != 4 {
        return Err(Error::InvalidRequest(format!(
            "image-to-image needs a 4-channel UNet; this model's has {channels} input channels \
             (9: an inpainting model, 8: an InstructPix2Pix model)"
        )));
    }
    Ok(())
}

/// Replaces `strength` of `image` (see the module's note) following `settings`.
pub fn image_to_image(
    components: &SdxlComponents,
    settings: &GenerationSettings,
    image: &RgbImage,
    strength: f64,
    progress: &mut dyn ProgressSink,
) -> Result<GeneratedImage> {
    validate(components, settings, image)?;
    let device = &components.device;
    let (height, width) = (image.height() as usize, image.width() as usize);
    let do_classifier_free_guidance = settings.guidance_scale > 1.0;

    progress.report(Progress::EncodingPrompt)?;
    let (prompt_embeds, added) =
        settings.conditioning(components, width, height, do_classifier_free_guidance)?;

    let mut scheduler = settings
        .scheduler
        .build(&components.scheduler_config, settings.num_inference_steps)?;
    let timesteps =
        timesteps_for_strength(scheduler.as_mut(), settings.num_inference_steps, strength)?;

    // Prepare latents: the image's latents noised to the first kept timestep.
    let mut noise_source = NoiseSource::new(settings.seed);
    let image = image_to_tensor(image, device)?;
    let sample_noise = if settings.noise.is_some() {
        None
    } else {
        Some(&mut noise_source)
    };
    let image_latents = encode_image(components, &image, sample_noise)?; // [1, 4, h/8, w/8]
    let noise =
        settings.initial_noise(&mut noise_source, &[1, 4, height / 8, width / 8], device)?;
    let mut latents = scheduler.add_noise(
        &image_latents,
        &noise.to_dtype(components.dtype)?,
        timesteps[0],
    )?;

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
