//! Building a run's adapters: which layers of which components (`--targets`,
//! `--train-text-encoder`), created with peft's init or read from `--init-lora` (kohya or
//! diffusers names), and attached to the model.

use std::path::Path;

use huatu_diffusion::loading::original_keys::{CheckpointLayout, Component};
use huatu_diffusion::loading::SdxlComponents;
use huatu_diffusion::lora::LoraFile;
use huatu_diffusion::models::linear::NamedLinears;

use crate::lora_params::{text_encoder_target, LoraParams, LoraTargets};
use crate::lora_request::LoraTrainingRequest;
use crate::lora_save::kohya_module_name;
use crate::{Error, Result};

/// The layout of the UNet's original checkpoint names (for kohya module names).
pub fn checkpoint_layout(components: &SdxlComponents) -> CheckpointLayout {
    let config = components.unet.config();
    CheckpointLayout {
        layers_per_block: config.layers_per_block,
        up_has_attention: config
            .up_block_types
            .iter()
            .map(|kind| kind.contains("CrossAttn"))
            .collect(),
        vae_levels: components.vae_config.up_block_types.len(),
    }
}

/// The adapters a run trains (LoRA and InstructPix2Pix's `lora` mode alike).
pub(crate) struct AdapterSettings<'a> {
    pub rank: usize,
    pub alpha: f64,
    pub targets: LoraTargets,
    /// Start from these adapters instead of peft's gaussian init.
    pub init_lora: Option<&'a Path>,
    /// The UNet's init seed (the text encoders' are the next ones).
    pub seed: u64,
    /// Also both text encoders' attention projections.
    pub train_text_encoder: bool,
}

/// The components a run trains.
fn trained_components(settings: &AdapterSettings) -> Vec<Component> {
    let mut components = vec![Component::Unet];
    if settings.train_text_encoder {
        components.extend([Component::TextEncoder, Component::TextEncoder2]);
    }
    components
}

fn linears_of(components: &mut SdxlComponents, component: Component) -> NamedLinears<'_> {
    match component {
        Component::TextEncoder => components.text_encoder.collect_linears(),
        Component::TextEncoder2 => components.text_encoder_2.collect_linears(),
        _ => components.unet.collect_linears(),
    }
}

/// Creates (or reads from `--init-lora`) the adapters and attaches them: the UNet's
/// `--targets`, and with `train_text_encoder` both text encoders' attention projections.
pub fn build_params(
    components: &mut SdxlComponents,
    request: &LoraTrainingRequest,
) -> Result<LoraParams> {
    build_adapters(
        components,
        &AdapterSettings {
            rank: request.rank,
            alpha: request.alpha,
            targets: request.targets,
            init_lora: request.init_lora.as_deref(),
            seed: request.training.seed,
            train_text_encoder: request.train_text_encoder,
        },
    )
}

/// [`build_params`] from the adapter settings alone.
pub(crate) fn build_adapters(
    components: &mut SdxlComponents,
    request: &AdapterSettings,
) -> Result<LoraParams> {
    let layout = checkpoint_layout(components);
    let device = components.device.clone();
    let targets = request.targets;
    let file = request.init_lora.map(LoraFile::read).transpose()?;
    let mut layers = Vec::new();
    for (index, component) in trained_components(request).into_iter().enumerate() {
        let selected = |name: &str| match component {
            Component::Unet => targets.matches(name),
            _ => text_encoder_target(name),
        };
        let linears = linears_of(components, component);
        layers.extend(match &file {
            Some(file) => {
                // kohya files name modules by the kohya form of the layer's name, without
                // its `lora_unet_`/`lora_te1_` prefix.
                let names = linears
                    .iter()
                    .map(|(name, _)| {
                        let kohya = kohya_module_name(component, name, &layout);
                        let bare = kohya.splitn(3, '_').nth(2).unwrap_or(&kohya).to_string();
                        (bare, name.clone())
                    })
                    .collect();
                LoraParams::from_file(
                    file,
                    component,
                    &linears,
                    selected,
                    (request.rank, request.alpha),
                    &names,
                    &device,
                )?
            }
            None => LoraParams::gaussian(
                component,
                &linears,
                selected,
                request.rank,
                request.seed + index as u64,
                &device,
            )?,
        });
    }
    let params = LoraParams {
        rank: request.rank,
        alpha: request.alpha,
        layers,
    };
    if params.layers.is_empty() {
        return Err(Error::Setting(format!(
            "the targets {} select no layer of this UNet",
            request.targets
        )));
    }
    params.attach_to(components, false)?;
    Ok(params)
}
