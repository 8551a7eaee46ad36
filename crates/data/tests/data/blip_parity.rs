//! BLIP captioning parity with transformers on tests/fixtures/blip_tiny (made by
//! scripts/fixtures/blip_tiny.py): preprocessing, image embeddings, the tokenizer, and
//! `generate`'s token ids and decoded captions for greedy and beam search, with and
//! without a prompt, over a batch of two images.

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use huatu_data::{BlipForConditionalGeneration, CaptionOptions};
use huatu_imaging::io::load_image;
use serde_json::Value;

use crate::fixture;

fn model() -> Result<BlipForConditionalGeneration> {
    Ok(BlipForConditionalGeneration::load(
        &fixture("blip_tiny"),
        &Device::Cpu,
    )?)
}

fn reference() -> Result<Value> {
    let path = fixture("blip_tiny_reference/reference.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(&path)?)?)
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_u64)
                .map(|id| id as u32)
                .collect()
        })
        .unwrap_or_default()
}

fn max_difference(a: &Tensor, b: &Tensor) -> Result<f32> {
    let a: Vec<f32> = a.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    let b: Vec<f32> = b.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
    anyhow::ensure!(a.len() == b.len(), "lengths {} and {}", a.len(), b.len());
    Ok(a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max))
}

// mirrors transformers BlipImageProcessorPil.__call__ (PIL bicubic resize to size×size,
// rescale, normalise) and BlipVisionModel.forward's last_hidden_state.
// Tolerance: pixel_values within 1e-5 (exact bytes), image embeddings within 1e-4.
#[test]
fn preprocessing_and_image_embeddings_match_transformers() -> Result<()> {
    let model = model()?;
    let tensors = candle_core::safetensors::load(
        fixture("blip_tiny_reference/reference.safetensors"),
        &Device::Cpu,
    )?;
    for name in ["wide", "tall"] {
        let image = load_image(&fixture(&format!("blip_tiny_reference/{name}.png")))?;
        let pixel_values = model.processor().preprocess(&image, &Device::Cpu)?;
        let expected = &tensors[&format!("{name}.pixel_values")];
        let difference = max_difference(&pixel_values, expected)?;
        assert!(
            difference < 1e-5,
            "{name}: pixel_values differ by {difference}"
        );
        let embeds = model.image_embeds(&expected.unsqueeze(0)?)?;
        let difference = max_difference(&embeds, &tensors[&format!("{name}.image_embeds")])?;
        println!("{name}: image_embeds max diff {difference:.2e}");
        assert!(
            difference < 1e-4,
            "{name}: image_embeds differ by {difference}"
        );
    }
    Ok(())
}

// mirrors BertTokenizer(text).input_ids and decode(ids, skip_special_tokens=True), with
// and without clean_up_tokenization_spaces.
// Tolerance: identical.
#[test]
fn tokenizer_matches_transformers() -> Result<()> {
    let model = model()?;
    let reference = reference()?;
    for case in reference["encode"].as_array().context("encode")? {
        let text = case["text"].as_str().context("text")?;
        assert_eq!(
            model.tokenizer().encode(text),
            ids(&case["ids"]),
            "{text:?}"
        );
    }
    for case in reference["decode"].as_array().context("decode")? {
        let expected = case["text"].as_str().context("text")?;
        assert_eq!(model.tokenizer().decode(&ids(&case["ids"])), expected);
    }
    for case in reference["decode_clean_up"]
        .as_array()
        .context("decode_clean_up")?
    {
        let expected = case["text"].as_str().context("text")?;
        assert_eq!(
            model.tokenizer().decode_with(&ids(&case["ids"]), true),
            expected
        );
    }
    Ok(())
}

// mirrors BlipForConditionalGeneration.generate(**processor(images, text=prompt),
// max_new_tokens=12, num_beams=1|3|5) and processor.batch_decode(skip_special_tokens=True)
// on a batch of both images. Tolerance: identical token ids and captions.
#[test]
fn captions_match_transformers_generate() -> Result<()> {
    let model = model()?;
    let reference = reference()?;
    let images = reference["images"]
        .as_array()
        .context("images")?
        .iter()
        .filter_map(Value::as_str)
        .map(|name| load_image(&fixture(&format!("blip_tiny_reference/{name}.png"))))
        .collect::<Result<Vec<_>, _>>()?;
    let max_new_tokens = reference["max_new_tokens"]
        .as_u64()
        .context("max_new_tokens")? as usize;
    for run in reference["runs"].as_array().context("runs")? {
        let options = CaptionOptions {
            max_new_tokens,
            num_beams: run["num_beams"].as_u64().context("num_beams")? as usize,
            prompt: run["prompt"].as_str().map(str::to_string),
        };
        if !run["prompt_ids"].is_null() {
            let mut expected = ids(&run["prompt_ids"]);
            expected.pop();
            expected[0] = model.config().text_config.bos_token_id;
            assert_eq!(model.prompt_ids(options.prompt.as_deref()), expected);
        }
        let captions = model.caption_images(&images, &options)?;
        let sequences = run["sequences"].as_array().context("sequences")?;
        let texts = run["captions"].as_array().context("captions")?;
        assert_eq!(captions.len(), sequences.len());
        for ((caption, expected_ids), expected_text) in captions.iter().zip(sequences).zip(texts) {
            println!("{options:?}: {:?} {:?}", caption.ids, caption.text);
            assert_eq!(caption.ids, ids(expected_ids), "{options:?}");
            assert_eq!(
                Some(caption.text.as_str()),
                expected_text.as_str(),
                "{options:?}"
            );
        }
    }
    Ok(())
}
