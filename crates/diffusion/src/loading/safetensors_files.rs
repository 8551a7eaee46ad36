//! Finding and memory-mapping the safetensors weight files of one diffusers component
//! (single file, `.fp16` variant, or sharded with an `.index.json`).

use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// Weight file names diffusers and transformers write, in order of preference.
const WEIGHT_NAMES: [&str; 4] = [
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "model.fp16.safetensors",
];

const INDEX_NAMES: [&str; 2] = [
    "diffusion_pytorch_model.safetensors.index.json",
    "model.safetensors.index.json",
];

/// The safetensors files holding one component's weights.
pub fn component_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    for name in WEIGHT_NAMES {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(vec![path]);
        }
    }
    for name in INDEX_NAMES {
        let path = dir.join(name);
        if path.is_file() {
            return sharded_files(&path);
        }
    }
    let has_pickle = ["diffusion_pytorch_model.bin", "pytorch_model.bin"]
        .iter()
        .any(|name| dir.join(name).is_file());
    Err(Error::MissingModelPart {
        what: if has_pickle {
            "safetensors weights (only PyTorch .bin files were found; convert them to .safetensors)"
                .to_string()
        } else {
            format!("weights ({})", WEIGHT_NAMES.join(" or "))
        },
        path: dir.to_path_buf(),
    })
}

fn sharded_files(index_path: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = read_text(index_path)?;
    let index: Index = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: index_path.to_path_buf(),
        what: "a safetensors shard index",
        source,
    })?;
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let mut files: Vec<PathBuf> = index
        .weight_map
        .values()
        .map(|file| dir.join(file))
        .collect();
    files.sort();
    files.dedup();
    for file in &files {
        if !file.is_file() {
            return Err(Error::MissingModelPart {
                what: "weight shard".into(),
                path: file.clone(),
            });
        }
    }
    Ok(files)
}

pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Memory-maps the files into a VarBuilder that converts each tensor to `dtype` on access.
pub fn mmap_var_builder(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    Ok(VarBuilder::from_backend(
        mmap_backend(files)?,
        dtype,
        device.clone(),
    ))
}

/// Memory-maps the files (checked first, so a bad one is named) as a weight source.
pub fn mmap_backend(files: &[PathBuf]) -> Result<Box<dyn SimpleBackend>> {
    for file in files {
        check_header(file)?;
    }
    // SAFETY: the files are mapped read-only; like every safetensors reader we rely on them
    // not being modified while the model is loaded.
    #[expect(unsafe_code, reason = "memory-mapping safetensors files")]
    let mapped = unsafe { MmapedSafetensors::multi(files) };
    let first = files.first().cloned().unwrap_or_default();
    let mapped = mapped.map_err(|error| Error::BadModelFile {
        path: first,
        message: error.to_string(),
    })?;
    Ok(Box::new(mapped))
}

/// Reads a safetensors header so that a truncated or foreign file is reported by name.
pub fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let length = file
        .metadata()
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut size = [0u8; 8];
    let bad = |message: &str| Error::BadModelFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    file.read_exact(&mut size)
        .map_err(|_| bad("too short to be a safetensors file"))?;
    let header_len = u64::from_le_bytes(size);
    if header_len == 0 || header_len > length.saturating_sub(8) || header_len > 100_000_000 {
        return Err(bad("not a safetensors file (bad header length)"));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|_| bad("truncated safetensors header"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| bad("safetensors header is not valid JSON"))?;
    let mut end = 0u64;
    if let Some(entries) = header.as_object() {
        for (name, entry) in entries {
            if name == "__metadata__" {
                continue;
            }
            if let Some(offset) = entry
                .get("data_offsets")
                .and_then(|o| o.get(1))
                .and_then(|o| o.as_u64())
            {
                end = end.max(offset);
            }
        }
    }
    if 8 + header_len + end > length {
        return Err(bad("the file is truncated (tensor data runs past its end)"));
    }
    Ok(())
}
