//! The UNet an InstructPix2Pix run trains, loaded from a diffusers folder with its
//! `conv_in` widened to 8 input channels as diffusers' `train_instruct_pix2pix_sdxl.py`
//! does (the first 4 input channels keep the base weights, the new 4 are zero; the bias is
//! the base's, where the script's fresh `nn.Conv2d` keeps a random one), or as it is when
//! the model already has 8 (an existing InstructPix2Pix model).
//!
//! The trained weights are candle `Var`s handed to the model by its `VarBuilder`: `conv_in`
//! alone (`--mode lora`, beside the LoRA adapters) or every UNet weight (`--mode full`).
//! The layers see a tracked weight and take candle's own convolution, matmul and norm
//! formulations, whose backward gives the weight's gradient (huatu-kernels' frozen-weight
//! operations are only used for weights that are not variables).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::Init;
use huatu_diffusion::loading::safetensors_files::{component_weight_files, mmap_backend};
use huatu_diffusion::loading::sdxl::{SdxlConfigs, SdxlWeights};
use huatu_diffusion::loading::{LoadOptions, SdxlComponents};

use crate::adapters::{build_adapters, AdapterSettings};
use crate::lora_params::LoraParams;
use crate::{Error, Result};

use super::InstructPix2PixTrainingRequest;

/// What a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingMode {
    /// LoRA adapters on the UNet's linear layers, plus `conv_in` (weight and bias) in full.
    Lora,
    /// Every UNet weight.
    Full,
}

impl TrainingMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lora => "lora",
            Self::Full => "full",
        }
    }
}

impl std::fmt::Display for TrainingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TrainingMode {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text {
            "lora" => Ok(Self::Lora),
            "full" => Ok(Self::Full),
            other => Err(format!("unknown mode `{other}` (expected lora or full)")),
        }
    }
}

/// The UNet's trainable weights, by diffusers name, in name order.
#[derive(Debug, Clone)]
pub struct UnetVars {
    pub vars: Vec<(String, Var)>,
    /// The base model's `conv_in` input channels (4: widened here; 8: an InstructPix2Pix model).
    pub base_in_channels: usize,
}

/// Hands the model its weights from the base files, with `conv_in.weight` replaced by the
/// widened one and the trained weights as variables (each name once).
struct TrainableBackend {
    base: Box<dyn SimpleBackend>,
    conv_in_weight: Tensor,
    train_all: bool,
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
}

impl TrainableBackend {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Var>> {
        self.vars
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SimpleBackend for TrainableBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(var) = self.lock().get(name) {
            return Ok(var.as_tensor().clone());
        }
        let tensor = if name == "conv_in.weight" {
            if self.conv_in_weight.shape() != &shape {
                candle_core::bail!(
                    "conv_in.weight: the model asks for {shape:?}, the widened weight is {:?}",
                    self.conv_in_weight.dims()
                );
            }
            self.conv_in_weight.to_dtype(dtype)?.to_device(device)?
        } else {
            self.base.get(shape, name, init, dtype, device)?
        };
        if self.train_all || name.starts_with("conv_in.") {
            let var = Var::from_tensor(&tensor.to_dtype(DType::F32)?)?;
            let held = var.as_tensor().clone();
            self.lock().insert(name.to_string(), var);
            return Ok(held);
        }
        Ok(tensor)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        self.base.get_unchecked(name, dtype, device)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.base.contains_tensor(name)
    }
}

/// Loads the diffusers folder `root` in f32 with an 8-input-channel UNet whose trained
/// weights (`mode`) are variables.
pub fn load_trainable(
    root: &Path,
    mode: TrainingMode,
    device: &Device,
) -> Result<(SdxlComponents, UnetVars)> {
    if !root.is_dir() {
        return Err(Error::Setting(format!(
            "InstructPix2Pix training needs the model as a diffusers folder (model_index.json, unet/, vae/, …), got {}",
            root.display()
        )));
    }
    let mut configs = SdxlConfigs::from_folder(root)?;
    let base_in_channels = configs.unet.in_channels;
    if base_in_channels != 4 && base_in_channels != 8 {
        return Err(Error::Setting(format!(
            "the UNet in {} has {base_in_channels} input channels: InstructPix2Pix training starts from a 4-channel SDXL or an 8-channel InstructPix2Pix UNet",
            root.display()
        )));
    }
    let weights = |component: &str| -> Result<Box<dyn SimpleBackend>> {
        Ok(mmap_backend(&component_weight_files(
            &root.join(component),
        )?)?)
    };
    let unet_base = weights("unet")?;
    let conv_in_out = configs.unet.block_out_channels[0];
    let base_weight = unet_base.get(
        Shape::from((conv_in_out, base_in_channels, 3, 3)),
        "conv_in.weight",
        Init::Const(0.),
        DType::F32,
        device,
    )?;
    // [c0, 4, 3, 3] → [c0, 8, 3, 3]: the original image's channels start at zero.
    let conv_in_weight = if base_in_channels == 4 {
        Tensor::cat(&[&base_weight, &base_weight.zeros_like()?], 1)?
    } else {
        base_weight
    };
    configs.unet.in_channels = 8;
    let vars = Arc::new(Mutex::new(BTreeMap::new()));
    let backend = TrainableBackend {
        base: unet_base,
        conv_in_weight,
        train_all: mode == TrainingMode::Full,
        vars: vars.clone(),
    };
    let sources = SdxlWeights {
        unet: Box::new(backend),
        vae: weights("vae")?,
        text_encoder: weights("text_encoder")?,
        text_encoder_2: weights("text_encoder_2")?,
    };
    let components =
        SdxlComponents::from_parts(configs, sources, LoadOptions::default(), DType::F32, device)?;
    let vars = vars
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .map(|(name, var)| (name.clone(), var.clone()))
        .collect();
    Ok((
        components,
        UnetVars {
            vars,
            base_in_channels,
        },
    ))
}

/// The adapters of `lora` mode: peft's gaussian init or `--init-lora`, attached.
pub(crate) fn build_lora(
    components: &mut SdxlComponents,
    request: &InstructPix2PixTrainingRequest,
) -> Result<LoraParams> {
    build_adapters(
        components,
        &AdapterSettings {
            rank: request.rank,
            alpha: request.alpha,
            targets: request.targets,
            init_lora: request.init_lora.as_deref(),
            seed: request.training.seed,
            train_text_encoder: false,
        },
    )
}
