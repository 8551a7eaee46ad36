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
        up_has_attention: config
            .up_block_types
            .iter()
            .map(|kind| kind.contains("CrossAttn"))
            .collect(),
        vae_levels: components.vae_config.up_block_types.len(),
    };
    let weights: Vec<(Component, Vec<String>)> = [
        Component::Unet,
        Component::TextEncoder,
        Component::TextEncoder2,
    ]
    .into_iter()
    .filter_map(|component| table(components, component).map(|t| (component, t.names())))
    .collect();
    WeightIndex::new(&weights, &layout)
}

/// `base + Σ scale · (alpha / rank) · up · down` in `base`'s dtype. The factors go into the
/// small `up` matrices and all modules into one matmul over their stacked ranks; the sum
/// with the base weight is one parallel pass (candle's CPU elementwise ops are serial, and
/// a full-size SDXL adapter touches about a billion weights). `None` when a merged value is
/// NaN or infinite: finite adapter weights can still overflow f32 in `up · down`, or the
/// model's f16 when added, and one such value would poison every output.
pub fn merged_weight(base: &Tensor, modules: &[(&LoraModule, f64)]) -> Result<Option<Tensor>> {
    let out = base.dim(0)?;
    let mut ups = Vec::with_capacity(modules.len());
    let mut downs = Vec::with_capacity(modules.len());
    for (module, scale) in modules {
        ups.push((module.up.reshape((out, module.rank()))? * (scale * module.alpha_over_rank()))?);
        downs.push(module.down.flatten_from(1)?);
    }
    let delta = Tensor::cat(&ups, 1)?.matmul(&Tensor::cat(&downs, 0)?)?; // [out, in·k·k]
    let delta = delta.flatten_all()?.to_vec1::<f32>()?;
    fn add<T: candle_core::WithDType>(base: &Tensor, delta: &[f32]) -> Result<Option<Tensor>> {
        use rayon::prelude::*;
        let mut values = base.flatten_all()?.to_vec1::<T>()?;
        let finite = values
            .par_chunks_mut(1 << 14)
            .zip(delta.par_chunks(1 << 14))
            .all(|(values, delta)| {
                let mut finite = true;
                for (value, delta) in values.iter_mut().zip(delta) {
                    *value = T::from_f64(value.to_f64() + f64::from(*delta));
                    finite &= value.to_f64().is_finite();
                }
                finite
            });
        if !finite {
            return Ok(None);
        }
        Ok(Some(Tensor::from_vec(values, base.shape(), base.device())?))
    }
    match base.dtype() {
        DType::F32 => add::<f32>(base, &delta),
        DType::F16 => add::<half::f16>(base, &delta),
        DType::BF16 => add::<half::bf16>(base, &delta),
        other => Err(Error::InvalidRequest(format!(
            "LoRA merge into {other:?} weights is not supported"
        ))),
    }
}

impl SdxlComponents {
    /// Makes `loras` (file, scale) the adapters merged into the UNet and both text encoders,
    /// replacing whatever set was merged before; `&[]` restores the base model exactly.
    /// A set that fails its checks (unmatched modules, shapes) changes nothing; one that
    /// fails while weights are being written (a merge that overflows, an unreadable base
    /// weight) puts the base model back, with no adapter merged, before the error returns.
    /// A panic mid-write leaves every weight either set touches recorded as touched, so the
    /// next call restores them all whatever it merges.
    pub fn set_loras(
        &mut self,
        loras: &[(&LoraFile, f64)],
        unmatched: UnmatchedModules,
    ) -> Result<LoraReport> {
        let started = Instant::now();
        let index = weight_index(self);
        let mut report = LoraReport::default();

        // Resolve and check everything before touching a weight.
        let mut updates: BTreeMap<(Component, String), Vec<(&LoraModule, f64)>> = BTreeMap::new();
        for (file, scale) in loras {
            let mut skipped = Vec::new();
            for module in &file.modules {
                let resolved = index
                    .resolve(module.component, file.format, &module.name)
                    .and_then(|name| {
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
                        name: format!(
                            "{} (LoRA module {} in {})",
                            name,
                            module.name,
                            file.path.display()
                        ),
                        expected: held.dims().to_vec(),
                        actual: delta_shape,
                    });
                }
                updates
                    .entry((module.component, name))
                    .or_default()
                    .push((module, *scale));
                report.modules_applied += 1;
            }
            if !skipped.is_empty() && unmatched == UnmatchedModules::Error {
                return Err(Error::LoraUnmatched {
                    path: file.path.clone(),
                    count: skipped.len(),
                    keys: summarize(&skipped),
                });
            }
            report.skipped.extend(
                skipped
                    .into_iter()
                    .map(|s| format!("{}: {s}", file.path.display())),
            );
        }

        // Restore what the old set touched and the new one does not; write the new set.
        // Until that is done, every weight of either set counts as touched (by no known
        // adapter), so a failure or a panic midway leaves a record the next call restores.
        let new_touched: BTreeSet<(Component, String)> = updates.keys().cloned().collect();
        let dirty: BTreeSet<(Component, String)> = self
            .active_loras
            .touched
            .union(&new_touched)
            .cloned()
            .collect();
        self.active_loras = ActiveLoras {
            adapters: Vec::new(),
            touched: dirty.clone(),
        };
        if let Err(error) = self.write_weights(&dirty, &updates, &mut report) {
            match self.restore_base(&dirty) {
                Ok(()) => self.active_loras = ActiveLoras::default(),
                Err(restore) => tracing::error!(
                    "cannot put the base weights back after a failed LoRA switch ({restore}); \
                     the next switch restores them"
                ),
            }
            return Err(error);
        }
        self.active_loras = ActiveLoras {
            adapters: loras
                .iter()
                .map(|(file, scale)| (file.path.clone(), *scale))
                .collect(),
            touched: new_touched,
        };
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Writes base or merged values for every key of `keys`.
    fn write_weights(
        &self,
        keys: &BTreeSet<(Component, String)>,
        updates: &BTreeMap<(Component, String), Vec<(&LoraModule, f64)>>,
        report: &mut LoraReport,
    ) -> Result<()> {
        for key in keys {
            let (component, name) = key;
            let Some(table) = table(self, *component) else {
                continue;
            };
            let base = table.base(name)?;
            let value = match updates.get(key) {
                None => base,
                Some(modules) => merged_weight(&base, modules)?.ok_or_else(|| {
                    let mut names: Vec<String> = modules
                        .iter()
                        .map(|(module, _)| format!("`{}`", module.name))
                        .collect();
                    names.dedup();
                    Error::LoraOverflow {
                        modules: names.join(", "),
                        weight: name.clone(),
                        dtype: format!("{:?}", base.dtype()).to_lowercase(),
                    }
                })?,
            };
            table.overwrite(name, &value)?;
            report.weights_written += 1;
        }
        Ok(())
    }

    /// Puts the base value back into every weight of `keys`.
    fn restore_base(&self, keys: &BTreeSet<(Component, String)>) -> Result<()> {
        for (component, name) in keys {
            if let Some(table) = table(self, *component) {
                table.overwrite(name, &table.base(name)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// What merging one module at scale 1 adds to a zero weight.
    fn delta_of(module: &LoraModule) -> Result<Tensor> {
        let mut shape = vec![module.up.dim(0)?];
        shape.extend_from_slice(&module.down.dims()[1..]);
        finite(merged_weight(
            &Tensor::zeros(shape, DType::F32, &Device::Cpu)?,
            &[(module, 1.0)],
        )?)
    }

    fn finite(merged: Option<Tensor>) -> Result<Tensor> {
        merged.ok_or_else(|| Error::InvalidRequest("the merge overflowed".into()))
    }

    #[test]
    fn a_merge_that_overflows_is_refused() -> Result<()> {
        let device = Device::Cpu;
        // Finite factors whose product overflows f32: 1e25 · 1e25.
        let huge = module(
            Tensor::full(1e25f32, (1, 2), &device)?,
            Tensor::full(1e25f32, (2, 1), &device)?,
            None,
        );
        let base = Tensor::zeros((2, 2), DType::F32, &device)?;
        assert!(merged_weight(&base, &[(&huge, 1.0)])?.is_none());
        // A delta that fits f32 but not the model's f16 (largest 65504).
        let large = module(
            Tensor::full(300f32, (1, 2), &device)?,
            Tensor::full(300f32, (2, 1), &device)?,
            None,
        );
        let half = base.to_dtype(DType::F16)?;
        assert!(merged_weight(&half, &[(&large, 1.0)])?.is_none());
        assert!(merged_weight(&base, &[(&large, 1.0)])?.is_some());
        Ok(())
    }

    #[test]
    fn two_modules_and_their_scales_add_up() -> Result<()> {
        let device = Device::Cpu;
        let one = module(
            Tensor::ones((1, 2), DType::F32, &device)?,
            Tensor::ones((2, 1), DType::F32, &device)?,
            None,
        );
        let base = Tensor::full(10f32, (2, 2), &device)?;
        let merged = finite(merged_weight(&base, &[(&one, 0.5), (&one, 2.0)])?)?;
        assert_eq!(merged.to_vec2::<f32>()?, vec![vec![12.5f32; 2]; 2]);
        let half = finite(merged_weight(&base.to_dtype(DType::F16)?, &[(&one, 0.5)])?)?;
        assert_eq!(half.dtype(), DType::F16);
        assert_eq!(
            half.to_dtype(DType::F32)?.to_vec2::<f32>()?,
            vec![vec![10.5f32; 2]; 2]
        );
        Ok(())
    }

    fn module(down: Tensor, up: Tensor, alpha: Option<f64>) -> LoraModule {
        LoraModule {
            component: Component::Unet,
            name: "m".into(),
            down,
            up,
            alpha,
            rank_stabilized: false,
        }
    }

    #[test]
    fn linear_delta_is_alpha_over_rank_times_up_down() -> Result<()> {
        let device = Device::Cpu;
        // rank 2, in 3, out 2
        let down = Tensor::new(&[[1f32, 0., 2.], [0., 1., 0.]], &device)?;
        let up = Tensor::new(&[[1f32, 1.], [2., 0.]], &device)?;
        let delta = delta_of(&module(down, up, Some(1.0)))?; // alpha 1 / rank 2
        let expected = [[0.5f32, 0.5, 1.0], [1.0, 0.0, 2.0]];
        assert_eq!(delta.to_vec2::<f32>()?, expected);
        Ok(())
    }

    #[test]
    fn per_module_alphas_scale_each_module_on_its_own() -> Result<()> {
        let device = Device::Cpu;
        let down = Tensor::ones((4, 3), DType::F32, &device)?;
        let up = Tensor::ones((2, 4), DType::F32, &device)?;
        let with_alpha = |alpha| delta_of(&module(down.clone(), up.clone(), alpha));
        // up·down is 4 everywhere; alpha/rank: 1/4, 8/4, default 4/4
        assert_eq!(
            with_alpha(Some(1.0))?.to_vec2::<f32>()?,
            vec![vec![1f32; 3]; 2]
        );
        assert_eq!(
            with_alpha(Some(8.0))?.to_vec2::<f32>()?,
            vec![vec![8f32; 3]; 2]
        );
        assert_eq!(with_alpha(None)?.to_vec2::<f32>()?, vec![vec![4f32; 3]; 2]);
        Ok(())
    }

    #[test]
    fn convolution_delta_has_the_kernel_shape() -> Result<()> {
        let device = Device::Cpu;
        let down = Tensor::ones((2, 3, 3, 3), DType::F32, &device)?; // [rank, in, k, k]
        let up = Tensor::ones((5, 2, 1, 1), DType::F32, &device)?; // [out, rank, 1, 1]
        let delta = delta_of(&module(down, up, Some(2.0)))?;
        assert_eq!(delta.dims(), &[5, 3, 3, 3]);
        let values = delta.flatten_all()?.to_vec1::<f32>()?;
        assert!(values.iter().all(|&v| v == 2.0), "{values:?}");
        Ok(())
    }
}
