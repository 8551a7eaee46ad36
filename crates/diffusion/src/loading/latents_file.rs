//! Latent tensors in safetensors files, as `--latents` / `--save-latents` exchange them
//! with other implementations: one f32 tensor under the key `latents`, [1, 4, h/8, w/8].

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

pub const LATENTS_KEY: &str = "latents";

pub fn read_latents(path: &Path, device: &Device) -> Result<Tensor> {
    let bad = |message: String| Error::BadModelFile {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|error| bad(format!("not a readable safetensors file: {error}")))?;
    let latents = tensors.get(LATENTS_KEY).ok_or_else(|| {
        let mut keys: Vec<&String> = tensors.keys().collect();
        keys.sort();
        bad(format!("no tensor named `{LATENTS_KEY}` (found {keys:?})"))
    })?;
    if latents.rank() != 4 || latents.dim(0)? != 1 {
        return Err(bad(format!(
            "`{LATENTS_KEY}` must have shape [1, C, h/8, w/8], got {:?}",
            latents.dims()
        )));
    }
    Ok(latents.to_dtype(DType::F32)?)
}

pub fn write_latents(path: &Path, latents: &Tensor) -> Result<()> {
    let latents = latents.to_dtype(DType::F32)?.contiguous()?;
    candle_core::safetensors::save(
        &std::collections::HashMap::from([(LATENTS_KEY, latents)]),
        path,
    )
    .map_err(|error| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(error.to_string()),
    })
}
