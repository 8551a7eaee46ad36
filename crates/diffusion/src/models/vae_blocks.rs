//! The VAE's encoder and decoder, after diffusers models/autoencoders/vae.py (`Encoder`,
//! `Decoder`) and the blocks they use from models/unets/unet_2d_blocks.py
//! (`DownEncoderBlock2D`, `UpDecoderBlock2D`, `UNetMidBlock2D` with its `Attention`).
//! Only the configuration AutoencoderKL uses: SiLU, group norm, no time embedding.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::scaled_dot_product_attention;
use super::layers::{Conv2d, GroupNorm};
use super::resnet::{Downsample2D, ResnetBlock2D, ResnetBlock2DConfig, Upsample2D};

/// Every norm in the VAE uses this epsilon (`resnet_eps=1e-6` in `Encoder`/`Decoder`).
const VAE_EPS: f64 = 1e-6;

fn vae_resnet(
    vb: VarBuilder,
    in_channels: usize,
    out_channels: usize,
    groups: usize,
) -> Result<ResnetBlock2D> {
    ResnetBlock2D::new(
        vb,
        &ResnetBlock2DConfig {
            in_channels,
            out_channels,
            temb_channels: None,
            groups,
            groups_out: None,
            eps: VAE_EPS,
            output_scale_factor: 1.0,
        },
    )
}

/// diffusers `Attention` as `UNetMidBlock2D` builds it for the VAE: group norm on the
/// input, q/k/v/out projections with bias, heads of `attention_head_dim` channels (one head
/// spanning every channel in AutoencoderKL), a residual connection, rescale factor 1.
#[derive(Debug, Clone)]
pub struct MidBlockAttention {
    group_norm: GroupNorm,
    to_q: candle_nn::Linear,
    to_k: candle_nn::Linear,
    to_v: candle_nn::Linear,
    to_out: candle_nn::Linear,
    heads: usize,
    span: tracing::Span,
}

impl MidBlockAttention {
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        attention_head_dim: usize,
        groups: usize,
        eps: f64,
    ) -> Result<Self> {
        if attention_head_dim == 0 || !channels.is_multiple_of(attention_head_dim) {
            candle_core::bail!(
                "attention head dim {attention_head_dim} must divide the {channels} channels"
            );
        }
        Ok(Self {
            group_norm: GroupNorm::new(vb.pp("group_norm"), groups, channels, eps)?,
            to_q: candle_nn::linear(channels, channels, vb.pp("to_q"))?,
            to_k: candle_nn::linear(channels, channels, vb.pp("to_k"))?,
            to_v: candle_nn::linear(channels, channels, vb.pp("to_v"))?,
            to_out: candle_nn::linear(channels, channels, vb.pp("to_out").pp("0"))?,
            heads: channels / attention_head_dim,
            span: tracing::trace_span!("vae_attention"),
        })
    }

    /// [b, c, h, w] → [b, c, h, w]
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let (batch, channels, height, width) = xs.dims4()?;
        let tokens = height * width;
        let normed = self.group_norm.forward(xs)?;
        let normed = normed.reshape((batch, channels, tokens))?.transpose(1, 2)?; // [b, hw, c]
        let head_dim = channels / self.heads;
        let split = |projected: Tensor| -> Result<Tensor> {
            projected
                .reshape((batch, tokens, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let query = split(self.to_q.forward(&normed)?)?;
        let key = split(self.to_k.forward(&normed)?)?;
        let value = split(self.to_v.forward(&normed)?)?;
        let attended = scaled_dot_product_attention(&query, &key, &value)?; // [b, heads, hw, d]
        let merged = attended
            .transpose(1, 2)?
            .reshape((batch, tokens, channels))?;
        let projected = self.to_out.forward(&merged)?; // [b, hw, c]
        let spatial = projected
            .transpose(1, 2)?
            .reshape((batch, channels, height, width))?;
        spatial + xs
    }
}

/// `UNetMidBlock2D` with `num_layers=1` and no time embedding: resnet, attention, resnet.
#[derive(Debug, Clone)]
pub struct UNetMidBlock2D {
    first_resnet: ResnetBlock2D,
    attention: Option<MidBlockAttention>,
    second_resnet: ResnetBlock2D,
    span: tracing::Span,
}

impl UNetMidBlock2D {
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        groups: usize,
        add_attention: bool,
    ) -> Result<Self> {
        let attention = if add_attention {
            // attention_head_dim = channels in Encoder/Decoder: one head.
            Some(MidBlockAttention::new(
                vb.pp("attentions").pp(0),
                channels,
                channels,
                groups,
                VAE_EPS,
            )?)
        } else {
            None
        };
        Ok(Self {
            first_resnet: vae_resnet(vb.pp("resnets").pp(0), channels, channels, groups)?,
            attention,
            second_resnet: vae_resnet(vb.pp("resnets").pp(1), channels, channels, groups)?,
            span: tracing::trace_span!("vae_mid_block"),
        })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let mut hidden = self.first_resnet.forward(xs, None)?;
        if let Some(attention) = &self.attention {
            hidden = attention.forward(&hidden)?;
        }
        self.second_resnet.forward(&hidden, None)
    }
}

/// `DownEncoderBlock2D`: resnets, then an optional stride-2 `Downsample2D` (padding 0, so
/// the asymmetric bottom/right pad).
#[derive(Debug, Clone)]
pub struct DownEncoderBlock2D {
    resnets: Vec<ResnetBlock2D>,
    downsampler: Option<Downsample2D>,
    span: tracing::Span,
}

/// The `resnets` both coder blocks start with: the first maps `in_channels` to `out_channels`.
fn resnet_stack(
    vb: &VarBuilder,
    in_channels: usize,
    out_channels: usize,
    num_layers: usize,
    groups: usize,
) -> Result<Vec<ResnetBlock2D>> {
    (0..num_layers)
        .map(|index| {
            let input = if index == 0 {
                in_channels
            } else {
                out_channels
            };
            vae_resnet(vb.pp("resnets").pp(index), input, out_channels, groups)
        })
        .collect()
}

fn run_resnets(resnets: &[ResnetBlock2D], xs: &Tensor) -> Result<Tensor> {
    let mut hidden = xs.clone();
    for resnet in resnets {
        hidden = resnet.forward(&hidden, None)?;
    }
    Ok(hidden)
}

impl DownEncoderBlock2D {
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        num_layers: usize,
        groups: usize,
        add_downsample: bool,
    ) -> Result<Self> {
        let resnets = resnet_stack(&vb, in_channels, out_channels, num_layers, groups)?;
        let downsampler = if add_downsample {
            Some(Downsample2D::new(
                vb.pp("downsamplers").pp(0),
                out_channels,
                out_channels,
                0,
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            downsampler,
            span: tracing::trace_span!("down_encoder_block"),
        })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let hidden = run_resnets(&self.resnets, xs)?;
        match &self.downsampler {
            Some(downsampler) => downsampler.forward(&hidden),
            None => Ok(hidden),
        }
    }
}

/// `UpDecoderBlock2D`: resnets, then an optional nearest ×2 `Upsample2D`.
#[derive(Debug, Clone)]
pub struct UpDecoderBlock2D {
    resnets: Vec<ResnetBlock2D>,
    upsampler: Option<Upsample2D>,
    span: tracing::Span,
}

impl UpDecoderBlock2D {
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        num_layers: usize,
        groups: usize,
        add_upsample: bool,
    ) -> Result<Self> {
        let resnets = resnet_stack(&vb, in_channels, out_channels, num_layers, groups)?;
        let upsampler = if add_upsample {
            Some(Upsample2D::new(
                vb.pp("upsamplers").pp(0),
                out_channels,
                out_channels,
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            upsampler,
            span: tracing::trace_span!("up_decoder_block"),
        })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let hidden = run_resnets(&self.resnets, xs)?;
        match &self.upsampler {
            Some(upsampler) => upsampler.forward(&hidden),
            None => Ok(hidden),
        }
    }
}

/// What the encoder and decoder share from `AutoencoderKLConfig`.
#[derive(Debug, Clone)]
pub struct CoderConfig {
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub norm_num_groups: usize,
    pub mid_block_add_attention: bool,
}

/// diffusers `Encoder` with `double_z=True`: image [b, in, H, W] → moments
/// [b, 2·latent, H/2^(levels-1), W/2^(levels-1)] (mean and log-variance stacked).
#[derive(Debug, Clone)]
pub struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<DownEncoderBlock2D>,
    mid_block: UNetMidBlock2D,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    span: tracing::Span,
}

impl Encoder {
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        latent_channels: usize,
        config: &CoderConfig,
    ) -> Result<Self> {
        let channels = &config.block_out_channels;
        let (Some(&first), Some(&last)) = (channels.first(), channels.last()) else {
            candle_core::bail!("block_out_channels must not be empty");
        };
        let groups = config.norm_num_groups;
        let mut down_blocks = Vec::with_capacity(channels.len());
        let mut output_channel = first;
        for (index, &block_channels) in channels.iter().enumerate() {
            let input_channel = output_channel;
            output_channel = block_channels;
            let is_final_block = index + 1 == channels.len();
            down_blocks.push(DownEncoderBlock2D::new(
                vb.pp("down_blocks").pp(index),
                input_channel,
                output_channel,
                config.layers_per_block,
                groups,
                !is_final_block,
            )?);
        }
        Ok(Self {
            conv_in: Conv2d::new(vb.pp("conv_in"), in_channels, first, 3, 1, 1)?,
            down_blocks,
            mid_block: UNetMidBlock2D::new(
                vb.pp("mid_block"),
                last,
                groups,
                config.mid_block_add_attention,
            )?,
            conv_norm_out: GroupNorm::new(vb.pp("conv_norm_out"), groups, last, VAE_EPS)?,
            conv_out: Conv2d::new(vb.pp("conv_out"), last, 2 * latent_channels, 3, 1, 1)?,
            span: tracing::trace_span!("vae_encoder"),
        })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let mut hidden = self.conv_in.forward(xs)?;
        for block in &self.down_blocks {
            hidden = block.forward(&hidden)?;
        }
        let hidden = self.mid_block.forward(&hidden)?;
        self.conv_out
            .forward(&self.conv_norm_out.forward_silu(&hidden)?)
    }
}

/// diffusers `Decoder` with `norm_type="group"`: latents [b, latent, h, w] → image
/// [b, out, h·2^(levels-1), w·2^(levels-1)].
#[derive(Debug, Clone)]
pub struct Decoder {
    conv_in: Conv2d,
    mid_block: UNetMidBlock2D,
    up_blocks: Vec<UpDecoderBlock2D>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    span: tracing::Span,
}

impl Decoder {
    pub fn new(
        vb: VarBuilder,
        latent_channels: usize,
        out_channels: usize,
        config: &CoderConfig,
    ) -> Result<Self> {
        let channels = &config.block_out_channels;
        let (Some(&first), Some(&last)) = (channels.first(), channels.last()) else {
            candle_core::bail!("block_out_channels must not be empty");
        };
        let groups = config.norm_num_groups;
        let reversed: Vec<usize> = channels.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(channels.len());
        let mut output_channel = last;
        for (index, &block_channels) in reversed.iter().enumerate() {
            let prev_output_channel = output_channel;
            output_channel = block_channels;
            let is_final_block = index + 1 == channels.len();
            up_blocks.push(UpDecoderBlock2D::new(
                vb.pp("up_blocks").pp(index),
                prev_output_channel,
                output_channel,
                config.layers_per_block + 1,
                groups,
                !is_final_block,
            )?);
        }
        Ok(Self {
            conv_in: Conv2d::new(vb.pp("conv_in"), latent_channels, last, 3, 1, 1)?,
            mid_block: UNetMidBlock2D::new(
                vb.pp("mid_block"),
                last,
                groups,
                config.mid_block_add_attention,
            )?,
            up_blocks,
            conv_norm_out: GroupNorm::new(vb.pp("conv_norm_out"), groups, first, VAE_EPS)?,
            conv_out: Conv2d::new(vb.pp("conv_out"), first, out_channels, 3, 1, 1)?,
            span: tracing::trace_span!("vae_decoder"),
        })
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> candle_core::DType {
        self.conv_in.dtype()
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let hidden = self.conv_in.forward(xs)?;
        let mut hidden = self.mid_block.forward(&hidden)?;
        for block in &self.up_blocks {
            hidden = block.forward(&hidden)?;
        }
        self.conv_out
            .forward(&self.conv_norm_out.forward_silu(&hidden)?)
    }
}
