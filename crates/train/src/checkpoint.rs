//! The state of a run, saved every N steps and on Ctrl-C, so `--resume` continues it: the
//! adapters, AdamW's moments and step counts, and where the run was (optimizer step,
//! forward pass, epoch). One safetensors file, written to a temporary file and renamed;
//! the header says what run it belongs to, and a state from another model, rank, alpha
//! or target set is refused.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::lora_params::LoraParams;
use crate::lora_save::write_safetensors_atomically;
use crate::optimizer::AdamW;
use crate::{Error, Result};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Optimizer steps done.
    pub step: usize,
    /// Forward passes done (the index into a `--noise` file).
    pub forward_index: usize,
    pub epoch: usize,
}

/// What the header records about the run, checked on resume.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunIdentity {
    /// A fingerprint of the UNet config (and text encoders when trained).
    pub model: String,
    pub rank: usize,
    pub alpha: f64,
    pub targets: String,
    pub layers: usize,
}

const HEADER_KEY: &str = "huatu_training_state";

/// A state file's header (LoRA and InstructPix2Pix runs alike): the run it belongs to,
/// where the run stood and AdamW's step count per trained tensor.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StateHeader<I> {
    pub identity: I,
    pub progress: Progress,
    pub optimizer_steps: Vec<u64>,
}

/// Writes `tensors` and the header (under `header_key`) to `path`, atomically.
pub(crate) fn write_state<I: serde::Serialize>(
    path: &Path,
    header_key: &str,
    identity: I,
    progress: Progress,
    optimizer: &AdamW,
    tensors: Vec<(String, Tensor)>,
) -> Result<()> {
    let header = StateHeader {
        identity,
        progress,
        optimizer_steps: optimizer
            .moments
            .iter()
            .map(|moments| moments.step)
            .collect(),
    };
    let json = serde_json::to_string(&header).map_err(|error| Error::Setting(error.to_string()))?;
    write_safetensors_atomically(
        tensors,
        HashMap::from([(header_key.to_string(), json)]),
        path,
    )
}

/// Reads the header (under `header_key`; `kind` names the state in the error when there is
/// none) and the tensors of the state at `path`.
pub(crate) fn read_state<I: serde::de::DeserializeOwned>(
    path: &Path,
    header_key: &str,
    kind: &str,
) -> Result<(StateHeader<I>, HashMap<String, Tensor>)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|error| resume_error(path, format!("not a safetensors file: {error}")))?;
    let json = metadata
        .metadata()
        .as_ref()
        .and_then(|entries| entries.get(header_key))
        .ok_or_else(|| resume_error(path, format!("not a {kind} (no header)")))?;
    let header = serde_json::from_str(json)
        .map_err(|error| resume_error(path, format!("bad header: {error}")))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|error| resume_error(path, format!("unreadable tensors: {error}")))?;
    Ok((header, tensors))
}

/// Why the state at `path` cannot be resumed.
pub(crate) fn resume_error(path: &Path, message: String) -> Error {
    Error::Resume {
        path: path.to_path_buf(),
        message,
    }
}

/// Writes the state to `path`.
pub fn save_state(
    path: &Path,
    identity: &RunIdentity,
    progress: Progress,
    params: &LoraParams,
    optimizer: &AdamW,
) -> Result<()> {
    let mut tensors = Vec::new();
    for (index, (layer, moments)) in params
        .layers
        .iter()
        .zip(optimizer.moments.chunks(2))
        .enumerate()
    {
        tensors.push((format!("{index}.down"), layer.down.as_tensor().detach()));
        tensors.push((format!("{index}.up"), layer.up.as_tensor().detach()));
        for (part, state) in ["down", "up"].iter().zip(moments) {
            let shape = if *part == "down" {
                layer.down.shape()
            } else {
                layer.up.shape()
            };
            tensors.push((
                format!("{index}.{part}.exp_avg"),
                Tensor::from_slice(&state.exp_avg, shape, &Device::Cpu)?,
            ));
            tensors.push((
                format!("{index}.{part}.exp_avg_sq"),
                Tensor::from_slice(&state.exp_avg_sq, shape, &Device::Cpu)?,
            ));
        }
    }
    write_state(path, HEADER_KEY, identity, progress, optimizer, tensors)
}

/// Reads a state into `params` and `optimizer` (built for this run) and returns where the
/// run stood.
pub fn load_state(
    path: &Path,
    identity: &RunIdentity,
    params: &LoraParams,
    optimizer: &mut AdamW,
) -> Result<Progress> {
    let refused = |message: String| resume_error(path, message);
    let (header, tensors) = read_state::<RunIdentity>(path, HEADER_KEY, "huatu training state")?;
    if header.identity != *identity {
        return Err(refused(format!(
            "it was saved by a run with {:?}; this run has {:?}",
            header.identity, identity
        )));
    }
    let get = |name: String| {
        tensors
            .get(&name)
            .ok_or_else(|| refused(format!("no tensor `{name}`")))
    };
    for (index, layer) in params.layers.iter().enumerate() {
        for (part, var) in [("down", &layer.down), ("up", &layer.up)] {
            let value = get(format!("{index}.{part}"))?;
            if value.dims() != var.dims() {
                return Err(refused(format!(
                    "`{}` {part} is {:?}, expected {:?}",
                    layer.name,
                    value.dims(),
                    var.dims()
                )));
            }
            var.set(&value.to_device(var.device())?)?;
        }
    }
    for (index, (moments, step)) in optimizer
        .moments
        .iter_mut()
        .zip(&header.optimizer_steps)
        .enumerate()
    {
        let (layer, part) = (index / 2, if index % 2 == 0 { "down" } else { "up" });
        moments.exp_avg = get(format!("{layer}.{part}.exp_avg"))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        moments.exp_avg_sq = get(format!("{layer}.{part}.exp_avg_sq"))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        moments.step = *step;
    }
    optimizer.step = header.progress.step as u64;
    Ok(header.progress)
}
