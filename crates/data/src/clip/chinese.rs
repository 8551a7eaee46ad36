//! Chinese-CLIP's own parts of [`super::ClipModel`]: transformers' `ChineseCLIPConfig`
//! (models/chinese_clip/configuration_chinese_clip.py) and the text half of
//! `ChineseCLIPModel.get_text_features` (modeling_chinese_clip.py).
//!
//! The vision tower, its projection and the image processor are CLIP's as they are
//! (`ChineseCLIPVisionModel` is `CLIPVisionTransformer` under the same keys;
//! `ChineseCLIPImageProcessor` is `CLIPImageProcessor` with the same defaults — the OFA-Sys
//! folders set `size` to height/width, an exact resize, and no crop). The text tower is a
//! BERT ([`crate::bert::BertModel`], no pooler) whose `[CLS]` state of `last_hidden_state`
//! goes through `text_projection` (no bias); the tokenizer is `BertTokenizer`.

use candle_core::{IndexOp, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use huatu_diffusion::models::clip_text::ClipTextConfig;
use serde::Deserialize;
use serde_json::Value;

use super::{ClipConfig, ClipVisionConfig};
use crate::bert::{BertConfig, BertModel, BertTokenizer};

/// `ChineseCLIPConfig`: the BERT text config, the CLIP vision config, the shared size.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ChineseClipConfig {
    #[serde(default)]
    pub text_config: BertConfig,
    #[serde(default)]
    pub vision_config: ClipVisionConfig,
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
}

fn default_projection_dim() -> usize {
    512
}

/// Whether config.json describes a `ChineseCLIPModel` (`model_type` "chinese_clip", or the
/// architecture's name).
pub fn is_chinese_clip(config: &Value) -> bool {
    config["model_type"] == "chinese_clip"
        || config["architectures"]
            .as_array()
            .is_some_and(|names| names.iter().any(|name| name == "ChineseCLIPModel"))
}

impl ChineseClipConfig {
    /// Parses config.json; `text_config_dict` / `vision_config_dict` (older files) are laid
    /// over `text_config` / `vision_config` as `ChineseCLIPConfig.__post_init__` does.
    pub fn from_json(config: &Value) -> serde_json::Result<Self> {
        let mut merged = config.clone();
        for key in ["text_config", "vision_config"] {
            if let Some(Value::Object(overrides)) = config.get(format!("{key}_dict")) {
                let mut part = match config.get(key) {
                    Some(Value::Object(part)) => part.clone(),
                    _ => serde_json::Map::new(),
                };
                part.extend(overrides.clone());
                merged[key] = Value::Object(part);
            }
        }
        serde_json::from_value(merged)
    }

    /// The configuration in CLIP's terms, what [`super::ClipModel::config`] shows: the
    /// vision config and `projection_dim` as they are, and the BERT tower's sizes as a
    /// `ClipTextConfig` (its `[CLS]` as bos, its `[SEP]` as eos).
    pub fn clip_view(&self, tokenizer: &BertTokenizer) -> ClipConfig {
        let text = &self.text_config;
        ClipConfig {
            text_config: ClipTextConfig {
                vocab_size: text.vocab_size,
                hidden_size: text.hidden_size,
                intermediate_size: text.intermediate_size,
                projection_dim: Some(self.projection_dim),
                num_hidden_layers: text.num_hidden_layers,
                num_attention_heads: text.num_attention_heads,
                max_position_embeddings: text.max_position_embeddings,
                hidden_act: text.hidden_act,
                layer_norm_eps: text.layer_norm_eps,
                pad_token_id: Some(tokenizer.pad_token_id()),
                bos_token_id: Some(tokenizer.cls_token_id()),
                eos_token_id: tokenizer.sep_token_id(),
            },
            vision_config: self.vision_config.clone(),
            projection_dim: self.projection_dim,
        }
    }
}

/// `ChineseCLIPModel`'s `text_model` and `text_projection`.
#[derive(Debug, Clone)]
pub struct ChineseClipTextModel {
    text_model: BertModel,
    text_projection: Linear,
    span: tracing::Span,
}

impl ChineseClipTextModel {
    /// Weights keyed `text_model.…` and `text_projection` (a `ChineseCLIPModel` file).
    pub fn new(vb: VarBuilder, config: &ChineseClipConfig) -> candle_core::Result<Self> {
        Ok(Self {
            text_model: BertModel::new(vb.pp("text_model"), &config.text_config)?,
            text_projection: candle_nn::linear_no_bias(
                config.text_config.hidden_size,
                config.projection_dim,
                vb.pp("text_projection"),
            )?,
            span: tracing::trace_span!("chinese_clip_text_model"),
        })
    }

    /// `get_text_features(input_ids, attention_mask).pooler_output`: the projected `[CLS]`
    /// state of `last_hidden_state` (not BERT's pooler), [b, projection_dim].
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let _enter = self.span.enter();
        // token_type_ids: all zeros for single texts, as the tokenizer makes them
        let last_hidden_state = self.text_model.forward(input_ids, attention_mask, None)?; // [b, t, hidden]
        let class_state = last_hidden_state.i((.., 0, ..))?.contiguous()?; // [b, hidden]
        self.text_projection.forward(&class_state)
    }
}
