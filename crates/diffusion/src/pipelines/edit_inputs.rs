//! What the editing pipelines share: input images as tensors
//! (diffusers `VaeImageProcessor.preprocess`: RGB to [-1, 1]; masks binarised at 0.5;
//! control images to [0, 1]), VAE encoding of an image to scaled latents (the
//! distribution's mean when the noise is injected, a sample otherwise), the strength cut
//! of the timesteps (`get_timesteps`) and the mask at latent size (`F.interpolate`, nearest).

use candle_core::{Device, Tensor};

use crate::loading::SdxlComponents;
use crate::schedulers::{NoiseSource, Scheduler};
use crate::{Error, Result};
use huatu_imaging::{GrayImage, RgbImage};

/// Width and height must be positive multiples of 8 (the VAE's factor).
pub fn check_image_size(what: &str, width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 || !width.is_multiple_of(8) || !height.is_multiple_of(8) {
        return Err(Error::InvalidRequest(format!(
            "{what} must be a positive multiple of 8 on each side, got {width}×{height}"
        )));
    }
    Ok(())
}

pub fn check_same_size(what: &str, width: usize, height: usize, image: &RgbImage) -> Result<()> {
    let (image_width, image_height) = (image.width() as usize, image.height() as usize);
    if (width, height) != (image_width, image_height) {
        return Err(Error::InvalidRequest(format!(
            "{what} is {width}×{height} but the image is {}×{}; they must be the same size",
            image_width, image_height
        )));
    }
    Ok(())
}

/// [1, 3, h, w] in [-1, 1].
pub fn image_to_tensor(image: &RgbImage, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = image
        .as_raw()
        .iter()
        .map(|&p| f32::from(p) / 255.0 * 2.0 - 1.0)
        .collect();
    Ok(Tensor::from_vec(
        values,
        (image.height() as usize, image.width() as usize, 3),
        device,
    )?
    .permute((2, 0, 1))?
    .unsqueeze(0)?)
}

/// [1, 3, h, w] in [0, 1], as ControlNets take their condition.
pub fn control_image_to_tensor(image: &RgbImage, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = image
        .as_raw()
        .iter()
        .map(|&p| f32::from(p) / 255.0)
        .collect();
    Ok(Tensor::from_vec(
        values,
        (image.height() as usize, image.width() as usize, 3),
        device,
    )?
    .permute((2, 0, 1))?
    .unsqueeze(0)?)
}

/// [1, 1, h, w] with 1 where the mask is ≥ 0.5 (pixel ≥ 128), else 0.
pub fn mask_to_tensor(mask: &GrayImage, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = mask
        .as_raw()
        .iter()
        .map(|&p| if p >= 128 { 1.0 } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(
        values,
        (1, 1, mask.height() as usize, mask.width() as usize),
        device,
    )?)
}

/// Nearest-neighbour down-sampling by 8 (`F.interpolate(mask, size=(h/8, w/8))`): pixel 8i.
pub fn mask_at_latent_size(mask: &Tensor) -> Result<Tensor> {
    let (batch, channels, height, width) = mask.dims4()?;
    Ok(mask
        .reshape((batch, channels, height / 8, 8, width / 8, 8))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((batch, channels, height / 8, width / 8))?)
}

/// VAE-encodes [1, 3, h, w] in [-1, 1] to scaled latents in the UNet's dtype: the mean when
/// `sample_noise` is `None`, else a sample (diffusers `retrieve_latents` + scaling factor).
pub fn encode_image(
    components: &SdxlComponents,
    image: &Tensor,
    sample_noise: Option<&mut NoiseSource>,
) -> Result<Tensor> {
    let config = &components.vae_config;
    let distribution = components
        .vae
        .encode(&image.to_dtype(components.vae_dtype)?)?;
    let latents = match sample_noise {
        None => distribution.mode().clone(),
        Some(noise) => distribution.sample(noise)?,
    };
    let scaled = match (&config.latents_mean, &config.latents_std) {
        (Some(mean), Some(std)) => {
            let channels = mean.len();
            let mean = Tensor::new(mean.as_slice(), latents.device())?
                .reshape((1, channels, 1, 1))?
                .to_dtype(latents.dtype())?;
            let std = Tensor::new(std.as_slice(), latents.device())?
                .reshape((1, channels, 1, 1))?
                .to_dtype(latents.dtype())?;
            (latents.broadcast_sub(&mean)? * config.scaling_factor)?.broadcast_div(&std)?
        }
        _ => (latents * config.scaling_factor)?,
    };
    Ok(scaled.to_dtype(components.dtype)?)
}

/// diffusers `get_timesteps`: keep the last ⌊steps·strength⌋ timesteps and tell the scheduler
/// where it starts. Returns the kept timesteps.
pub fn timesteps_for_strength(
    scheduler: &mut dyn Scheduler,
    num_inference_steps: usize,
    strength: f64,
) -> Result<Vec<f64>> {
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(Error::InvalidRequest(format!(
            "strength must be within (0, 1], got {strength}"
        )));
    }
    let init_timestep = ((num_inference_steps as f64 * strength) as usize).min(num_inference_steps);
    let t_start = num_inference_steps - init_timestep;
    let begin = t_start * scheduler.order();
    let timesteps: Vec<f64> = scheduler
        .timesteps()
        .get(begin..)
        .unwrap_or_default()
        .to_vec();
    if timesteps.is_empty() {
        return Err(Error::InvalidRequest(format!(
            "strength {strength} with {num_inference_steps} steps leaves no denoising step; raise one of them"
        )));
    }
    scheduler.set_begin_index(begin);
    Ok(timesteps)
}
