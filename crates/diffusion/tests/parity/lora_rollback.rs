//! A LoRA switch that fails while weights are being written must not leave the model
//! half-merged: `set_loras` puts the base weights back before it returns the error, and
//! the next switch (to no adapter, or to a good one) gives exactly what it gives from a
//! clean model. On the tiny SDXL (tests/fixtures/sdxl_tiny) with the kohya fixture LoRA.
//!
//! Weights are written in (component, name) order — UNet, then the two text encoders —
//! so a bad module of the second text encoder fails after every UNet and first-encoder
//! weight of the set has been written: the worst case for a half-merge.

use candle_core::{DType, Device, Tensor};
use huatu_diffusion::loading::original_keys::Component;
use huatu_diffusion::loading::SdxlComponents;
use huatu_diffusion::lora::{LoraFile, UnmatchedModules};
use huatu_diffusion::pipelines::{text_to_image, NoProgress, Text2ImageRequest};

use crate::common::{fixture, load_tiny_sdxl};

fn kohya() -> anyhow::Result<LoraFile> {
    Ok(LoraFile::read(&fixture("lora_tiny/kohya.safetensors"))?)
}

/// The final latents of a short deterministic run.
fn latents_of(components: &SdxlComponents, latents: &Tensor) -> anyhow::Result<Tensor> {
    let mut request = Text2ImageRequest::new(String::from("hta_style, a festive poster"));
    request.height = 64;
    request.width = 64;
    request.settings.num_inference_steps = 2;
    request.settings.noise = Some(latents.clone());
    Ok(text_to_image(components, &request, &mut NoProgress)?.latents)
}

/// Every weight LoRA can change, as the model holds it now.
fn snapshot(components: &SdxlComponents) -> anyhow::Result<Vec<(String, Vec<f32>)>> {
    let tables = [
        ("unet", &components.weights.unet),
        ("text_encoder", &components.weights.text_encoder),
        ("text_encoder_2", &components.weights.text_encoder_2),
    ];
    let mut weights = Vec::new();
    for (component, table) in tables {
        for name in table.names() {
            let tensor = table
                .get(&name)
                .ok_or_else(|| anyhow::anyhow!("no {name}"))?;
            let values = tensor.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
            weights.push((format!("{component}.{name}"), values));
        }
    }
    Ok(weights)
}

/// How many weights differ between two snapshots, and the first few names.
fn changed(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> (usize, Vec<String>) {
    let names: Vec<String> = a
        .iter()
        .zip(b)
        .filter(|((_, x), (_, y))| x != y)
        .map(|((name, _), _)| name.clone())
        .collect();
    (names.len(), names.into_iter().take(3).collect())
}

const UNCHANGED: (usize, Vec<String>) = (0, Vec::new());

/// `file` with its last second-text-encoder module changed by `corrupt`.
fn with_bad_last_module(
    mut file: LoraFile,
    corrupt: impl FnOnce(&mut huatu_diffusion::lora::LoraModule) -> anyhow::Result<()>,
) -> anyhow::Result<LoraFile> {
    let module = file
        .modules
        .iter_mut()
        .rev()
        .find(|module| module.component == Component::TextEncoder2)
        .ok_or_else(|| anyhow::anyhow!("the fixture has no text_encoder_2 module"))?;
    corrupt(module)?;
    Ok(file)
}

#[test]
fn a_merge_that_overflows_puts_the_base_model_back() -> anyhow::Result<()> {
    let mut components = load_tiny_sdxl()?;
    let latents = Tensor::randn(0f32, 1.0, (1, 4, 8, 8), &Device::Cpu)?;
    let base_weights = snapshot(&components)?;
    let base = latents_of(&components, &latents)?;

    let good = kohya()?;
    components.set_loras(&[(&good, 1.0)], UnmatchedModules::Error)?;
    let with_good = latents_of(&components, &latents)?;
    assert!(changed(&base_weights, &snapshot(&components)?).0 > 0);

    // Finite factors (so the file's own checks pass) whose product overflows f32.
    let bad = with_bad_last_module(kohya()?, |module| {
        module.up = (&module.up * 1e25)?;
        module.down = (&module.down * 1e25)?;
        Ok(())
    })?;
    let error = components
        .set_loras(&[(&bad, 1.0)], UnmatchedModules::Error)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("NaN or infinite") && error.contains("text_model.encoder.layers"),
        "{error}"
    );
    let after = snapshot(&components)?;
    assert_eq!(changed(&base_weights, &after), UNCHANGED);
    assert!(components.active_loras.adapters.is_empty());
    let again = latents_of(&components, &latents)?;
    assert_eq!(
        (again - &base)?.abs()?.max_all()?.to_scalar::<f32>()?,
        0.0,
        "the next job differs from the base model"
    );

    // The good set merges again as it did from a clean model.
    components.set_loras(&[(&good, 1.0)], UnmatchedModules::Error)?;
    let good_again = latents_of(&components, &latents)?;
    assert_eq!(
        (good_again - &with_good)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?,
        0.0
    );
    components.set_loras(&[], UnmatchedModules::Error)?;
    assert_eq!(changed(&base_weights, &snapshot(&components)?), UNCHANGED);
    Ok(())
}

#[test]
fn a_merge_that_errors_midway_puts_the_base_model_back() -> anyhow::Result<()> {
    let mut components = load_tiny_sdxl()?;
    let base_weights = snapshot(&components)?;
    let good = kohya()?;
    components.set_loras(&[(&good, 0.5)], UnmatchedModules::Error)?;
    // A module whose factors do not share a rank: it passes the shape check against the
    // layer ([out] × down's trailing dims) and fails in the merge itself. `LoraFile::read`
    // refuses such pairs; `set_loras` must still not half-apply one built by hand.
    let bad = with_bad_last_module(kohya()?, |module| {
        let (out, rank) = module.up.dims2()?;
        module.up = Tensor::ones((out, rank + 1), DType::F32, &Device::Cpu)?;
        Ok(())
    })?;
    assert!(components
        .set_loras(&[(&bad, 1.0)], UnmatchedModules::Error)
        .is_err());
    assert_eq!(changed(&base_weights, &snapshot(&components)?), UNCHANGED);
    Ok(())
}
