//! Chinese-CLIP parity with transformers on tests/fixtures/chinese_clip_tiny (made by
//! scripts/fixtures/chinese_clip_tiny.py), loaded through `ClipModel::load` as `huatu
//! embed` and `huatu db` load it: preprocessing, BERT token ids, text embeddings alone and
//! in a padded batch, image embeddings.

use std::collections::HashMap;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use huatu_data::clip::normalized;
use huatu_data::ClipModel;
use huatu_imaging::io::load_image;

use crate::{cosine, fixture, max_difference};

/// The texts of chinese_clip_tiny.py's `TEXTS`, in order.
const TEXTS: [&str; 5] = [
    "一只猫",
    "红色的灯笼和元宵节海报，在晚霞下！",
    "a Photo of the girl 在草地上 with dogs.",
    "Héllo 猫猫、雪",
    "一只猫在草地上，一只猫在草地上，一只猫在草地上，一只猫在草地上，一只猫在草地上，",
];

fn reference() -> Result<HashMap<String, Tensor>> {
    Ok(candle_core::safetensors::load(
        fixture("chinese_clip_tiny_reference/reference.safetensors"),
        &Device::Cpu,
    )?)
}

fn model() -> Result<ClipModel> {
    Ok(ClipModel::load(
        &fixture("chinese_clip_tiny"),
        &Device::Cpu,
    )?)
}

fn values(tensor: &Tensor) -> Result<Vec<f32>> {
    Ok(tensor.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?)
}

fn ids(tensor: &Tensor) -> Result<Vec<Vec<u32>>> {
    Ok(tensor.to_dtype(DType::U32)?.to_vec2()?)
}

#[test]
fn the_folder_loads_as_chinese_clip() -> Result<()> {
    let model = model()?;
    assert!(model.is_chinese_clip());
    assert_eq!(model.projection_dim(), 16);
    // the BERT tower's sizes in CLIP's terms; [SEP] (id 3) ends every text
    assert_eq!(model.config().text_config.hidden_size, 48);
    assert_eq!(model.config().text_config.max_position_embeddings, 24);
    assert_eq!(model.tokenizer().eos_token_id(), 3);
    assert!(!ClipModel::load(&fixture("clip_tiny"), &Device::Cpu)?.is_chinese_clip());
    Ok(())
}

// mirrors transformers ChineseCLIPImageProcessorPil.__call__ (PIL bicubic resize to exactly
// 32×32 — OFA-Sys's `size` as height/width, no crop — rescale, normalise) and
// ChineseCLIPModel.get_image_features, then x / |x|.
// Tolerance: cosine ≥ 0.9999 for the image already at the model's size, ≥ 0.999 for the
// resized ones (the bar); the pixels themselves within 1e-5.
#[test]
fn image_embeddings_match_transformers() -> Result<()> {
    let model = model()?;
    let reference = reference()?;
    for (name, bar) in [("at_size", 0.9999), ("wide", 0.999), ("tall_alpha", 0.999)] {
        let image = load_image(&fixture(&format!("chinese_clip_tiny_reference/{name}.png")))?;
        let pixel_values = model.processor().preprocess(&image, &Device::Cpu)?;
        let expected_pixels = values(&reference[&format!("{name}.pixel_values")])?;
        let pixel_difference = max_difference(&values(&pixel_values)?, &expected_pixels);
        assert!(
            pixel_difference < 1e-5,
            "{name}: pixel_values differ by {pixel_difference}"
        );

        let expected = values(&reference[&format!("{name}.image_embeds")])?;
        let embedding = model.embed_image(&image)?;
        let similarity = cosine(&embedding, &expected);
        let difference = max_difference(&embedding, &normalized(expected));
        println!("{name}: cosine {similarity:.9}, max diff {difference:.2e}");
        assert!(similarity >= bar, "{name}: cosine {similarity} < {bar}");
    }
    Ok(())
}

// mirrors transformers ChineseCLIPProcessor(text=[text], padding=True, truncation=True)
// .input_ids (BertTokenizer: CJK characters split, lowercased, accents stripped, WordPiece,
// [UNK], truncated to model_max_length keeping [SEP]), from tokenizer.json and from
// vocab.txt + tokenizer_config.json alone (the OFA-Sys folders' files).
// Tolerance: identical ids.
#[test]
fn token_ids_match_transformers() -> Result<()> {
    let reference = reference()?;
    let vocab_only = tempfile::tempdir()?;
    for entry in std::fs::read_dir(fixture("chinese_clip_tiny"))? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|name| name != "tokenizer.json")
        {
            std::fs::copy(
                &path,
                vocab_only.path().join(path.file_name().unwrap_or_default()),
            )?;
        }
    }
    for model in [model()?, ClipModel::load(vocab_only.path(), &Device::Cpu)?] {
        for (index, text) in TEXTS.iter().enumerate() {
            let expected = ids(&reference[&format!("text{index}.input_ids")])?;
            assert_eq!(vec![model.tokenize(text)], expected, "{text}");
        }
    }
    Ok(())
}

// mirrors transformers ChineseCLIPModel.get_text_features(**processor(text=[text])): the
// projected [CLS] state of the BERT's last_hidden_state, then x / |x|.
// Tolerance: cosine ≥ 0.9999.
#[test]
fn text_embeddings_match_transformers() -> Result<()> {
    let model = model()?;
    let reference = reference()?;
    for (index, text) in TEXTS.iter().enumerate() {
        let expected = values(&reference[&format!("text{index}.text_embeds")])?;
        let embedding = model.embed_text(text)?;
        let similarity = cosine(&embedding, &expected);
        let difference = max_difference(&embedding, &normalized(expected));
        println!("text{index}: cosine {similarity:.9}, max diff {difference:.2e}");
        assert!(similarity >= 0.9999, "{text}: cosine {similarity}");
    }
    Ok(())
}

// mirrors transformers ChineseCLIPProcessor(text=TEXTS, padding=True, truncation=True) and
// ChineseCLIPModel.get_text_features(input_ids, attention_mask, token_type_ids) on the
// padded batch (padded keys masked as create_bidirectional_mask does), then x / |x|.
// Tolerance: identical ids and mask, cosine ≥ 0.9999 per row.
#[test]
fn a_padded_batch_matches_transformers() -> Result<()> {
    let model = model()?;
    let reference = reference()?;
    let (input_ids, attention_mask) = model.tokenize_batch(&TEXTS);
    assert_eq!(input_ids, ids(&reference["batch.input_ids"])?);
    assert_eq!(attention_mask, ids(&reference["batch.attention_mask"])?);
    assert!(ids(&reference["batch.token_type_ids"])?
        .iter()
        .flatten()
        .all(|&token_type| token_type == 0));

    let expected = reference["batch.text_embeds"].to_vec2::<f32>()?;
    let embeddings = model.embed_texts(&TEXTS)?;
    assert_eq!(embeddings.len(), TEXTS.len());
    for (index, (embedding, expected)) in embeddings.iter().zip(expected).enumerate() {
        let similarity = cosine(embedding, &expected);
        println!("batch row {index}: cosine {similarity:.9}");
        assert!(
            similarity >= 0.9999,
            "{}: cosine {similarity}",
            TEXTS[index]
        );
    }
    Ok(())
}

#[test]
fn missing_or_malformed_parts_are_named() -> Result<()> {
    let error = |dir: &std::path::Path| {
        ClipModel::load(dir, &Device::Cpu)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default()
    };
    let source = fixture("chinese_clip_tiny");
    let dir = tempfile::tempdir()?;
    for name in [
        "config.json",
        "preprocessor_config.json",
        "model.safetensors",
    ] {
        std::fs::copy(source.join(name), dir.path().join(name))?;
    }
    let message = error(dir.path());
    assert!(
        message.contains("Chinese-CLIP tokenizer") && message.contains("tokenizer.json"),
        "{message}"
    );

    std::fs::copy(source.join("vocab.txt"), dir.path().join("vocab.txt"))?;
    std::fs::remove_file(dir.path().join("model.safetensors"))?;
    let message = error(dir.path());
    assert!(message.contains("cannot load the CLIP model"), "{message}");

    let config = std::fs::read_to_string(source.join("config.json"))?;
    let mut config: serde_json::Value = serde_json::from_str(&config)?;
    config["text_config"]["hidden_size"] = serde_json::json!("wide");
    std::fs::write(dir.path().join("config.json"), config.to_string())?;
    let message = error(dir.path());
    assert!(
        message.contains("ChineseCLIPModel configuration"),
        "{message}"
    );
    Ok(())
}

// The image database with a Chinese-CLIP model, as `huatu db add` / `db search` run it:
// a Chinese description searches the images directly, each hit's score the cosine of the
// transformers text and image embeddings (within 1e-5), best first; the reopened database
// reloads the Chinese-CLIP model it was built with.
#[test]
fn the_image_database_searches_chinese_text() -> Result<()> {
    use huatu_data::db::{embed_query, Query};
    use huatu_data::{AddOptions, ImageDatabase};

    let model = model()?;
    let reference = reference()?;
    let scratch = tempfile::tempdir()?;
    let images = scratch.path().join("images");
    std::fs::create_dir(&images)?;
    for name in ["at_size", "wide", "tall_alpha"] {
        let file = format!("{name}.png");
        std::fs::copy(
            fixture(&format!("chinese_clip_tiny_reference/{file}")),
            images.join(file),
        )?;
    }
    let db_dir = scratch.path().join("db");
    let mut database = ImageDatabase::open_or_create(&db_dir, &model)?;
    let report = database.add(&model, &[images], &AddOptions::default(), |_| {})?;
    assert_eq!(report.added, 3, "{report:?}");

    let reopened = ImageDatabase::open(&db_dir)?;
    let search_model = reopened.load_model(&Device::Cpu)?;
    assert!(search_model.is_chinese_clip());
    let query = embed_query(&search_model, &Query::Text(TEXTS[0].into()))?;
    let hits = reopened.search(&query, 3, None)?;
    assert_eq!(hits.len(), 3);
    let text = values(&reference["text0.text_embeds"])?;
    for hit in &hits {
        let name = std::path::Path::new(&hit.path)
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or_default()
            .to_string();
        let expected = cosine(&text, &values(&reference[&format!("{name}.image_embeds")])?);
        println!("{name}: score {:.6}, transformers {expected:.6}", hit.score);
        assert!((f64::from(hit.score) - expected).abs() < 1e-5, "{name}");
    }
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));
    Ok(())
}
