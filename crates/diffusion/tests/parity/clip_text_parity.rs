//! Parity of the CLIP text encoders with transformers on the tiny SDXL ones
//! (tests/fixtures/sdxl_tiny/text_encoder{,_2}); reference outputs written by
//! scripts/fixtures/sdxl_tiny.py into tests/fixtures/sdxl_tiny_reference/text_encoders.safetensors.
//! text_encoder uses the legacy eos id 2 (argmax pooling) and quick_gelu; text_encoder_2
//! the real eos id (first-eos pooling), exact gelu and the projection.
//! Tolerance: 1e-5 absolute, f32 on CPU.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use huatu_diffusion::loading::safetensors_files::{component_weight_files, mmap_var_builder};
use huatu_diffusion::models::clip_text::{
    ClipTextConfig, ClipTextModel, ClipTextModelWithProjection,
};

use crate::common::fixture;

const TOLERANCE: f32 = 1e-5;

fn config(component: &str) -> anyhow::Result<ClipTextConfig> {
    let path = fixture(&format!("sdxl_tiny/{component}/config.json"));
    let text = std::fs::read_to_string(&path)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn weights(component: &str) -> anyhow::Result<candle_nn::VarBuilder<'static>> {
    let files = component_weight_files(&fixture(&format!("sdxl_tiny/{component}")))?;
    Ok(mmap_var_builder(&files, DType::F32, &Device::Cpu)?)
}

fn reference() -> anyhow::Result<HashMap<String, Tensor>> {
    let path = fixture("sdxl_tiny_reference/text_encoders.safetensors");
    Ok(candle_core::safetensors::load(&path, &Device::Cpu)?)
}

fn get<'a>(reference: &'a HashMap<String, Tensor>, name: &str) -> anyhow::Result<&'a Tensor> {
    reference
        .get(name)
        .ok_or_else(|| anyhow::anyhow!("reference has no tensor `{name}`"))
}

// mirrors transformers CLIPTextModel.forward(input_ids, output_hidden_states=True)
#[test]
fn text_encoder_matches_transformers() -> anyhow::Result<()> {
    let reference = reference()?;
    let config = config("text_encoder")?;
    assert_eq!(
        config.eos_token_id, 2,
        "the fixture's first encoder should use legacy pooling"
    );
    let model = ClipTextModel::new(weights("text_encoder")?, &config)?;
    let input_ids = get(&reference, "input_ids_1")?;
    let output = model.forward(input_ids)?;
    assert_eq!(output.hidden_states.len(), config.num_hidden_layers + 1);
    assert_close(
        "te1 last_hidden_state",
        &output.last_hidden_state,
        get(&reference, "te1_last_hidden_state")?,
    )?;
    let penultimate = &output.hidden_states[output.hidden_states.len() - 2];
    assert_close(
        "te1 hidden_states[-2]",
        penultimate,
        get(&reference, "te1_penultimate_hidden_state")?,
    )?;
    assert_close(
        "te1 pooled_output",
        &output.pooled_output,
        get(&reference, "te1_pooled_output")?,
    )?;
    // The shortcut that skips the last layer gives the same penultimate state.
    let shortcut = model.hidden_state(input_ids, config.num_hidden_layers - 1)?;
    assert_close(
        "te1 hidden_state(n - 1)",
        &shortcut,
        get(&reference, "te1_penultimate_hidden_state")?,
    )?;
    Ok(())
}

// mirrors transformers CLIPTextModelWithProjection.forward(input_ids, output_hidden_states=True)
#[test]
fn text_encoder_2_matches_transformers() -> anyhow::Result<()> {
    let reference = reference()?;
    let config = config("text_encoder_2")?;
    assert_ne!(
        config.eos_token_id, 2,
        "the fixture's second encoder should use first-eos pooling"
    );
    let model = ClipTextModelWithProjection::new(weights("text_encoder_2")?, &config)?;
    let output = model.forward(get(&reference, "input_ids_2")?)?;
    assert_close(
        "te2 last_hidden_state",
        &output.last_hidden_state,
        get(&reference, "te2_last_hidden_state")?,
    )?;
    let penultimate = &output.hidden_states[output.hidden_states.len() - 2];
    assert_close(
        "te2 hidden_states[-2]",
        penultimate,
        get(&reference, "te2_penultimate_hidden_state")?,
    )?;
    assert_close(
        "te2 text_embeds",
        &output.text_embeds,
        get(&reference, "te2_text_embeds")?,
    )?;
    Ok(())
}

fn assert_close(name: &str, actual: &Tensor, expected: &Tensor) -> anyhow::Result<()> {
    assert_eq!(actual.dims(), expected.dims(), "{name}: shape");
    let difference: f32 = (actual - expected)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar()?;
    assert!(
        difference <= TOLERANCE,
        "{name}: max abs difference {difference:e} > {TOLERANCE:e}"
    );
    Ok(())
}
