//! CLIP's vision tower: transformers' `CLIPVisionTransformer` and `CLIPVisionConfig`
//! (models/clip/modeling_clip.py, configuration_clip.py).
//!
//! Patch embedding (a stride-`patch` convolution without bias, done here as one matmul over
//! the flattened patches — the same sums), a learned class token in front, learned absolute
//! position embeddings, `pre_layrnorm` (sic, transformers' key), the encoder layers shared
//! with the text tower (`huatu_diffusion::models::clip_text::ClipEncoderLayer`, no mask),
//! and `post_layernorm` on the class token: the `pooler_output`.

use candle_core::{IndexOp, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use huatu_diffusion::models::clip_text::{ClipActivation, ClipEncoderLayer, ClipTextConfig};
use serde::Deserialize;

/// `CLIPVisionConfig`; keys missing from config.json take transformers' defaults (those of
/// openai/clip-vit-base-patch32).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: ClipActivation,
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: ClipActivation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl ClipVisionConfig {
    fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// The keys `ClipEncoderLayer` reads, in the text config it is built from.
    fn encoder_layer_config(&self) -> ClipTextConfig {
        ClipTextConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_attention_heads: self.num_attention_heads,
            hidden_act: self.hidden_act,
            layer_norm_eps: self.layer_norm_eps,
            ..ClipTextConfig::default()
        }
    }
}

/// `CLIPVisionEmbeddings` (without `interpolate_pos_encoding`: images are at `image_size`).
#[derive(Debug, Clone)]
struct ClipVisionEmbeddings {
    /// `patch_embedding.weight` flattened to [hidden, channels·patch·patch].
    patch_weight: Tensor,
    class_embedding: Tensor,
    position_embedding: Embedding,
    num_channels: usize,
    patch_size: usize,
}

impl ClipVisionEmbeddings {
    fn new(vb: VarBuilder, config: &ClipVisionConfig) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        let patch = config.patch_size;
        let patch_weight = vb
            .get(
                (hidden, config.num_channels, patch, patch),
                "patch_embedding.weight",
            )?
            .reshape((hidden, config.num_channels * patch * patch))?;
        let positions = config.patches_per_side().pow(2) + 1;
        Ok(Self {
            patch_weight,
            class_embedding: vb.get(hidden, "class_embedding")?,
            position_embedding: candle_nn::embedding(
                positions,
                hidden,
                vb.pp("position_embedding"),
            )?,
            num_channels: config.num_channels,
            patch_size: patch,
        })
    }

    /// pixel_values: [b, c, h, w] with h = w = image_size -> [b, 1 + patches, hidden]
    fn forward(&self, pixel_values: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, channels, height, width) = pixel_values.dims4()?;
        let patch = self.patch_size;
        let (rows, columns) = (height / patch, width / patch);
        // [b, c, rows, p, columns, p] -> [b, rows, columns, c, p, p]: one row per patch in
        // the order of the convolution's output, flattened like its kernel.
        let patches = pixel_values
            .narrow(2, 0, rows * patch)?
            .narrow(3, 0, columns * patch)?
            .reshape((batch, channels, rows, patch, columns, patch))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((batch * rows * columns, self.num_channels * patch * patch))?;
        let hidden = self.patch_weight.dim(0)?;
        let patch_embeds =
            patches
                .matmul(&self.patch_weight.t()?)?
                .reshape((batch, rows * columns, hidden))?; // [b, patches, hidden]
        let class_embeds = self
            .class_embedding
            .reshape((1, 1, hidden))?
            .broadcast_as((batch, 1, hidden))?;
        let embeddings = Tensor::cat(&[&class_embeds, &patch_embeds], 1)?;
        let positions = self
            .position_embedding
            .embeddings()
            .narrow(0, 0, rows * columns + 1)?;
        embeddings.broadcast_add(&positions)
    }
}

/// transformers' `CLIPVisionTransformer` (the `vision_model` of `CLIPModel`).
#[derive(Debug, Clone)]
pub struct ClipVisionTransformer {
    embeddings: ClipVisionEmbeddings,
    pre_layrnorm: LayerNorm,
    layers: Vec<ClipEncoderLayer>,
    post_layernorm: LayerNorm,
    config: ClipVisionConfig,
    span: tracing::Span,
}

impl ClipVisionTransformer {
    /// Weights keyed `embeddings.…`, `pre_layrnorm`, `encoder.layers.N.…`, `post_layernorm`
    /// (under `vision_model.` in a `CLIPModel` file).
    pub fn new(vb: VarBuilder, config: &ClipVisionConfig) -> huatu_diffusion::Result<Self> {
        if config.patch_size == 0 || config.image_size < config.patch_size {
            return Err(huatu_diffusion::Error::Config(format!(
                "CLIP vision image_size ({}) must be at least patch_size ({}), which must be positive",
                config.image_size, config.patch_size
            )));
        }
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        let layer_config = config.encoder_layer_config();
        let layers_vb = vb.pp("encoder").pp("layers");
        let layers = (0..config.num_hidden_layers)
            .map(|index| ClipEncoderLayer::new(layers_vb.pp(index), &layer_config, index))
            .collect::<huatu_diffusion::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: ClipVisionEmbeddings::new(vb.pp("embeddings"), config)?,
            pre_layrnorm: candle_nn::layer_norm(hidden, eps, vb.pp("pre_layrnorm"))?,
            layers,
            post_layernorm: candle_nn::layer_norm(hidden, eps, vb.pp("post_layernorm"))?,
            config: config.clone(),
            span: tracing::trace_span!("clip_vision_transformer"),
        })
    }

    pub fn config(&self) -> &ClipVisionConfig {
        &self.config
    }

    /// pixel_values: [b, c, image_size, image_size] -> `pooler_output` [b, hidden].
    pub fn forward(&self, pixel_values: &Tensor) -> huatu_diffusion::Result<Tensor> {
        let _enter = self.span.enter();
        let (_, channels, height, width) = pixel_values.dims4()?;
        let size = self.config.image_size;
        if channels != self.config.num_channels || height != size || width != size {
            return Err(huatu_diffusion::Error::InvalidRequest(format!(
                "pixel_values must be [batch, {}, {size}, {size}], got {:?}",
                self.config.num_channels,
                pixel_values.dims()
            )));
        }
        let mut hidden_states = self
            .pre_layrnorm
            .forward(&self.embeddings.forward(pixel_values)?)?; // [b, 1 + patches, hidden]
        for layer in &self.layers {
            hidden_states = layer.forward(&hidden_states, None)?;
        }
        let class_state = hidden_states.i((.., 0, ..))?.contiguous()?; // [b, hidden]
        Ok(self.post_layernorm.forward(&class_state)?)
    }
}
