//! BLIP's vision encoder: transformers' `BlipVisionModel` and `BlipVisionConfig`
//! (models/blip/modeling_blip.py, configuration_blip.py).
//!
//! A ViT: patch convolution (with bias, done as one matmul over the flattened patches),
//! a learned class token in front, learned position embeddings, pre-norm encoder layers
//! (`layer_norm1` → attention with a fused `qkv` → residual, `layer_norm2` → MLP →
//! residual), and `post_layernorm` over every position: `last_hidden_state`, the
//! `image_embeds` the text decoder cross-attends to. Unlike CLIP there is no pre-norm
//! before the first layer.

use candle_core::{DType, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use huatu_diffusion::models::clip_text::ClipActivation;
use huatu_diffusion::models::linear::Linear;
use serde::Deserialize;

use crate::bert::layers::activation;

/// `BlipVisionConfig`; keys missing from config.json take transformers' defaults.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct BlipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: ClipActivation,
    pub layer_norm_eps: f64,
}

impl Default for BlipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: ClipActivation::Gelu,
            layer_norm_eps: 1e-5,
        }
    }
}

/// `BlipVisionEmbeddings` (without `interpolate_pos_encoding`).
#[derive(Debug, Clone)]
struct BlipVisionEmbeddings {
    /// `patch_embedding.weight` flattened to [hidden, 3·patch·patch].
    patch_weight: Tensor,
    patch_bias: Tensor,
    class_embedding: Tensor,
    position_embedding: Tensor,
    patch_size: usize,
}

impl BlipVisionEmbeddings {
    fn new(vb: VarBuilder, config: &BlipVisionConfig) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        let patch = config.patch_size;
        let positions = (config.image_size / patch).pow(2) + 1;
        Ok(Self {
            patch_weight: vb
                .get((hidden, 3, patch, patch), "patch_embedding.weight")?
                .reshape((hidden, 3 * patch * patch))?,
            patch_bias: vb.get(hidden, "patch_embedding.bias")?,
            class_embedding: vb.get((1, 1, hidden), "class_embedding")?,
            position_embedding: vb.get((1, positions, hidden), "position_embedding")?,
            patch_size: patch,
        })
    }

    /// pixel_values: [b, 3, size, size] -> [b, 1 + patches, hidden]
    fn forward(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, channels, height, width) = pixel_values.dims4()?;
        let patch = self.patch_size;
        let (rows, columns) = (height / patch, width / patch);
        // [b, c, rows, p, columns, p] -> [b, rows, columns, c, p, p]: the convolution's
        // output order, each patch flattened like its kernel
        let patches = pixel_values
            .reshape((batch, channels, rows, patch, columns, patch))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((batch * rows * columns, channels * patch * patch))?;
        let hidden = self.patch_weight.dim(0)?;
        let patch_embeds = patches
            .matmul(&self.patch_weight.t()?)?
            .broadcast_add(&self.patch_bias)?
            .reshape((batch, rows * columns, hidden))?;
        let class_embeds = self.class_embedding.broadcast_as((batch, 1, hidden))?;
        let embeddings = Tensor::cat(&[&class_embeds, &patch_embeds], 1)?;
        embeddings.broadcast_add(&self.position_embedding)
    }
}

/// `BlipAttention`: bidirectional self-attention with one fused `qkv` projection.
#[derive(Debug, Clone)]
struct BlipAttention {
    qkv: Linear,
    projection: Linear,
    num_heads: usize,
    scale: f64,
}

impl BlipAttention {
    fn new(vb: VarBuilder, config: &BlipVisionConfig) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        let head_dim = hidden / config.num_attention_heads;
        Ok(Self {
            qkv: Linear::new(hidden, 3 * hidden, vb.pp("qkv"))?,
            projection: Linear::new(hidden, hidden, vb.pp("projection"))?,
            num_heads: config.num_attention_heads,
            scale: (head_dim as f64).powf(-0.5),
        })
    }

    /// `residual` (the layer's input) is added to the output, inside the projection's
    /// GEMM where huatu's fused linear applies.
    fn forward(&self, xs: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, length, hidden) = xs.dims3()?;
        let head_dim = hidden / self.num_heads;
        // [b, t, 3, heads, d] -> [3, b, heads, t, d]
        let qkv = self
            .qkv
            .forward_fused(xs, None, None)?
            .reshape((batch, length, 3, self.num_heads, head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let query = qkv.get(0)?.contiguous()?;
        let key = qkv.get(1)?.contiguous()?;
        let value = qkv.get(2)?.contiguous()?;
        let context = if query.device().is_cpu() && query.dtype() == DType::F32 && !query.track_op()
        {
            // huatu-kernels' fused attention: the same softmax(q·kᵀ/√d)·v (`self.scale`
            // is 1/√d) without the [t, t] scores of every head in memory.
            huatu_kernels::fused_attention(&query, &key, &value)?
        } else {
            let scores = (query.matmul(&key.t()?)? * self.scale)?;
            candle_nn::ops::softmax_last_dim(&scores)?.matmul(&value)?
        };
        let context = context // [b, heads, t, d]
            .transpose(1, 2)?
            .reshape((batch, length, hidden))?;
        self.projection
            .forward_fused(&context, Some(residual), None)
    }
}

/// `BlipEncoderLayer`: pre-norm attention and MLP, each with a residual.
#[derive(Debug, Clone)]
struct BlipEncoderLayer {
    self_attn: BlipAttention,
    layer_norm1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    layer_norm2: LayerNorm,
    act: ClipActivation,
}

impl BlipEncoderLayer {
    fn new(vb: VarBuilder, config: &BlipVisionConfig) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        Ok(Self {
            self_attn: BlipAttention::new(vb.pp("self_attn"), config)?,
            layer_norm1: candle_nn::layer_norm(hidden, eps, vb.pp("layer_norm1"))?,
            fc1: Linear::new(hidden, config.intermediate_size, vb.pp("mlp.fc1"))?,
            fc2: Linear::new(config.intermediate_size, hidden, vb.pp("mlp.fc2"))?,
            layer_norm2: candle_nn::layer_norm(hidden, eps, vb.pp("layer_norm2"))?,
            act: config.hidden_act,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        // Each residual is added inside the block's last linear layer.
        let xs = self.self_attn.forward(&self.layer_norm1.forward(xs)?, xs)?;
        let normed = self.layer_norm2.forward(&xs)?;
        let hidden = match self.act.kernel() {
            // Bias and activation in one pass (huatu-kernels) where a kernel has it.
            Some(kernel) if !normed.track_op() => self.fc1.forward_activation(&normed, kernel)?,
            _ => activation(self.act, &self.fc1.forward(&normed)?)?,
        };
        self.fc2.forward_fused(&hidden, Some(&xs), None)
    }
}

/// transformers' `BlipVisionModel` (the `vision_model` of `BlipForConditionalGeneration`).
#[derive(Debug, Clone)]
pub struct BlipVisionModel {
    embeddings: BlipVisionEmbeddings,
    layers: Vec<BlipEncoderLayer>,
    post_layernorm: LayerNorm,
    config: BlipVisionConfig,
    span: tracing::Span,
}

impl BlipVisionModel {
    /// Weights keyed `embeddings.…`, `encoder.layers.N.…`, `post_layernorm`.
    pub fn new(vb: VarBuilder, config: &BlipVisionConfig) -> candle_core::Result<Self> {
        if config.patch_size == 0
            || !config.image_size.is_multiple_of(config.patch_size)
            || config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(candle_core::Error::Msg(format!(
                "BLIP vision config: image_size ({}) must be a multiple of patch_size ({}) and hidden_size ({}) of num_attention_heads ({})",
                config.image_size, config.patch_size, config.hidden_size, config.num_attention_heads
            )));
        }
        let layers_vb = vb.pp("encoder.layers");
        let layers = (0..config.num_hidden_layers)
            .map(|index| BlipEncoderLayer::new(layers_vb.pp(index), config))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: BlipVisionEmbeddings::new(vb.pp("embeddings"), config)?,
            layers,
            post_layernorm: candle_nn::layer_norm(
                config.hidden_size,
                config.layer_norm_eps,
                vb.pp("post_layernorm"),
            )?,
            config: config.clone(),
            span: tracing::trace_span!("blip_vision_model"),
        })
    }

    pub fn config(&self) -> &BlipVisionConfig {
        &self.config
    }

    /// pixel_values: [b, 3, image_size, image_size] -> `last_hidden_state`
    /// [b, 1 + patches, hidden] (after `post_layernorm`).
    pub fn forward(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let _enter = self.span.enter();
        let (_, channels, height, width) = pixel_values.dims4()?;
        let size = self.config.image_size;
        if channels != 3 || height != size || width != size {
            return Err(candle_core::Error::Msg(format!(
                "pixel_values must be [batch, 3, {size}, {size}], got {:?}",
                pixel_values.dims()
            )));
        }
        let mut hidden_states = self.embeddings.forward(pixel_values)?;
        for layer in &self.layers {
            hidden_states = layer.forward(&hidden_states)?;
        }
        self.post_layernorm.forward(&hidden_states)
    }
}
