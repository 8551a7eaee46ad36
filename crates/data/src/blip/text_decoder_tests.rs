//! Unit tests of the BLIP text decoder (text_decoder.rs): the tied LM head and the
//! key/value cache, on random weights under transformers' names.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;

use super::*;

fn config() -> BlipTextConfig {
    BlipTextConfig {
        vocab_size: 11,
        hidden_size: 8,
        encoder_hidden_size: 4,
        intermediate_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        max_position_embeddings: 10,
        ..BlipTextConfig::default()
    }
}

/// Random weights under transformers' names, without the LM head's own weight and
/// bias (as a tied checkpoint saves them).
fn tied_weights(device: &Device) -> candle_core::Result<HashMap<String, Tensor>> {
    let mut weights = HashMap::new();
    let mut add = |name: &str, shape: &[usize]| -> candle_core::Result<()> {
        weights.insert(name.to_string(), Tensor::randn(0f32, 1.0, shape, device)?);
        Ok(())
    };
    add("bert.embeddings.word_embeddings.weight", &[11, 8])?;
    add("bert.embeddings.position_embeddings.weight", &[10, 8])?;
    for norm in [
        "bert.embeddings.LayerNorm",
        "cls.predictions.transform.LayerNorm",
    ] {
        add(&format!("{norm}.weight"), &[8])?;
        add(&format!("{norm}.bias"), &[8])?;
    }
    let layer = "bert.encoder.layer.0";
    for (part, key_size) in [("attention", 8), ("crossattention", 4)] {
        add(&format!("{layer}.{part}.self.query.weight"), &[8, 8])?;
        add(&format!("{layer}.{part}.self.key.weight"), &[8, key_size])?;
        add(&format!("{layer}.{part}.self.value.weight"), &[8, key_size])?;
        add(&format!("{layer}.{part}.output.dense.weight"), &[8, 8])?;
        for bias in [
            "self.query",
            "self.key",
            "self.value",
            "output.dense",
            "output.LayerNorm",
        ] {
            add(&format!("{layer}.{part}.{bias}.bias"), &[8])?;
        }
        add(&format!("{layer}.{part}.output.LayerNorm.weight"), &[8])?;
    }
    add(&format!("{layer}.intermediate.dense.weight"), &[16, 8])?;
    add(&format!("{layer}.intermediate.dense.bias"), &[16])?;
    add(&format!("{layer}.output.dense.weight"), &[8, 16])?;
    add(&format!("{layer}.output.dense.bias"), &[8])?;
    add(&format!("{layer}.output.LayerNorm.weight"), &[8])?;
    add(&format!("{layer}.output.LayerNorm.bias"), &[8])?;
    add("cls.predictions.transform.dense.weight", &[8, 8])?;
    add("cls.predictions.transform.dense.bias", &[8])?;
    add("cls.predictions.bias", &[11])?;
    Ok(weights)
}

// mirrors BlipTextLMHeadModel._tied_weights_keys: without its own weight and bias the
// LM head is the word embeddings and `cls.predictions.bias`.
#[test]
fn lm_head_falls_back_to_the_tied_weights() -> candle_core::Result<()> {
    let device = Device::Cpu;
    let tied = tied_weights(&device)?;
    let mut untied = tied.clone();
    untied.insert(
        "cls.predictions.decoder.weight".into(),
        tied["bert.embeddings.word_embeddings.weight"].clone(),
    );
    untied.insert(
        "cls.predictions.decoder.bias".into(),
        tied["cls.predictions.bias"].clone(),
    );
    let image_embeds = Tensor::randn(0f32, 1.0, (1, 5, 4), &device)?;
    let input_ids = Tensor::new(&[[3u32, 7, 1]], &device)?;
    let mut logits = Vec::new();
    for weights in [tied, untied] {
        let vb = VarBuilder::from_tensors(weights, DType::F32, &device);
        let model = BlipTextLMHeadModel::new(vb, &config())?;
        let mut cache = model.new_cache(&image_embeds)?;
        logits.push(model.forward(&input_ids, &mut cache)?.to_vec2::<f32>()?);
    }
    assert_eq!(logits[0], logits[1]);
    Ok(())
}

// the cache gives the same last-position logits as running the whole sequence at once
#[test]
fn cached_steps_match_a_full_pass() -> candle_core::Result<()> {
    let device = Device::Cpu;
    let vb = VarBuilder::from_tensors(tied_weights(&device)?, DType::F32, &device);
    let model = BlipTextLMHeadModel::new(vb, &config())?;
    let image_embeds = Tensor::randn(0f32, 1.0, (2, 5, 4), &device)?;
    let ids = Tensor::new(&[[3u32, 7, 1, 9], [2, 2, 5, 0]], &device)?;
    let mut full_cache = model.new_cache(&image_embeds)?;
    let full: Vec<Vec<f32>> = model.forward(&ids, &mut full_cache)?.to_vec2()?;
    let mut cache = model.new_cache(&image_embeds)?;
    model.forward(&ids.narrow(1, 0, 2)?, &mut cache)?;
    model.forward(&ids.narrow(1, 2, 1)?, &mut cache)?;
    let stepped: Vec<Vec<f32>> = model
        .forward(&ids.narrow(1, 3, 1)?, &mut cache)?
        .to_vec2()?;
    assert_eq!(cache.len(), 4);
    for (a, b) in full.iter().flatten().zip(stepped.iter().flatten()) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    Ok(())
}
