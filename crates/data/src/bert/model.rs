//! A bidirectional BERT encoder without pooler: transformers' `ChineseCLIPTextModel(config,
//! add_pooling_layer=False)` and `ChineseCLIPTextConfig`
//! (models/chinese_clip/modeling_chinese_clip.py, configuration_chinese_clip.py), which is
//! `BertModel` under another name.
//!
//! Embeddings (word + token type + position, LayerNorm), then per layer self-attention
//! over every unpadded token and the feed-forward block; the output is
//! `last_hidden_state`. Padding is masked as `create_bidirectional_mask` does: padded keys
//! get the dtype's minimum added to their scores.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use huatu_diffusion::models::clip_text::ClipActivation;
use serde::Deserialize;

use super::layers::{BertAttention, BertEmbeddings, BertFeedForward};

/// `ChineseCLIPTextConfig`; keys missing from config.json take transformers' defaults.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub hidden_act: ClipActivation,
    pub layer_norm_eps: f64,
    pub pad_token_id: Option<u32>,
}

impl Default for BertConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30522,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            hidden_act: ClipActivation::Gelu,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(0),
        }
    }
}

/// `BertLayer` without cross-attention.
#[derive(Debug, Clone)]
struct BertLayer {
    attention: BertAttention,
    feed_forward: BertFeedForward,
    span: tracing::Span,
}

impl BertLayer {
    fn new(vb: VarBuilder, config: &BertConfig, index: usize) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        Ok(Self {
            attention: BertAttention::new(
                vb.pp("attention"),
                hidden,
                hidden,
                config.num_attention_heads,
                eps,
            )?,
            feed_forward: BertFeedForward::new(
                vb,
                hidden,
                config.intermediate_size,
                config.hidden_act,
                eps,
            )?,
            span: tracing::trace_span!("bert_layer", index),
        })
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let _enter = self.span.enter();
        let attended = self.attention.self_attention(xs, mask)?;
        self.feed_forward.forward(&attended)
    }
}

/// transformers' `ChineseCLIPTextModel` without pooler (the `text_model` of
/// `ChineseCLIPModel`).
#[derive(Debug, Clone)]
pub struct BertModel {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    config: BertConfig,
    span: tracing::Span,
}

impl BertModel {
    /// Weights keyed `embeddings.…` and `encoder.layer.N.…`.
    pub fn new(vb: VarBuilder, config: &BertConfig) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        if config.num_attention_heads == 0 || !hidden.is_multiple_of(config.num_attention_heads) {
            return Err(candle_core::Error::Msg(format!(
                "BERT config: hidden_size ({hidden}) must be a multiple of num_attention_heads ({})",
                config.num_attention_heads
            )));
        }
        let layers_vb = vb.pp("encoder.layer");
        let layers = (0..config.num_hidden_layers)
            .map(|index| BertLayer::new(layers_vb.pp(index), config, index))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: BertEmbeddings::new(
                vb.pp("embeddings"),
                config.vocab_size,
                hidden,
                config.max_position_embeddings,
                Some(config.type_vocab_size),
                config.layer_norm_eps,
            )?,
            layers,
            config: config.clone(),
            span: tracing::trace_span!("bert_model"),
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// input_ids: [b, t]; attention_mask: [b, t], 1 for tokens and 0 for padding (none: no
    /// padding); token_type_ids: [b, t] (none: all zeros) -> `last_hidden_state`
    /// [b, t, hidden].
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        token_type_ids: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let _enter = self.span.enter();
        let (batch, length) = input_ids.dims2()?;
        if length > self.config.max_position_embeddings {
            return Err(candle_core::Error::Msg(format!(
                "the BERT text model takes at most {} tokens (max_position_embeddings), got {length}",
                self.config.max_position_embeddings
            )));
        }
        // [b, t, hidden]
        let mut hidden_states = self.embeddings.forward(input_ids, token_type_ids, 0)?;
        // [b, 1, 1, t]: 0 where a key is a token, the f32 minimum where it is padding
        let mask = attention_mask
            .map(|mask| -> candle_core::Result<Tensor> {
                let minimum = f64::from(f32::MIN);
                // (1 - mask) · min
                mask.to_dtype(DType::F32)?
                    .affine(-minimum, minimum)?
                    .reshape((batch, 1, 1, length))
            })
            .transpose()?;
        for layer in &self.layers {
            hidden_states = layer.forward(&hidden_states, mask.as_ref())?;
        }
        Ok(hidden_states)
    }
}
