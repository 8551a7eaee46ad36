//! A BERT encoder on candle that loads Hugging Face checkpoints (bert-base-chinese
//! layout) and trains from scratch.
//!
//! Mirrors transformers' `BertModel` (models/bert/modeling_bert.py): embeddings (word +
//! position + token type, LayerNorm), post-norm encoder layers with erf GELU, and the
//! tanh pooler over the first token. Tensor names are transformers' names under the
//! `bert.` prefix that `BertFor*` heads use. Layer norm and softmax are written with
//! differentiable ops because candle's fused kernels have no backward pass.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

/// transformers' `BertConfig`, with its `config.json` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    pub fn validate(&self) -> Result<()> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(AgentError::Config(format!(
                "hidden_size must be a multiple of num_attention_heads, got {} and {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "gelu_new" | "relu") {
            return Err(AgentError::Config(format!(
                "hidden_act must be gelu, gelu_new or relu, got {}",
                self.hidden_act
            )));
        }
        if self.max_position_embeddings < 3 {
            return Err(AgentError::Config(
                "max_position_embeddings must be at least 3".into(),
            ));
        }
        Ok(())
    }
}

/// Dropout with its own seeded generator, so training is reproducible (candle's CPU
/// random source cannot be seeded). Disabled at inference, which also selects the
/// fused softmax.
pub struct Dropout {
    rng: Option<StdRng>,
}

impl Dropout {
    pub fn disabled() -> Self {
        Self { rng: None }
    }

    pub fn seeded(rng: StdRng) -> Self {
        Self { rng: Some(rng) }
    }

    pub fn training(&self) -> bool {
        self.rng.is_some()
    }

    pub fn apply(&mut self, xs: &Tensor, probability: f64) -> Result<Tensor> {
        let Some(rng) = self.rng.as_mut() else {
            return Ok(xs.clone());
        };
        if probability <= 0.0 {
            return Ok(xs.clone());
        }
        let keep = 1.0 - probability;
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> = (0..xs.elem_count())
            .map(|_| if rng.gen::<f64>() < keep { scale } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        Ok(xs.mul(&mask)?)
    }
}

pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(size, "weight", candle_nn::Init::Const(1.0))?;
        let bias = vb.get_with_hints(size, "bias", candle_nn::Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mean = xs.mean_keepdim(D::Minus1)?;
        let centered = xs.broadcast_sub(&mean)?;
        let variance = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)?)
    }
}

struct BertEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl BertEmbeddings {
    fn new(vb: VarBuilder, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        Ok(Self {
            word_embeddings: candle_nn::embedding(config.vocab_size, h, vb.pp("word_embeddings"))?,
            position_embeddings: candle_nn::embedding(
                config.max_position_embeddings,
                h,
                vb.pp("position_embeddings"),
            )?,
            token_type_embeddings: candle_nn::embedding(
                config.type_vocab_size,
                h,
                vb.pp("token_type_embeddings"),
            )?,
            layer_norm: LayerNorm::new(h, config.layer_norm_eps, vb.pp("LayerNorm"))?,
            dropout: config.hidden_dropout_prob,
        })
    }

    /// `extra`: [b, s, h] added to the sum of embeddings before the LayerNorm.
    fn forward(
        &self,
        input_ids: &Tensor,
        extra: Option<&Tensor>,
        dropout: &mut Dropout,
    ) -> Result<Tensor> {
        let (_batch, seq_len) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
        let token_types = Tensor::zeros(seq_len, DType::U32, input_ids.device())?;
        let position = self.position_embeddings.forward(&positions)?; // [s, h]
        let token_type = self.token_type_embeddings.forward(&token_types)?;
        let xs = self
            .word_embeddings
            .forward(input_ids)? // [b, s, h]
            .broadcast_add(&(position + token_type)?)?;
        let xs = match extra {
            Some(extra) => (xs + extra)?,
            None => xs,
        };
        let xs = self.layer_norm.forward(&xs)?;
        dropout.apply(&xs, self.dropout)
    }
}

struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
    activation: String,
    hidden_dropout: f64,
    attention_dropout: f64,
}

impl BertLayer {
    fn new(vb: VarBuilder, config: &BertConfig) -> Result<Self> {
        let h = config.hidden_size;
        let attention = vb.pp("attention");
        let attention_self = attention.pp("self");
        Ok(Self {
            query: candle_nn::linear(h, h, attention_self.pp("query"))?,
            key: candle_nn::linear(h, h, attention_self.pp("key"))?,
            value: candle_nn::linear(h, h, attention_self.pp("value"))?,
            attention_output: candle_nn::linear(h, h, attention.pp("output").pp("dense"))?,
            attention_norm: LayerNorm::new(
                h,
                config.layer_norm_eps,
                attention.pp("output").pp("LayerNorm"),
            )?,
            intermediate: candle_nn::linear(
                h,
                config.intermediate_size,
                vb.pp("intermediate").pp("dense"),
            )?,
            output: candle_nn::linear(config.intermediate_size, h, vb.pp("output").pp("dense"))?,
            output_norm: LayerNorm::new(h, config.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: config.num_attention_heads,
            head_dim: h / config.num_attention_heads,
            activation: config.hidden_act.clone(),
            hidden_dropout: config.hidden_dropout_prob,
            attention_dropout: config.attention_probs_dropout_prob,
        })
    }

    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, seq_len, _) = xs.dims3()?;
        Ok(xs
            .reshape((batch, seq_len, self.heads, self.head_dim))?
            .transpose(1, 2)? // [b, heads, s, head_dim]
            .contiguous()?)
    }

    fn forward(&self, xs: &Tensor, mask_bias: &Tensor, dropout: &mut Dropout) -> Result<Tensor> {
        let _span = tracing::trace_span!("bert_layer").entered();
        let (batch, seq_len, hidden) = xs.dims3()?;
        let query = self.split_heads(&self.query.forward(xs)?)?;
        let key = self.split_heads(&self.key.forward(xs)?)?;
        let value = self.split_heads(&self.value.forward(xs)?)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (query.matmul(&key.t()?)? * scale)?.broadcast_add(mask_bias)?; // [b, heads, s, s]
        let probs = if dropout.training() {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let probs = dropout.apply(&probs, self.attention_dropout)?;
        let context = probs
            .matmul(&value)? // [b, heads, s, head_dim]
            .transpose(1, 2)?
            .reshape((batch, seq_len, hidden))?;
        let attended = self.attention_output.forward(&context)?;
        let attended = dropout.apply(&attended, self.hidden_dropout)?;
        let xs = self.attention_norm.forward(&(attended + xs)?)?;
        let inner = self.intermediate.forward(&xs)?;
        let inner = match self.activation.as_str() {
            "relu" => inner.relu()?,
            "gelu_new" => inner.gelu()?,
            _ => inner.gelu_erf()?,
        };
        let out = self.output.forward(&inner)?;
        let out = dropout.apply(&out, self.hidden_dropout)?;
        self.output_norm.forward(&(out + xs)?)
    }
}

/// transformers' `BertModel` (with pooler).
pub struct BertModel {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    pooler: Linear,
    device: Device,
}

/// What the encoder returns: per-token states and the pooled first token.
pub struct BertOutput {
    /// [b, s, h]
    pub last_hidden_state: Tensor,
    /// [b, h]
    pub pooler_output: Tensor,
}

impl BertModel {
    pub fn new(vb: VarBuilder, config: &BertConfig) -> Result<Self> {
        config.validate()?;
        let embeddings = BertEmbeddings::new(vb.pp("embeddings"), config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| BertLayer::new(vb.pp("encoder").pp("layer").pp(i), config))
            .collect::<Result<Vec<_>>>()?;
        let pooler = candle_nn::linear(
            config.hidden_size,
            config.hidden_size,
            vb.pp("pooler").pp("dense"),
        )?;
        Ok(Self {
            embeddings,
            layers,
            pooler,
            device: vb.device().clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `input_ids`: [b, s] u32; `attention_mask`: [b, s] f32 with 1 for real tokens.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        dropout: &mut Dropout,
    ) -> Result<BertOutput> {
        self.forward_with_extra_embeddings(input_ids, None, attention_mask, dropout)
    }

    /// `forward` with `extra` ([b, s, h], e.g. word-boundary embeddings) added to the
    /// input embeddings before their LayerNorm, as token type embeddings are.
    pub fn forward_with_extra_embeddings(
        &self,
        input_ids: &Tensor,
        extra: Option<&Tensor>,
        attention_mask: &Tensor,
        dropout: &mut Dropout,
    ) -> Result<BertOutput> {
        let _span = tracing::trace_span!("bert").entered();
        // transformers: (1 - mask) * finfo(f32).min, broadcast over heads and queries.
        let (batch, seq_len) = attention_mask.dims2()?;
        let mask_bias = ((attention_mask.ones_like()? - attention_mask)? * f32::MIN as f64)?
            .reshape((batch, 1, 1, seq_len))?;
        let mut xs = self.embeddings.forward(input_ids, extra, dropout)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &mask_bias, dropout)?;
        }
        let first = xs.narrow(1, 0, 1)?.squeeze(1)?; // [b, h]
        let pooler_output = self.pooler.forward(&first)?.tanh()?;
        Ok(BertOutput {
            last_hidden_state: xs,
            pooler_output,
        })
    }
}
