//! CLIP parity with transformers on tests/fixtures/clip_tiny (made by
//! scripts/fixtures/clip_tiny.py): preprocessing, image and text features, and the
//! normalised embeddings.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use huatu_data::clip::normalized;
use huatu_data::ClipModel;
use huatu_imaging::io::load_image;

use crate::{cosine, fixture, max_difference};

fn reference() -> Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load(
        fixture("clip_tiny_reference/reference.safetensors"),
        &Device::Cpu,
    )?)
}

fn model() -> Result<ClipModel> {
    Ok(ClipModel::load(&fixture("clip_tiny"), &Device::Cpu)?)
}

fn row(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
}

// mirrors transformers CLIPImageProcessorPil.__call__ (PIL bicubic resize, center crop,
// rescale, normalise) and CLIPModel.get_image_features, then x / |x|.
// Tolerance: cosine ≥ 0.9999 for the image already at the model's size, ≥ 0.999 for the
// resized ones (the bar); the pixels themselves are compared too.
#[test]
fn image_embeddings_match_transformers() -> Result<()> {
    let model = model()?;
    let reference = reference()?;
    for (name, bar) in [("at_size", 0.9999), ("wide", 0.999), ("tall_alpha", 0.999)] {
        let image = load_image(&fixture(&format!("clip_tiny_reference/{name}.png")))?;
        let pixel_values = model.processor().preprocess(&image, &Device::Cpu)?;
        let expected_pixels = row(&reference[&format!("{name}.pixel_values")])?;
        let pixel_difference = max_difference(&row(&pixel_values)?, &expected_pixels);
        // one 8-bit level is 1/255/std ≈ 0.015 after normalisation
        assert!(
            pixel_difference < 1e-5,
            "{name}: pixel_values differ by {pixel_difference}"
        );

        let features = model.image_features(&pixel_values.unsqueeze(0)?)?;
        let expected = row(&reference[&format!("{name}.image_embeds")])?;
        let features_difference = max_difference(&row(&features)?, &expected);
        let embedding = model.embed_image(&image)?;
        let similarity = cosine(&embedding, &expected);
        println!("{name}: cosine {similarity:.9}, features max diff {features_difference:.2e}");
        assert!(similarity >= bar, "{name}: cosine {similarity} < {bar}");
        assert!(max_difference(&embedding, &normalized(expected)) < 1e-5);
    }
    Ok(())
}

// mirrors transformers CLIPProcessor(text=[...], padding=True) and
// CLIPModel.get_text_features (eos pooling by the config's eos_token_id), then x / |x|.
// Tolerance: identical token ids, cosine ≥ 0.9999.
#[test]
fn text_embeddings_match_transformers() -> Result<()> {
    let model = model()?;
    let reference = reference()?;
    let texts = [
        "a photo of a cat",
        "a painting of a castle in the mountains at sunset, oil painting",
    ];
    for (index, text) in texts.iter().enumerate() {
        let expected_ids: Vec<i64> =
            row(&reference[&format!("text{index}.input_ids")].to_dtype(DType::F32)?)?
                .into_iter()
                .map(|id| id as i64)
                .collect();
        let ids: Vec<i64> = model.tokenize(text).into_iter().map(i64::from).collect();
        assert_eq!(ids, expected_ids, "{text}");

        let expected = row(&reference[&format!("text{index}.text_embeds")])?;
        let embedding = model.embed_text(text)?;
        let similarity = cosine(&embedding, &expected);
        println!("text{index}: cosine {similarity:.9}");
        assert!(similarity >= 0.9999, "{text}: cosine {similarity}");
    }
    Ok(())
}

#[test]
fn long_texts_are_truncated_keeping_eos() -> Result<()> {
    let model = model()?;
    let long = "a photo of a cat ".repeat(40);
    let ids = model.tokenize(&long);
    assert_eq!(
        ids.len(),
        model.config().text_config.max_position_embeddings
    );
    assert_eq!(ids.last().copied(), Some(model.tokenizer().eos_token_id()));
    assert_eq!(model.embed_text(&long)?.len(), model.projection_dim());
    Ok(())
}

#[test]
fn a_missing_or_foreign_folder_is_named() {
    let error = ClipModel::load(&fixture("no_such_clip"), &Device::Cpu)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(error.contains("no_such_clip"), "{error}");
    let error = ClipModel::load(&fixture("bert_tiny"), &Device::Cpu)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(error.contains("config.json"), "{error}");
}
