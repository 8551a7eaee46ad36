//! Merging LoRA adapters into a loaded SDXL and taking them out again, without reloading
//! the base model: for every weight any adapter touches,
//! `W' = W + Σ_adapters scale · (alpha / rank) · up · down`, with each module's own alpha
//! and rank (the kohya/peft formula; diffusers computes the same product unmerged, in the
//! forward pass). `W` is read again from the model's weight source, so switching adapters
//! never accumulates rounding, and an empty set restores the base weights bit for bit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor};

use super::file::{summarize, LoraFile, LoraModule};
use super::names::WeightIndex;
use crate::loading::original_keys::{CheckpointLayout, Component};
use crate::loading::weight_table::WeightTable;
use crate::loading::SdxlComponents;
use crate::{Error, Result};

/// What to do with modules that match no layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnmatchedModules {
    /// Refuse the whole set, listing them (the default: never drop weights silently).
    #[default]
    Error,
    /// Skip them and list them in the report.
    Skip,
}

/// The adapters merged into a model now.
#[derive(Debug, Clone, Default)]
pub struct ActiveLoras {
    /// (file, scale) in the order given.
    pub adapters: Vec<(PathBuf, f64)>,
    touched: BTreeSet<(Component, String)>,
}

/// What one `set_loras` call did.
#[derive(Debug, Clone, Default)]
pub struct LoraReport {
    pub modules_applied: usize,
    /// "file: component module" of every skipped module.
    pub skipped: Vec<String>,
    /// Weights written (changed by the new set or restored from the old one).
    pub weights_written: usize,
    pub seconds: f64,
}

fn table(components: &SdxlComponents, component: Component) -> Option<&WeightTable> {
    match component {
        Component::Unet => Some(&components.weights.unet),
        Component::TextEncoder => Some(&components.weights.text_encoder),
        Component::TextEncoder2 => Some(&components.weights.text_encoder_2),
        Component::Vae => None,
    }
}

fn weight_index(components: &SdxlComponents) -> WeightIndex {
    let config = components.unet.config();
    let layout = CheckpointLayout {
        layers_per_block: config.layers_per_block,
        up_has_attention: config.up_block_types.iter().map(|kind| kind.contains("CrossAttn")).collect(),
        vae_levels: components.vae_config.up_block_types.len(),
    };
    let weights: Vec<(Component, Vec<String>)> = [Component::Unet, Component::TextEncoder, Component::TextEncoder2]
        .into_iter()
        .filter_map(|component| table(components, component).map(|t| (component, t.names())))
        .collect();
    WeightIndex::new(&weights, &layout)
}

/// The update a module makes, before the user's scale: `(alpha / rank) · up · down` shaped
/// like the weight (convolutions: [out, in, k, k] from a [rank, in, k, k] down and a 1×1 up).
pub fn module_delta(module: &LoraModule) -> Result<Tensor> {
    let down = &module.down;
    let up = &module.up;
    let rank = module.rank();
    let out = up.dim(0)?;
    let down_flat = down.flatten_from(1)?; // [rank, in·k·k]
    let product = up.reshape((out, rank))?.matmul(&down_flat)?; // [out, in·k·k]
    let mut shape = vec![out];
    shape.extend_from_slice(&down.dims()[1..]);
    Ok((product.reshape(shape)? * module.alpha_over_rank())?)
}

impl SdxlComponents {
    /// Makes `loras` (file, scale) the adapters merged into the UNet and both text encoders,
    /// replacing whatever set was merged before; `&[]` restores the base model exactly.
    /// Nothing changes when an error is returned.
    pub fn set_loras(&mut self, loras: &[(&LoraFile, f64)], unmatched: UnmatchedModules) -> Result<LoraReport> {
        let started = Instant::now();
        let index = weight_index(self);
        let mut report = LoraReport::default();

        // Resolve and check everything before touching a weight.
        let mut updates: BTreeMap<(Component, String), Vec<(&LoraModule, f64)>> = BTreeMap::new();
        for (file, scale) in loras {
            let mut skipped = Vec::new();
            for module in &file.modules {
                let resolved = index.resolve(module.component, file.format, &module.name).and_then(|name| {
                    let held = table(self, module.component)?.get(name)?;
                    Some((name.to_string(), held))
                });
                let Some((name, held)) = resolved else {
                    skipped.push(format!("{:?} {}", module.component, module.name));
                    continue;
                };
                let mut delta_shape = vec![module.up.dim(0)?];
                delta_shape.extend_from_slice(&module.down.dims()[1..]);
                if held.dims() != delta_shape.as_slice() {
                    return Err(Error::WeightShape {
                        name: format!("{} (LoRA module {} in {})", name, module.name, file.path.display()),
                        expected: held.dims().to_vec(),
                        actual: delta_shape,
                    });
                }
                updates.entry((module.component, name)).or_default().push((module, *scale));
                report.modules_applied += 1;
            }
            if !skipped.is_empty() && unmatched == UnmatchedModules::Error {
                return Err(Error::LoraUnmatched {
                    path: file.path.clone(),
                    count: skipped.len(),
                    keys: summarize(&skipped),
                });
            }
            report.skipped.extend(skipped.into_iter().map(|s| format!("{}: {s}", file.path.display())));
        }

        // Restore what the old set touched and the new one does not; write the new set.
        let new_touched: BTreeSet<(Component, String)> = updates.keys().cloned().collect();
        for key in self.active_loras.touched.union(&new_touched) {
            let (component, name) = key;
            let Some(table) = table(self, *component) else { continue };
            let base = table.base(name)?;
            let value = match updates.get(key) {
                None => base,
                Some(modules) => {
                    let mut merged = base.to_dtype(DType::F32)?;
                    for (module, scale) in modules {
                        merged = (merged + (module_delta(module)? * *scale)?)?;
                    }
                    merged
                }
            };
            table.overwrite(name, &value)?;
            report.weights_written += 1;
        }
        self.active_loras = ActiveLoras {
            adapters: loras.iter().map(|(file, scale)| (file.path.clone(), *scale)).collect(),
            touched: new_touched,
        };
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn module(down: Tensor, up: Tensor, alpha: Option<f64>) -> LoraModule {
        LoraModule { component: Component::Unet, name: "m".into(), down, up, alpha, rank_stabilized: false }
    }

    #[test]
    fn linear_delta_is_alpha_over_rank_times_up_down() -> Result<()> {
        let device = Device::Cpu;
        // rank 2, in 3, out 2
        let down = Tensor::new(&[[1f32, 0., 2.], [0., 1., 0.]], &device)?;
        let up = Tensor::new(&[[1f32, 1.], [2., 0.]], &device)?;
        let delta = module_delta(&module(down, up, Some(1.0)))?; // alpha 1 / rank 2
        let expected = [[0.5f32, 0.5, 1.0], [1.0, 0.0, 2.0]];
        assert_eq!(delta.to_vec2::<f32>()?, expected);
        Ok(())
    }

    #[test]
    fn per_module_alphas_scale_each_module_on_its_own() -> Result<()> {
        let device = Device::Cpu;
        let down = Tensor::ones((4, 3), DType::F32, &device)?;
        let up = Tensor::ones((2, 4), DType::F32, &device)?;
        let with_alpha = |alpha| module_delta(&module(down.clone(), up.clone(), alpha));
        // up·down is 4 everywhere; alpha/rank: 1/4, 8/4, default 4/4
        assert_eq!(with_alpha(Some(1.0))?.to_vec2::<f32>()?, vec![vec![1f32; 3]; 2]);
        assert_eq!(with_alpha(Some(8.0))?.to_vec2::<f32>()?, vec![vec![8f32; 3]; 2]);
        assert_eq!(with_alpha(None)?.to_vec2::<f32>()?, vec![vec![4f32; 3]; 2]);
        Ok(())
    }

    #[test]
    fn convolution_delta_has_the_kernel_shape() -> Result<()> {
        let device = Device::Cpu;
        let down = Tensor::ones((2, 3, 3, 3), DType::F32, &device)?; // [rank, in, k, k]
        let up = Tensor::ones((5, 2, 1, 1), DType::F32, &device)?; // [out, rank, 1, 1]
        let delta = module_delta(&module(down, up, Some(2.0)))?;
        assert_eq!(delta.dims(), &[5, 3, 3, 3]);
        let values = delta.flatten_all()?.to_vec1::<f32>()?;
        assert!(values.iter().all(|&v| v == 2.0), "{values:?}");
        Ok(())
    }
}
