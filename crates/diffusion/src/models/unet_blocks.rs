//! The SDXL UNet's blocks, after diffusers models/unets/unet_2d_blocks.py: `DownBlock2D`,
//! `CrossAttnDownBlock2D`, `UNetMidBlock2DCrossAttn`, `CrossAttnUpBlock2D`, `UpBlock2D`.
//! A down/up block with no `attentions` is the plain variant.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::linear::{join, NamedLinears};
use super::resnet::{Downsample2D, ResnetBlock2D, ResnetBlock2DConfig, Upsample2D};
use super::transformer_2d::{Transformer2DConfig, Transformer2DModel};

/// What every block of one UNet shares.
#[derive(Debug, Clone, Copy)]
pub struct BlockSettings {
    pub temb_channels: usize,
    pub norm_num_groups: usize,
    pub norm_eps: f64,
    pub cross_attention_dim: usize,
    pub use_linear_projection: bool,
}

/// Attention settings of one block; `None` on a block means no cross-attention.
#[derive(Debug, Clone, Copy)]
pub struct BlockAttention {
    pub num_attention_heads: usize,
    pub transformer_layers: usize,
}

fn resnet(
    vb: VarBuilder,
    in_channels: usize,
    out_channels: usize,
    settings: &BlockSettings,
) -> Result<ResnetBlock2D> {
    ResnetBlock2D::new(
        vb,
        &ResnetBlock2DConfig {
            in_channels,
            out_channels,
            temb_channels: Some(settings.temb_channels),
            groups: settings.norm_num_groups,
            groups_out: None,
            eps: settings.norm_eps,
            output_scale_factor: 1.0,
        },
    )
}

fn transformer(
    vb: VarBuilder,
    channels: usize,
    attention: &BlockAttention,
    settings: &BlockSettings,
) -> Result<Transformer2DModel> {
    Transformer2DModel::new(
        vb,
        &Transformer2DConfig {
            num_attention_heads: attention.num_attention_heads,
            attention_head_dim: channels / attention.num_attention_heads,
            in_channels: channels,
            num_layers: attention.transformer_layers,
            cross_attention_dim: settings.cross_attention_dim,
            norm_num_groups: settings.norm_num_groups,
            use_linear_projection: settings.use_linear_projection,
        },
    )
}

/// `resnets.N.*` and `attentions.N.*` of a down or up block, in diffusers' order.
fn collect_block_linears<'a>(
    prefix: &str,
    resnets: &'a mut [ResnetBlock2D],
    attentions: &'a mut [Transformer2DModel],
    out: &mut NamedLinears<'a>,
) {
    for (index, resnet) in resnets.iter_mut().enumerate() {
        resnet.collect_linears(&join(prefix, &format!("resnets.{index}")), out);
    }
    for (index, attention) in attentions.iter_mut().enumerate() {
        attention.collect_linears(&join(prefix, &format!("attentions.{index}")), out);
    }
}

/// `DownBlock2D` / `CrossAttnDownBlock2D`.
#[derive(Debug, Clone)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    downsampler: Option<Downsample2D>,
    span: tracing::Span,
}

impl DownBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        num_layers: usize,
        attention: Option<BlockAttention>,
        add_downsample: bool,
        downsample_padding: usize,
        settings: &BlockSettings,
    ) -> Result<Self> {
        let mut resnets = Vec::with_capacity(num_layers);
        let mut attentions = Vec::new();
        for index in 0..num_layers {
            let input = if index == 0 {
                in_channels
            } else {
                out_channels
            };
            resnets.push(resnet(
                vb.pp("resnets").pp(index),
                input,
                out_channels,
                settings,
            )?);
            if let Some(attention) = &attention {
                attentions.push(transformer(
                    vb.pp("attentions").pp(index),
                    out_channels,
                    attention,
                    settings,
                )?);
            }
        }
        let downsampler = if add_downsample {
            Some(Downsample2D::new(
                vb.pp("downsamplers").pp(0),
                out_channels,
                out_channels,
                downsample_padding,
            )?)
        } else {
            None
        };
        Ok(Self {
            resnets,
            attentions,
            downsampler,
            span: tracing::trace_span!("down_block"),
        })
    }

    /// The linear layers of its resnets and transformers under `prefix`.
    pub fn collect_linears<'a>(&'a mut self, prefix: &str, out: &mut NamedLinears<'a>) {
        collect_block_linears(prefix, &mut self.resnets, &mut self.attentions, out);
    }

    /// Returns the block output and the residuals the up path will consume, in order.
    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        encoder_hidden_states: &Tensor,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let _enter = self.span.enter();
        let mut hidden = xs.clone();
        let mut residuals = Vec::with_capacity(self.resnets.len() + 1);
        for (index, resnet) in self.resnets.iter().enumerate() {
            hidden = resnet.forward(&hidden, Some(temb))?;
            if let Some(attention) = self.attentions.get(index) {
                hidden = attention.forward(&hidden, encoder_hidden_states)?;
            }
            residuals.push(hidden.clone());
        }
        if let Some(downsampler) = &self.downsampler {
            hidden = downsampler.forward(&hidden)?;
            residuals.push(hidden.clone());
        }
        Ok((hidden, residuals))
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) pairs.
#[derive(Debug, Clone)]
pub struct MidBlock {
    first_resnet: ResnetBlock2D,
    layers: Vec<(Transformer2DModel, ResnetBlock2D)>,
    span: tracing::Span,
}

impl MidBlock {
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        attention: BlockAttention,
        settings: &BlockSettings,
    ) -> Result<Self> {
        let first_resnet = resnet(vb.pp("resnets").pp(0), channels, channels, settings)?;
        // diffusers' num_layers=1 for this block: one transformer, one more resnet.
        let layers = vec![(
            transformer(vb.pp("attentions").pp(0), channels, &attention, settings)?,
            resnet(vb.pp("resnets").pp(1), channels, channels, settings)?,
        )];
        Ok(Self {
            first_resnet,
            layers,
            span: tracing::trace_span!("mid_block"),
        })
    }

    /// `resnets.0`, then `attentions.0` and `resnets.1`, under `prefix`.
    pub fn collect_linears<'a>(&'a mut self, prefix: &str, out: &mut NamedLinears<'a>) {
        self.first_resnet
            .collect_linears(&join(prefix, "resnets.0"), out);
        for (index, (attention, resnet)) in self.layers.iter_mut().enumerate() {
            attention.collect_linears(&join(prefix, &format!("attentions.{index}")), out);
            resnet.collect_linears(&join(prefix, &format!("resnets.{}", index + 1)), out);
        }
    }

    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        encoder_hidden_states: &Tensor,
    ) -> Result<Tensor> {
        let _enter = self.span.enter();
        let mut hidden = self.first_resnet.forward(xs, Some(temb))?;
        for (attention, resnet) in &self.layers {
            hidden = attention.forward(&hidden, encoder_hidden_states)?;
            hidden = resnet.forward(&hidden, Some(temb))?;
        }
        Ok(hidden)
    }
}

/// `UpBlock2D` / `CrossAttnUpBlock2D`.
#[derive(Debug, Clone)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
    upsampler: Option<Upsample2D>,
    span: tracing::Span,
}

impl UpBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        prev_output_channel: usize,
        out_channels: usize,
        num_layers: usize,
        attention: Option<BlockAttention>,
        add_upsample: bool,
        settings: &BlockSettings,
    ) -> Result<Self> {
        let mut resnets = Vec::with_capacity(num_layers);
        let mut attentions = Vec::new();
        for index in 0..num_layers {
            let res_skip_channels = if index == num_layers - 1 {
                in_channels
            } else {
                out_channels
            };
            let resnet_in_channels = if index == 0 {
                prev_output_channel
            } else {
                out_channels
            };
            resnets.push(resnet(
                vb.pp("resnets").pp(index),
                resnet_in_channels + res_skip_channels,
                out_channels,
                settings,
            )?);
            if let Some(attention) = &attention {
                attentions.push(transformer(
                    vb.pp("attentions").pp(index),
                    out_channels,
                    attention,
                    settings,
                )?);
            }
        }
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
            attentions,
            upsampler,
            span: tracing::trace_span!("up_block"),
        })
    }

    /// The linear layers of its resnets and transformers under `prefix`.
    pub fn collect_linears<'a>(&'a mut self, prefix: &str, out: &mut NamedLinears<'a>) {
        collect_block_linears(prefix, &mut self.resnets, &mut self.attentions, out);
    }

    pub fn num_residuals(&self) -> usize {
        self.resnets.len()
    }

    /// `residuals` are this block's skip connections in down-path order; they are consumed
    /// from the last. `upsample_size` forces the upsampled size (odd latent sizes).
    pub fn forward(
        &self,
        xs: &Tensor,
        residuals: &[Tensor],
        temb: &Tensor,
        encoder_hidden_states: &Tensor,
        upsample_size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        let _enter = self.span.enter();
        let mut hidden = xs.clone();
        for (index, resnet) in self.resnets.iter().enumerate() {
            let skip = &residuals[residuals.len() - 1 - index];
            hidden = Tensor::cat(&[&hidden, skip], 1)?;
            hidden = resnet.forward(&hidden, Some(temb))?;
            if let Some(attention) = self.attentions.get(index) {
                hidden = attention.forward(&hidden, encoder_hidden_states)?;
            }
        }
        if let Some(upsampler) = &self.upsampler {
            hidden = upsampler.forward_to_size(&hidden, upsample_size)?;
        }
        Ok(hidden)
    }
}
