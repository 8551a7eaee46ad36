//! BERT's building blocks under transformers' key names (models/bert/modeling_bert.py, and
//! the copies of it in BLIP's text model and Chinese-CLIP's text tower): the embeddings,
//! the attention block (`self.query/key/value` then `output.dense` + `output.LayerNorm`
//! over the residual) and the feed-forward block (`intermediate.dense`, activation,
//! `output.dense` + `output.LayerNorm` over the residual). All post-norm.
//!
//! The attention takes its keys and values as arguments, so one block serves
//! bidirectional self-attention (Chinese-CLIP), causal self-attention with a key/value
//! cache and cross-attention to image embeddings (BLIP's decoder).

use candle_core::{Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use huatu_diffusion::models::clip_text::ClipActivation;

/// `hidden_act` applied as transformers' `ACT2FN` does.
pub(crate) fn activation(act: ClipActivation, xs: &Tensor) -> candle_core::Result<Tensor> {
    match act {
        ClipActivation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
        ClipActivation::Gelu => xs.gelu_erf(),
        ClipActivation::GeluTanh => xs.gelu(),
        ClipActivation::Relu => xs.relu(),
        ClipActivation::Silu => xs.silu(),
    }
}

/// [b, t, hidden] -> [b, heads, t, hidden / heads]
fn split_heads(xs: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (batch, length, hidden) = xs.dims3()?;
    xs.reshape((batch, length, heads, hidden / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// `BertEmbeddings`: word + token type (where the model has them) + absolute position
/// embeddings, then `LayerNorm`.
#[derive(Debug, Clone)]
pub struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Option<Embedding>,
    layer_norm: LayerNorm,
}

impl BertEmbeddings {
    /// Weights keyed `word_embeddings`, `position_embeddings`, `token_type_embeddings`
    /// (read when `type_vocab_size` is given; BLIP has none) and `LayerNorm`.
    pub fn new(
        vb: VarBuilder,
        vocab_size: usize,
        hidden_size: usize,
        max_position_embeddings: usize,
        type_vocab_size: Option<usize>,
        layer_norm_eps: f64,
    ) -> candle_core::Result<Self> {
        let token_type_embeddings = type_vocab_size
            .map(|types| candle_nn::embedding(types, hidden_size, vb.pp("token_type_embeddings")))
            .transpose()?;
        Ok(Self {
            word_embeddings: candle_nn::embedding(
                vocab_size,
                hidden_size,
                vb.pp("word_embeddings"),
            )?,
            position_embeddings: candle_nn::embedding(
                max_position_embeddings,
                hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_type_embeddings,
            layer_norm: candle_nn::layer_norm(hidden_size, layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    pub fn word_embeddings(&self) -> &Embedding {
        &self.word_embeddings
    }

    /// input_ids: [b, t] at positions `past..past + t`; token_type_ids: [b, t], or none
    /// for all zeros (the buffer transformers falls back to) -> [b, t, hidden].
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        past: usize,
    ) -> candle_core::Result<Tensor> {
        let length = input_ids.dim(1)?;
        let mut embeddings = self.word_embeddings.forward(input_ids)?;
        if let Some(token_types) = &self.token_type_embeddings {
            embeddings = match token_type_ids {
                Some(ids) => (embeddings + token_types.forward(ids)?)?,
                None => embeddings.broadcast_add(&token_types.embeddings().narrow(0, 0, 1)?)?,
            };
        }
        let positions = Tensor::arange(past as u32, (past + length) as u32, input_ids.device())?;
        let embeddings =
            embeddings.broadcast_add(&self.position_embeddings.forward(&positions)?)?;
        self.layer_norm.forward(&embeddings)
    }
}

/// `BertAttention`: `self` (query/key/value) and `output` (dense, LayerNorm).
#[derive(Debug, Clone)]
pub struct BertAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    layer_norm: LayerNorm,
    heads: usize,
}

impl BertAttention {
    /// Weights keyed `self.{query,key,value}`, `output.dense`, `output.LayerNorm`; keys and
    /// values are computed from states of `key_size` (the image's for cross-attention).
    pub fn new(
        vb: VarBuilder,
        hidden_size: usize,
        key_size: usize,
        heads: usize,
        layer_norm_eps: f64,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            query: candle_nn::linear(hidden_size, hidden_size, vb.pp("self.query"))?,
            key: candle_nn::linear(key_size, hidden_size, vb.pp("self.key"))?,
            value: candle_nn::linear(key_size, hidden_size, vb.pp("self.value"))?,
            dense: candle_nn::linear(hidden_size, hidden_size, vb.pp("output.dense"))?,
            layer_norm: candle_nn::layer_norm(
                hidden_size,
                layer_norm_eps,
                vb.pp("output.LayerNorm"),
            )?,
            heads,
        })
    }

    /// Keys and values of `states`: ([b, heads, s, d], [b, heads, s, d]).
    pub fn key_value(&self, states: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        Ok((
            split_heads(&self.key.forward(states)?, self.heads)?,
            split_heads(&self.value.forward(states)?, self.heads)?,
        ))
    }

    /// xs: [b, t, hidden]; key, value: [b, heads, s, d]; mask: added to the [b, heads, t, s]
    /// scores (broadcast: [t, s] causal, [b, 1, 1, s] padding) -> [b, t, hidden].
    pub fn forward(
        &self,
        xs: &Tensor,
        key: &Tensor,
        value: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (batch, length, hidden) = xs.dims3()?;
        let head_dim = hidden / self.heads;
        let query = split_heads(&self.query.forward(xs)?, self.heads)?;
        let mut scores = (query.matmul(&key.t()?)? / (head_dim as f64).sqrt())?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(value)? // [b, heads, t, d]
            .transpose(1, 2)?
            .reshape((batch, length, hidden))?;
        self.layer_norm
            .forward(&(self.dense.forward(&context)? + xs)?)
    }

    /// Self-attention of `xs` [b, t, hidden] over itself.
    pub fn self_attention(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (key, value) = self.key_value(xs)?;
        self.forward(xs, &key, &value, mask)
    }
}

/// `BertIntermediate` + `BertOutput`: the feed-forward block of a layer.
#[derive(Debug, Clone)]
pub struct BertFeedForward {
    intermediate: Linear,
    output: Linear,
    layer_norm: LayerNorm,
    act: ClipActivation,
}

impl BertFeedForward {
    /// Weights keyed `intermediate.dense`, `output.dense`, `output.LayerNorm` (of the layer).
    pub fn new(
        vb: VarBuilder,
        hidden_size: usize,
        intermediate_size: usize,
        act: ClipActivation,
        layer_norm_eps: f64,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            intermediate: candle_nn::linear(
                hidden_size,
                intermediate_size,
                vb.pp("intermediate.dense"),
            )?,
            output: candle_nn::linear(intermediate_size, hidden_size, vb.pp("output.dense"))?,
            layer_norm: candle_nn::layer_norm(
                hidden_size,
                layer_norm_eps,
                vb.pp("output.LayerNorm"),
            )?,
            act,
        })
    }

    /// xs: [b, t, hidden] -> `LayerNorm(output(act(intermediate(xs))) + xs)`.
    pub fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let intermediate = activation(self.act, &self.intermediate.forward(xs)?)?;
        self.layer_norm
            .forward(&(self.output.forward(&intermediate)? + xs)?)
    }
}
