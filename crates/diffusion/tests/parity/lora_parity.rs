//! LoRA adapters on the tiny SDXL against diffusers, references from
//! scripts/fixtures/lora_tiny.py (tests/fixtures/lora_tiny): kohya LoCon files (one with
//! per-module alphas and ranks), a peft file with alpha metadata, two scales, two at once.
//! Cases marked "reference": "formula" in cases.json merge the per-module-alpha kohya file
//! by W' = W + scale·(alpha/rank)·up·down in PyTorch, because diffusers 0.42 ignores some
//! of its alphas (the script measures it); the rest use diffusers' own loader.
//!
//! mirrors diffusers `StableDiffusionXLPipeline.load_lora_weights` + `set_adapters` +
//! `__call__` (euler, injected latents). Tolerances: final latents 1e-4 absolute (merged
//! weights here, unmerged in peft: the same product summed in another order); PNGs within
//! 1 level.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use huatu_diffusion::loading::original_keys::Component;
use huatu_diffusion::loading::SdxlComponents;
use huatu_diffusion::lora::{LoraFile, LoraInfo, LoraModule, UnmatchedModules};
use huatu_diffusion::pipelines::{text_to_image, GeneratedImage, NoProgress, Text2ImageRequest};

use crate::common::{fixture, load_tiny_sdxl};

fn lora(name: &str) -> anyhow::Result<LoraFile> {
    Ok(LoraFile::read(&fixture(&format!("lora_tiny/{name}")))?)
}

#[derive(serde::Deserialize)]
struct Adapter {
    file: String,
    scale: f64,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    adapters: Vec<Adapter>,
    prompt: String,
    negative_prompt: String,
    height: usize,
    width: usize,
    num_inference_steps: usize,
    guidance_scale: f64,
}

fn run(
    components: &SdxlComponents,
    case: &Case,
    latents: Tensor,
) -> anyhow::Result<GeneratedImage> {
    let mut request = Text2ImageRequest::new(case.prompt.clone());
    request.settings.negative_prompt = Some(case.negative_prompt.clone());
    request.height = case.height;
    request.width = case.width;
    request.settings.num_inference_steps = case.num_inference_steps;
    request.settings.guidance_scale = case.guidance_scale;
    request.settings.noise = Some(latents);
    Ok(text_to_image(components, &request, &mut NoProgress)?)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
    Ok((a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?)
}

fn read_png(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info()?;
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels)?;
    pixels.truncate(info.buffer_size());
    Ok(pixels)
}

fn cases() -> anyhow::Result<Vec<Case>> {
    Ok(serde_json::from_str(&std::fs::read_to_string(fixture(
        "lora_tiny/cases.json",
    ))?)?)
}

#[test]
fn loras_match_diffusers_at_two_scales_and_two_at_once() -> anyhow::Result<()> {
    let mut components = load_tiny_sdxl()?;
    let mut failures = Vec::new();
    for case in cases()? {
        let files: Vec<LoraFile> = case
            .adapters
            .iter()
            .map(|a| lora(&a.file))
            .collect::<anyhow::Result<_>>()?;
        let set: Vec<(&LoraFile, f64)> = files
            .iter()
            .zip(&case.adapters)
            .map(|(f, a)| (f, a.scale))
            .collect();
        components.set_loras(&set, UnmatchedModules::Error)?;
        let reference = candle_core::safetensors::load(
            fixture(&format!("lora_tiny/{}.safetensors", case.name)),
            &Device::Cpu,
        )?;
        let output = run(&components, &case, reference["latents_in"].clone())?;
        let latent_difference = max_abs_diff(&output.latents, &reference["latents_out"])?;
        let expected = read_png(&fixture(&format!("lora_tiny/{}.png", case.name)))?;
        let level_difference = output
            .image
            .as_raw()
            .iter()
            .zip(&expected)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(255);
        eprintln!(
            "{}: latents max diff {latent_difference:.2e}, png max diff {level_difference}",
            case.name
        );
        if latent_difference > 1e-4 || level_difference > 1 {
            failures.push(format!(
                "{}: latents {latent_difference}, png {level_difference}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "cases off the reference: {failures:#?}"
    );
    Ok(())
}

#[test]
fn removing_the_adapters_restores_the_base_model_bit_for_bit() -> anyhow::Result<()> {
    let mut components = load_tiny_sdxl()?;
    let case = cases()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no cases"))?;
    let latents = Tensor::randn(0f32, 1.0, (1, 4, 8, 8), &Device::Cpu)?;
    let base = run(&components, &case, latents.clone())?;
    let weight = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight";
    let base_weight = components
        .weights
        .unet
        .get(weight)
        .ok_or_else(|| anyhow::anyhow!("no {weight}"))?
        .copy()?;

    let (kohya, peft) = (lora("kohya.safetensors")?, lora("peft.safetensors")?);
    components.set_loras(&[(&kohya, 1.0)], UnmatchedModules::Error)?;
    let with_lora = run(&components, &case, latents.clone())?;
    assert_ne!(with_lora.image, base.image, "the adapter changed nothing");
    // switching straight to another set, then to none
    components.set_loras(&[(&peft, 0.8), (&kohya, 0.3)], UnmatchedModules::Error)?;
    let report = components.set_loras(&[], UnmatchedModules::Error)?;
    assert!(report.weights_written > 0);

    let restored = components
        .weights
        .unet
        .get(weight)
        .ok_or_else(|| anyhow::anyhow!("no {weight}"))?;
    assert_eq!(max_abs_diff(&restored, &base_weight)?, 0.0);
    let again = run(&components, &case, latents)?;
    assert_eq!(max_abs_diff(&again.latents, &base.latents)?, 0.0);
    assert_eq!(again.image, base.image);
    Ok(())
}

#[test]
fn modules_that_match_no_layer_are_an_error_unless_allowed() -> anyhow::Result<()> {
    let mut components = load_tiny_sdxl()?;
    let mut file = lora("kohya.safetensors")?;
    let template = file
        .modules
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("empty file"))?;
    file.modules.push(LoraModule {
        name: "input_blocks_99_1_proj_in".into(),
        component: Component::Unet,
        ..template
    });

    let error = components
        .set_loras(&[(&file, 1.0)], UnmatchedModules::Error)
        .err()
        .map(|e| e.to_string());
    let message = error.unwrap_or_default();
    assert!(
        message.contains("input_blocks_99_1_proj_in") && message.contains("1 LoRA modules"),
        "{message}"
    );
    assert!(
        components.active_loras.adapters.is_empty(),
        "a refused set was applied"
    );

    let report = components.set_loras(&[(&file, 1.0)], UnmatchedModules::Skip)?;
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.modules_applied, file.modules.len() - 1);
    Ok(())
}

#[test]
fn info_reads_the_kohya_metadata_and_trigger_word() -> anyhow::Result<()> {
    let kohya = LoraInfo::of(&lora("kohya.safetensors")?);
    assert_eq!(kohya.format, "kohya");
    assert_eq!(kohya.trigger_word.as_deref(), Some("hta_style"));
    assert!(kohya.convolution_modules > 0);
    assert_eq!(kohya.ranks, vec![2, 4]);
    assert_eq!(kohya.top_tags.first(), Some(&("hta_style".to_string(), 10)));
    assert!(kohya
        .modules
        .keys()
        .copied()
        .eq(["text_encoder", "text_encoder_2", "unet"]));

    let peft = LoraInfo::of(&lora("peft.safetensors")?);
    assert_eq!(peft.format, "diffusers");
    assert_eq!(peft.trigger_word, None);
    assert!(
        peft.alphas.contains(&8.0) && peft.alphas.contains(&1.0),
        "{:?}",
        peft.alphas
    );
    Ok(())
}

#[test]
fn a_file_that_is_not_a_lora_is_refused_by_name() {
    let path = fixture("sdxl_tiny/vae/diffusion_pytorch_model.safetensors");
    let message = LoraFile::read(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("not a LoRA for SDXL") && message.contains("vae"),
        "{message}"
    );
}
