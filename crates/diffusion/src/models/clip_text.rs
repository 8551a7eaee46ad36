//! CLIP text encoder: transformers' `CLIPTextModel` and `CLIPTextModelWithProjection`
//! (models/clip/modeling_clip.py), the two text encoders of SDXL.
//!
//! Token + position embeddings, pre-norm transformer layers with causal self-attention,
//! a final layer norm; the pooled output is the final-normed state at the eos position,
//! and the projection model maps it through `text_projection` (no bias). As diffusers
//! calls them, no padding mask is applied: the causal mask is the only mask.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, VarBuilder};
use huatu_kernels::{fused_attention, Activation};

use super::layers::LayerNorm;
use super::linear::{join, Linear, NamedLinears};
use serde::Deserialize;

use crate::{Error, Result};

/// `CLIPTextConfig` (transformers models/clip/configuration_clip.py); keys missing from
/// config.json take transformers' defaults (those of openai/clip-vit-base-patch32).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub projection_dim: Option<usize>,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: ClipActivation,
    pub layer_norm_eps: f64,
    pub pad_token_id: Option<u32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: u32,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            projection_dim: Some(512),
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: ClipActivation::QuickGelu,
            layer_norm_eps: 1e-5,
            pad_token_id: Some(1),
            bos_token_id: Some(49406),
            eos_token_id: 49407,
        }
    }
}

/// `hidden_act`, spelled as transformers' `ACT2FN` keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClipActivation {
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP, SDXL's first encoder).
    #[default]
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact erf GELU (OpenCLIP bigG, SDXL's second encoder).
    #[serde(rename = "gelu", alias = "gelu_python")]
    Gelu,
    /// The tanh approximation of GELU.
    #[serde(
        rename = "gelu_new",
        alias = "gelu_pytorch_tanh",
        alias = "gelu_python_tanh"
    )]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
    #[serde(rename = "silu", alias = "swish")]
    Silu,
}

impl ClipActivation {
    /// The huatu-kernels activation computing this one, where there is one.
    pub fn kernel(self) -> Option<Activation> {
        match self {
            Self::QuickGelu => Some(Activation::QuickGelu),
            Self::Gelu => Some(Activation::GeluErf),
            Self::GeluTanh | Self::Relu | Self::Silu => None,
        }
    }

    fn forward(self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
            Self::Relu => xs.relu(),
            Self::Silu => xs.silu(),
        }
    }
}

/// `CLIPTextEmbeddings`: token embedding + learned absolute position embedding.
#[derive(Debug, Clone)]
struct ClipTextEmbeddings {
    token_embedding: Embedding,
    position_embedding: Embedding,
    /// The dtype the layers compute in (the tables' own unless the weights are stored in
    /// half precision for an f32 model).
    compute_dtype: DType,
}

impl ClipTextEmbeddings {
    fn new(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self {
            token_embedding: candle_nn::embedding(
                config.vocab_size,
                hidden,
                vb.pp("token_embedding"),
            )?,
            position_embedding: candle_nn::embedding(
                config.max_position_embeddings,
                hidden,
                vb.pp("position_embedding"),
            )?,
            compute_dtype: vb.dtype(),
        })
    }

    /// input_ids: [b, n] -> [b, n, hidden]
    fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let tokens = input_ids.dim(1)?;
        let positions = self
            .position_embedding
            .embeddings()
            .narrow(0, 0, tokens)? // [n, hidden]
            .to_dtype(self.compute_dtype)?;
        Ok(self
            .token_embedding
            .forward(input_ids)?
            .to_dtype(self.compute_dtype)?
            .broadcast_add(&positions)?)
    }
}

/// `CLIPAttention` with the causal mask `CLIPTextModel` builds (`create_causal_mask`).
#[derive(Debug, Clone)]
struct ClipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
    scale: f64,
}

impl ClipAttention {
    fn new(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        let head_dim = hidden / heads;
        Ok(Self {
            q_proj: Linear::new(hidden, hidden, vb.pp("q_proj"))?,
            k_proj: Linear::new(hidden, hidden, vb.pp("k_proj"))?,
            v_proj: Linear::new(hidden, hidden, vb.pp("v_proj"))?,
            out_proj: Linear::new(hidden, hidden, vb.pp("out_proj"))?,
            heads,
            head_dim,
            scale: (head_dim as f64).powf(-0.5),
        })
    }

    /// hidden_states: [b, n, hidden]; attention_mask: [n, n] f32 added to the scores (the
    /// text tower's causal mask: 0 on and below the diagonal, -inf above), or none (the
    /// vision tower).
    /// `residual` (the layer's input), when given, is added to the output (inside the
    /// output projection's GEMM where the fused linear applies).
    fn forward(
        &self,
        hidden_states: &Tensor,
        attention_mask: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (batch, tokens, hidden) = hidden_states.dims3()?;
        let split_heads = |xs: Tensor| -> candle_core::Result<Tensor> {
            xs.reshape((batch, tokens, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let query = split_heads(self.q_proj.forward_fused(hidden_states, None, None)?)?; // [b, heads, n, d]
        let key = split_heads(self.k_proj.forward_fused(hidden_states, None, None)?)?;
        let value = split_heads(self.v_proj.forward_fused(hidden_states, None, None)?)?;

        // The vision tower's unmasked attention outside autograd: huatu-kernels' fused
        // attention (scale 1/√d, as `self.scale`), the [n, n] scores never materialised.
        let untracked = !query.track_op() && !key.track_op() && !value.track_op();
        if attention_mask.is_none()
            && untracked
            && query.device().is_cpu()
            && query.dtype() == DType::F32
        {
            let attended = fused_attention(&query, &key, &value)?; // [b, heads, n, d]
            let merged = attended.transpose(1, 2)?.reshape((batch, tokens, hidden))?;
            return Ok(self.out_proj.forward_fused(&merged, residual, None)?);
        }

        let dtype = query.dtype();
        // Scores and softmax in f32 whatever the weights' dtype, as transformers' eager path.
        let scores = (query.matmul(&key.t()?)? * self.scale)?.to_dtype(DType::F32)?; // [b, heads, n, n]
        let scores = match attention_mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let weights = softmax_last_dim(&scores)?.to_dtype(dtype)?;
        let attended = weights.matmul(&value)?; // [b, heads, n, d]
        let merged = attended.transpose(1, 2)?.reshape((batch, tokens, hidden))?;
        Ok(self.out_proj.forward_fused(&merged, residual, None)?)
    }
}

/// candle's fused softmax (no backward) outside an autograd graph, the plain formulation
/// inside one (the max is a constant shift, so it is detached).
fn softmax_last_dim(scores: &Tensor) -> candle_core::Result<Tensor> {
    if !scores.track_op() {
        return candle_nn::ops::softmax_last_dim(scores);
    }
    let shifted = scores
        .broadcast_sub(&scores.max_keepdim(D::Minus1)?.detach())?
        .exp()?;
    shifted.broadcast_div(&shifted.sum_keepdim(D::Minus1)?)
}

impl ClipAttention {
    /// `q_proj`, `k_proj`, `v_proj`, `out_proj` under `prefix`.
    fn collect_linears<'a>(&'a mut self, prefix: &str, out: &mut NamedLinears<'a>) {
        out.push((join(prefix, "q_proj"), &mut self.q_proj));
        out.push((join(prefix, "k_proj"), &mut self.k_proj));
        out.push((join(prefix, "v_proj"), &mut self.v_proj));
        out.push((join(prefix, "out_proj"), &mut self.out_proj));
    }
}

/// `CLIPMLP`: fc1 → activation → fc2.
#[derive(Debug, Clone)]
struct ClipMlp {
    fc1: Linear,
    fc2: Linear,
    activation: ClipActivation,
}

impl ClipMlp {
    fn new(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        Ok(Self {
            fc1: Linear::new(config.hidden_size, config.intermediate_size, vb.pp("fc1"))?,
            fc2: Linear::new(config.intermediate_size, config.hidden_size, vb.pp("fc2"))?,
            activation: config.hidden_act,
        })
    }

    /// `residual`, when given, is added to the output (inside fc2's GEMM where the fused
    /// linear applies).
    fn forward(&self, xs: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        let xs = match self.activation.kernel() {
            // Outside autograd, bias and activation in fc1's pass where a kernel has it.
            Some(activation) if !xs.track_op() => self.fc1.forward_activation(xs, activation)?,
            _ => self.activation.forward(&self.fc1.forward(xs)?)?,
        };
        Ok(self.fc2.forward_fused(&xs, residual, None)?)
    }
}

/// `CLIPEncoderLayer`: pre-norm attention and MLP, each with a residual. Shared with
/// CLIP's vision tower (huatu-data), which builds it from the vision config's
/// `hidden_size`, `intermediate_size`, `num_attention_heads`, `hidden_act` and
/// `layer_norm_eps` — the only keys it reads — and runs it without a mask.
#[derive(Debug, Clone)]
pub struct ClipEncoderLayer {
    self_attn: ClipAttention,
    layer_norm1: LayerNorm,
    mlp: ClipMlp,
    layer_norm2: LayerNorm,
    span: tracing::Span,
}

impl ClipEncoderLayer {
    pub fn new(vb: VarBuilder, config: &ClipTextConfig, index: usize) -> Result<Self> {
        validate(config)?;
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        Ok(Self {
            self_attn: ClipAttention::new(vb.pp("self_attn"), config)?,
            layer_norm1: LayerNorm::new(hidden, eps, vb.pp("layer_norm1"))?,
            mlp: ClipMlp::new(vb.pp("mlp"), config)?,
            layer_norm2: LayerNorm::new(hidden, eps, vb.pp("layer_norm2"))?,
            span: tracing::trace_span!("clip_encoder_layer", index),
        })
    }

    /// The linear layers under `prefix` (`self_attn.q_proj`, …, `mlp.fc1`, `mlp.fc2`).
    pub fn collect_linears<'a>(&'a mut self, prefix: &str, out: &mut NamedLinears<'a>) {
        self.self_attn
            .collect_linears(&join(prefix, "self_attn"), out);
        out.push((join(prefix, "mlp.fc1"), &mut self.mlp.fc1));
        out.push((join(prefix, "mlp.fc2"), &mut self.mlp.fc2));
    }

    /// hidden_states: [b, n, hidden]; attention_mask: [n, n] f32 added to the attention
    /// scores (the text tower's causal mask), or none (the vision tower).
    pub fn forward(
        &self,
        hidden_states: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let _enter = self.span.enter();
        // Each residual is added inside the block's last linear layer.
        let hidden_states = self.self_attn.forward(
            &self.layer_norm1.forward(hidden_states)?,
            attention_mask,
            Some(hidden_states),
        )?;
        self.mlp.forward(
            &self.layer_norm2.forward(&hidden_states)?,
            Some(&hidden_states),
        )
    }
}

/// What `CLIPTextModel(input_ids, output_hidden_states=True)` returns.
#[derive(Debug, Clone)]
pub struct ClipTextModelOutput {
    /// Last layer's output after `final_layer_norm`: [b, n, hidden].
    pub last_hidden_state: Tensor,
    /// `pooler_output`: `last_hidden_state` at each sequence's eos position: [b, hidden].
    pub pooled_output: Tensor,
    /// The embeddings' output, then each layer's output (before the final layer norm):
    /// `num_hidden_layers + 1` tensors of [b, n, hidden]. SDXL uses `hidden_states[-2]`.
    pub hidden_states: Vec<Tensor>,
}

/// What `CLIPTextModelWithProjection(input_ids, output_hidden_states=True)` returns.
#[derive(Debug, Clone)]
pub struct ClipTextModelWithProjectionOutput {
    /// `text_projection(pooled_output)`: [b, projection_dim].
    pub text_embeds: Tensor,
    pub last_hidden_state: Tensor,
    pub hidden_states: Vec<Tensor>,
}

/// transformers' `CLIPTextModel`.
#[derive(Debug, Clone)]
pub struct ClipTextModel {
    embeddings: ClipTextEmbeddings,
    layers: Vec<ClipEncoderLayer>,
    final_layer_norm: LayerNorm,
    config: ClipTextConfig,
    span: tracing::Span,
}

impl ClipTextModel {
    /// Weights keyed `text_model.embeddings…`, `text_model.encoder.layers.N…`,
    /// `text_model.final_layer_norm` (diffusers folders saved by transformers 4, and what
    /// single-file conversion produces) or the same keys without the `text_model.` prefix
    /// (`CLIPTextModel.save_pretrained` in transformers 5); the prefix is detected.
    pub fn new(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        let vb = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
            vb.pp("text_model")
        } else {
            vb
        };
        Self::new_unprefixed(vb, config)
    }

    fn new_unprefixed(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        validate(config)?;
        let layers_vb = vb.pp("encoder").pp("layers");
        let layers = (0..config.num_hidden_layers)
            .map(|index| ClipEncoderLayer::new(layers_vb.pp(index), config, index))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: ClipTextEmbeddings::new(vb.pp("embeddings"), config)?,
            layers,
            final_layer_norm: LayerNorm::new(
                config.hidden_size,
                config.layer_norm_eps,
                vb.pp("final_layer_norm"),
            )?,
            config: config.clone(),
            span: tracing::trace_span!("clip_text_model"),
        })
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// Computes in `dtype` whatever dtype the weights are stored in (see
    /// `LoadOptions::storage_dtype`).
    pub fn computing_in(mut self, dtype: DType) -> Self {
        self.embeddings.compute_dtype = dtype;
        self
    }

    /// The encoder's linear layers by transformers name without the `text_model.` level
    /// (`encoder.layers.0.self_attn.q_proj`).
    pub fn collect_linears(&mut self) -> NamedLinears<'_> {
        let mut out = Vec::new();
        for (index, layer) in self.layers.iter_mut().enumerate() {
            layer.collect_linears(&format!("encoder.layers.{index}"), &mut out);
        }
        out
    }

    /// input_ids: [b, n] (or [n]) integer token ids, n ≤ `max_position_embeddings`.
    pub fn forward(&self, input_ids: &Tensor) -> Result<ClipTextModelOutput> {
        let _enter = self.span.enter();
        let (input_ids, rows) = self.checked_ids(input_ids)?;
        let hidden_states = self.run_layers(&input_ids, self.layers.len(), true)?;
        let last = hidden_states
            .last()
            .ok_or_else(|| Error::Config("no hidden state".into()))?;
        let last_hidden_state = self.final_layer_norm.forward(last)?;
        let pooled_output = self.pool(&last_hidden_state, &rows)?;
        Ok(ClipTextModelOutput {
            last_hidden_state,
            pooled_output,
            hidden_states,
        })
    }

    /// `hidden_states[index]` of [`Self::forward`] (0: embeddings, `num_hidden_layers`: last
    /// layer before the final norm), running only the layers it needs: SDXL's
    /// `hidden_states[-2]` is `index = num_hidden_layers - 1` and skips the last layer.
    pub fn hidden_state(&self, input_ids: &Tensor, index: usize) -> Result<Tensor> {
        let _enter = self.span.enter();
        if index > self.layers.len() {
            return Err(Error::InvalidRequest(format!(
                "hidden state index must be at most num_hidden_layers ({}), got {index}",
                self.layers.len()
            )));
        }
        let (input_ids, _) = self.checked_ids(input_ids)?;
        let mut hidden_states = self.run_layers(&input_ids, index, false)?;
        hidden_states
            .pop()
            .ok_or_else(|| Error::Config("no hidden state".into()))
    }

    /// Embeddings then the first `layer_count` layers; every hidden state when
    /// `keep_all`, else only the last one.
    fn run_layers(
        &self,
        input_ids: &Tensor,
        layer_count: usize,
        keep_all: bool,
    ) -> Result<Vec<Tensor>> {
        let tokens = input_ids.dim(1)?;
        let causal_mask = causal_mask(tokens, input_ids.device())?;
        let mut hidden_state = self.embeddings.forward(input_ids)?; // [b, n, hidden]
        let mut hidden_states = Vec::with_capacity(if keep_all { layer_count + 1 } else { 1 });
        for layer in &self.layers[..layer_count] {
            let next = layer.forward(&hidden_state, Some(&causal_mask))?;
            if keep_all {
                hidden_states.push(hidden_state);
            }
            hidden_state = next;
        }
        hidden_states.push(hidden_state);
        Ok(hidden_states)
    }

    /// Checks shape and ids; returns the ids as [b, n] and a host copy of each row.
    fn checked_ids(&self, input_ids: &Tensor) -> Result<(Tensor, Vec<Vec<u32>>)> {
        let input_ids = match input_ids.rank() {
            1 => input_ids.unsqueeze(0)?,
            2 => input_ids.clone(),
            _ => {
                return Err(Error::InvalidRequest(format!(
                    "input_ids must be [batch, tokens], got shape {:?}",
                    input_ids.dims()
                )))
            }
        };
        let tokens = input_ids.dim(1)?;
        if tokens == 0 || tokens > self.config.max_position_embeddings {
            return Err(Error::InvalidRequest(format!(
                "sequence length must be from 1 to max_position_embeddings ({}), got {tokens}",
                self.config.max_position_embeddings
            )));
        }
        let rows: Vec<Vec<i64>> = input_ids.to_dtype(DType::I64)?.to_vec2()?;
        let mut checked = Vec::with_capacity(rows.len());
        for row in rows {
            let row = row
                .into_iter()
                .map(|id| {
                    u32::try_from(id)
                        .ok()
                        .filter(|&id| (id as usize) < self.config.vocab_size)
                        .ok_or(id)
                })
                .collect::<std::result::Result<Vec<u32>, i64>>()
                .map_err(|id| {
                    Error::InvalidRequest(format!(
                        "token id {id} is outside the vocabulary (size {})",
                        self.config.vocab_size
                    ))
                })?;
            checked.push(row);
        }
        let batch = checked.len();
        let flat: Vec<u32> = checked.iter().flatten().copied().collect();
        let input_ids = Tensor::from_vec(flat, (batch, tokens), input_ids.device())?;
        Ok((input_ids, checked))
    }

    /// transformers' pooling rule: with the legacy `eos_token_id == 2` the position of the
    /// highest id (first one on ties); otherwise the first position of `eos_token_id`
    /// (position 0 when absent, as `argmax` over all zeros).
    fn pool(&self, last_hidden_state: &Tensor, rows: &[Vec<u32>]) -> Result<Tensor> {
        let (_, tokens, hidden) = last_hidden_state.dims3()?;
        let eos_token_id = self.config.eos_token_id;
        let indices: Vec<u32> = rows
            .iter()
            .enumerate()
            .map(|(row_index, row)| {
                let position = if eos_token_id == 2 {
                    first_max_position(row)
                } else {
                    row.iter().position(|&id| id == eos_token_id).unwrap_or(0)
                };
                (row_index * tokens + position) as u32
            })
            .collect();
        let indices = Tensor::new(indices, last_hidden_state.device())?;
        let flat = last_hidden_state.reshape(((), hidden))?;
        Ok(flat.index_select(&indices, 0)?) // [b, hidden]
    }
}

/// transformers' `CLIPTextModelWithProjection`: `text_model` plus `text_projection`.
#[derive(Debug, Clone)]
pub struct ClipTextModelWithProjection {
    text_model: ClipTextModel,
    text_projection: Linear,
}

impl ClipTextModelWithProjection {
    /// Weights keyed `text_model.…` and `text_projection.weight` [projection_dim, hidden].
    pub fn new(vb: VarBuilder, config: &ClipTextConfig) -> Result<Self> {
        let projection_dim = config.projection_dim.ok_or_else(|| {
            Error::Config("CLIPTextModelWithProjection needs projection_dim".into())
        })?;
        Ok(Self {
            text_model: ClipTextModel::new_unprefixed(vb.pp("text_model"), config)?,
            text_projection: Linear::new_no_bias(
                config.hidden_size,
                projection_dim,
                vb.pp("text_projection"),
            )?,
        })
    }

    pub fn config(&self) -> &ClipTextConfig {
        self.text_model.config()
    }

    /// See [`ClipTextModel::computing_in`].
    pub fn computing_in(mut self, dtype: DType) -> Self {
        self.text_model = self.text_model.computing_in(dtype);
        self
    }

    pub fn text_model(&self) -> &ClipTextModel {
        &self.text_model
    }

    /// The text model's linear layers (see [`ClipTextModel::collect_linears`]).
    pub fn collect_linears(&mut self) -> NamedLinears<'_> {
        self.text_model.collect_linears()
    }

    /// input_ids: [b, n] (or [n]) integer token ids.
    pub fn forward(&self, input_ids: &Tensor) -> Result<ClipTextModelWithProjectionOutput> {
        let output = self.text_model.forward(input_ids)?;
        let text_embeds = self.text_projection.forward(&output.pooled_output)?;
        Ok(ClipTextModelWithProjectionOutput {
            text_embeds,
            last_hidden_state: output.last_hidden_state,
            hidden_states: output.hidden_states,
        })
    }

    /// See [`ClipTextModel::hidden_state`].
    pub fn hidden_state(&self, input_ids: &Tensor, index: usize) -> Result<Tensor> {
        self.text_model.hidden_state(input_ids, index)
    }
}

fn validate(config: &ClipTextConfig) -> Result<()> {
    if config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        return Err(Error::Config(format!(
            "CLIP text hidden_size ({}) must be a multiple of num_attention_heads ({})",
            config.hidden_size, config.num_attention_heads
        )));
    }
    Ok(())
}

/// [n, n] f32: 0 where a token may attend (itself and earlier ones), -inf elsewhere.
fn causal_mask(tokens: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..tokens)
        .flat_map(|row| {
            (0..tokens).map(move |column| if column > row { f32::NEG_INFINITY } else { 0.0 })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (tokens, tokens), device)?)
}

/// `torch.argmax` over one row: the first position of the largest id.
fn first_max_position(row: &[u32]) -> usize {
    let mut best = 0;
    for (position, &id) in row.iter().enumerate() {
        if id > row[best] {
            best = position;
        }
    }
    best
}

#[cfg(test)]
#[path = "clip_text_tests.rs"]
mod tests;
