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
//!
//! A `ChineseCLIPModel` folder (config.json's `model_type` "chinese_clip") loads into the
//! same [`ClipModel`] with the same API: the vision side is CLIP's, the text side a BERT
//! with its WordPiece tokenizer ([`chinese`]), so Chinese descriptions embed directly.

pub mod chinese;
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

pub use chinese::{ChineseClipConfig, ChineseClipTextModel};
pub use processor::{ClipImageProcessor, ClipImageProcessorConfig, ResizeTarget};
pub use vision::{ClipVisionConfig, ClipVisionTransformer};

use crate::bert::BertTokenizer;
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

/// The tokenizer of the text tower: CLIP's byte-level BPE, or Chinese-CLIP's BERT
/// WordPiece. (CLIP's is boxed: its byte-level tables make it six times the size.)
#[derive(Debug, Clone)]
pub enum TextTokenizer {
    Clip(Box<ClipTokenizer>),
    Bert(BertTokenizer),
}

impl TextTokenizer {
    /// `tokenizer(text).input_ids`, untruncated: bos/`[CLS]` … eos/`[SEP]`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Self::Clip(tokenizer) => tokenizer.encode(text),
            Self::Bert(tokenizer) => tokenizer.encode(text),
        }
    }

    /// The id that ends every text: CLIP's eos, BERT's `[SEP]`.
    pub fn eos_token_id(&self) -> u32 {
        match self {
            Self::Clip(tokenizer) => tokenizer.eos_token_id(),
            Self::Bert(tokenizer) => tokenizer.sep_token_id(),
        }
    }

    pub fn pad_token_id(&self) -> u32 {
        match self {
            Self::Clip(tokenizer) => tokenizer.pad_token_id(),
            Self::Bert(tokenizer) => tokenizer.pad_token_id(),
        }
    }

    /// tokenizer_config.json's `model_max_length`.
    pub fn model_max_length(&self) -> usize {
        match self {
            Self::Clip(tokenizer) => tokenizer.model_max_length(),
            Self::Bert(tokenizer) => tokenizer.model_max_length(),
        }
    }
}

/// The text tower with its projection.
#[derive(Debug, Clone)]
enum TextTower {
    Clip(ClipTextModelWithProjection),
    ChineseClip(ChineseClipTextModel),
}

/// A loaded CLIP (or Chinese-CLIP) model folder: both towers, both projections,
/// tokenizer and processor.
#[derive(Debug, Clone)]
pub struct ClipModel {
    text_model: TextTower,
    vision_model: ClipVisionTransformer,
    visual_projection: Linear,
    tokenizer: TextTokenizer,
    processor: ClipImageProcessor,
    config: ClipConfig,
    dir: PathBuf,
    fingerprint: String,
    device: Device,
}

impl ClipModel {
    /// Loads a transformers `CLIPModel` or `ChineseCLIPModel` folder in f32. Errors name
    /// the missing or bad file.
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
        let chinese_json = |source| DataError::Json {
            path: config_path.clone(),
            what: "a ChineseCLIPModel configuration",
            source,
        };
        let json = |source| DataError::Json {
            path: config_path.clone(),
            what: "a CLIPModel configuration",
            source,
        };
        let config_value: serde_json::Value = serde_json::from_str(&config_text).map_err(json)?;
        let is_chinese = chinese::is_chinese_clip(&config_value);
        let has = |key: &str| {
            config_value.get(key).is_some()
                || (is_chinese && config_value.get(format!("{key}_dict")).is_some())
        };
        if !has("vision_config") || !has("text_config") {
            return Err(DataError::BadModelFile {
                path: config_path,
                message:
                    "not a CLIPModel or ChineseCLIPModel configuration (needs both `text_config` and `vision_config`)"
                        .into(),
            });
        }
        let model_error = |source| DataError::Model {
            path: dir.to_path_buf(),
            source,
        };
        // Chinese-CLIP: BERT tokenizer, and CLIP's view of its config (needs the tokenizer)
        let (config, chinese_config, tokenizer) = if is_chinese {
            let chinese_config =
                ChineseClipConfig::from_json(&config_value).map_err(chinese_json)?;
            let tokenizer = BertTokenizer::from_dir(dir, "Chinese-CLIP", &[])?;
            let config = chinese_config.clip_view(&tokenizer);
            (config, Some(chinese_config), TextTokenizer::Bert(tokenizer))
        } else {
            let config: ClipConfig = serde_json::from_value(config_value.clone()).map_err(json)?;
            let tokenizer = ClipTokenizer::from_dir(dir).map_err(model_error)?;
            (config, None, TextTokenizer::Clip(Box::new(tokenizer)))
        };
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
        let files = component_weight_files(dir).map_err(model_error)?;
        let vb = mmap_var_builder(&files, DType::F32, device).map_err(model_error)?;

        let text_model = match &chinese_config {
            Some(chinese_config) => TextTower::ChineseClip(
                ChineseClipTextModel::new(vb.clone(), chinese_config)
                    .map_err(|source| model_error(source.into()))?,
            ),
            None => {
                let text_config = ClipTextConfig {
                    projection_dim: Some(config.projection_dim),
                    ..config.text_config.clone()
                };
                TextTower::Clip(
                    ClipTextModelWithProjection::new(vb.clone(), &text_config)
                        .map_err(model_error)?,
                )
            }
        };
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

    /// The `CLIPConfig`; for a Chinese-CLIP folder its CLIP view
    /// ([`ChineseClipConfig::clip_view`]: the vision config and `projection_dim` as read,
    /// the BERT text tower's sizes and special ids as a `ClipTextConfig`).
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Whether the folder is a `ChineseCLIPModel` (BERT text tower, Chinese vocabulary).
    pub fn is_chinese_clip(&self) -> bool {
        matches!(self.text_model, TextTower::ChineseClip(_))
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

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// `processor(text=[text]).input_ids[0]`, truncated as `truncation=True` does (eos or
    /// `[SEP]` kept) to the shorter of the tokenizer's and the model's maximum length.
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
    /// Pixels prepared on the CPU are moved to the model's device.
    pub fn image_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let pixel_values = pixel_values.to_device(&self.device)?;
        let pooled = self
            .vision_model
            .forward(&pixel_values)
            .map_err(|source| self.model_error(source))?;
        Ok(self.visual_projection.forward(&pooled)?)
    }

    /// `get_text_features(input_ids).pooler_output`: [b, projection_dim], unnormalised.
    pub fn text_features(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.text_features_masked(input_ids, None)
    }

    /// `get_text_features(input_ids, attention_mask).pooler_output` for a padded batch
    /// (attention_mask [b, t]: 1 for tokens, 0 for padding). CLIP's text tower here runs
    /// as diffusers calls it, without a padding mask: it needs rows without padding (its
    /// causal attention and eos pooling make right padding harmless only when the pad id
    /// is the eos id), so [`Self::embed_texts`] gives it one text at a time.
    pub fn text_features_masked(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        match &self.text_model {
            TextTower::Clip(model) => Ok(model
                .forward(input_ids)
                .map_err(|source| self.model_error(source))?
                .text_embeds),
            TextTower::ChineseClip(model) => model
                .forward(input_ids, attention_mask)
                .map_err(|source| self.model_error(source.into())),
        }
    }

    /// `processor(text=texts, padding=True)`: each text's [`Self::tokenize`] ids padded on
    /// the right with the pad id to the longest, and the attention masks (1 token, 0 pad).
    pub fn tokenize_batch(&self, texts: &[&str]) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
        let mut ids: Vec<Vec<u32>> = texts.iter().map(|text| self.tokenize(text)).collect();
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        let pad = self.tokenizer.pad_token_id();
        let masks = ids
            .iter_mut()
            .map(|row| {
                let mut mask = vec![1u32; row.len()];
                mask.resize(longest, 0);
                row.resize(longest, pad);
                mask
            })
            .collect();
        (ids, masks)
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

    /// L2-normalised embeddings of several texts, in order: Chinese-CLIP runs them as one
    /// padded batch with its attention mask, CLIP one at a time (see
    /// [`Self::text_features_masked`]).
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        if !self.is_chinese_clip() {
            return texts.iter().map(|text| self.embed_text(text)).collect();
        }
        let (ids, masks) = self.tokenize_batch(texts);
        let shape = (texts.len(), ids[0].len());
        let input_ids = Tensor::from_vec(ids.concat(), shape, &self.device)?; // [b, t]
        let attention_mask = Tensor::from_vec(masks.concat(), shape, &self.device)?;
        normalized_rows(&self.text_features_masked(&input_ids, Some(&attention_mask))?)
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
