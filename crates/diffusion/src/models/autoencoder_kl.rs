//! diffusers `AutoencoderKL` (models/autoencoders/autoencoder_kl.py) and its
//! `DiagonalGaussianDistribution` (models/autoencoders/vae.py): encode images to latent
//! moments, decode latents to images, and the tiled variants (`tiled_decode`,
//! `_tiled_encode`) with diffusers' exact tile sizes, overlaps and blending.
//! Scaling by `scaling_factor`/`shift_factor` is the caller's business, as in diffusers.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::layers::Conv2d;
use super::vae_blocks::{CoderConfig, Decoder, Encoder};
use super::vae_tiling::TileLayout;
use crate::schedulers::NoiseSource;

/// `sample_size` is an int in most configs, a `[height, width]` pair in a few.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SampleSize {
    Square(usize),
    Pair([usize; 2]),
}

impl SampleSize {
    /// diffusers takes the first entry of a pair for the tile sizes.
    pub fn first(&self) -> usize {
        match *self {
            Self::Square(size) => size,
            Self::Pair([height, _]) => height,
        }
    }
}

fn default_three() -> usize {
    3
}
fn default_one() -> usize {
    1
}
fn default_four() -> usize {
    4
}
fn default_groups() -> usize {
    32
}
fn default_true() -> bool {
    true
}
fn default_down_blocks() -> Vec<String> {
    vec!["DownEncoderBlock2D".into()]
}
fn default_up_blocks() -> Vec<String> {
    vec!["UpDecoderBlock2D".into()]
}
fn default_block_out_channels() -> Vec<usize> {
    vec![64]
}
fn default_act_fn() -> String {
    "silu".into()
}
fn default_sample_size() -> SampleSize {
    SampleSize::Square(32)
}
fn default_scaling_factor() -> f64 {
    0.18215
}

/// `AutoencoderKL`'s config.json; defaults are diffusers' `__init__` defaults, unknown keys
/// are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AutoencoderKLConfig {
    #[serde(default = "default_three")]
    pub in_channels: usize,
    #[serde(default = "default_three")]
    pub out_channels: usize,
    #[serde(default = "default_down_blocks")]
    pub down_block_types: Vec<String>,
    #[serde(default = "default_up_blocks")]
    pub up_block_types: Vec<String>,
    #[serde(default = "default_block_out_channels")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_one")]
    pub layers_per_block: usize,
    #[serde(default = "default_act_fn")]
    pub act_fn: String,
    #[serde(default = "default_four")]
    pub latent_channels: usize,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_sample_size")]
    pub sample_size: SampleSize,
    #[serde(default = "default_scaling_factor")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    #[serde(default)]
    pub latents_mean: Option<Vec<f32>>,
    #[serde(default)]
    pub latents_std: Option<Vec<f32>>,
    #[serde(default = "default_true")]
    pub force_upcast: bool,
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
    #[serde(default = "default_true")]
    pub mid_block_add_attention: bool,
}

impl AutoencoderKLConfig {
    /// Checks what the model code relies on: only the block types, activation and
    /// normalisation AutoencoderKL's SDXL VAE uses.
    pub fn validate(&self) -> crate::Result<()> {
        let fail = |message: String| Err(crate::Error::Config(format!("vae config: {message}")));
        let levels = self.block_out_channels.len();
        if levels == 0 {
            return fail("block_out_channels must not be empty".into());
        }
        if self.down_block_types.len() != levels || self.up_block_types.len() != levels {
            return fail(format!(
                "down_block_types ({}) and up_block_types ({}) must have one entry per block_out_channels ({levels})",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        if let Some(other) = self
            .down_block_types
            .iter()
            .find(|name| *name != "DownEncoderBlock2D")
        {
            return fail(format!(
                "down block type `{other}` is not supported (only DownEncoderBlock2D)"
            ));
        }
        if let Some(other) = self
            .up_block_types
            .iter()
            .find(|name| *name != "UpDecoderBlock2D")
        {
            return fail(format!(
                "up block type `{other}` is not supported (only UpDecoderBlock2D)"
            ));
        }
        if self.act_fn != "silu" && self.act_fn != "swish" {
            return fail(format!(
                "act_fn `{}` is not supported (only silu)",
                self.act_fn
            ));
        }
        let groups = self.norm_num_groups;
        if let Some(channels) = self
            .block_out_channels
            .iter()
            .find(|&&channels| groups == 0 || !channels.is_multiple_of(groups))
        {
            return fail(format!("norm_num_groups {groups} must divide every block_out_channels entry, not {channels}"));
        }
        Ok(())
    }

    /// How many times the encoder halves the image size (3 for SDXL: factor 8).
    pub fn downsampling_levels(&self) -> usize {
        self.block_out_channels.len().saturating_sub(1)
    }
}

/// The posterior `N(mean, exp(logvar))` of one encoding, logvar clamped to [-30, 20].
#[derive(Debug, Clone)]
pub struct DiagonalGaussianDistribution {
    pub mean: Tensor,
    pub logvar: Tensor,
}

impl DiagonalGaussianDistribution {
    /// moments: [b, 2·latent, h, w], mean first, as the encoder (+ quant_conv) outputs.
    pub fn from_moments(moments: &Tensor) -> Result<Self> {
        let channels = moments.dim(1)? / 2;
        let mean = moments.narrow(1, 0, channels)?.contiguous()?;
        let logvar = moments
            .narrow(1, channels, channels)?
            .clamp(-30f32, 20f32)?;
        Ok(Self { mean, logvar })
    }

    /// The distribution's mode, its mean.
    pub fn mode(&self) -> &Tensor {
        &self.mean
    }

    /// `exp(0.5 · logvar)`
    pub fn std(&self) -> Result<Tensor> {
        (&self.logvar * 0.5)?.exp()
    }

    /// `mean + std · noise` with the caller's standard-normal `noise` of the mean's shape.
    pub fn sample_with_noise(&self, noise: &Tensor) -> Result<Tensor> {
        self.mean.broadcast_add(
            &self
                .std()?
                .broadcast_mul(&noise.to_dtype(self.mean.dtype())?)?,
        )
    }

    /// `latent_dist.sample(generator)`: `mean + std · ε` with ε drawn from `noise`.
    pub fn sample(&self, noise: &mut NoiseSource) -> crate::Result<Tensor> {
        let epsilon = noise.randn(self.mean.dims(), self.mean.device(), self.mean.dtype())?;
        Ok(self.sample_with_noise(&epsilon)?)
    }
}

/// diffusers' tiling parameters; `AutoencoderKL::new` sets them from the config as
/// diffusers' `__init__` does, and they may be changed as in diffusers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileSettings {
    /// Tile size in pixels (`config.sample_size`).
    pub tile_sample_min_size: usize,
    /// Tile size in latents (`sample_size / 2^(levels-1)`).
    pub tile_latent_min_size: usize,
    /// Fraction of a tile shared with its neighbour (0.25).
    pub tile_overlap_factor: f64,
}

impl TileSettings {
    pub fn from_config(config: &AutoencoderKLConfig) -> Self {
        let sample_size = config.sample_size.first();
        Self {
            tile_sample_min_size: sample_size,
            tile_latent_min_size: (sample_size as f64
                / (1usize << config.downsampling_levels()) as f64)
                as usize,
            tile_overlap_factor: 0.25,
        }
    }
}

/// The VAE: `encoder`, `quant_conv`, `post_quant_conv`, `decoder`.
#[derive(Debug, Clone)]
pub struct AutoencoderKL {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    config: AutoencoderKLConfig,
    tiles: TileSettings,
}

impl AutoencoderKL {
    pub fn new(vb: VarBuilder, config: &AutoencoderKLConfig) -> crate::Result<Self> {
        config.validate()?;
        let coder = CoderConfig {
            block_out_channels: config.block_out_channels.clone(),
            layers_per_block: config.layers_per_block,
            norm_num_groups: config.norm_num_groups,
            mid_block_add_attention: config.mid_block_add_attention,
        };
        let latent = config.latent_channels;
        let quant_conv = if config.use_quant_conv {
            Some(Conv2d::new(
                vb.pp("quant_conv"),
                2 * latent,
                2 * latent,
                1,
                1,
                0,
            )?)
        } else {
            None
        };
        let post_quant_conv = if config.use_post_quant_conv {
            Some(Conv2d::new(
                vb.pp("post_quant_conv"),
                latent,
                latent,
                1,
                1,
                0,
            )?)
        } else {
            None
        };
        Ok(Self {
            encoder: Encoder::new(vb.pp("encoder"), config.in_channels, latent, &coder)?,
            decoder: Decoder::new(vb.pp("decoder"), latent, config.out_channels, &coder)?,
            quant_conv,
            post_quant_conv,
            config: config.clone(),
            tiles: TileSettings::from_config(config),
        })
    }

    pub fn config(&self) -> &AutoencoderKLConfig {
        &self.config
    }

    /// The dtype the weights were loaded in; inputs must have it.
    pub fn dtype(&self) -> DType {
        self.decoder.dtype()
    }

    pub fn tile_settings(&self) -> TileSettings {
        self.tiles
    }

    pub fn set_tile_settings(&mut self, tiles: TileSettings) {
        self.tiles = tiles;
    }

    /// Encoder + quant_conv on one image batch: [b, in, H, W] → moments [b, 2·latent, h, w].
    fn encode_moments(&self, xs: &Tensor) -> Result<Tensor> {
        let moments = self.encoder.forward(xs)?;
        match &self.quant_conv {
            Some(quant_conv) => quant_conv.forward(&moments),
            None => Ok(moments),
        }
    }

    /// post_quant_conv + decoder: latents [b, latent, h, w] → images [b, out, 8h, 8w] (SDXL).
    fn decode_tile(&self, latents: &Tensor) -> Result<Tensor> {
        match &self.post_quant_conv {
            Some(post_quant_conv) => self.decoder.forward(&post_quant_conv.forward(latents)?),
            None => self.decoder.forward(latents),
        }
    }

    /// `encode(x).latent_dist` without tiling. xs: [b, in, H, W] in [-1, 1].
    pub fn encode(&self, xs: &Tensor) -> Result<DiagonalGaussianDistribution> {
        let _span = tracing::trace_span!("vae_encode").entered();
        DiagonalGaussianDistribution::from_moments(&self.encode_moments(xs)?)
    }

    /// `decode(z).sample` without tiling: post_quant_conv then the decoder. z is unscaled
    /// (already divided by `scaling_factor`).
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("vae_decode").entered();
        self.decode_tile(latents)
    }

    /// diffusers `decode` after `enable_tiling()` when `use_tiling`: tiles only when a
    /// latent side exceeds `tile_latent_min_size`.
    pub fn decode_with_tiling(&self, latents: &Tensor, use_tiling: bool) -> Result<Tensor> {
        let (_, _, height, width) = latents.dims4()?;
        let limit = self.tiles.tile_latent_min_size;
        if use_tiling && (height > limit || width > limit) {
            self.tiled_decode(latents)
        } else {
            self.decode(latents)
        }
    }

    /// diffusers `encode` after `enable_tiling()` when `use_tiling`: tiles only when an
    /// image side exceeds `tile_sample_min_size`.
    pub fn encode_with_tiling(
        &self,
        xs: &Tensor,
        use_tiling: bool,
    ) -> Result<DiagonalGaussianDistribution> {
        let (_, _, height, width) = xs.dims4()?;
        let limit = self.tiles.tile_sample_min_size;
        if use_tiling && (height > limit || width > limit) {
            self.tiled_encode(xs)
        } else {
            self.encode(xs)
        }
    }

    /// `forward(sample)` without posterior sampling: decode(encode(x).mode()).
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.decode(self.encode(xs)?.mode())
    }

    /// diffusers `tiled_decode`: latent tiles of `tile_latent_min_size` every
    /// `tile_latent_min_size · (1 - overlap)` latents, each decoded alone, blended over
    /// `tile_sample_min_size · overlap` pixels with the tile above and to the left, and
    /// cropped to `tile_sample_min_size - blend_extent` pixels.
    pub fn tiled_decode(&self, latents: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("vae_tiled_decode").entered();
        let tiles = self.tiles;
        let layout = TileLayout::new(
            tiles.tile_latent_min_size,
            tiles.tile_sample_min_size,
            tiles.tile_overlap_factor,
        )?;
        layout.run(latents, |tile| self.decode_tile(tile))
    }

    /// diffusers `_tiled_encode` wrapped in the posterior, as `encode` does after
    /// `enable_tiling()`: image tiles of `tile_sample_min_size`, encoded alone, blended and
    /// cropped in latent space.
    pub fn tiled_encode(&self, xs: &Tensor) -> Result<DiagonalGaussianDistribution> {
        let _span = tracing::trace_span!("vae_tiled_encode").entered();
        let tiles = self.tiles;
        let layout = TileLayout::new(
            tiles.tile_sample_min_size,
            tiles.tile_latent_min_size,
            tiles.tile_overlap_factor,
        )?;
        let moments = layout.run(xs, |tile| self.encode_moments(tile))?;
        DiagonalGaussianDistribution::from_moments(&moments)
    }
}

#[cfg(test)]
#[path = "autoencoder_kl_tests.rs"]
mod tests;
