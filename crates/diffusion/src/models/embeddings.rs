//! diffusers `Timesteps` and `TimestepEmbedding` (models/embeddings.py): sinusoidal
//! projections of the diffusion timestep and of SDXL's micro-conditioning time ids.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::linear::{join, Linear, NamedLinears};

/// diffusers `get_timestep_embedding`: [n] -> [n, dim], computed in f32.
#[derive(Debug, Clone, Copy)]
pub struct Timesteps {
    pub num_channels: usize,
    pub flip_sin_to_cos: bool,
    pub downscale_freq_shift: f64,
}

impl Timesteps {
    pub fn forward(&self, timesteps: &Tensor) -> Result<Tensor> {
        let half_dim = self.num_channels / 2;
        let denominator = half_dim as f64 - self.downscale_freq_shift;
        let frequencies: Vec<f32> = (0..half_dim)
            .map(|index| (-(10000f64.ln()) * index as f64 / denominator).exp() as f32)
            .collect();
        let frequencies = Tensor::from_vec(frequencies, (1, half_dim), &Device::Cpu)?
            .to_device(timesteps.device())?;
        let timesteps = timesteps.to_dtype(DType::F32)?.unsqueeze(1)?;
        let arguments = timesteps.broadcast_mul(&frequencies)?; // [n, half]
        let (first, second) = (arguments.sin()?, arguments.cos()?);
        let embedding = if self.flip_sin_to_cos {
            Tensor::cat(&[second, first], D::Minus1)?
        } else {
            Tensor::cat(&[first, second], D::Minus1)?
        };
        if self.num_channels % 2 == 1 {
            embedding.pad_with_zeros(D::Minus1, 0, 1)
        } else {
            Ok(embedding)
        }
    }
}

/// diffusers `TimestepEmbedding`: linear_1 → SiLU → linear_2.
#[derive(Debug, Clone)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn new(vb: VarBuilder, in_channels: usize, time_embed_dim: usize) -> Result<Self> {
        Ok(Self {
            linear_1: Linear::new(in_channels, time_embed_dim, vb.pp("linear_1"))?,
            linear_2: Linear::new(time_embed_dim, time_embed_dim, vb.pp("linear_2"))?,
        })
    }

    /// `linear_1`, `linear_2` under `prefix`.
    pub fn collect_linears<'a>(&'a mut self, prefix: &str, out: &mut NamedLinears<'a>) {
        out.push((join(prefix, "linear_1"), &mut self.linear_1));
        out.push((join(prefix, "linear_2"), &mut self.linear_2));
    }
}

impl Module for TimestepEmbedding {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(xs)?.silu()?)
    }
}

/// The conditioning vector SDXL's UNet and ControlNet add to every resnet block: the
/// sinusoidal timestep embedding plus the "text_time" added embedding of the pooled text
/// embeddings and the six micro-conditioning time ids (diffusers `UNet2DConditionModel`
/// `time_proj`/`time_embedding`/`add_time_proj`/`add_embedding`).
#[derive(Debug, Clone)]
pub struct SdxlTimeEmbedding {
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    add_time_proj: Timesteps,
    add_embedding: TimestepEmbedding,
}

impl SdxlTimeEmbedding {
    /// `vb` is the model root (weights `time_embedding.*`, `add_embedding.*`).
    pub fn new(
        vb: &VarBuilder,
        first_block_channels: usize,
        flip_sin_to_cos: bool,
        freq_shift: f64,
        addition_time_embed_dim: usize,
        projection_class_embeddings_input_dim: usize,
    ) -> Result<Self> {
        let time_embed_dim = first_block_channels * 4;
        Ok(Self {
            time_proj: Timesteps {
                num_channels: first_block_channels,
                flip_sin_to_cos,
                downscale_freq_shift: freq_shift,
            },
            time_embedding: TimestepEmbedding::new(
                vb.pp("time_embedding"),
                first_block_channels,
                time_embed_dim,
            )?,
            add_time_proj: Timesteps {
                num_channels: addition_time_embed_dim,
                flip_sin_to_cos,
                downscale_freq_shift: freq_shift,
            },
            add_embedding: TimestepEmbedding::new(
                vb.pp("add_embedding"),
                projection_class_embeddings_input_dim,
                time_embed_dim,
            )?,
        })
    }

    /// `time_embedding.*` and `add_embedding.*`.
    pub fn collect_linears<'a>(&'a mut self, out: &mut NamedLinears<'a>) {
        self.time_embedding.collect_linears("time_embedding", out);
        self.add_embedding.collect_linears("add_embedding", out);
    }

    /// [b, time_embed_dim] for a batch of `batch` samples at `timestep`.
    pub fn forward(
        &self,
        timestep: f64,
        batch: usize,
        text_embeds: &Tensor,
        time_ids: &Tensor,
        dtype: candle_core::DType,
    ) -> Result<Tensor> {
        let timesteps = Tensor::full(timestep as f32, batch, text_embeds.device())?;
        self.forward_timesteps(&timesteps, text_embeds, time_ids, dtype)
    }

    /// [b, time_embed_dim] for one timestep per sample: `timesteps` [b] (any dtype; a
    /// trainer's integer timesteps).
    pub fn forward_timesteps(
        &self,
        timesteps: &Tensor,
        text_embeds: &Tensor,
        time_ids: &Tensor,
        dtype: candle_core::DType,
    ) -> Result<Tensor> {
        let batch = timesteps.dim(0)?;
        let time_features = self.time_proj.forward(timesteps)?.to_dtype(dtype)?;
        let embedding = self.time_embedding.forward(&time_features)?;
        let time_id_features = self
            .add_time_proj
            .forward(&time_ids.flatten_all()?)?
            .reshape((batch, ()))?
            .to_dtype(dtype)?;
        let add_features = Tensor::cat(&[&text_embeds.to_dtype(dtype)?, &time_id_features], 1)?;
        embedding + self.add_embedding.forward(&add_features)?
    }
}
