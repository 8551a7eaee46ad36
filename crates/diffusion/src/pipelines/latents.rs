//! Helpers every SDXL pipeline shares: initial latents, micro-conditioning time ids and
//! VAE decoding (diffusers `prepare_latents`, `_get_add_time_ids`, and the decode tail of
//! `__call__`).

use candle_core::{DType, Device, Tensor};

use huatu_imaging::RgbImage;

use super::image::tensor_to_images;
use crate::loading::SdxlComponents;
use crate::schedulers::NoiseSource;
use crate::{Error, Result};

/// SDXL's micro-conditioning; `None` sizes mean the output size (diffusers' default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MicroConditioning {
    /// (height, width)
    pub original_size: Option<(usize, usize)>,
    /// (top, left)
    pub crops_coords_top_left: (usize, usize),
    /// (height, width)
    pub target_size: Option<(usize, usize)>,
}

/// `[original_h, original_w, crop_top, crop_left, target_h, target_w]` as a [1, 6] tensor.
pub fn micro_conditioning(
    conditioning: &MicroConditioning,
    height: usize,
    width: usize,
    device: &Device,
) -> Result<Tensor> {
    let (original_h, original_w) = conditioning.original_size.unwrap_or((height, width));
    let (crop_top, crop_left) = conditioning.crops_coords_top_left;
    let (target_h, target_w) = conditioning.target_size.unwrap_or((height, width));
    let values = [
        original_h, original_w, crop_top, crop_left, target_h, target_w,
    ]
    .map(|value| value as f32);
    Ok(Tensor::new(&values, device)?.unsqueeze(0)?)
}

/// Initial latents [1, channels, h/8, w/8] scaled by the scheduler's `init_noise_sigma`:
/// the given ones (checked) or seeded standard-normal noise.
#[allow(clippy::too_many_arguments)]
pub fn prepare_latents(
    given: Option<&Tensor>,
    noise: &mut NoiseSource,
    channels: usize,
    height: usize,
    width: usize,
    init_noise_sigma: f64,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let shape = [1, channels, height / 8, width / 8];
    let latents = match given {
        Some(latents) => {
            if latents.dims() != shape {
                return Err(Error::InvalidRequest(format!(
                    "latents must have shape {shape:?} for a {width}×{height} image, got {:?}",
                    latents.dims()
                )));
            }
            latents.to_device(device)?.to_dtype(dtype)?
        }
        None => noise.randn(&shape, device, dtype)?,
    };
    Ok((latents * init_noise_sigma)?)
}

/// When to decode in tiles (diffusers `AutoencoderKL.tiled_decode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VaeTiling {
    /// Tile images larger than 1536×1536 pixels, so 2048² fits in memory.
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    pub tiling: VaeTiling,
}

const AUTO_TILE_PIXELS: usize = 1536 * 1536;

/// Unscales the latents with the VAE's scaling factor (and latents mean/std when the
/// config has them), decodes in the VAE's dtype and converts to 8-bit RGB.
pub fn decode_latents(
    components: &SdxlComponents,
    latents: &Tensor,
    options: &DecodeOptions,
) -> Result<RgbImage> {
    let config = &components.vae_config;
    let latents = latents.to_dtype(components.vae_dtype)?;
    let unscaled = match (&config.latents_mean, &config.latents_std) {
        (Some(mean), Some(std)) => {
            let channels = mean.len();
            let mean =
                Tensor::new(mean.as_slice(), latents.device())?.reshape((1, channels, 1, 1))?;
            let std =
                Tensor::new(std.as_slice(), latents.device())?.reshape((1, channels, 1, 1))?;
            let mean = mean.to_dtype(latents.dtype())?;
            let std = std.to_dtype(latents.dtype())?;
            (latents.broadcast_mul(&std)? / config.scaling_factor)?.broadcast_add(&mean)?
        }
        _ => (latents / config.scaling_factor)?,
    };
    let (_, _, latent_h, latent_w) = unscaled.dims4()?;
    let pixels = latent_h * latent_w * 64;
    let tile = match options.tiling {
        VaeTiling::Always => true,
        VaeTiling::Never => false,
        VaeTiling::Auto => pixels > AUTO_TILE_PIXELS,
    };
    let decoded = if tile {
        components.vae.tiled_decode(&unscaled)?
    } else {
        components.vae.decode(&unscaled)?
    };
    let mut images = tensor_to_images(&decoded)?;
    images
        .pop()
        .ok_or_else(|| Error::InvalidRequest("the VAE decoded no image".into()))
}
