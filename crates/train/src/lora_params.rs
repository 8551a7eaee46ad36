//! The trainable LoRA parameters: which layers get an adapter (`--targets`), their
//! initialisation (peft's "gaussian" as diffusers' script asks for, or a given file), and
//! attaching them to the model's layers unmerged (`models::linear::Linear`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor, Var};
use huatu_diffusion::loading::original_keys::Component;
use huatu_diffusion::lora::{LoraFile, LoraFormat};
use huatu_diffusion::models::linear::{LinearAdapter, NamedLinears};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::{Error, Result};

/// `--targets`: which UNet linear layers are adapted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraTargets {
    /// `to_q`, `to_k`, `to_v`, `to_out.0` of every attention (diffusers' script).
    Attn,
    /// The attentions plus the feed-forward layers (`ff.net.0.proj`, `ff.net.2`).
    AttnFf,
    /// Every linear layer of the UNet (peft's "all-linear"): also `proj_in`/`proj_out`,
    /// `time_emb_proj` and the time and added embeddings.
    AllLinear,
}

impl LoraTargets {
    pub const ALL: [LoraTargets; 3] = [Self::Attn, Self::AttnFf, Self::AllLinear];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attn => "attn",
            Self::AttnFf => "attn+ff",
            Self::AllLinear => "all-linear",
        }
    }

    /// Whether the UNet module `name` gets an adapter.
    pub fn matches(self, name: &str) -> bool {
        const ATTENTION: [&str; 4] = ["to_q", "to_k", "to_v", "to_out.0"];
        const FEED_FORWARD: [&str; 2] = ["ff.net.0.proj", "ff.net.2"];
        let attention = ATTENTION
            .iter()
            .any(|suffix| name.ends_with(&format!(".{suffix}")));
        let feed_forward = FEED_FORWARD
            .iter()
            .any(|suffix| name.ends_with(&format!(".{suffix}")));
        match self {
            Self::Attn => attention,
            Self::AttnFf => attention || feed_forward,
            Self::AllLinear => true,
        }
    }
}

impl fmt::Display for LoraTargets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LoraTargets {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|targets| targets.as_str() == text).ok_or_else(|| {
            if text.contains("conv") || text.contains("locon") {
                return format!(
                    "`{text}`: LoRA on convolutions (LoCon) is not built yet; use attn, attn+ff or all-linear"
                );
            }
            format!("unknown LoRA targets `{text}` (expected attn, attn+ff or all-linear)")
        })
    }
}

/// The text encoders' targets in diffusers' script: every self-attention projection.
pub fn text_encoder_target(name: &str) -> bool {
    ["q_proj", "k_proj", "v_proj", "out_proj"]
        .iter()
        .any(|suffix| name.ends_with(&format!(".{suffix}")))
}

/// One adapted layer.
#[derive(Debug, Clone)]
pub struct LoraLayer {
    pub component: Component,
    /// The diffusers module name (`down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`).
    pub name: String,
    /// A: [rank, in].
    pub down: Var,
    /// B: [out, rank].
    pub up: Var,
}

/// Every adapter of one run, in a fixed order (component, then the model's layer order).
#[derive(Debug, Clone)]
pub struct LoraParams {
    pub rank: usize,
    pub alpha: f64,
    pub layers: Vec<LoraLayer>,
}

impl LoraParams {
    /// alpha / rank.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// New adapters on the `selected` layers of `linears`: peft's "gaussian" init (A ~ N(0,
    /// 1/rank), B = 0), drawn from `seed` in layer order.
    pub fn gaussian(
        component: Component,
        linears: &NamedLinears<'_>,
        selected: impl Fn(&str) -> bool,
        rank: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Vec<LoraLayer>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let normal = Normal::new(0f32, 1.0 / rank as f32)
            .map_err(|error| Error::Setting(format!("rank {rank}: {error}")))?;
        let mut layers = Vec::new();
        for (name, linear) in linears.iter().filter(|(name, _)| selected(name)) {
            let (out_features, in_features) = linear.weight().dims2()?;
            let down: Vec<f32> = (0..rank * in_features)
                .map(|_| normal.sample(&mut rng))
                .collect();
            layers.push(LoraLayer {
                component,
                name: name.clone(),
                down: Var::from_tensor(&Tensor::from_vec(down, (rank, in_features), device)?)?,
                up: Var::zeros((out_features, rank), DType::F32, device)?,
            });
        }
        Ok(layers)
    }

    /// Adapters on the `selected` layers with the weights of a LoRA file (`--init-lora`).
    /// Every selected layer must be in the file with this rank and alpha, and every
    /// module of the file must be selected.
    pub fn from_file(
        file: &LoraFile,
        component: Component,
        linears: &NamedLinears<'_>,
        selected: impl Fn(&str) -> bool,
        params: (usize, f64),
        names: &BTreeMap<String, String>,
        device: &Device,
    ) -> Result<Vec<LoraLayer>> {
        let (rank, alpha) = params;
        let bad = |message: String| Error::BadFile {
            path: file.path.clone(),
            message,
        };
        let mut by_name = BTreeMap::new();
        for module in file
            .modules
            .iter()
            .filter(|module| module.component == component)
        {
            let name = match file.format {
                LoraFormat::Diffusers => module
                    .name
                    .strip_prefix("text_model.")
                    .unwrap_or(&module.name)
                    .to_string(),
                LoraFormat::Kohya => names
                    .get(&module.name)
                    .cloned()
                    .unwrap_or_else(|| module.name.clone()),
            };
            by_name.insert(name, module);
        }
        let mut layers = Vec::new();
        for (name, linear) in linears.iter().filter(|(name, _)| selected(name)) {
            let bare = name.strip_prefix("text_model.").unwrap_or(name);
            let module = by_name.remove(bare).ok_or_else(|| {
                bad(format!(
                    "has no adapter for {component:?} layer `{name}` that the targets select"
                ))
            })?;
            if module.is_convolution() || module.rank() != rank {
                return Err(bad(format!(
                    "`{name}` has rank {} (expected {rank}, linear)",
                    module.rank()
                )));
            }
            let file_alpha = module.alpha.unwrap_or(rank as f64);
            if (file_alpha - alpha).abs() > 1e-6 * alpha.abs().max(1.0) {
                return Err(bad(format!(
                    "`{name}` has alpha {file_alpha}, the run uses alpha {alpha}"
                )));
            }
            let (out_features, in_features) = linear.weight().dims2()?;
            if module.down.dims() != [rank, in_features] || module.up.dims() != [out_features, rank]
            {
                return Err(bad(format!(
                    "`{name}`: down {:?} / up {:?} do not fit the layer [{out_features}, {in_features}]",
                    module.down.dims(),
                    module.up.dims()
                )));
            }
            layers.push(LoraLayer {
                component,
                name: name.clone(),
                down: Var::from_tensor(&module.down.to_dtype(DType::F32)?.to_device(device)?)?,
                up: Var::from_tensor(&module.up.to_dtype(DType::F32)?.to_device(device)?)?,
            });
        }
        if let Some(extra) = by_name.keys().next() {
            return Err(bad(format!(
                "has {} {component:?} adapters on layers the targets do not select (first: `{extra}`)",
                by_name.len()
            )));
        }
        Ok(layers)
    }

    /// The parameters in optimizer order: down then up of every layer.
    pub fn vars(&self) -> Vec<Var> {
        self.layers
            .iter()
            .flat_map(|layer| [layer.down.clone(), layer.up.clone()])
            .collect()
    }

    /// Number of trainable values.
    pub fn parameter_count(&self) -> usize {
        self.layers
            .iter()
            .map(|layer| layer.down.elem_count() + layer.up.elem_count())
            .sum()
    }

    /// Puts every adapter on its model's layers (see [`Self::attach`]).
    pub fn attach_to(
        &self,
        components: &mut huatu_diffusion::loading::SdxlComponents,
        detached: bool,
    ) -> Result<()> {
        for component in [
            Component::Unet,
            Component::TextEncoder,
            Component::TextEncoder2,
        ] {
            if !self.layers.iter().any(|layer| layer.component == component) {
                continue;
            }
            let mut linears = match component {
                Component::TextEncoder => components.text_encoder.collect_linears(),
                Component::TextEncoder2 => components.text_encoder_2.collect_linears(),
                _ => components.unet.collect_linears(),
            };
            self.attach(component, &mut linears, detached)?;
        }
        Ok(())
    }

    /// Puts the adapters of `component` on the model's layers: as graph variables, or
    /// `detached` (a forward pass that records no graph, for sampling and recomputation).
    pub fn attach(
        &self,
        component: Component,
        linears: &mut NamedLinears<'_>,
        detached: bool,
    ) -> Result<()> {
        let mut by_name: BTreeMap<&str, &LoraLayer> = self
            .layers
            .iter()
            .filter(|layer| layer.component == component)
            .map(|layer| (layer.name.as_str(), layer))
            .collect();
        for (name, linear) in linears.iter_mut() {
            if let Some(layer) = by_name.remove(name.as_str()) {
                let pick = |var: &Var| {
                    if detached {
                        var.as_tensor().detach()
                    } else {
                        var.as_tensor().clone()
                    }
                };
                linear.set_adapter(Some(LinearAdapter {
                    down: pick(&layer.down),
                    up: pick(&layer.up),
                    scale: self.scale(),
                }))?;
            }
        }
        if let Some(name) = by_name.keys().next() {
            return Err(Error::Setting(format!(
                "adapter `{name}` matches no {component:?} layer"
            )));
        }
        Ok(())
    }
}
