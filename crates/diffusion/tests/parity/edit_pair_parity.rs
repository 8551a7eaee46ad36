//! Prompt-to-Prompt pairs (`edit_pair`) against diffusers' StableDiffusionXLPipeline with
//! InstructPix2Pix's self-attention sharing as an attention processor
//! and Google's prompt-to-prompt cross-attention edits (replace, refine, re-weight) as a
//! second one (scripts/fixtures/edit_pair_tiny.py → tests/fixtures/edit_pair_tiny_reference/).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use huatu_diffusion::loading::{LoadOptions, ModelSource, SdxlComponents};
use huatu_diffusion::pipelines::prompt_to_prompt::LocalBlend;
use huatu_diffusion::pipelines::token_alignment::token_map;
use huatu_diffusion::pipelines::{
    edit_pair, CrossAttentionMode, EditPairRequest, NoProgress, Text2ImageRequest,
};
use huatu_diffusion::schedulers::SchedulerKind;
use serde::Deserialize;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(path)
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    caption: String,
    edited_caption: String,
    p: f64,
    steps: usize,
    guidance_scale: f64,
    #[serde(default)]
    cross_attention: Option<String>,
    #[serde(default)]
    cross_p: f64,
    #[serde(default)]
    reweight: Vec<(String, f64)>,
    size: usize,
    #[serde(default)]
    blend_words: Vec<String>,
    #[serde(default)]
    blend_threshold: f64,
    #[serde(default)]
    blend_start: f64,
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

fn request(case: &Case, latents: Tensor) -> anyhow::Result<EditPairRequest> {
    let mut base = Text2ImageRequest::new(case.caption.clone());
    base.height = case.size;
    base.width = case.size;
    base.settings.num_inference_steps = case.steps;
    base.settings.guidance_scale = case.guidance_scale;
    base.settings.scheduler = SchedulerKind::Euler;
    base.settings.noise = Some(latents);
    let mode = match &case.cross_attention {
        Some(mode) => mode
            .parse::<CrossAttentionMode>()
            .map_err(anyhow::Error::msg)?,
        None => CrossAttentionMode::Off,
    };
    Ok(EditPairRequest {
        cross_attention: mode,
        cross_attention_fraction: case.cross_p,
        reweight: case.reweight.clone(),
        local_blend: (!case.blend_words.is_empty()).then(|| LocalBlend {
            words: case.blend_words.clone(),
            threshold: case.blend_threshold,
            start: case.blend_start,
        }),
        ..EditPairRequest::new(base, case.edited_caption.clone(), case.p)
    })
}

/// The token map the reference computed equals ours (token_alignment::token_map).
fn check_token_map(
    components: &SdxlComponents,
    case: &Case,
    tensors: &HashMap<String, Tensor>,
) -> anyhow::Result<()> {
    let Some(mode) = &case.cross_attention else {
        return Ok(());
    };
    let tokenizer = &components.tokenizer;
    let reweight: Vec<(String, Vec<u32>, f64)> = case
        .reweight
        .iter()
        .map(|(word, factor)| (word.clone(), tokenizer.encode_content(word), *factor))
        .collect();
    let map = token_map(
        mode.parse().map_err(anyhow::Error::msg)?,
        &tokenizer.encode_content(&case.caption),
        &tokenizer.encode_content(&case.edited_caption),
        &reweight,
        77,
    )?;
    let source: Vec<u32> = tensors["source"]
        .to_vec1::<i64>()?
        .into_iter()
        .map(|v| v as u32)
        .collect();
    assert_eq!(map.source, source, "{}: source", case.name);
    assert_eq!(
        map.alpha,
        tensors["alpha"].to_vec1::<f32>()?,
        "{}: alpha",
        case.name
    );
    assert_eq!(
        map.weight,
        tensors["weight"].to_vec1::<f32>()?,
        "{}: weight",
        case.name
    );
    Ok(())
}

/// diffusers' pipeline with the sharing processor (generate_img_dataset.py's rule).
#[test]
fn edit_pairs_match_the_reference() -> anyhow::Result<()> {
    let source = ModelSource::from_path(&fixture("sdxl_tiny"))?;
    let components = SdxlComponents::load(&source, LoadOptions::default(), &Device::Cpu)?;
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(fixture(
        "edit_pair_tiny_reference/cases.json",
    ))?)?;
    assert_eq!(cases.len(), 8);
    let mut outputs = Vec::new();
    for case in &cases {
        let path = fixture(&format!(
            "edit_pair_tiny_reference/{}.safetensors",
            case.name
        ));
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        check_token_map(&components, case, &tensors)?;
        let output = edit_pair(
            &components,
            &request(case, tensors["latents"].clone())?,
            &mut NoProgress,
        )?;
        let original = max_abs_diff(&output.original_latents, &tensors["original_out"])?;
        let edited = max_abs_diff(&output.edited_latents, &tensors["edited_out"])?;
        eprintln!(
            "{}: original max diff {original:.2e}, edited {edited:.2e}",
            case.name
        );
        assert!(
            original < 1e-4 && edited < 1e-4,
            "{}: original {original}, edited {edited}",
            case.name
        );
        outputs.push(output);
    }
    // the cross-attention edits and the local blend change the edited image
    for index in [4, 5, 6, 7] {
        let case = &cases[index];
        let path = fixture(&format!(
            "edit_pair_tiny_reference/{}.safetensors",
            case.name
        ));
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        let with_edits = request(case, tensors["latents"].clone())?;
        let plain = match with_edits.local_blend {
            Some(_) => EditPairRequest {
                local_blend: None,
                ..with_edits
            },
            None => EditPairRequest {
                cross_attention: CrossAttentionMode::Off,
                reweight: Vec::new(),
                ..with_edits
            },
        };
        let output = edit_pair(&components, &plain, &mut NoProgress)?;
        let change = max_abs_diff(&output.edited_latents, &outputs[index].edited_latents)?;
        assert!(
            change > 1e-4,
            "{}: the cross-attention edit changed nothing ({change})",
            case.name
        );
    }
    // sharing changes the edited image
    let (shared, plain) = (&outputs[0], &outputs[2]);
    assert!(max_abs_diff(&shared.edited_latents, &plain.edited_latents)? > 1e-3);
    Ok(())
}

#[test]
fn the_sharing_rule_is_the_references() {
    let mut base = Text2ImageRequest::new("a");
    base.settings.num_inference_steps = 5;
    let request = EditPairRequest::new(base, "b", 0.5);
    // p > i / (n - 1): steps 0 and 1 of 5 (0, 0.25) share, step 2 (0.5) does not
    let shared: Vec<bool> = (0..5).map(|i| request.shares_at(i, 5)).collect();
    assert_eq!(shared, [true, true, false, false, false]);
    let bad = EditPairRequest {
        self_attention_fraction: 1.5,
        ..request
    };
    assert!(bad.validate().is_err());
}
