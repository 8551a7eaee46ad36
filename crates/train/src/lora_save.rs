//! Writing trained adapters as people load them:
//! - `kohya` (the default, what A1111/ComfyUI users load): `lora_unet_<SGM name>`,
//!   `lora_te1_*`/`lora_te2_*` with `.lora_down.weight`, `.lora_up.weight` and a per-module
//!   `.alpha`; `ss_*` training metadata (sd-scripts' keys, `ss_tag_frequency` included) and
//!   the trigger word as `modelspec.trigger_phrase`;
//! - `diffusers`: what `StableDiffusionXLPipeline.save_lora_weights` writes for diffusers'
//!   script (`unet.<module>.lora.down.weight` / `.lora.up.weight`, `text_encoder.*`,
//!   `text_encoder_2.*`) with peft's rank and alpha in `lora_adapter_metadata`.
//!
//! Files are written beside the destination and renamed over it: an interrupted write
//! never leaves half an adapter at the output path.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{DType, Tensor};
use huatu_diffusion::loading::original_keys::{
    original_name, CheckpointLayout, Component, UNET_PREFIX,
};

use crate::lora_params::LoraParams;
use crate::{Error, Result};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    Kohya,
    Diffusers,
}

impl SaveFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kohya => "kohya",
            Self::Diffusers => "diffusers",
        }
    }
}

impl fmt::Display for SaveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SaveFormat {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text {
            "kohya" => Ok(Self::Kohya),
            "diffusers" | "peft" => Ok(Self::Diffusers),
            other => Err(format!(
                "unknown LoRA format `{other}` (expected kohya or diffusers)"
            )),
        }
    }
}

/// kohya's module name for a diffusers layer name: the SGM (original checkpoint) name for
/// the UNet, as sd-scripts writes SDXL LoRAs; transformers' name for the text encoders.
pub fn kohya_module_name(component: Component, name: &str, layout: &CheckpointLayout) -> String {
    let (prefix, module) = match component {
        Component::Unet => {
            let original = original_name(Component::Unet, &format!("{name}.weight"), layout)
                .map(|(original, _)| {
                    original
                        .trim_start_matches(UNET_PREFIX)
                        .trim_end_matches(".weight")
                        .to_string()
                })
                .unwrap_or_else(|| name.to_string());
            ("lora_unet", original)
        }
        Component::TextEncoder => ("lora_te1", with_text_model(name)),
        Component::TextEncoder2 => ("lora_te2", with_text_model(name)),
        Component::Vae => ("lora_vae", name.to_string()),
    };
    format!("{prefix}_{}", module.replace('.', "_"))
}

fn with_text_model(name: &str) -> String {
    if name.starts_with("text_model.") {
        name.to_string()
    } else {
        format!("text_model.{name}")
    }
}

fn diffusers_prefix(component: Component) -> &'static str {
    match component {
        Component::Unet => "unet",
        Component::TextEncoder => "text_encoder",
        Component::TextEncoder2 => "text_encoder_2",
        Component::Vae => "vae",
    }
}

/// Tensors by the names a file gives them.
pub type NamedTensors = Vec<(String, Tensor)>;

/// What goes into the file besides the weights.
#[derive(Debug, Clone, Default)]
pub struct SaveMetadata {
    /// sd-scripts' `ss_*` keys and modelspec entries (kohya format only).
    pub entries: BTreeMap<String, String>,
}

/// The tensors and header of `params` in `format`.
pub fn lora_tensors(
    params: &LoraParams,
    format: SaveFormat,
    layout: &CheckpointLayout,
    metadata: &SaveMetadata,
) -> Result<(NamedTensors, HashMap<String, String>)> {
    let mut tensors = Vec::with_capacity(params.layers.len() * 3);
    let mut header = HashMap::new();
    match format {
        SaveFormat::Kohya => {
            for layer in &params.layers {
                let module = kohya_module_name(layer.component, &layer.name, layout);
                tensors.push((
                    format!("{module}.lora_down.weight"),
                    layer.down.as_tensor().detach(),
                ));
                tensors.push((
                    format!("{module}.lora_up.weight"),
                    layer.up.as_tensor().detach(),
                ));
                let alpha = Tensor::new(params.alpha as f32, layer.down.device())?;
                tensors.push((format!("{module}.alpha"), alpha));
            }
            header.extend(metadata.entries.clone());
        }
        SaveFormat::Diffusers => {
            let mut targets: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for layer in &params.layers {
                let prefix = diffusers_prefix(layer.component);
                targets.entry(prefix).or_default().push(layer.name.clone());
                // diffusers' save names text-encoder adapters `lora_linear_layer`, UNet ones `lora`.
                let part = if layer.component == Component::Unet {
                    "lora"
                } else {
                    "lora_linear_layer"
                };
                // transformers 5 saves the projection model with its `text_model.` level and
                // the plain one without; diffusers' save keeps the models' own names.
                let module = match layer.component {
                    Component::TextEncoder2 => with_text_model(&layer.name),
                    _ => layer.name.clone(),
                };
                let down = format!("{prefix}.{module}.{part}.down.weight");
                tensors.push((down, layer.down.as_tensor().detach()));
                let up = format!("{prefix}.{module}.{part}.up.weight");
                tensors.push((up, layer.up.as_tensor().detach()));
            }
            header.insert("format".into(), "pt".into());
            // The script writes no adapter metadata, and loaders then take alpha = rank. Any
            // other alpha goes into peft's config, which also needs the target modules.
            if (params.alpha - params.rank as f64).abs() > f64::EPSILON {
                let mut adapter = serde_json::Map::new();
                for (prefix, modules) in targets {
                    adapter.insert(format!("{prefix}.r"), params.rank.into());
                    adapter.insert(format!("{prefix}.lora_alpha"), params.alpha.into());
                    adapter.insert(format!("{prefix}.target_modules"), modules.into());
                }
                header.insert(
                    "lora_adapter_metadata".into(),
                    serde_json::Value::Object(adapter).to_string(),
                );
            }
        }
    }
    let tensors = tensors
        .into_iter()
        .map(|(name, tensor)| Ok((name, tensor.to_dtype(DType::F32)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok((tensors, header))
}

/// Writes `params` to `path` in `format` (temporary file, then rename).
pub fn save_lora(
    params: &LoraParams,
    format: SaveFormat,
    layout: &CheckpointLayout,
    metadata: &SaveMetadata,
    path: &Path,
) -> Result<()> {
    let (tensors, header) = lora_tensors(params, format, layout, metadata)?;
    write_safetensors_atomically(tensors, header, path)
}

/// `path` + a hidden temporary name in the same folder.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// safetensors with a header, written to a temporary file and renamed into place.
pub fn write_safetensors_atomically(
    tensors: Vec<(String, Tensor)>,
    header: HashMap<String, String>,
    path: &Path,
) -> Result<()> {
    let write_error = |source: std::io::Error| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let temporary = temporary_path(path);
    let written = safetensors::tensor::serialize_to_file(tensors, Some(header), &temporary)
        .map_err(|error| write_error(std::io::Error::other(error.to_string())));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    std::fs::rename(&temporary, path).map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        write_error(source)
    })
}
