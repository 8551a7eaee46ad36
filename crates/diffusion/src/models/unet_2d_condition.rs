//! diffusers `UNet2DConditionModel` (models/unets/unet_2d_condition.py) as SDXL configures it:
//! timestep embedding plus SDXL's added "text_time" embedding (pooled text embeddings and
//! the six micro-conditioning time ids), cross-attention down/mid/up blocks, and optional
//! ControlNet residuals.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::embeddings::SdxlTimeEmbedding;
use super::layers::{Conv2d, GroupNorm};
use super::linear::NamedLinears;
use super::unet_blocks::{BlockAttention, BlockSettings, DownBlock, MidBlock, UpBlock};

/// A config value diffusers accepts either as one number for every block or one per block.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    pub fn resolve(&self, blocks: usize, key: &str) -> crate::Result<Vec<usize>> {
        match self {
            Self::One(value) => Ok(vec![*value; blocks]),
            Self::Each(values) if values.len() == blocks => Ok(values.clone()),
            Self::Each(values) => Err(crate::Error::Config(format!(
                "unet config `{key}` has {} entries but there are {blocks} down blocks",
                values.len()
            ))),
        }
    }
}

fn default_channels() -> usize {
    4
}
fn default_true() -> bool {
    true
}
fn default_one() -> usize {
    1
}
fn default_norm_num_groups() -> usize {
    32
}
fn default_norm_eps() -> f64 {
    1e-5
}
fn default_layers_per_block() -> usize {
    2
}
fn default_mid_block_type() -> String {
    "UNetMidBlock2DCrossAttn".to_string()
}

/// The keys of a diffusers `unet/config.json` that SDXL UNets use.
#[derive(Debug, Clone, Deserialize)]
pub struct UNet2DConditionConfig {
    #[serde(default = "default_channels")]
    pub in_channels: usize,
    #[serde(default = "default_channels")]
    pub out_channels: usize,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    pub down_block_types: Vec<String>,
    #[serde(default = "default_mid_block_type")]
    pub mid_block_type: String,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "default_layers_per_block")]
    pub layers_per_block: usize,
    #[serde(default = "default_one")]
    pub downsample_padding: usize,
    #[serde(default = "default_norm_num_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    pub cross_attention_dim: usize,
    #[serde(default = "default_transformer_layers")]
    pub transformer_layers_per_block: PerBlock,
    #[serde(default = "default_attention_head_dim")]
    pub attention_head_dim: PerBlock,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
    #[serde(default)]
    pub upcast_attention: Option<bool>,
    #[serde(default)]
    pub sample_size: Option<usize>,
}

fn default_transformer_layers() -> PerBlock {
    PerBlock::One(1)
}
fn default_attention_head_dim() -> PerBlock {
    PerBlock::One(8)
}

impl UNet2DConditionConfig {
    /// diffusers' historical quirk: when `num_attention_heads` is absent, the value of
    /// `attention_head_dim` is the number of heads (SDXL's [5, 10, 20] are head counts).
    pub fn heads_per_block(&self) -> crate::Result<Vec<usize>> {
        let blocks = self.block_out_channels.len();
        match &self.num_attention_heads {
            Some(heads) => heads.resolve(blocks, "num_attention_heads"),
            None => self
                .attention_head_dim
                .resolve(blocks, "attention_head_dim"),
        }
    }

    /// Checks the parts of the config this implementation relies on.
    pub fn validate(&self) -> crate::Result<()> {
        let blocks = self.block_out_channels.len();
        let bad = |message: String| Err(crate::Error::Config(format!("unet: {message}")));
        if self.down_block_types.len() != blocks || self.up_block_types.len() != blocks {
            return bad(format!(
                "{} down and {} up block types for {blocks} block_out_channels",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        for kind in &self.down_block_types {
            if kind != "DownBlock2D" && kind != "CrossAttnDownBlock2D" {
                return bad(format!("unsupported down block type `{kind}`"));
            }
        }
        for kind in &self.up_block_types {
            if kind != "UpBlock2D" && kind != "CrossAttnUpBlock2D" {
                return bad(format!("unsupported up block type `{kind}`"));
            }
        }
        if self.mid_block_type != "UNetMidBlock2DCrossAttn" {
            return bad(format!(
                "unsupported mid block type `{}`",
                self.mid_block_type
            ));
        }
        if self.addition_embed_type.as_deref() != Some("text_time") {
            return bad(format!(
                "addition_embed_type must be \"text_time\" (an SDXL UNet), got {:?}",
                self.addition_embed_type
            ));
        }
        if self.addition_time_embed_dim.is_none()
            || self.projection_class_embeddings_input_dim.is_none()
        {
            return bad(
                "SDXL needs addition_time_embed_dim and projection_class_embeddings_input_dim"
                    .into(),
            );
        }
        let heads = self.heads_per_block()?;
        for (channels, heads) in self.block_out_channels.iter().zip(&heads) {
            if *heads == 0 || channels % heads != 0 {
                return bad(format!(
                    "{channels} channels cannot be split into {heads} attention heads"
                ));
            }
        }
        self.transformer_layers_per_block
            .resolve(blocks, "transformer_layers_per_block")?;
        Ok(())
    }
}

/// SDXL's extra conditioning (`added_cond_kwargs` in diffusers).
#[derive(Debug, Clone)]
pub struct AddedConditions {
    /// Pooled projection of the second text encoder: [b, projection_dim].
    pub text_embeds: Tensor,
    /// (original h, w, crop top, left, target h, w): [b, 6].
    pub time_ids: Tensor,
}

/// ControlNet outputs added to the skip connections and the mid block.
#[derive(Debug, Clone)]
pub struct ControlResiduals {
    pub down_block_residuals: Vec<Tensor>,
    pub mid_block_residual: Tensor,
}

#[derive(Debug, Clone)]
pub struct UNet2DConditionModel {
    time_embedding: SdxlTimeEmbedding,
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    config: UNet2DConditionConfig,
    span: tracing::Span,
}

impl UNet2DConditionModel {
    pub fn new(vb: VarBuilder, config: &UNet2DConditionConfig) -> crate::Result<Self> {
        config.validate()?;
        let blocks = config.block_out_channels.len();
        let channels = &config.block_out_channels;
        let heads = config.heads_per_block()?;
        let transformer_layers = config
            .transformer_layers_per_block
            .resolve(blocks, "transformer_layers_per_block")?;
        let time_embed_dim = channels[0] * 4;
        let settings = BlockSettings {
            temb_channels: time_embed_dim,
            norm_num_groups: config.norm_num_groups,
            norm_eps: config.norm_eps,
            cross_attention_dim: config.cross_attention_dim,
            use_linear_projection: config.use_linear_projection,
        };

        let time_embedding = SdxlTimeEmbedding::new(
            &vb,
            channels[0],
            config.flip_sin_to_cos,
            config.freq_shift,
            config.addition_time_embed_dim.unwrap_or_default(),
            config
                .projection_class_embeddings_input_dim
                .unwrap_or_default(),
        )?;
        let conv_in = Conv2d::new(vb.pp("conv_in"), config.in_channels, channels[0], 3, 1, 1)?;

        let mut down_blocks = Vec::with_capacity(blocks);
        for (index, kind) in config.down_block_types.iter().enumerate() {
            let attention = (kind == "CrossAttnDownBlock2D").then_some(BlockAttention {
                num_attention_heads: heads[index],
                transformer_layers: transformer_layers[index],
            });
            down_blocks.push(DownBlock::new(
                vb.pp("down_blocks").pp(index),
                if index == 0 {
                    channels[0]
                } else {
                    channels[index - 1]
                },
                channels[index],
                config.layers_per_block,
                attention,
                index + 1 < blocks,
                config.downsample_padding,
                &settings,
            )?);
        }

        let mid_block = MidBlock::new(
            vb.pp("mid_block"),
            channels[blocks - 1],
            BlockAttention {
                num_attention_heads: heads[blocks - 1],
                transformer_layers: transformer_layers[blocks - 1],
            },
            &settings,
        )?;

        let reversed_channels: Vec<usize> = channels.iter().rev().copied().collect();
        let reversed_heads: Vec<usize> = heads.iter().rev().copied().collect();
        let reversed_layers: Vec<usize> = transformer_layers.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(blocks);
        let mut prev_output_channel = reversed_channels[0];
        for (index, kind) in config.up_block_types.iter().enumerate() {
            let out_channels = reversed_channels[index];
            let in_channels = reversed_channels[(index + 1).min(blocks - 1)];
            let attention = (kind == "CrossAttnUpBlock2D").then_some(BlockAttention {
                num_attention_heads: reversed_heads[index],
                transformer_layers: reversed_layers[index],
            });
            up_blocks.push(UpBlock::new(
                vb.pp("up_blocks").pp(index),
                in_channels,
                prev_output_channel,
                out_channels,
                config.layers_per_block + 1,
                attention,
                index + 1 < blocks,
                &settings,
            )?);
            prev_output_channel = out_channels;
        }

        let conv_norm_out = GroupNorm::new(
            vb.pp("conv_norm_out"),
            config.norm_num_groups,
            channels[0],
            config.norm_eps,
        )?;
        let conv_out = Conv2d::new(vb.pp("conv_out"), channels[0], config.out_channels, 3, 1, 1)?;
        Ok(Self {
            time_embedding,
            conv_in,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
            config: config.clone(),
            span: tracing::trace_span!("unet"),
        })
    }

    pub fn config(&self) -> &UNet2DConditionConfig {
        &self.config
    }

    /// sample: [b, in_channels, h/8, w/8]; encoder_hidden_states: [b, 77·k, cross_attention_dim].
    /// Returns the noise (or v) prediction: [b, out_channels, h/8, w/8].
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        encoder_hidden_states: &Tensor,
        added: &AddedConditions,
        control: Option<&ControlResiduals>,
    ) -> Result<Tensor> {
        let timesteps = Tensor::full(timestep as f32, sample.dim(0)?, sample.device())?;
        self.forward_timesteps(sample, &timesteps, encoder_hidden_states, added, control)
    }

    /// [`Self::forward`] with one timestep per sample (`timesteps` [b]), as a trainer calls
    /// it. The stages are the public methods below, in this order.
    pub fn forward_timesteps(
        &self,
        sample: &Tensor,
        timesteps: &Tensor,
        encoder_hidden_states: &Tensor,
        added: &AddedConditions,
        control: Option<&ControlResiduals>,
    ) -> Result<Tensor> {
        let _enter = self.span.enter();
        let (_, _, height, width) = sample.dims4()?;
        let embedding = self.embed(timesteps, added, sample.dtype())?; // [b, time_embed_dim]
        let mut hidden = self.conv_in(sample)?;
        let mut residuals = vec![hidden.clone()];
        for index in 0..self.down_blocks.len() {
            let (output, block_residuals) =
                self.down_block(index, &hidden, &embedding, encoder_hidden_states)?;
            hidden = output;
            residuals.extend(block_residuals);
        }
        if let Some(control) = control {
            if control.down_block_residuals.len() != residuals.len() {
                candle_core::bail!(
                    "controlnet gave {} down residuals, the unet has {}",
                    control.down_block_residuals.len(),
                    residuals.len()
                );
            }
            for (residual, extra) in residuals.iter_mut().zip(&control.down_block_residuals) {
                *residual = (&*residual + extra)?;
            }
        }

        hidden = self.mid_block(&hidden, &embedding, encoder_hidden_states)?;
        if let Some(control) = control {
            hidden = (hidden + &control.mid_block_residual)?;
        }

        for index in 0..self.up_blocks.len() {
            let split = residuals.len() - self.up_block_residuals(index);
            let block_residuals = residuals.split_off(split);
            let upsample_size = self.upsample_size(index, (height, width), residuals.last())?;
            hidden = self.up_block(
                index,
                &hidden,
                &block_residuals,
                &embedding,
                encoder_hidden_states,
                upsample_size,
            )?;
        }
        self.conv_out(&hidden)
    }

    /// Time plus added ("text_time") embedding: timesteps [b] → [b, time_embed_dim].
    pub fn embed(
        &self,
        timesteps: &Tensor,
        added: &AddedConditions,
        dtype: DType,
    ) -> Result<Tensor> {
        self.time_embedding
            .forward_timesteps(timesteps, &added.text_embeds, &added.time_ids, dtype)
    }

    /// `conv_in`: [b, in_channels, h, w] → [b, c0, h, w], also the first skip connection.
    pub fn conv_in(&self, sample: &Tensor) -> Result<Tensor> {
        self.conv_in.forward(sample)
    }

    pub fn num_down_blocks(&self) -> usize {
        self.down_blocks.len()
    }

    pub fn num_up_blocks(&self) -> usize {
        self.up_blocks.len()
    }

    /// Down block `index`: its output and the skip connections it adds, in order.
    pub fn down_block(
        &self,
        index: usize,
        hidden: &Tensor,
        embedding: &Tensor,
        encoder_hidden_states: &Tensor,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        self.down_blocks[index].forward(hidden, embedding, encoder_hidden_states)
    }

    pub fn mid_block(
        &self,
        hidden: &Tensor,
        embedding: &Tensor,
        encoder_hidden_states: &Tensor,
    ) -> Result<Tensor> {
        self.mid_block
            .forward(hidden, embedding, encoder_hidden_states)
    }

    /// How many skip connections up block `index` consumes (from the end of the list).
    pub fn up_block_residuals(&self, index: usize) -> usize {
        self.up_blocks[index].num_residuals()
    }

    /// The size up block `index` upsamples to when the latent size is not a multiple of the
    /// UNet's overall factor (diffusers' `forward_upsample_size`): the next skip's size.
    pub fn upsample_size(
        &self,
        index: usize,
        (height, width): (usize, usize),
        next_residual: Option<&Tensor>,
    ) -> Result<Option<(usize, usize)>> {
        let factor = 1usize << (self.up_blocks.len() - 1);
        let forward_upsample_size = height % factor != 0 || width % factor != 0;
        match next_residual {
            Some(next) if forward_upsample_size && index + 1 < self.up_blocks.len() => {
                let (_, _, h, w) = next.dims4()?;
                Ok(Some((h, w)))
            }
            _ => Ok(None),
        }
    }

    /// Up block `index` on its skip connections (in down-path order).
    pub fn up_block(
        &self,
        index: usize,
        hidden: &Tensor,
        residuals: &[Tensor],
        embedding: &Tensor,
        encoder_hidden_states: &Tensor,
        upsample_size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        self.up_blocks[index].forward(
            hidden,
            residuals,
            embedding,
            encoder_hidden_states,
            upsample_size,
        )
    }

    /// `conv_norm_out` → SiLU → `conv_out`.
    pub fn conv_out(&self, hidden: &Tensor) -> Result<Tensor> {
        self.conv_out
            .forward(&self.conv_norm_out.forward_silu(hidden)?)
    }

    /// Every linear layer by diffusers module name (`down_blocks.1.attentions.0.proj_in`,
    /// `mid_block.resnets.0.time_emb_proj`, `time_embedding.linear_1`, …).
    pub fn collect_linears(&mut self) -> NamedLinears<'_> {
        let mut out = Vec::new();
        self.time_embedding.collect_linears(&mut out);
        for (index, block) in self.down_blocks.iter_mut().enumerate() {
            block.collect_linears(&format!("down_blocks.{index}"), &mut out);
        }
        self.mid_block.collect_linears("mid_block", &mut out);
        for (index, block) in self.up_blocks.iter_mut().enumerate() {
            block.collect_linears(&format!("up_blocks.{index}"), &mut out);
        }
        out
    }

    /// The dtype the weights were loaded in.
    pub fn dtype(&self) -> DType {
        self.conv_in.dtype()
    }
}
