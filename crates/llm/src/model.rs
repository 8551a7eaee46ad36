//! The decoder, after transformers' `Qwen2Model`/`Qwen3Model` + `*ForCausalLM`: token
//! embedding → layers of (RMSNorm → grouped-query attention with rotary positions →
//! residual, RMSNorm → SwiGLU MLP → residual) → RMSNorm → LM head. Qwen3 adds a per-head
//! RMSNorm on queries and keys before the rotation. Matrices are `QMatMul`s, so dense
//! (safetensors, GGUF f32/f16) and quantized (GGUF q8_0, q4_k …) weights run the same code.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Tensor};

use crate::config::{Family, QwenConfig};
use crate::error::Result;

/// A projection `x Wᵀ + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: QMatMul,
    pub bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let ys = self.weight.forward(xs)?;
        Ok(match &self.bias {
            Some(bias) => ys.broadcast_add(bias)?,
            None => ys,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    /// Qwen3's per-head RMSNorm weights ([head_dim]).
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
}

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub input_layernorm: Tensor,
    pub self_attn: Attention,
    pub post_attention_layernorm: Tensor,
    pub mlp: Mlp,
}

/// The keys and values of the tokens read so far, per layer ([1, kv_heads, seen, head_dim]).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    seen: usize,
}

impl KvCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens the cache holds (the position of the next one).
    pub fn len(&self) -> usize {
        self.seen
    }

    pub fn is_empty(&self) -> bool {
        self.seen == 0
    }
}

#[derive(Debug, Clone)]
pub struct QwenModel {
    pub config: QwenConfig,
    /// [vocab, hidden], f32.
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: Tensor,
    pub lm_head: QMatMul,
    /// [max_positions, head_dim / 2] rotary tables.
    cos: Tensor,
    sin: Tensor,
    pub device: Device,
}

impl QwenModel {
    pub fn new(
        config: QwenConfig,
        embed_tokens: Tensor,
        layers: Vec<DecoderLayer>,
        norm: Tensor,
        lm_head: QMatMul,
        device: &Device,
    ) -> Result<Self> {
        let (cos, sin) = rotary_tables(&config, device)?;
        Ok(Self {
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            device: device.clone(),
        })
    }

    /// Reads `ids` after what `cache` holds and appends them to it. Returns the logits
    /// ([tokens, vocab], f32) of every position, or of the last one only when `all` is false.
    pub fn forward(&self, ids: &[u32], cache: &mut KvCache, all: bool) -> Result<Tensor> {
        let offset = cache.seen;
        let tokens = ids.len();
        if offset + tokens > self.config.max_position_embeddings {
            return Err(crate::LlmError::PromptTooLong {
                tokens: offset + tokens,
                limit: self.config.max_position_embeddings,
            });
        }
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![None; self.layers.len()];
        }
        let ids_tensor = Tensor::new(ids, &self.device)?;
        let mut xs = self
            .embed_tokens
            .index_select(&ids_tensor, 0)?
            .unsqueeze(0)?;
        let cos = self.cos.narrow(0, offset, tokens)?;
        let sin = self.sin.narrow(0, offset, tokens)?;
        let mask = causal_mask(tokens, offset, &self.device)?;
        let eps = self.config.rms_norm_eps as f32;
        for (layer, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let normed = candle_nn::ops::rms_norm(&xs, &layer.input_layernorm, eps)?;
            let attended =
                self.attention(&layer.self_attn, &normed, &cos, &sin, mask.as_ref(), slot)?;
            xs = (xs + attended)?;
            let normed = candle_nn::ops::rms_norm(&xs, &layer.post_attention_layernorm, eps)?;
            let mlp = &layer.mlp;
            let gate = candle_nn::ops::silu(&mlp.gate_proj.forward(&normed)?)?;
            let hidden = (gate * mlp.up_proj.forward(&normed)?)?;
            xs = (xs + mlp.down_proj.forward(&hidden)?)?;
        }
        cache.seen += tokens;
        let xs = if all {
            xs
        } else {
            xs.narrow(1, tokens - 1, 1)?
        };
        let xs = candle_nn::ops::rms_norm(&xs, &self.norm, eps)?;
        Ok(self
            .lm_head
            .forward(&xs)?
            .squeeze(0)?
            .to_dtype(DType::F32)?)
    }

    fn attention(
        &self,
        attention: &Attention,
        xs: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut Option<(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let config = &self.config;
        let (batch, tokens, _) = xs.dims3()?;
        let (heads, kv_heads, head_dim) = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
        );
        let eps = config.rms_norm_eps as f32;
        let split = |ys: Tensor, count: usize, norm: Option<&Tensor>| -> Result<Tensor> {
            let ys = ys.reshape((batch, tokens, count, head_dim))?;
            let ys = match norm {
                Some(weight) => candle_nn::ops::rms_norm(&ys.contiguous()?, weight, eps)?,
                None => ys,
            };
            Ok(ys.transpose(1, 2)?.contiguous()?)
        };
        let q = split(
            attention.q_proj.forward(xs)?,
            heads,
            attention.q_norm.as_ref(),
        )?;
        let k = split(
            attention.k_proj.forward(xs)?,
            kv_heads,
            attention.k_norm.as_ref(),
        )?;
        let v = split(attention.v_proj.forward(xs)?, kv_heads, None)?;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        let (k, v) = match cache.take() {
            Some((past_k, past_v)) => (
                Tensor::cat(&[&past_k, &k], 2)?,
                Tensor::cat(&[&past_v, &v], 2)?,
            ),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        let groups = heads / kv_heads;
        let k = repeat_kv(&k, groups)?;
        let v = repeat_kv(&v, groups)?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = match mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let probabilities = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probabilities.matmul(&v)?.transpose(1, 2)?.reshape((
            batch,
            tokens,
            heads * head_dim,
        ))?;
        attention.o_proj.forward(&out)
    }
}

/// transformers' `repeat_kv`: each key/value head serves `groups` query heads in turn.
fn repeat_kv(xs: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(xs.clone());
    }
    let (batch, kv_heads, seen, head_dim) = xs.dims4()?;
    Ok(xs
        .unsqueeze(2)?
        .expand((batch, kv_heads, groups, seen, head_dim))?
        .reshape((batch, kv_heads * groups, seen, head_dim))?)
}

/// −∞ above the diagonal for `tokens` new queries after `offset` cached ones; none for one
/// token (it may see everything).
fn causal_mask(tokens: usize, offset: usize, device: &Device) -> Result<Option<Tensor>> {
    if tokens == 1 {
        return Ok(None);
    }
    let total = offset + tokens;
    let values: Vec<f32> = (0..tokens)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Some(Tensor::from_vec(values, (tokens, total), device)?))
}

/// transformers' default rotary tables in f32: `inv_freq = 1 / θ^(2i/d)`, angle = position ×
/// inv_freq; the halves layout (`rotate_half`) that `candle_nn::rotary_emb::rope` applies.
fn rotary_tables(config: &QwenConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let dim = config.head_dim;
    let theta = config.rope_theta as f32;
    let inv_freq: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / theta.powf(i as f32 / dim as f32))
        .collect();
    let positions = config.max_position_embeddings;
    let angles: Vec<f32> = (0..positions)
        .flat_map(|p| inv_freq.iter().map(move |f| p as f32 * f))
        .collect();
    let angles = Tensor::from_vec(angles, (positions, dim / 2), device)?;
    Ok((angles.cos()?, angles.sin()?))
}

impl Family {
    /// Whether queries and keys get a per-head RMSNorm.
    pub fn has_qk_norm(self) -> bool {
        self == Family::Qwen3
    }
}
