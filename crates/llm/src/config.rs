//! The model's shape: transformers' `Qwen2Config` / `Qwen3Config` (config.json, where
//! transformers 5 writes the rotary base under `rope_parameters`), or the same numbers from
//! a GGUF file's `qwen2.*` / `qwen3.*` metadata.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde::Deserialize;

use crate::error::{LlmError, Result};

/// Qwen2 and Qwen2.5 share one architecture (q/k/v biases); Qwen3 drops the biases and
/// normalises each head's queries and keys (`q_norm`, `k_norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Qwen2,
    Qwen3,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QwenConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections with biases (Qwen2's; Qwen3's `attention_bias`, false by default).
    pub attention_bias: bool,
    /// Token ids that end an answer.
    pub eos_token_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Deserialize)]
struct ConfigFile {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    attention_bias: Option<bool>,
    eos_token_id: Option<TokenIds>,
}

impl QwenConfig {
    /// Reads a transformers config.json.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| LlmError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file: ConfigFile = serde_json::from_str(&text).map_err(|source| LlmError::Config {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |message: String| LlmError::BadModel {
            path: path.to_path_buf(),
            message,
        };
        let family = match file.model_type.as_str() {
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            other => {
                return Err(bad(format!(
                    "model_type `{other}` is not supported (qwen2 or qwen3: Qwen2, Qwen2.5, Qwen3)"
                )))
            }
        };
        let rope_theta = file
            .rope_theta
            .or(file.rope_parameters.and_then(|p| p.rope_theta))
            .unwrap_or(10_000.0);
        let eos_token_ids = match file.eos_token_id {
            Some(TokenIds::One(id)) => vec![id],
            Some(TokenIds::Many(ids)) => ids,
            None => Vec::new(),
        };
        let config = Self {
            family,
            vocab_size: file.vocab_size,
            hidden_size: file.hidden_size,
            intermediate_size: file.intermediate_size,
            num_hidden_layers: file.num_hidden_layers,
            num_attention_heads: file.num_attention_heads,
            num_key_value_heads: file.num_key_value_heads.unwrap_or(file.num_attention_heads),
            head_dim: file
                .head_dim
                .unwrap_or(file.hidden_size / file.num_attention_heads.max(1)),
            rms_norm_eps: file.rms_norm_eps,
            rope_theta,
            max_position_embeddings: file.max_position_embeddings,
            tie_word_embeddings: file.tie_word_embeddings,
            attention_bias: file.attention_bias.unwrap_or(family == Family::Qwen2),
            eos_token_ids,
        };
        config.check().map_err(bad)?;
        Ok(config)
    }

    /// Reads the `<arch>.*` metadata of a GGUF file (llama.cpp's names).
    pub fn from_gguf(path: &Path, metadata: &HashMap<String, Value>) -> Result<Self> {
        let bad = |message: String| LlmError::BadModel {
            path: path.to_path_buf(),
            message,
        };
        let arch = metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .cloned()
            .unwrap_or_default();
        let family = match arch.as_str() {
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            other => {
                return Err(bad(format!(
                    "general.architecture `{other}` is not supported (qwen2 or qwen3)"
                )))
            }
        };
        let number = |key: &str| -> Result<f64> {
            let value = metadata
                .get(&format!("{arch}.{key}"))
                .ok_or_else(|| bad(format!("metadata `{arch}.{key}` is missing")))?;
            value
                .to_u32()
                .map(f64::from)
                .or_else(|_| value.to_u64().map(|v| v as f64))
                .or_else(|_| value.to_f32().map(f64::from))
                .or_else(|_| value.to_f64())
                .map_err(|_| bad(format!("metadata `{arch}.{key}` is not a number")))
        };
        let heads = number("attention.head_count")? as usize;
        let hidden = number("embedding_length")? as usize;
        let head_dim = match number("attention.key_length") {
            Ok(length) => length as usize,
            Err(_) => hidden / heads.max(1),
        };
        let eos_token_ids = metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
            .into_iter()
            .collect();
        let config = Self {
            family,
            // Filled in from the embedding's rows by the loader.
            vocab_size: 0,
            hidden_size: hidden,
            intermediate_size: number("feed_forward_length")? as usize,
            num_hidden_layers: number("block_count")? as usize,
            num_attention_heads: heads,
            num_key_value_heads: number("attention.head_count_kv")? as usize,
            head_dim,
            rms_norm_eps: number("attention.layer_norm_rms_epsilon")?,
            rope_theta: number("rope.freq_base").unwrap_or(10_000.0),
            max_position_embeddings: number("context_length")? as usize,
            tie_word_embeddings: false,
            attention_bias: family == Family::Qwen2,
            eos_token_ids,
        };
        Ok(config)
    }

    /// The shape rules the model relies on.
    pub fn check(&self) -> std::result::Result<(), String> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} must be even (rotary)", self.head_dim));
        }
        Ok(())
    }
}
