//! What a SDXL model is built from: the configuration part of a diffusers folder
//! (model_index.json, the four component configs, both tokenizers, the scheduler) and
//! where its four weight sets are read from — shared by the diffusers-folder and the
//! single-file loaders.

use std::path::Path;

use candle_nn::var_builder::SimpleBackend;
use serde::de::DeserializeOwned;

use super::safetensors_files::read_text;
use crate::models::autoencoder_kl::AutoencoderKLConfig;
use crate::models::clip_text::ClipTextConfig;
use crate::models::unet_2d_condition::UNet2DConditionConfig;
use crate::schedulers::{SchedulerConfig, SchedulerKind};
use crate::tokenizer::ClipTokenizer;
use crate::{Error, Result};

#[derive(Debug, serde::Deserialize)]
struct ModelIndex {
    #[serde(rename = "_class_name", default)]
    class_name: Option<String>,
    #[serde(default = "default_true")]
    force_zeros_for_empty_prompt: bool,
}

fn default_true() -> bool {
    true
}

pub fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T> {
    if !path.is_file() {
        return Err(Error::MissingModelPart {
            what: what.to_string(),
            path: path.to_path_buf(),
        });
    }
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        what,
        source,
    })
}

/// The configuration part of a diffusers folder (no weights needed).
pub struct SdxlConfigs {
    pub tokenizer: ClipTokenizer,
    pub tokenizer_2: ClipTokenizer,
    pub text_encoder: ClipTextConfig,
    pub text_encoder_2: ClipTextConfig,
    pub unet: UNet2DConditionConfig,
    pub vae: AutoencoderKLConfig,
    pub scheduler: SchedulerConfig,
    pub default_scheduler: Option<SchedulerKind>,
    pub force_zeros_for_empty_prompt: bool,
}

impl SdxlConfigs {
    pub fn from_folder(root: &Path) -> Result<Self> {
        let index: ModelIndex = read_json(&root.join("model_index.json"), "model_index.json")?;
        if let Some(class_name) = &index.class_name {
            if !class_name.contains("XL") {
                return Err(Error::Config(format!(
                    "{} describes a `{class_name}`, not a Stable Diffusion XL pipeline",
                    root.join("model_index.json").display()
                )));
            }
        }
        let scheduler_path = root.join("scheduler/scheduler_config.json");
        let scheduler: SchedulerConfig = read_json(&scheduler_path, "scheduler config")?;
        let unet: UNet2DConditionConfig = read_json(&root.join("unet/config.json"), "unet config")?;
        unet.validate()?;
        Ok(Self {
            tokenizer: ClipTokenizer::from_dir(&root.join("tokenizer"))?,
            tokenizer_2: ClipTokenizer::from_dir(&root.join("tokenizer_2"))?,
            text_encoder: read_json(
                &root.join("text_encoder/config.json"),
                "text_encoder config",
            )?,
            text_encoder_2: read_json(
                &root.join("text_encoder_2/config.json"),
                "text_encoder_2 config",
            )?,
            unet,
            vae: read_json(&root.join("vae/config.json"), "vae config")?,
            default_scheduler: scheduler
                .class_name
                .as_deref()
                .and_then(SchedulerKind::from_class_name),
            scheduler,
            force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt,
        })
    }
}

/// Where the four weight sets of a SDXL model are read from, by diffusers name.
pub struct SdxlWeights {
    pub unet: Box<dyn SimpleBackend>,
    pub vae: Box<dyn SimpleBackend>,
    pub text_encoder: Box<dyn SimpleBackend>,
    pub text_encoder_2: Box<dyn SimpleBackend>,
}
