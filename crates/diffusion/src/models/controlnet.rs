//! diffusers `ControlNetModel` (models/controlnets/controlnet.py) as SDXL ControlNets are
//! configured: the UNet's encoder half (conv_in, time + "text_time" embeddings, down and mid
//! blocks) plus `ControlNetConditioningEmbedding` for the control image and one zero
//! convolution per skip connection; outputs the residuals the UNet adds (`ControlResiduals`),
//! scaled by the conditioning scale, or in guess mode by 10^linspace(-1, 0) over the blocks.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::embeddings::SdxlTimeEmbedding;
use super::unet_2d_condition::{AddedConditions, ControlResiduals, UNet2DConditionConfig};
use super::unet_blocks::{BlockAttention, BlockSettings, DownBlock, MidBlock};

fn default_conditioning_channels() -> usize {
    3
}
fn default_embedding_channels() -> Vec<usize> {
    vec![16, 32, 96, 256]
}

/// The ControlNet-only keys of its `config.json`; the rest are the UNet's.
#[derive(Debug, Clone, Deserialize)]
pub struct ControlNetExtras {
    #[serde(default = "default_conditioning_channels")]
    pub conditioning_channels: usize,
    #[serde(default = "default_embedding_channels")]
    pub conditioning_embedding_out_channels: Vec<usize>,
    #[serde(default)]
    pub global_pool_conditions: bool,
    #[serde(default)]
    pub controlnet_conditioning_channel_order: Option<String>,
}

/// A ControlNet `config.json`: the UNet keys it shares (down/mid blocks, embeddings) and its own.
#[derive(Debug, Clone)]
pub struct ControlNetConfig {
    pub unet: UNet2DConditionConfig,
    pub extras: ControlNetExtras,
}

impl ControlNetConfig {
    pub fn from_json(text: &str) -> crate::Result<Self> {
        let bad =
            |error: serde_json::Error| crate::Error::Config(format!("controlnet config: {error}"));
        let mut value: serde_json::Value = serde_json::from_str(text).map_err(bad)?;
        // A ControlNet has no up blocks; give the UNet config's validation the mirror image.
        if let Some(object) = value.as_object_mut() {
            let up: Vec<serde_json::Value> = object
                .get("down_block_types")
                .and_then(|v| v.as_array())
                .map(|down| {
                    down.iter()
                        .rev()
                        .map(|kind| match kind.as_str() {
                            Some("CrossAttnDownBlock2D") => "CrossAttnUpBlock2D".into(),
                            _ => "UpBlock2D".into(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            object
                .entry("up_block_types")
                .or_insert(serde_json::Value::Array(up));
        }
        let unet: UNet2DConditionConfig = serde_json::from_value(value.clone()).map_err(bad)?;
        let extras: ControlNetExtras = serde_json::from_value(value).map_err(bad)?;
        unet.validate()?;
        if extras
            .controlnet_conditioning_channel_order
            .as_deref()
            .is_some_and(|order| order != "rgb")
        {
            return Err(crate::Error::Config(
                "controlnet: only the rgb conditioning channel order is supported".into(),
            ));
        }
        if extras.conditioning_embedding_out_channels.is_empty() {
            return Err(crate::Error::Config(
                "controlnet: conditioning_embedding_out_channels is empty".into(),
            ));
        }
        Ok(Self { unet, extras })
    }
}

/// `ControlNetConditioningEmbedding`: conv_in, then per level a 3×3 conv and a stride-2 3×3
/// conv (SiLU after each), then conv_out to the UNet's first block width.
#[derive(Debug, Clone)]
struct ConditioningEmbedding {
    conv_in: candle_nn::Conv2d,
    blocks: Vec<candle_nn::Conv2d>,
    conv_out: candle_nn::Conv2d,
}

impl ConditioningEmbedding {
    fn new(
        vb: VarBuilder,
        conditioning_channels: usize,
        channels: &[usize],
        out_channels: usize,
    ) -> Result<Self> {
        let padded = candle_nn::Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let strided = candle_nn::Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let conv_in = candle_nn::conv2d(
            conditioning_channels,
            channels[0],
            3,
            padded,
            vb.pp("conv_in"),
        )?;
        let mut blocks = Vec::new();
        for (index, pair) in channels.windows(2).enumerate() {
            let blocks_vb = vb.pp("blocks");
            blocks.push(candle_nn::conv2d(
                pair[0],
                pair[0],
                3,
                padded,
                blocks_vb.pp(2 * index),
            )?);
            blocks.push(candle_nn::conv2d(
                pair[0],
                pair[1],
                3,
                strided,
                blocks_vb.pp(2 * index + 1),
            )?);
        }
        let last = channels[channels.len() - 1];
        let conv_out = candle_nn::conv2d(last, out_channels, 3, padded, vb.pp("conv_out"))?;
        Ok(Self {
            conv_in,
            blocks,
            conv_out,
        })
    }

    /// [b, 3, h, w] in [0, 1] -> [b, block_out_channels[0], h/8, w/8]
    fn forward(&self, conditioning: &Tensor) -> Result<Tensor> {
        let mut hidden = self.conv_in.forward(conditioning)?.silu()?;
        for block in &self.blocks {
            hidden = block.forward(&hidden)?.silu()?;
        }
        self.conv_out.forward(&hidden)
    }
}

#[derive(Debug, Clone)]
pub struct ControlNetModel {
    time_embedding: SdxlTimeEmbedding,
    conv_in: candle_nn::Conv2d,
    conditioning_embedding: ConditioningEmbedding,
    down_blocks: Vec<DownBlock>,
    zero_convs: Vec<candle_nn::Conv2d>,
    mid_block: MidBlock,
    mid_zero_conv: candle_nn::Conv2d,
    config: ControlNetConfig,
    span: tracing::Span,
}

impl ControlNetModel {
    pub fn new(vb: VarBuilder, config: &ControlNetConfig) -> crate::Result<Self> {
        let unet = &config.unet;
        let blocks = unet.block_out_channels.len();
        let channels = &unet.block_out_channels;
        let heads = unet.heads_per_block()?;
        let transformer_layers = unet
            .transformer_layers_per_block
            .resolve(blocks, "transformer_layers_per_block")?;
        let settings = BlockSettings {
            temb_channels: channels[0] * 4,
            norm_num_groups: unet.norm_num_groups,
            norm_eps: unet.norm_eps,
            cross_attention_dim: unet.cross_attention_dim,
            use_linear_projection: unet.use_linear_projection,
        };
        let time_embedding = SdxlTimeEmbedding::new(
            &vb,
            channels[0],
            unet.flip_sin_to_cos,
            unet.freq_shift,
            unet.addition_time_embed_dim.unwrap_or_default(),
            unet.projection_class_embeddings_input_dim
                .unwrap_or_default(),
        )?;
        let conv3x3 = candle_nn::Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv_in =
            candle_nn::conv2d(unet.in_channels, channels[0], 3, conv3x3, vb.pp("conv_in"))?;
        let conditioning_embedding = ConditioningEmbedding::new(
            vb.pp("controlnet_cond_embedding"),
            config.extras.conditioning_channels,
            &config.extras.conditioning_embedding_out_channels,
            channels[0],
        )?;

        let zero_vb = vb.pp("controlnet_down_blocks");
        let mut zero_convs = vec![candle_nn::conv2d(
            channels[0],
            channels[0],
            1,
            Default::default(),
            zero_vb.pp(0),
        )?];
        let mut down_blocks = Vec::with_capacity(blocks);
        for (index, kind) in unet.down_block_types.iter().enumerate() {
            let attention = (kind == "CrossAttnDownBlock2D").then_some(BlockAttention {
                num_attention_heads: heads[index],
                transformer_layers: transformer_layers[index],
            });
            let is_final = index + 1 == blocks;
            down_blocks.push(DownBlock::new(
                vb.pp("down_blocks").pp(index),
                if index == 0 {
                    channels[0]
                } else {
                    channels[index - 1]
                },
                channels[index],
                unet.layers_per_block,
                attention,
                !is_final,
                unet.downsample_padding,
                &settings,
            )?);
            let convs_here = unet.layers_per_block + usize::from(!is_final);
            for _ in 0..convs_here {
                let slot = zero_convs.len();
                zero_convs.push(candle_nn::conv2d(
                    channels[index],
                    channels[index],
                    1,
                    Default::default(),
                    zero_vb.pp(slot),
                )?);
            }
        }
        let last = channels[blocks - 1];
        let mid_block = MidBlock::new(
            vb.pp("mid_block"),
            last,
            BlockAttention {
                num_attention_heads: heads[blocks - 1],
                transformer_layers: transformer_layers[blocks - 1],
            },
            &settings,
        )?;
        let mid_zero_conv = candle_nn::conv2d(
            last,
            last,
            1,
            Default::default(),
            vb.pp("controlnet_mid_block"),
        )?;
        Ok(Self {
            time_embedding,
            conv_in,
            conditioning_embedding,
            down_blocks,
            zero_convs,
            mid_block,
            mid_zero_conv,
            config: config.clone(),
            span: tracing::trace_span!("controlnet"),
        })
    }

    pub fn config(&self) -> &ControlNetConfig {
        &self.config
    }

    /// sample: [b, 4, h/8, w/8]; controlnet_cond: [b, 3, h, w] in [0, 1].
    /// mirrors `ControlNetModel.forward(..., conditioning_scale, guess_mode)`.
    #[expect(
        clippy::too_many_arguments,
        reason = "the arguments of diffusers' ControlNetModel.forward, one for one"
    )]
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        encoder_hidden_states: &Tensor,
        controlnet_cond: &Tensor,
        added: &AddedConditions,
        conditioning_scale: f64,
        guess_mode: bool,
    ) -> Result<ControlResiduals> {
        let _enter = self.span.enter();
        let (batch, _, _, _) = sample.dims4()?;
        let dtype = sample.dtype();
        let embedding = self.time_embedding.forward(
            timestep,
            batch,
            &added.text_embeds,
            &added.time_ids,
            dtype,
        )?;

        let condition = self
            .conditioning_embedding
            .forward(&controlnet_cond.to_dtype(dtype)?)?;
        let mut hidden = (self.conv_in.forward(sample)? + condition)?;
        let mut residuals = vec![hidden.clone()];
        for block in &self.down_blocks {
            let (output, block_residuals) =
                block.forward(&hidden, &embedding, encoder_hidden_states)?;
            hidden = output;
            residuals.extend(block_residuals);
        }
        hidden = self
            .mid_block
            .forward(&hidden, &embedding, encoder_hidden_states)?;

        let mut down: Vec<Tensor> = residuals
            .iter()
            .zip(&self.zero_convs)
            .map(|(residual, conv)| conv.forward(residual))
            .collect::<Result<_>>()?;
        let mut mid = self.mid_zero_conv.forward(&hidden)?;

        let global_pool = self.config.extras.global_pool_conditions;
        if guess_mode && !global_pool {
            // torch.logspace(-1, 0, n + 1): 0.1 … 1.0 from the first skip to the mid block
            let count = down.len();
            for (index, residual) in down.iter_mut().enumerate() {
                let scale = 10f64.powf(-1.0 + index as f64 / count as f64) * conditioning_scale;
                *residual = (&*residual * scale)?;
            }
            mid = (mid * conditioning_scale)?;
        } else {
            for residual in down.iter_mut() {
                *residual = (&*residual * conditioning_scale)?;
            }
            mid = (mid * conditioning_scale)?;
        }
        if global_pool {
            for residual in down.iter_mut() {
                *residual = residual.mean_keepdim(3)?.mean_keepdim(2)?;
            }
            mid = mid.mean_keepdim(3)?.mean_keepdim(2)?;
        }
        Ok(ControlResiduals {
            down_block_residuals: down,
            mid_block_residual: mid,
        })
    }
}
