//! Loading Real-ESRGAN weights as they are published, and telling the architecture and
//! its size from the tensors alone: `.pth` through our own checkpoint reader (`pth.rs`,
//! `pickle.rs`: candle's pickle reader panics on malformed files and allocates declared
//! sizes before reading them) with the state dict wrapped in `params_ema` as in
//! RealESRGAN_x4plus.pth, in `params` as in realesr-general-x4v3.pth, or bare; and
//! `.safetensors` (a bare state dict; the safetensors crate checks every declared offset
//! and size against the file before anything is copied).

mod pickle;
pub mod pth;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::rrdbnet::RRDBNetConfig;
use super::srvgg::SRVGGNetCompactConfig;
use crate::error::{ImagingError, Result};

/// The architecture a weight file holds, with the sizes read from its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    RRDBNet(RRDBNetConfig),
    SRVGGNetCompact(SRVGGNetCompactConfig),
}

impl Architecture {
    /// How many times larger the network's output is than its input.
    pub fn scale(&self) -> usize {
        match self {
            Architecture::RRDBNet(config) => config.scale,
            Architecture::SRVGGNetCompact(config) => config.upscale,
        }
    }
}

/// The wrappers the published `.pth` files put around the state dict, tried in order
/// before the top-level dict itself.
const PTH_WRAPPERS: [&str; 2] = ["params_ema", "params"];

/// Reads every tensor of a `.pth` or `.safetensors` file (chosen by extension).
pub fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let load_error = |source: candle_core::Error| ImagingError::ModelLoad {
        path: path.to_path_buf(),
        source,
    };
    if !path.is_file() {
        return Err(ImagingError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("safetensors") => {
            candle_core::safetensors::load(path, &Device::Cpu).map_err(load_error)
        }
        Some("pth") | Some("pt") => {
            let file = std::fs::File::open(path).map_err(|source| ImagingError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            pth::read_state_dict(std::io::BufReader::new(file), &PTH_WRAPPERS).map_err(|reason| {
                ImagingError::WeightFile {
                    path: path.to_path_buf(),
                    reason,
                }
            })
        }
        _ => Err(ImagingError::UnknownModel {
            path: path.to_path_buf(),
            reason: "weights must be a .pth or .safetensors file".to_string(),
        }),
    }
}

fn dims(tensors: &HashMap<String, Tensor>, name: &str) -> Option<Vec<usize>> {
    tensors.get(name).map(|tensor| tensor.dims().to_vec())
}

/// Tells RRDBNet from SRVGGNetCompact by their key names and reads their sizes from
/// the weight shapes; `path` only names the file in errors.
pub fn detect_architecture(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<Architecture> {
    let unknown = |reason: String| ImagingError::UnknownModel {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(first) = dims(tensors, "conv_first.weight") {
        let [num_feat, in_channels, 3, 3] = first[..] else {
            return Err(unknown(format!(
                "conv_first.weight has shape {first:?}, expected [f, c, 3, 3]"
            )));
        };
        let scale = match in_channels {
            3 => 4,
            12 => 2,
            48 => 1,
            other => {
                return Err(unknown(format!(
                    "conv_first takes {other} channels; RGB models take 3 (×4), 12 (×2) or 48 (×1)"
                )))
            }
        };
        let num_out_ch = dims(tensors, "conv_last.weight")
            .and_then(|shape| shape.first().copied())
            .ok_or_else(|| unknown("conv_last.weight is missing".to_string()))?;
        let num_block = (0..)
            .take_while(|index| tensors.contains_key(&format!("body.{index}.rdb1.conv1.weight")))
            .count();
        let num_grow_ch = dims(tensors, "body.0.rdb1.conv1.weight")
            .and_then(|shape| shape.first().copied())
            .unwrap_or(32);
        return Ok(Architecture::RRDBNet(RRDBNetConfig {
            num_in_ch: 3,
            num_out_ch,
            scale,
            num_feat,
            num_block,
            num_grow_ch,
        }));
    }
    if let Some(first) = dims(tensors, "body.0.weight") {
        let [num_feat, num_in_ch, 3, 3] = first[..] else {
            return Err(unknown(format!(
                "body.0.weight has shape {first:?}, expected [f, 3, 3, 3]"
            )));
        };
        if !tensors.contains_key("body.1.weight") {
            return Err(unknown(
                "SRVGGNetCompact without PReLU weights (body.1.weight): its activation cannot be told from the file"
                    .to_string(),
            ));
        }
        // convolutions sit at even indices 0, 2, …, 2·(num_conv + 1)
        let last_index = (1..)
            .map(|step| 2 * step)
            .take_while(|index| tensors.contains_key(&format!("body.{index}.weight")))
            .last()
            .ok_or_else(|| {
                unknown("SRVGGNetCompact needs at least two convolutions".to_string())
            })?;
        let last = dims(tensors, &format!("body.{last_index}.weight")).unwrap_or_default();
        let out_channels = last.first().copied().unwrap_or(0);
        let upscale = (1..=8).find(|s| 3 * s * s == out_channels).ok_or_else(|| {
            unknown(format!(
                "the last convolution (body.{last_index}) has {out_channels} channels, not 3·s² for a scale s"
            ))
        })?;
        return Ok(Architecture::SRVGGNetCompact(SRVGGNetCompactConfig {
            num_in_ch,
            num_out_ch: 3,
            num_feat,
            num_conv: last_index / 2 - 1,
            upscale,
        }));
    }
    let mut names: Vec<&str> = tensors.keys().map(String::as_str).collect();
    names.sort_unstable();
    names.truncate(5);
    Err(unknown(format!(
        "neither conv_first.weight (RRDBNet) nor body.0.weight (SRVGGNetCompact) is present; first keys: {names:?}"
    )))
}
