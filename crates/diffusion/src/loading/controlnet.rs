//! Loading an SDXL ControlNet: a diffusers folder (`config.json` +
//! `diffusion_pytorch_model[.fp16].safetensors`), or one `.safetensors` file in diffusers key
//! layout with its `config.json` beside it (as ControlNets are often published).

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::safetensors_files::{component_weight_files, mmap_backend, read_text};
use crate::models::controlnet::{ControlNetConfig, ControlNetModel};
use crate::{Error, Result};

pub fn load_controlnet(path: &Path, dtype: DType, device: &Device) -> Result<ControlNetModel> {
    let (config_path, files) = if path.is_dir() {
        (path.join("config.json"), component_weight_files(path)?)
    } else if path.is_file() {
        let dir = path.parent().unwrap_or(Path::new("."));
        (dir.join("config.json"), vec![path.to_path_buf()])
    } else {
        return Err(Error::MissingModelPart {
            what: "ControlNet (a diffusers folder or a .safetensors file)".into(),
            path: path.to_path_buf(),
        });
    };
    if !config_path.is_file() {
        return Err(Error::MissingModelPart {
            what: "ControlNet config.json".into(),
            path: config_path,
        });
    }
    let config = ControlNetConfig::from_json(&read_text(&config_path)?).map_err(|error| {
        Error::BadModelFile {
            path: config_path.clone(),
            message: error.to_string(),
        }
    })?;
    let vb = VarBuilder::from_backend(mmap_backend(&files)?, dtype, device.clone());
    ControlNetModel::new(vb, &config).map_err(|error| Error::BadModelFile {
        path: path.to_path_buf(),
        message: format!("not an SDXL ControlNet matching its config: {error}"),
    })
}
