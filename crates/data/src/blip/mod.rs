//! BLIP captioning as transformers' `BlipForConditionalGeneration`
//! (models/blip/modeling_blip.py) with its `BlipProcessor`: one model folder (config.json
//! with `vision_config` / `text_config`, model.safetensors, the image-processor settings,
//! the BERT tokenizer) captions images exactly as
//! `processor.batch_decode(model.generate(**processor(images, text=prompt)),
//! skip_special_tokens=True)`.
//!
//! - [`vision`]: `BlipVisionModel` (the image embeddings the decoder reads);
//! - [`text_decoder`]: `BlipTextLMHeadModel` with its key/value cache;
//! - [`generate`]: greedy and beam search as transformers' `generate`;
//! - the tokenizer: `BertTokenizer` (WordPiece), [`crate::bert::tokenizer`], shared with
//!   Chinese-CLIP.
//!
//! Preprocessing is `BlipImageProcessor`'s PIL backend: a bicubic resize to exactly
//! size×size (no aspect ratio kept, no crop), rescale, normalise with OpenAI CLIP's mean
//! and std — CLIP's processor ([`crate::clip::ClipImageProcessor`]) with those settings.

pub mod generate;
pub mod text_decoder;
pub mod vision;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use huatu_diffusion::loading::safetensors_files::{component_weight_files, mmap_var_builder};
use image::DynamicImage;
use serde::Deserialize;
use serde_json::Value;

pub use crate::bert::BertTokenizer;
pub use generate::GenerationSettings;
pub use text_decoder::{BlipTextConfig, BlipTextLMHeadModel, DecoderCache};
pub use vision::{BlipVisionConfig, BlipVisionModel};

use crate::clip::{ClipImageProcessor, ClipImageProcessorConfig, ResizeTarget};
use crate::error::{DataError, Result};

/// `BlipConfig`: the two parts' configs (the decoder's `encoder_hidden_size` is the vision
/// tower's `hidden_size`, as `BlipConfig.__post_init__` sets it).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BlipConfig {
    #[serde(default)]
    pub text_config: BlipTextConfig,
    #[serde(default)]
    pub vision_config: BlipVisionConfig,
}

/// What to generate: transformers' `max_new_tokens`, `num_beams` and the text prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionOptions {
    pub max_new_tokens: usize,
    /// 1 = greedy search.
    pub num_beams: usize,
    /// A prefix the caption continues ("a picture of"); it is part of the caption.
    pub prompt: Option<String>,
}

impl Default for CaptionOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 20,
            num_beams: 1,
            prompt: None,
        }
    }
}

/// One image's caption: the ids `generate` returned (prompt included, padded to the
/// batch) and their text with special tokens skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    pub ids: Vec<u32>,
    pub text: String,
}

/// A loaded `BlipForConditionalGeneration` folder with its processor.
#[derive(Debug, Clone)]
pub struct BlipForConditionalGeneration {
    vision_model: BlipVisionModel,
    text_decoder: BlipTextLMHeadModel,
    tokenizer: BertTokenizer,
    processor: ClipImageProcessor,
    config: BlipConfig,
    dir: PathBuf,
    device: Device,
}

impl BlipForConditionalGeneration {
    /// Loads a transformers `BlipForConditionalGeneration` folder in f32. Errors name the
    /// missing or bad file.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if !dir.is_dir() {
            return Err(DataError::MissingModelPart {
                what: "the BLIP model folder".into(),
                path: dir.to_path_buf(),
            });
        }
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(DataError::MissingModelPart {
                what: "the BLIP model's config.json".into(),
                path: config_path,
            });
        }
        let config_value = read_json(&config_path, "a BlipConfig")?;
        if config_value.get("vision_config").is_none() || config_value.get("text_config").is_none()
        {
            return Err(DataError::BadModelFile {
                path: config_path,
                message: "not a BlipConfig (needs both `text_config` and `vision_config`)".into(),
            });
        }
        let mut config: BlipConfig =
            serde_json::from_value(config_value).map_err(|source| DataError::Json {
                path: config_path.clone(),
                what: "a BlipConfig",
                source,
            })?;
        config.text_config.encoder_hidden_size = config.vision_config.hidden_size;

        let processor = ClipImageProcessor::new(blip_processor_config(dir)?);
        let size = config.vision_config.image_size as u32;
        if let Some(made) = processor.output_size().filter(|&made| made != (size, size)) {
            return Err(DataError::BadModelFile {
                path: dir.to_path_buf(),
                message: format!(
                    "the image processor makes {}×{} images but the vision model takes {size}×{size}",
                    made.1, made.0
                ),
            });
        }
        let tokenizer = BertTokenizer::from_dir(dir, "BLIP", &["[DEC]", "[ENC]"])?;
        let model_error = |source| DataError::Model {
            path: dir.to_path_buf(),
            source,
        };
        let files = component_weight_files(dir).map_err(model_error)?;
        let vb = mmap_var_builder(&files, DType::F32, device).map_err(model_error)?;
        let blip_error = |source| DataError::Blip {
            path: dir.to_path_buf(),
            source,
        };
        let vision_model = BlipVisionModel::new(vb.pp("vision_model"), &config.vision_config)
            .map_err(blip_error)?;
        let text_decoder = BlipTextLMHeadModel::new(vb.pp("text_decoder"), &config.text_config)
            .map_err(blip_error)?;
        Ok(Self {
            vision_model,
            text_decoder,
            tokenizer,
            processor,
            config,
            dir: dir.to_path_buf(),
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &BlipConfig {
        &self.config
    }

    pub fn processor(&self) -> &ClipImageProcessor {
        &self.processor
    }

    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    fn blip_error(&self, source: candle_core::Error) -> DataError {
        DataError::Blip {
            path: self.dir.clone(),
            source,
        }
    }

    /// The decoder's start: `[bos]`, or the prompt's tokens with its `[CLS]` replaced by
    /// bos and its `[SEP]` dropped (`input_ids[:, 0] = bos_token_id`, `input_ids[:, :-1]`).
    pub fn prompt_ids(&self, prompt: Option<&str>) -> Vec<u32> {
        let bos = self.config.text_config.bos_token_id;
        match prompt {
            None => vec![bos],
            Some(prompt) => {
                let mut ids = self.tokenizer.encode(prompt);
                ids.pop();
                ids[0] = bos;
                ids
            }
        }
    }

    /// `vision_model(pixel_values).last_hidden_state`: [b, patches + 1, hidden].
    pub fn image_embeds(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.vision_model
            .forward(pixel_values)
            .map_err(|source| self.blip_error(source))
    }

    /// `generate(pixel_values, input_ids=prompt)`: one row of ids per image.
    pub fn generate(
        &self,
        pixel_values: &Tensor,
        options: &CaptionOptions,
    ) -> Result<Vec<Vec<u32>>> {
        let prompt = self.prompt_ids(options.prompt.as_deref());
        let limit = self.config.text_config.max_position_embeddings;
        if options.max_new_tokens == 0 || options.num_beams == 0 {
            return Err(DataError::InvalidRequest(format!(
                "max_new_tokens and num_beams must be at least 1, got {} and {}",
                options.max_new_tokens, options.num_beams
            )));
        }
        if prompt.len() + options.max_new_tokens > limit {
            return Err(DataError::InvalidRequest(format!(
                "the prompt ({} tokens) plus max_new_tokens ({}) exceed the decoder's {limit} positions",
                prompt.len(),
                options.max_new_tokens
            )));
        }
        let image_embeds = self.image_embeds(pixel_values)?;
        let text = &self.config.text_config;
        let settings = GenerationSettings {
            max_new_tokens: options.max_new_tokens,
            num_beams: options.num_beams,
            eos_token_id: text.sep_token_id,
            pad_token_id: text.pad_token_id,
        };
        generate::generate(&self.text_decoder, &image_embeds, &prompt, &settings)
            .map_err(|source| self.blip_error(source))
    }

    /// Captions of `images`, in order, generated as one batch.
    pub fn caption_images(
        &self,
        images: &[DynamicImage],
        options: &CaptionOptions,
    ) -> Result<Vec<Caption>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let pixel_values = images
            .iter()
            .map(|image| self.processor.preprocess(image, &self.device))
            .collect::<Result<Vec<_>>>()?;
        let pixel_values = Tensor::stack(&pixel_values, 0)?; // [b, 3, size, size]
        Ok(self
            .generate(&pixel_values, options)?
            .into_iter()
            .map(|ids| Caption {
                text: self.tokenizer.decode(&ids),
                ids,
            })
            .collect())
    }
}

fn read_json(path: &Path, what: &'static str) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        what,
        source,
    })
}

/// `BlipImageProcessor`'s settings from `preprocessor_config.json` (or the
/// `image_processor` object of `processor_config.json`), with its class defaults: size
/// 384×384 (an integer size is square), no center crop, bicubic, OpenAI CLIP mean/std.
fn blip_processor_config(dir: &Path) -> Result<ClipImageProcessorConfig> {
    let preprocessor = dir.join("preprocessor_config.json");
    let processor = dir.join("processor_config.json");
    let (path, value) = if preprocessor.is_file() {
        let value = read_json(&preprocessor, "an image processor configuration")?;
        (preprocessor, value)
    } else if processor.is_file() {
        let value = read_json(&processor, "a processor configuration")?;
        let nested =
            value
                .get("image_processor")
                .cloned()
                .ok_or_else(|| DataError::BadModelFile {
                    path: processor.clone(),
                    message: "no `image_processor` object".into(),
                })?;
        (processor, nested)
    } else {
        return Err(DataError::MissingModelPart {
            what: "the BLIP image processor settings (preprocessor_config.json or processor_config.json)".into(),
            path: preprocessor,
        });
    };
    let mut config = ClipImageProcessorConfig::from_json(&value)
        .map_err(|message| DataError::BadModelFile { path, message })?;
    if value.get("do_center_crop").is_none_or(Value::is_null) {
        config.do_center_crop = false;
    }
    config.size = match (
        value.get("size").filter(|size| !size.is_null()),
        config.size,
    ) {
        (None, _) => ResizeTarget::Exact {
            height: 384,
            width: 384,
        },
        // default_to_square: `{"shortest_edge": n}` or `n` is n×n
        (Some(_), ResizeTarget::ShortestEdge(side)) => ResizeTarget::Exact {
            height: side,
            width: side,
        },
        (Some(_), exact) => exact,
    };
    Ok(config)
}
