//! diffusers `Transformer2DModel` (models/transformers/transformer_2d.py) in the form SDXL
//! uses: group norm, linear `proj_in`, a stack of `BasicTransformerBlock`s, linear
//! `proj_out`, residual connection.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::attention::BasicTransformerBlock;
use super::layers::GroupNorm;
use super::linear::{join, Linear, NamedLinears};

#[derive(Debug, Clone, Copy)]
pub struct Transformer2DConfig {
    pub num_attention_heads: usize,
    pub attention_head_dim: usize,
    pub in_channels: usize,
    pub num_layers: usize,
    pub cross_attention_dim: usize,
    pub norm_num_groups: usize,
    /// SDXL uses linear projections; SD 1.x style 1×1 convolutions are not supported.
    pub use_linear_projection: bool,
}

#[derive(Debug, Clone)]
pub struct Transformer2DModel {
    norm: GroupNorm,
    proj_in: Linear,
    transformer_blocks: Vec<BasicTransformerBlock>,
    proj_out: Linear,
    span: tracing::Span,
}

impl Transformer2DModel {
    pub fn new(vb: VarBuilder, config: &Transformer2DConfig) -> Result<Self> {
        if !config.use_linear_projection {
            candle_core::bail!(
                "Transformer2DModel: only use_linear_projection=true (SDXL) is supported"
            );
        }
        let inner_dim = config.num_attention_heads * config.attention_head_dim;
        let norm = GroupNorm::new(
            vb.pp("norm"),
            config.norm_num_groups,
            config.in_channels,
            1e-6,
        )?;
        let proj_in = Linear::new(config.in_channels, inner_dim, vb.pp("proj_in"))?;
        let transformer_blocks = (0..config.num_layers)
            .map(|index| {
                BasicTransformerBlock::new(
                    vb.pp("transformer_blocks").pp(index),
                    inner_dim,
                    config.num_attention_heads,
                    config.attention_head_dim,
                    config.cross_attention_dim,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let proj_out = Linear::new(inner_dim, config.in_channels, vb.pp("proj_out"))?;
        Ok(Self {
            norm,
            proj_in,
            transformer_blocks,
            proj_out,
            span: tracing::trace_span!("transformer_2d"),
        })
    }

    /// `proj_in`, `proj_out` and every block's layers (`transformer_blocks.N.*`) under `prefix`.
    pub fn collect_linears<'a>(&'a mut self, prefix: &str, out: &mut NamedLinears<'a>) {
        out.push((join(prefix, "proj_in"), &mut self.proj_in));
        for (index, block) in self.transformer_blocks.iter_mut().enumerate() {
            block.collect_linears(&join(prefix, &format!("transformer_blocks.{index}")), out);
        }
        out.push((join(prefix, "proj_out"), &mut self.proj_out));
    }

    /// xs: [b, c, h, w]; encoder_hidden_states: [b, m, cross_attention_dim] -> [b, c, h, w]
    pub fn forward(&self, xs: &Tensor, encoder_hidden_states: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let (batch, channels, height, width) = xs.dims4()?;
        let residual = xs;
        let hidden = self.norm.forward(xs)?;
        // [b, c, h, w] -> [b, h·w, c]
        let hidden = hidden
            .permute((0, 2, 3, 1))?
            .reshape((batch, height * width, channels))?;
        let mut hidden = self.proj_in.forward(&hidden)?;
        for block in &self.transformer_blocks {
            hidden = block.forward(&hidden, encoder_hidden_states)?;
        }
        let hidden = self.proj_out.forward(&hidden)?;
        // [b, h·w, c] -> [b, c, h, w]
        let hidden = hidden
            .reshape((batch, height, width, channels))?
            .permute((0, 3, 1, 2))?;
        hidden + residual
    }
}
