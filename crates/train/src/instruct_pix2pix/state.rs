//! The state of an InstructPix2Pix run, saved every N steps and on Ctrl-C so `--resume`
//! continues it: every trained tensor by name (`lora.<layer>.down|up`, `unet.<weight>`),
//! AdamW's moments and step counts, and where the run was (optimizer step, forward pass,
//! epoch). One safetensors file written to a temporary name and renamed; its header names
//! the run (mode, UNet, adapters) and a state of another run is refused.

use std::path::Path;

use candle_core::{Device, Tensor, Var};

use crate::checkpoint::{read_state, resume_error, write_state, Progress};
use crate::lora_params::LoraParams;
use crate::optimizer::AdamW;
use crate::Result;

use super::UnetVars;

const HEADER_KEY: &str = "huatu_instruct_pix2pix_state";

/// The names of the trained tensors, in the optimizer's order (adapters, then the UNet's).
pub(crate) fn trained_names(lora: Option<&LoraParams>, unet: &UnetVars) -> Vec<String> {
    let mut names: Vec<String> = lora
        .map(|params| {
            params
                .layers
                .iter()
                .flat_map(|layer| {
                    [
                        format!("lora.{}.down", layer.name),
                        format!("lora.{}.up", layer.name),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    names.extend(unet.vars.iter().map(|(name, _)| format!("unet.{name}")));
    names
}

/// Writes the state to `path`.
pub(crate) fn save_state(
    path: &Path,
    identity: &str,
    progress: Progress,
    trained: (&[String], &[Var]),
    optimizer: &AdamW,
) -> Result<()> {
    let (names, vars) = trained;
    let mut tensors = Vec::with_capacity(3 * vars.len());
    for ((name, var), moments) in names.iter().zip(vars).zip(&optimizer.moments) {
        tensors.push((name.clone(), var.as_tensor().to_device(&Device::Cpu)?));
        tensors.push((
            format!("{name}.exp_avg"),
            Tensor::from_slice(&moments.exp_avg, var.shape(), &Device::Cpu)?,
        ));
        tensors.push((
            format!("{name}.exp_avg_sq"),
            Tensor::from_slice(&moments.exp_avg_sq, var.shape(), &Device::Cpu)?,
        ));
    }
    write_state(path, HEADER_KEY, identity, progress, optimizer, tensors)
}

/// Reads a state into the run's variables and optimizer; returns where the run stood.
pub(crate) fn load_state(
    path: &Path,
    identity: &str,
    trained: (&[String], &[Var]),
    optimizer: &mut AdamW,
) -> Result<Progress> {
    let (names, vars) = trained;
    let refused = |message: String| resume_error(path, message);
    let (header, tensors) =
        read_state::<String>(path, HEADER_KEY, "huatu InstructPix2Pix training state")?;
    if header.identity != identity {
        return Err(refused(format!(
            "it was saved by the run `{}`; this run is `{identity}`",
            header.identity
        )));
    }
    let get = |name: &str, like: &Var| -> Result<Tensor> {
        let tensor = tensors
            .get(name)
            .ok_or_else(|| refused(format!("no tensor `{name}`")))?;
        if tensor.dims() != like.dims() {
            return Err(refused(format!(
                "`{name}` is {:?}, this run's is {:?}",
                tensor.dims(),
                like.dims()
            )));
        }
        Ok(tensor.clone())
    };
    for (((name, var), moments), step) in names
        .iter()
        .zip(vars)
        .zip(optimizer.moments.iter_mut())
        .zip(&header.optimizer_steps)
    {
        var.set(&get(name, var)?.to_device(var.device())?)?;
        moments.exp_avg = get(&format!("{name}.exp_avg"), var)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        moments.exp_avg_sq = get(&format!("{name}.exp_avg_sq"), var)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        moments.step = *step;
    }
    optimizer.step = header.progress.step as u64;
    Ok(header.progress)
}
