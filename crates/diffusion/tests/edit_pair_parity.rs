//! Prompt-to-Prompt pairs (`edit_pair`) against diffusers' StableDiffusionXLPipeline with
//! InstructPix2Pix's self-attention sharing as an attention processor
//! (scripts/fixtures/edit_pair_tiny.py → tests/fixtures/edit_pair_tiny_reference/).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use huatu_diffusion::loading::{LoadOptions, ModelSource, SdxlComponents};
use huatu_diffusion::pipelines::{edit_pair, EditPairRequest, NoProgress, Text2ImageRequest};
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
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

fn request(case: &Case, latents: Tensor) -> EditPairRequest {
    let mut base = Text2ImageRequest::new(case.caption.clone());
    base.height = 64;
    base.width = 64;
    base.num_inference_steps = case.steps;
    base.guidance_scale = case.guidance_scale;
    base.scheduler = SchedulerKind::Euler;
    base.latents = Some(latents);
    EditPairRequest {
        base,
        edited_prompt: case.edited_caption.clone(),
        self_attention_fraction: case.p,
    }
}

/// diffusers' pipeline with the sharing processor (generate_img_dataset.py's rule).
#[test]
fn edit_pairs_match_the_reference() -> anyhow::Result<()> {
    let source = ModelSource::from_path(&fixture("sdxl_tiny"))?;
    let components = SdxlComponents::load(&source, LoadOptions::default(), &Device::Cpu)?;
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(fixture(
        "edit_pair_tiny_reference/cases.json",
    ))?)?;
    assert_eq!(cases.len(), 4);
    let mut outputs = Vec::new();
    for case in &cases {
        let path = fixture(&format!(
            "edit_pair_tiny_reference/{}.safetensors",
            case.name
        ));
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)?;
        let output = edit_pair(
            &components,
            &request(case, tensors["latents"].clone()),
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
    // sharing changes the edited image
    let (shared, plain) = (&outputs[0], &outputs[2]);
    assert!(max_abs_diff(&shared.edited_latents, &plain.edited_latents)? > 1e-3);
    Ok(())
}

#[test]
fn the_sharing_rule_is_the_references() {
    let mut base = Text2ImageRequest::new("a");
    base.num_inference_steps = 5;
    let request = EditPairRequest {
        base,
        edited_prompt: "b".into(),
        self_attention_fraction: 0.5,
    };
    // p > i / (n - 1): steps 0 and 1 of 5 (0, 0.25) share, step 2 (0.5) does not
    let shared: Vec<bool> = (0..5).map(|i| request.shares_at(i, 5)).collect();
    assert_eq!(shared, [true, true, false, false, false]);
    let bad = EditPairRequest {
        self_attention_fraction: 1.5,
        ..request
    };
    assert!(bad.validate().is_err());
}
