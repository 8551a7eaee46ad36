//! BLIP's text decoder: transformers' `BlipTextLMHeadModel` and `BlipTextConfig`
//! (models/blip/modeling_blip_text.py, configuration_blip.py), with a key/value cache.
//!
//! A BERT decoder (its blocks shared with Chinese-CLIP's text tower, [`crate::bert::layers`]):
//! word + position embeddings → `LayerNorm`; per layer causal self-attention,
//! cross-attention to the image embeddings and the feed-forward block, each post-norm
//! (`LayerNorm(dense(x) + residual)`); then the LM head
//! (`cls.predictions.transform`: dense, activation, LayerNorm; `cls.predictions.decoder`,
//! tied to the word embeddings unless the file carries its own weight).
//!
//! The cache holds each layer's self-attention keys and values of the tokens seen so far
//! and the cross-attention keys and values of the image, computed once (transformers'
//! `EncoderDecoderCache`); beam search reorders the self-attention part.

use candle_core::{DType, Module, Tensor};
use candle_nn::{LayerNorm, Linear, VarBuilder};
use huatu_diffusion::models::clip_text::ClipActivation;
use serde::Deserialize;

use crate::bert::layers::{activation, BertAttention, BertEmbeddings, BertFeedForward};

/// `BlipTextConfig`; keys missing from config.json take transformers' defaults.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct BlipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Set from the vision tower's `hidden_size` by `BlipConfig`.
    pub encoder_hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: ClipActivation,
    pub layer_norm_eps: f64,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
    pub pad_token_id: u32,
    pub sep_token_id: u32,
}

impl Default for BlipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 512,
            hidden_act: ClipActivation::Gelu,
            layer_norm_eps: 1e-12,
            bos_token_id: 30522,
            eos_token_id: 2,
            pad_token_id: 0,
            sep_token_id: 102,
        }
    }
}

/// One layer's cached keys and values, [b, heads, t, head_dim].
#[derive(Debug, Clone)]
struct LayerCache {
    self_key: Option<Tensor>,
    self_value: Option<Tensor>,
    cross_key: Tensor,
    cross_value: Tensor,
}

/// The decoder's key/value cache for one batch of sequences.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    layers: Vec<LayerCache>,
    length: usize,
}

impl DecoderCache {
    /// Tokens seen so far (the position of the next one).
    pub fn len(&self) -> usize {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Each row repeated `times` times in place (`repeat_interleave`), before any token:
    /// beam search's rows of one image share its cross-attention keys and values, which
    /// are so computed once per image rather than once per beam.
    pub fn repeat_rows(&mut self, times: usize) -> candle_core::Result<()> {
        let repeat = |xs: &Tensor| -> candle_core::Result<Tensor> {
            let (batch, heads, length, head_dim) = xs.dims4()?;
            xs.unsqueeze(1)?
                .broadcast_as((batch, times, heads, length, head_dim))?
                .reshape((batch * times, heads, length, head_dim))
        };
        for layer in &mut self.layers {
            if layer.self_key.is_some() {
                return Err(candle_core::Error::Msg(
                    "repeat_rows needs an empty cache".into(),
                ));
            }
            layer.cross_key = repeat(&layer.cross_key)?;
            layer.cross_value = repeat(&layer.cross_value)?;
        }
        Ok(())
    }

    /// Keeps row `indices[i]` of the self-attention cache as row `i` (beam search's
    /// `reorder_cache`). Beams never move between images, so the cross-attention part
    /// stays as it is.
    pub fn reorder(&mut self, indices: &Tensor) -> candle_core::Result<()> {
        for layer in &mut self.layers {
            if let (Some(key), Some(value)) = (&layer.self_key, &layer.self_value) {
                layer.self_key = Some(key.index_select(indices, 0)?);
                layer.self_value = Some(value.index_select(indices, 0)?);
            }
        }
        Ok(())
    }
}

/// `BlipTextLayer`: self-attention, cross-attention, intermediate/output.
#[derive(Debug, Clone)]
struct BlipTextLayer {
    attention: BertAttention,
    crossattention: BertAttention,
    feed_forward: BertFeedForward,
}

impl BlipTextLayer {
    fn new(vb: VarBuilder, config: &BlipTextConfig) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        let eps = config.layer_norm_eps;
        Ok(Self {
            attention: BertAttention::new(vb.pp("attention"), hidden, hidden, heads, eps)?,
            crossattention: BertAttention::new(
                vb.pp("crossattention"),
                hidden,
                config.encoder_hidden_size,
                heads,
                eps,
            )?,
            feed_forward: BertFeedForward::new(
                vb,
                hidden,
                config.intermediate_size,
                config.hidden_act,
                eps,
            )?,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        cache: &mut LayerCache,
        mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let (new_key, new_value) = self.attention.key_value(xs)?;
        let (key, value) = match (&cache.self_key, &cache.self_value) {
            (Some(key), Some(value)) => (
                Tensor::cat(&[key, &new_key], 2)?,
                Tensor::cat(&[value, &new_value], 2)?,
            ),
            _ => (new_key, new_value),
        };
        let attention_output = self.attention.forward(xs, &key, &value, mask)?;
        cache.self_key = Some(key);
        cache.self_value = Some(value);
        let attention_output = self.crossattention.forward(
            &attention_output,
            &cache.cross_key,
            &cache.cross_value,
            None,
        )?;
        self.feed_forward.forward(&attention_output)
    }
}

/// transformers' `BlipTextLMHeadModel` (the `text_decoder` of
/// `BlipForConditionalGeneration`).
#[derive(Debug, Clone)]
pub struct BlipTextLMHeadModel {
    embeddings: BertEmbeddings,
    layers: Vec<BlipTextLayer>,
    transform_dense: Linear,
    transform_layer_norm: LayerNorm,
    decoder: Linear,
    config: BlipTextConfig,
    span: tracing::Span,
}

impl BlipTextLMHeadModel {
    /// Weights keyed `bert.embeddings.…`, `bert.encoder.layer.N.…`, `cls.predictions.…`.
    pub fn new(vb: VarBuilder, config: &BlipTextConfig) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        if config.num_attention_heads == 0 || !hidden.is_multiple_of(config.num_attention_heads) {
            return Err(candle_core::Error::Msg(format!(
                "BLIP text config: hidden_size ({hidden}) must be a multiple of num_attention_heads ({})",
                config.num_attention_heads
            )));
        }
        let eps = config.layer_norm_eps;
        let bert = vb.pp("bert");
        let embeddings = BertEmbeddings::new(
            bert.pp("embeddings"),
            config.vocab_size,
            hidden,
            config.max_position_embeddings,
            None,
            eps,
        )?;
        let layers_vb = bert.pp("encoder.layer");
        let layers = (0..config.num_hidden_layers)
            .map(|index| BlipTextLayer::new(layers_vb.pp(index), config))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let predictions = vb.pp("cls.predictions");
        // tied to the word embeddings unless the file has its own (tie_word_embeddings)
        let decoder_weight = if predictions.contains_tensor("decoder.weight") {
            predictions.get((config.vocab_size, hidden), "decoder.weight")?
        } else {
            embeddings.word_embeddings().embeddings().clone()
        };
        let decoder_bias = if predictions.contains_tensor("decoder.bias") {
            predictions.get(config.vocab_size, "decoder.bias")?
        } else {
            predictions.get(config.vocab_size, "bias")?
        };
        Ok(Self {
            embeddings,
            layers,
            transform_dense: candle_nn::linear(hidden, hidden, predictions.pp("transform.dense"))?,
            transform_layer_norm: candle_nn::layer_norm(
                hidden,
                eps,
                predictions.pp("transform.LayerNorm"),
            )?,
            decoder: Linear::new(decoder_weight, Some(decoder_bias)),
            config: config.clone(),
            span: tracing::trace_span!("blip_text_lm_head_model"),
        })
    }

    pub fn config(&self) -> &BlipTextConfig {
        &self.config
    }

    /// An empty cache for a batch whose rows cross-attend to `image_embeds`
    /// [b, patches + 1, encoder_hidden].
    pub fn new_cache(&self, image_embeds: &Tensor) -> candle_core::Result<DecoderCache> {
        let layers = self
            .layers
            .iter()
            .map(|layer| {
                let (cross_key, cross_value) = layer.crossattention.key_value(image_embeds)?;
                Ok(LayerCache {
                    self_key: None,
                    self_value: None,
                    cross_key,
                    cross_value,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(DecoderCache { layers, length: 0 })
    }

    /// input_ids: [b, t] (the tokens after those in `cache`) -> the logits of the last
    /// position, [b, vocab]; the cache grows by t.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        cache: &mut DecoderCache,
    ) -> candle_core::Result<Tensor> {
        let _enter = self.span.enter();
        let (_, length) = input_ids.dims2()?;
        let past = cache.length;
        if past + length > self.config.max_position_embeddings {
            return Err(candle_core::Error::Msg(format!(
                "BLIP captions are limited to {} tokens (max_position_embeddings), asked for {}",
                self.config.max_position_embeddings,
                past + length
            )));
        }
        let mut hidden_states = self.embeddings.forward(input_ids, None, past)?; // [b, t, hidden]
        let mask = causal_mask(length, past, input_ids.device())?;
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            hidden_states = layer.forward(&hidden_states, layer_cache, mask.as_ref())?;
        }
        cache.length = past + length;
        let last = hidden_states.narrow(1, length - 1, 1)?.squeeze(1)?; // [b, hidden]
        let transformed = activation(
            self.config.hidden_act,
            &self.transform_dense.forward(&last)?,
        )?;
        let transformed = self.transform_layer_norm.forward(&transformed)?;
        self.decoder.forward(&transformed)
    }
}

/// [t, past + t]: 0 where query i may see key j (j ≤ past + i), -inf elsewhere; `None`
/// for a single new token, which sees everything.
fn causal_mask(
    length: usize,
    past: usize,
    device: &candle_core::Device,
) -> candle_core::Result<Option<Tensor>> {
    if length <= 1 {
        return Ok(None);
    }
    let total = past + length;
    let values: Vec<f32> = (0..length)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j <= past + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Ok(Some(
        Tensor::from_vec(values, (length, total), device)?.to_dtype(DType::F32)?,
    ))
}

#[cfg(test)]
#[path = "text_decoder_tests.rs"]
mod tests;
