//! The trained edit model as a diffusers folder that `huatu edit --instruction` and
//! diffusers' `StableDiffusionXLInstructPix2PixPipeline.from_pretrained` load: the base
//! folder's scheduler, tokenizers, text encoders and VAE (small files copied, `.safetensors`
//! and `.bin` weights hard-linked where the file system allows, copied otherwise), a
//! `model_index.json` naming the InstructPix2Pix pipeline, and `unet/` with the trained
//! 8-channel weights (LoRA adapters merged: W + (α/r)·B·A) and its config with
//! `in_channels` 8. Written into a temporary sibling folder and renamed into place.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use huatu_diffusion::loading::SdxlComponents;

use crate::lora_params::LoraParams;
use crate::lora_save::write_safetensors_atomically;
use crate::{Error, Result};

const COPIED: [&str; 6] = [
    "scheduler",
    "tokenizer",
    "tokenizer_2",
    "text_encoder",
    "text_encoder_2",
    "vae",
];

/// Refuses an `--out` that holds something already (checked before training).
pub fn check_output(out: &Path) -> Result<()> {
    let occupied = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_some(),
        Err(_) => out.exists(),
    };
    if occupied {
        return Err(Error::Setting(format!(
            "the output folder {} already exists and is not empty; choose a new folder",
            out.display()
        )));
    }
    Ok(())
}

fn write_error(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Copies `from` (symbolic links followed) into `to`, hard-linking weight files.
fn copy_folder(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(write_error(to))?;
    let entries = std::fs::read_dir(from).map_err(|source| Error::Read {
        path: from.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: from.to_path_buf(),
            source,
        })?;
        let source_path = entry.path();
        let target = to.join(entry.file_name());
        if source_path.is_dir() {
            copy_folder(&source_path, &target)?;
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let weights = name.ends_with(".safetensors") || name.ends_with(".bin");
        let real = std::fs::canonicalize(&source_path).unwrap_or(source_path.clone());
        if weights && std::fs::hard_link(&real, &target).is_ok() {
            continue;
        }
        std::fs::copy(&real, &target).map_err(write_error(&target))?;
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|error| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("not JSON: {error}"),
    })
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default() + "\n";
    std::fs::write(path, text).map_err(write_error(path))
}

/// Every UNet weight as the model holds it now, by diffusers name, with `lora`'s adapters
/// merged into their layers' weights. The unmerged tensors are the model's own (no second
/// 10 GB for SDXL), sharing storage with the trained variables: copy them to keep their
/// values past another optimizer step.
pub fn unet_weights(
    components: &SdxlComponents,
    lora: Option<&LoraParams>,
) -> Result<Vec<(String, Tensor)>> {
    let table = &components.weights.unet;
    let mut merged: HashMap<String, Tensor> = HashMap::new();
    if let Some(params) = lora {
        for layer in &params.layers {
            let name = format!("{}.weight", layer.name);
            let weight = table.get(&name).ok_or_else(|| {
                Error::Setting(format!(
                    "the adapter's layer `{}` has no weight",
                    layer.name
                ))
            })?;
            let delta = (layer.up.as_tensor().matmul(layer.down.as_tensor())? * params.scale())?;
            merged.insert(name, (weight.to_dtype(DType::F32)? + delta)?);
        }
    }
    let mut weights = Vec::new();
    for name in table.names() {
        let tensor = match merged.remove(&name) {
            Some(tensor) => tensor,
            None => table
                .get(&name)
                .ok_or_else(|| Error::Setting(format!("no UNet weight `{name}`")))?,
        };
        weights.push((name, tensor.to_dtype(DType::F32)?));
    }
    Ok(weights)
}

/// Writes the model folder `out` from the base folder `base` and the trained UNet. With
/// `replace` (a resumed run) an existing model folder at `out` (one with a
/// `model_index.json`) is replaced once the new one is complete.
pub fn save_edit_model(
    components: &SdxlComponents,
    lora: Option<&LoraParams>,
    base: &Path,
    out: &Path,
    metadata: BTreeMap<String, String>,
    replace: bool,
) -> Result<()> {
    let replacing = replace && out.join("model_index.json").is_file();
    if !replacing {
        check_output(out)?;
    }
    let name = out
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let staging: PathBuf = out.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(write_error(&staging))?;
    }
    let written = (|| -> Result<()> {
        std::fs::create_dir_all(&staging).map_err(write_error(&staging))?;
        for component in COPIED {
            copy_folder(&base.join(component), &staging.join(component))?;
        }
        let mut index = read_json(&base.join("model_index.json"))?;
        if let Some(object) = index.as_object_mut() {
            object.insert(
                "_class_name".into(),
                "StableDiffusionXLInstructPix2PixPipeline".into(),
            );
            // The text-to-image pipeline's optional IP-Adapter parts, which the
            // InstructPix2Pix pipeline does not take.
            object.remove("feature_extractor");
            object.remove("image_encoder");
        }
        write_json(&staging.join("model_index.json"), &index)?;
        let mut config = read_json(&base.join("unet/config.json"))?;
        if let Some(object) = config.as_object_mut() {
            object.insert("in_channels".into(), 8.into());
        }
        std::fs::create_dir_all(staging.join("unet")).map_err(write_error(&staging))?;
        write_json(&staging.join("unet/config.json"), &config)?;
        let mut header: HashMap<String, String> = metadata.into_iter().collect();
        header.insert("format".into(), "pt".into());
        write_safetensors_atomically(
            unet_weights(components, lora)?,
            header,
            &staging.join("unet/diffusion_pytorch_model.safetensors"),
        )
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(error);
    }
    let previous = out.with_file_name(format!(".{name}.{}.previous", std::process::id()));
    if replacing {
        std::fs::rename(out, &previous).map_err(write_error(out))?;
    } else if out.is_dir() {
        // An empty folder (check_output allowed it) makes way for the new one.
        std::fs::remove_dir(out).map_err(write_error(out))?;
    }
    std::fs::rename(&staging, out).map_err(|source| {
        let _ = std::fs::remove_dir_all(&staging);
        if replacing {
            let _ = std::fs::rename(&previous, out);
        }
        Error::Write {
            path: out.to_path_buf(),
            source,
        }
    })?;
    if replacing {
        std::fs::remove_dir_all(&previous).map_err(write_error(&previous))?;
    }
    Ok(())
}
