//! Loading SDXL from one checkpoint file in the original Stability key layout, as model
//! sites distribute them (after diffusers `StableDiffusionXLPipeline.from_single_file`).
//! The checkpoint is memory-mapped once; each component gets a VarBuilder whose backend
//! answers diffusers names by reading the original tensor (`original_keys`), so the models
//! load exactly as from a diffusers folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::original_keys::{original_name, CheckpointLayout, Component, Transform, UNET_PREFIX};
use super::sdxl_parts::{SdxlConfigs, SdxlWeights};
use crate::{Error, Result};

/// Opens a single-file checkpoint: its configs and tokenizers from `config_dir`, its
/// weights renamed to diffusers keys.
pub fn read(path: &Path, config_dir: Option<&Path>) -> Result<(SdxlConfigs, SdxlWeights)> {
    let Some(config_dir) = config_dir else {
        return Err(Error::MissingModelPart {
            what: "configs and tokenizers for the single-file checkpoint (a diffusers SDXL folder \
                   as its config folder; its weights are not needed)"
                .into(),
            path: path.to_path_buf(),
        });
    };
    let configs = SdxlConfigs::from_folder(config_dir)?;
    let checkpoint = Arc::new(open_checkpoint(path)?);
    if !checkpoint
        .tensors()
        .iter()
        .any(|(name, _)| name.starts_with(UNET_PREFIX))
    {
        return Err(Error::BadModelFile {
            path: path.to_path_buf(),
            message: format!(
                "no `{UNET_PREFIX}*` tensors: not a single-file SDXL checkpoint in the original layout \
                 (a diffusers component file belongs in a diffusers folder)"
            ),
        });
    }
    let layout = CheckpointLayout {
        layers_per_block: configs.unet.layers_per_block,
        up_has_attention: configs
            .unet
            .up_block_types
            .iter()
            .map(|kind| kind.contains("CrossAttn"))
            .collect(),
        vae_levels: configs.vae.up_block_types.len(),
    };
    let source = |component: Component| -> Box<dyn SimpleBackend> {
        Box::new(RenamingBackend {
            checkpoint: checkpoint.clone(),
            path: path.to_path_buf(),
            component,
            layout: layout.clone(),
        })
    };
    let weights = SdxlWeights {
        unet: source(Component::Unet),
        vae: source(Component::Vae),
        text_encoder: source(Component::TextEncoder),
        text_encoder_2: source(Component::TextEncoder2),
    };
    Ok((configs, weights))
}

fn open_checkpoint(path: &Path) -> Result<MmapedSafetensors> {
    if !path.is_file() {
        return Err(Error::MissingModelPart {
            what: "single-file checkpoint".into(),
            path: path.to_path_buf(),
        });
    }
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        return Err(Error::BadModelFile {
            path: path.to_path_buf(),
            message: "only .safetensors checkpoints are read (convert .ckpt pickles first)".into(),
        });
    }
    super::safetensors_files::check_header(path)?;
    // SAFETY: the file is mapped read-only; like every safetensors reader we rely on it not
    // being modified while the model is loaded.
    #[expect(unsafe_code, reason = "memory-mapping a safetensors checkpoint")]
    let mapped = unsafe { MmapedSafetensors::new(path) };
    mapped.map_err(|error| Error::BadModelFile {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// Answers diffusers names of one component from the original checkpoint.
struct RenamingBackend {
    checkpoint: Arc<MmapedSafetensors>,
    path: PathBuf,
    component: Component,
    layout: CheckpointLayout,
}

impl RenamingBackend {
    fn missing(&self, name: &str, original: Option<&str>) -> candle_core::Error {
        let looked_for = original
            .map(|o| format!(" (looked for `{o}`)"))
            .unwrap_or_default();
        candle_core::Error::Msg(format!(
            "{}: no tensor for `{name}`{looked_for} of the {:?} component",
            self.path.display(),
            self.component
        ))
    }

    fn read(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<(Tensor, Transform)> {
        let (original, transform) = original_name(self.component, name, &self.layout)
            .ok_or_else(|| self.missing(name, None))?;
        let stored = self
            .checkpoint
            .load(&original, device)
            .map_err(|_| self.missing(name, Some(&original)))?;
        let tensor = match transform {
            Transform::Reshape => stored,
            Transform::Transpose => stored.t()?.contiguous()?,
            Transform::ThirdOf(part) => {
                let third = stored.dim(0)? / 3;
                stored.narrow(0, part * third, third)?.contiguous()?
            }
        };
        Ok((tensor.to_dtype(dtype)?, transform))
    }
}

impl SimpleBackend for RenamingBackend {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _init: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let (tensor, _) = self.read(name, dtype, device)?;
        if tensor.shape() == &shape {
            return Ok(tensor);
        }
        // 1×1 convolutions stored for linear layers (and the reverse) have the same elements.
        if tensor.elem_count() == shape.elem_count() {
            return tensor.reshape(shape);
        }
        Err(candle_core::Error::Msg(format!(
            "{}: `{name}` has shape {:?}, expected {:?}",
            self.path.display(),
            tensor.dims(),
            shape.dims()
        )))
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        Ok(self.read(name, dtype, device)?.0)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        original_name(self.component, name, &self.layout)
            .is_some_and(|(original, _)| self.checkpoint.get(&original).is_ok())
    }
}
