//! Loading a whole SDXL model — from a diffusers folder (model_index.json, unet/, vae/,
//! text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/) or from a
//! single-file checkpoint in the original Stability key layout — into `SdxlComponents`.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::safetensors_files::{component_weight_files, mmap_backend};
pub use super::sdxl_parts::{read_json, SdxlConfigs, SdxlWeights};
use super::weight_table::WeightTable;
use crate::models::autoencoder_kl::{AutoencoderKL, AutoencoderKLConfig};
use crate::models::clip_text::{ClipTextModel, ClipTextModelWithProjection};
use crate::models::unet_2d_condition::UNet2DConditionModel;
use crate::schedulers::{SchedulerConfig, SchedulerKind};
use crate::tokenizer::ClipTokenizer;
use crate::{Error, Result};

/// Where a model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A diffusers folder.
    DiffusersFolder(PathBuf),
    /// A single-file checkpoint; configs and tokenizers come from `config_dir` (a diffusers
    /// folder without weights is enough) or, when absent, from the built-in SDXL base ones.
    SingleFile {
        path: PathBuf,
        config_dir: Option<PathBuf>,
    },
}

impl ModelSource {
    /// A directory is a diffusers folder, a `.safetensors` file a single-file checkpoint.
    pub fn from_path(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Ok(Self::DiffusersFolder(path.to_path_buf()))
        } else if path.is_file() {
            Ok(Self::SingleFile {
                path: path.to_path_buf(),
                config_dir: None,
            })
        } else {
            Err(Error::MissingModelPart {
                what: "model (a diffusers folder or a .safetensors checkpoint)".into(),
                path: path.to_path_buf(),
            })
        }
    }
}

/// Precision settings for loading.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Compute dtype of the UNet and text encoders.
    pub dtype: DType,
    /// Compute dtype of the VAE; `None` picks f32 when `dtype` is f16 and the VAE config asks
    /// for `force_upcast` (SDXL's VAE overflows in f16), else `dtype`.
    pub vae_dtype: Option<DType>,
    /// How the UNet's and text encoders' weights are held in memory; `None` is `dtype`.
    /// f16/bf16 with an f32 `dtype` halves their memory (SDXL's UNet 10 → 5 GB) and
    /// computes in f32: each layer widens its weights for the call (the CPU's way to half
    /// precision, where candle has no bf16 matrix product), except the linear layers with
    /// bf16 weights on a CPU with AVX-512 BF16, which multiply in bf16 with f32 sums.
    pub storage_dtype: Option<DType>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            vae_dtype: None,
            storage_dtype: None,
        }
    }
}

impl LoadOptions {
    /// The dtype weights are held in.
    pub fn storage(&self) -> DType {
        self.storage_dtype.unwrap_or(self.dtype)
    }
}

/// Everything a SDXL pipeline needs, loaded.
pub struct SdxlComponents {
    pub tokenizer: ClipTokenizer,
    pub tokenizer_2: ClipTokenizer,
    pub text_encoder: ClipTextModel,
    pub text_encoder_2: ClipTextModelWithProjection,
    pub unet: UNet2DConditionModel,
    pub vae: AutoencoderKL,
    pub vae_config: AutoencoderKLConfig,
    pub scheduler_config: SchedulerConfig,
    /// The scheduler the model was saved with, when it is one huatu implements.
    pub default_scheduler: Option<SchedulerKind>,
    /// model_index.json's `force_zeros_for_empty_prompt` (true for SDXL base).
    pub force_zeros_for_empty_prompt: bool,
    /// The dtype the UNet and text encoders compute in.
    pub dtype: DType,
    /// The dtype their weights are held in (`LoadOptions::storage_dtype`).
    pub weight_dtype: DType,
    pub vae_dtype: DType,
    pub device: Device,
    /// The weights of the parts LoRA adapters change, as the models hold them.
    pub weights: SdxlWeightTables,
    /// The LoRA adapters merged into `weights` now (see `lora::apply`).
    pub active_loras: crate::lora::ActiveLoras,
}

/// Per component, the weights as the model holds them (see `weight_table`).
#[derive(Debug, Clone)]
pub struct SdxlWeightTables {
    pub unet: WeightTable,
    pub text_encoder: WeightTable,
    pub text_encoder_2: WeightTable,
}

impl SdxlComponents {
    pub fn load(source: &ModelSource, options: LoadOptions, device: &Device) -> Result<Self> {
        crate::device::check_supported(options.dtype, device)?;
        match source {
            ModelSource::DiffusersFolder(root) => {
                let configs = SdxlConfigs::from_folder(root)?;
                let vae_dtype = vae_dtype(&configs.vae, options);
                let weights = |component: &str| -> Result<Box<dyn SimpleBackend>> {
                    let dir = root.join(component);
                    if !dir.is_dir() {
                        return Err(Error::MissingModelPart {
                            what: format!("{component}/ folder"),
                            path: dir,
                        });
                    }
                    mmap_backend(&component_weight_files(&dir)?)
                };
                let weights = SdxlWeights {
                    unet: weights("unet")?,
                    vae: weights("vae")?,
                    text_encoder: weights("text_encoder")?,
                    text_encoder_2: weights("text_encoder_2")?,
                };
                Self::from_parts(configs, weights, options, vae_dtype, device)
            }
            ModelSource::SingleFile { path, config_dir } => {
                let (configs, weights) =
                    super::single_file_model::read(path, config_dir.as_deref())?;
                let vae_dtype = vae_dtype(&configs.vae, options);
                Self::from_parts(configs, weights, options, vae_dtype, device)
            }
        }
    }

    /// Builds every model from configs and weights; errors name the component.
    pub fn from_parts(
        configs: SdxlConfigs,
        weights: SdxlWeights,
        options: LoadOptions,
        vae_dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let dtype = options.dtype;
        let storage = options.storage();
        let in_component = |component: &'static str| {
            move |error: Error| Error::BadModelFile {
                path: PathBuf::from(component),
                message: error.to_string(),
            }
        };
        let (unet_vb, unet_weights) = WeightTable::recording(weights.unet, storage, device);
        let (text_encoder_vb, text_encoder_weights) =
            WeightTable::recording(weights.text_encoder, storage, device);
        let (text_encoder_2_vb, text_encoder_2_weights) =
            WeightTable::recording(weights.text_encoder_2, storage, device);
        let vae_vb = VarBuilder::from_backend(weights.vae, vae_dtype, device.clone());
        let unet =
            UNet2DConditionModel::new(unet_vb, &configs.unet).map_err(in_component("unet"))?;
        let vae = AutoencoderKL::new(vae_vb, &configs.vae).map_err(in_component("vae"))?;
        let text_encoder = ClipTextModel::new(text_encoder_vb, &configs.text_encoder)
            .map_err(in_component("text_encoder"))?
            .computing_in(dtype);
        let text_encoder_2 =
            ClipTextModelWithProjection::new(text_encoder_2_vb, &configs.text_encoder_2)
                .map_err(in_component("text_encoder_2"))?
                .computing_in(dtype);
        Ok(Self {
            tokenizer: configs.tokenizer,
            tokenizer_2: configs.tokenizer_2,
            text_encoder,
            text_encoder_2,
            unet,
            vae,
            vae_config: configs.vae,
            scheduler_config: configs.scheduler,
            default_scheduler: configs.default_scheduler,
            force_zeros_for_empty_prompt: configs.force_zeros_for_empty_prompt,
            dtype,
            weight_dtype: storage,
            vae_dtype,
            device: device.clone(),
            weights: SdxlWeightTables {
                unet: unet_weights,
                text_encoder: text_encoder_weights,
                text_encoder_2: text_encoder_2_weights,
            },
            active_loras: crate::lora::ActiveLoras::default(),
        })
    }
}

pub fn vae_dtype(config: &AutoencoderKLConfig, options: LoadOptions) -> DType {
    options
        .vae_dtype
        .unwrap_or(if options.dtype == DType::F16 && config.force_upcast {
            DType::F32
        } else {
            options.dtype
        })
}
