//! Attention kernels and the `Attention` layer, following diffusers
//! `models/attention_processor.py` (`Attention` with `AttnProcessor2_0`).

use candle_core::{Result, Tensor};

use super::layers::LayerNorm;
use super::linear::{join, Linear, NamedLinears};

/// `torch.nn.functional.scaled_dot_product_attention` without mask or dropout.
/// query: [b, heads, n, d], key/value: [b, heads, m, d] -> [b, heads, n, d].
/// On CPU this is huatu's fused f32 kernel (f16/bf16 inputs upcast to it); other devices run
/// it over blocks of queries with softmax in f32 (as diffusers' upcast_softmax). Either way
/// the [n, m] scores are never all in memory at once: at 2048² they would be 10–21 GB.
pub fn scaled_dot_product_attention(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
) -> Result<Tensor> {
    let _span = tracing::trace_span!("sdpa").entered();
    huatu_kernels::fused_attention(query, key, value)
}

/// diffusers `Attention` as used by the UNet's transformer blocks: separate q/k/v projections
/// without bias, `to_out.0` with bias, multi-head scaled dot-product attention.
#[derive(Debug, Clone)]
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    span: tracing::Span,
}

impl Attention {
    /// `cross_attention_dim: None` means self-attention (keys/values come from the query input).
    pub fn new(
        vb: candle_nn::VarBuilder,
        query_dim: usize,
        cross_attention_dim: Option<usize>,
        heads: usize,
        dim_head: usize,
    ) -> Result<Self> {
        let inner_dim = heads * dim_head;
        let context_dim = cross_attention_dim.unwrap_or(query_dim);
        Ok(Self {
            to_q: Linear::new_no_bias(query_dim, inner_dim, vb.pp("to_q"))?,
            to_k: Linear::new_no_bias(context_dim, inner_dim, vb.pp("to_k"))?,
            to_v: Linear::new_no_bias(context_dim, inner_dim, vb.pp("to_v"))?,
            to_out: Linear::new(inner_dim, query_dim, vb.pp("to_out").pp("0"))?,
            heads,
            span: tracing::trace_span!("attention"),
        })
    }

    /// hidden_states: [b, n, query_dim]; encoder_hidden_states: [b, m, cross_attention_dim].
    pub fn forward(
        &self,
        hidden_states: &Tensor,
        encoder_hidden_states: Option<&Tensor>,
    ) -> Result<Tensor> {
        use candle_core::Module;
        let _enter = self.span.enter();
        let context = encoder_hidden_states.unwrap_or(hidden_states);
        let query = self.split_heads(&self.to_q.forward(hidden_states)?)?;
        let key = self.split_heads(&self.to_k.forward(context)?)?;
        let value = self.split_heads(&self.to_v.forward(context)?)?;
        let attended = match encoder_hidden_states {
            None => {
                let shared = super::attention_control::shared_query_key(&query, &key)?;
                let (query, key) = shared.unwrap_or((query, key));
                scaled_dot_product_attention(&query, &key, &value)?
            }
            Some(_) => {
                match super::attention_control::edited_cross_attention(&query, &key, &value)? {
                    Some(attended) => attended,
                    None => scaled_dot_product_attention(&query, &key, &value)?,
                }
            }
        }; // [b, heads, n, d]
        let (batch, heads, tokens, head_dim) = attended.dims4()?;
        let merged = attended
            .transpose(1, 2)?
            .reshape((batch, tokens, heads * head_dim))?;
        self.to_out.forward(&merged)
    }

    /// `to_q`, `to_k`, `to_v`, `to_out.0` under `prefix`.
    pub fn collect_linears<'a>(&'a mut self, prefix: &str, out: &mut NamedLinears<'a>) {
        out.push((join(prefix, "to_q"), &mut self.to_q));
        out.push((join(prefix, "to_k"), &mut self.to_k));
        out.push((join(prefix, "to_v"), &mut self.to_v));
        out.push((join(prefix, "to_out.0"), &mut self.to_out));
    }

    /// [b, n, heads * d] -> [b, heads, n, d]
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, tokens, inner) = xs.dims3()?;
        xs.reshape((batch, tokens, self.heads, inner / self.heads))?
            .transpose(1, 2)
    }
}

/// diffusers `GEGLU`: a linear projection to twice the width, one half gating the other
/// through the exact (erf) GELU.
#[derive(Debug, Clone)]
struct Geglu {
    proj: Linear,
}

impl Geglu {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        use candle_core::Module;
        // hidden · gelu_erf(gate) over the two halves, in one pass (huatu-kernels).
        huatu_kernels::geglu(&self.proj.forward(xs)?)
    }
}

/// diffusers `FeedForward` with `activation_fn="geglu"`: `net.0` (GEGLU), `net.2` (Linear).
#[derive(Debug, Clone)]
pub struct FeedForward {
    geglu: Geglu,
    out: Linear,
}

impl FeedForward {
    pub fn new(vb: candle_nn::VarBuilder, dim: usize, mult: usize) -> Result<Self> {
        let inner_dim = dim * mult;
        let proj = Linear::new(dim, inner_dim * 2, vb.pp("net.0.proj"))?;
        let out = Linear::new(inner_dim, dim, vb.pp("net.2"))?;
        Ok(Self {
            geglu: Geglu { proj },
            out,
        })
    }

    /// `net.0.proj` and `net.2` under `prefix`.
    pub fn collect_linears<'a>(&'a mut self, prefix: &str, out: &mut NamedLinears<'a>) {
        out.push((join(prefix, "net.0.proj"), &mut self.geglu.proj));
        out.push((join(prefix, "net.2"), &mut self.out));
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        use candle_core::Module;
        self.out.forward(&self.geglu.forward(xs)?)
    }
}

/// diffusers `BasicTransformerBlock` (attention.py) as configured by SDXL: layer-norm,
/// self-attention, layer-norm, cross-attention on the text embeddings, layer-norm, GEGLU
/// feed-forward, each with a residual connection.
#[derive(Debug, Clone)]
pub struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
    span: tracing::Span,
}

impl BasicTransformerBlock {
    pub fn new(
        vb: candle_nn::VarBuilder,
        dim: usize,
        num_attention_heads: usize,
        attention_head_dim: usize,
        cross_attention_dim: usize,
    ) -> Result<Self> {
        let norm = |name: &str| LayerNorm::new(dim, 1e-5, vb.pp(name));
        Ok(Self {
            norm1: norm("norm1")?,
            attn1: Attention::new(
                vb.pp("attn1"),
                dim,
                None,
                num_attention_heads,
                attention_head_dim,
            )?,
            norm2: norm("norm2")?,
            attn2: Attention::new(
                vb.pp("attn2"),
                dim,
                Some(cross_attention_dim),
                num_attention_heads,
                attention_head_dim,
            )?,
            norm3: norm("norm3")?,
            ff: FeedForward::new(vb.pp("ff"), dim, 4)?,
            span: tracing::trace_span!("basic_transformer_block"),
        })
    }

    /// The attention and feed-forward layers under `prefix` (`attn1.*`, `attn2.*`, `ff.*`).
    pub fn collect_linears<'a>(&'a mut self, prefix: &str, out: &mut NamedLinears<'a>) {
        self.attn1.collect_linears(&join(prefix, "attn1"), out);
        self.attn2.collect_linears(&join(prefix, "attn2"), out);
        self.ff.collect_linears(&join(prefix, "ff"), out);
    }

    /// hidden_states: [b, n, dim]; encoder_hidden_states: [b, 77·k, cross_attention_dim].
    pub fn forward(
        &self,
        hidden_states: &Tensor,
        encoder_hidden_states: &Tensor,
    ) -> Result<Tensor> {
        let _enter = self.span.enter();
        let xs = (self
            .attn1
            .forward(&self.norm1.forward(hidden_states)?, None)?
            + hidden_states)?;
        let xs = (self
            .attn2
            .forward(&self.norm2.forward(&xs)?, Some(encoder_hidden_states))?
            + &xs)?;
        self.ff.forward(&self.norm3.forward(&xs)?)? + &xs
    }
}
