//! CLIP as transformers' `CLIPModel` (models/clip/modeling_clip.py) with its
//! `CLIPProcessor`: one model folder (config.json with `text_config` / `vision_config`,
//! model.safetensors, the image-processor settings, the tokenizer files) gives L2-normalised
//! image and text embeddings — `get_image_features` / `get_text_features`, then
//! normalised — for retrieval by cosine similarity.
//!
//! The text tower and the tokenizer are huatu-diffusion's, the ones SDXL uses
//! (`ClipTextModelWithProjection` reads `text_model.*` and `text_projection` from a
//! `CLIPModel` file as it is); the vision tower is in [`vision`]; preprocessing in
//! [`processor`].

pub mod processor;
pub mod vision;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::Linear;
use huatu_diffusion::loading::safetensors_files::{component_weight_files, mmap_var_builder};
use huatu_diffusion::models::clip_text::{ClipTextConfig, ClipTextModelWithProjection};
use huatu_diffusion::tokenizer::ClipTokenizer;
use image::DynamicImage;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use processor::{ClipImageProcessor, ClipImageProcessorConfig, ResizeTarget};
pub use vision::{ClipVisionConfig, ClipVisionTransformer};

use crate::error::{DataError, Result};

/// `CLIPConfig`: the two towers' configs and the shared embedding size.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClipConfig {
    #[serde(default)]
    pub text_config: ClipTextConfig,
    #[serde(default)]
    pub vision_config: ClipVisionConfig,
    #[serde(default = "default_projection_dim")]
    pub projection_dim: usize,
}

fn default_projection_dim() -> usize {
    512
}

/// A loaded CLIP model folder: both towers, both projections, tokenizer and processor.
#[derive(Debug, Clone)]
pub struct ClipModel {
    text_model: ClipTextModelWithProjection,
    vision_model: ClipVisionTransformer,
    visual_projection: Linear,
    tokenizer: ClipTokenizer,
    processor: ClipImageProcessor,
    config: ClipConfig,
    dir: PathBuf,
    fingerprint: String,
    device: Device,
}

impl ClipModel {
    /// Loads a transformers `CLIPModel` folder in f32. Errors name the missing or bad file.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(DataError::MissingModelPart {
                what: "the CLIP model folder".into(),
                path: dir.to_path_buf(),
            });
        }
        let config_path = dir.join("config.json");
        let config_text = std::fs::read_to_string(&config_path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                DataError::MissingModelPart {
                    what: "the CLIP model's config.json".into(),
                    path: config_path.clone(),
                }
            } else {
                DataError::Io {
                    path: config_path.clone(),
                    source,
                }
            }
        })?;
        let json = |source| DataError::Json {
            path: config_path.clone(),
            what: "a CLIPModel configuration",
            source,
        };
        let config_value: serde_json::Value = serde_json::from_str(&config_text).map_err(json)?;
        if config_value.get("vision_config").is_none() || config_value.get("text_config").is_none()
        {
            return Err(DataError::BadModelFile {
                path: config_path,
                message:
                    "not a CLIPModel configuration (needs both `text_config` and `vision_config`)"
                        .into(),
            });
        }
        let config: ClipConfig = serde_json::from_value(config_value.clone()).map_err(json)?;
        let processor_config = ClipImageProcessorConfig::from_dir(dir)?;
        let image_size = config.vision_config.image_size as u32;
        let processor = ClipImageProcessor::new(processor_config);
        if let Some(size) = processor
            .output_size()
            .filter(|&size| size != (image_size, image_size))
        {
            return Err(DataError::BadModelFile {
                path: dir.to_path_buf(),
                message: format!(
                    "the image processor makes {}×{} images but the vision tower takes {image_size}×{image_size}",
                    size.1, size.0
                ),
            });
        }
        let model_error = |source| DataError::Model {
            path: dir.to_path_buf(),
            source,
        };
        let tokenizer = ClipTokenizer::from_dir(dir).map_err(model_error)?;
        let files = component_weight_files(dir).map_err(model_error)?;
        let vb = mmap_var_builder(&files, DType::F32, device).map_err(model_error)?;

        let text_config = ClipTextConfig {
            projection_dim: Some(config.projection_dim),
            ..config.text_config.clone()
        };
        let text_model =
            ClipTextModelWithProjection::new(vb.clone(), &text_config).map_err(model_error)?;
        let vision_model = ClipVisionTransformer::new(vb.pp("vision_model"), &config.vision_config)
            .map_err(model_error)?;
        let visual_projection = candle_nn::linear_no_bias(
            config.vision_config.hidden_size,
            config.projection_dim,
            vb.pp("visual_projection"),
        )
        .map_err(|source| model_error(source.into()))?;

        let fingerprint = fingerprint(&config_value, processor.config());
        Ok(Self {
            text_model,
            vision_model,
            visual_projection,
            tokenizer,
            processor,
            config,
            dir: dir.to_path_buf(),
            fingerprint,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Size of the embeddings (`projection_dim`).
    pub fn projection_dim(&self) -> usize {
        self.config.projection_dim
    }

    /// SHA-256 (hex) of the model's configuration and image-processor settings: what
    /// decides which embedding an image gets, so a database can tell a different model.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn processor(&self) -> &ClipImageProcessor {
        &self.processor
    }

    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// `processor(text=[text]).input_ids[0]`, truncated as `truncation=True` does (eos kept)
    /// to the shorter of the tokenizer's and the model's maximum length.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let limit = self
            .tokenizer
            .model_max_length()
            .min(self.config.text_config.max_position_embeddings)
            .max(2);
        let mut ids = self.tokenizer.encode(text);
        if ids.len() > limit {
            ids.truncate(limit - 1);
            ids.push(self.tokenizer.eos_token_id());
        }
        ids
    }

    /// `get_image_features(pixel_values).pooler_output`: [b, projection_dim], unnormalised.
    pub fn image_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let pooled = self
            .vision_model
            .forward(pixel_values)
            .map_err(|source| self.model_error(source))?;
        Ok(self.visual_projection.forward(&pooled)?)
    }

    /// `get_text_features(input_ids).pooler_output`: [b, projection_dim], unnormalised.
    pub fn text_features(&self, input_ids: &Tensor) -> Result<Tensor> {
        let output = self
            .text_model
            .forward(input_ids)
            .map_err(|source| self.model_error(source))?;
        Ok(output.text_embeds)
    }

    /// L2-normalised image embeddings, one per image, in order.
    pub fn embed_images(&self, images: &[DynamicImage]) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let pixel_values = images
            .iter()
            .map(|image| self.processor.preprocess(image, &self.device))
            .collect::<Result<Vec<_>>>()?;
        let pixel_values = Tensor::stack(&pixel_values, 0)?; // [b, 3, h, w]
        normalized_rows(&self.image_features(&pixel_values)?)
    }

    /// The L2-normalised embedding of one image.
    pub fn embed_image(&self, image: &DynamicImage) -> Result<Vec<f32>> {
        first_row(self.embed_images(std::slice::from_ref(image))?)
    }

    /// The L2-normalised embedding of one text.
    pub fn embed_text(&self, text: &str) -> Result<Vec<f32>> {
        let ids = self.tokenize(text);
        let input_ids = Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?; // [1, n]
        first_row(normalized_rows(&self.text_features(&input_ids)?)?)
    }

    fn model_error(&self, source: huatu_diffusion::Error) -> DataError {
        DataError::Model {
            path: self.dir.clone(),
            source,
        }
    }
}

/// Rows of a [b, d] tensor, each divided by its L2 norm (`x / x.norm(dim=-1, keepdim=True)`).
pub fn normalized_rows(features: &Tensor) -> Result<Vec<Vec<f32>>> {
    let rows: Vec<Vec<f32>> = features.to_dtype(DType::F32)?.to_vec2()?;
    Ok(rows.into_iter().map(normalized).collect())
}

/// `vector / |vector|` (a zero vector stays zero).
pub fn normalized(mut vector: Vec<f32>) -> Vec<f32> {
    let norm = vector
        .iter()
        .map(|&value| f64::from(value) * f64::from(value))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for value in &mut vector {
            *value = (f64::from(*value) / norm) as f32;
        }
    }
    vector
}

fn first_row(rows: Vec<Vec<f32>>) -> Result<Vec<f32>> {
    rows.into_iter()
        .next()
        .ok_or_else(|| DataError::InvalidRequest("the model returned no embedding".into()))
}

/// SHA-256 over the configuration (keys sorted, so formatting does not matter) and the
/// parsed image-processor settings.
fn fingerprint(config: &serde_json::Value, processor: &ClipImageProcessorConfig) -> String {
    let mut hasher = Sha256::new();
    hasher.update(config.to_string().as_bytes());
    hasher.update(format!("{processor:?}").as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
