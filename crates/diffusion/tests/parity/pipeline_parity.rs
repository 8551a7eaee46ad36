//! Parity of one UNet call and of whole text-to-image runs with diffusers on the tiny SDXL
//! (tests/fixtures/sdxl_tiny), references from scripts/fixtures/sdxl_tiny.py; and equality
//! of the single-file checkpoint (tests/fixtures/sdxl_tiny.safetensors) with the folder.
//!
//! mirrors diffusers `UNet2DConditionModel.forward` and `StableDiffusionXLPipeline.__call__`
//! (latents injected, output_type "latent" and "pil").
//! Tolerances: UNet 1e-4 absolute; final latents 2e-4 absolute after up to six steps of
//! f32 arithmetic in a different order (seen: ≤ 3.1e-5); PNGs within 1 level per 8-bit
//! channel (a rounding boundary). Single file vs folder: identical.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use huatu_diffusion::loading::{LoadOptions, ModelSource, SdxlComponents};
use huatu_diffusion::models::unet_2d_condition::AddedConditions;
use huatu_diffusion::pipelines::{text_to_image, MicroConditioning, NoProgress, Text2ImageRequest};
use huatu_diffusion::schedulers::SchedulerKind;
use huatu_imaging::RgbImage;

use crate::common::fixture;

fn load_folder() -> anyhow::Result<SdxlComponents> {
    let source = ModelSource::from_path(&fixture("sdxl_tiny"))?;
    Ok(SdxlComponents::load(
        &source,
        LoadOptions::default(),
        &Device::Cpu,
    )?)
}

fn load_single_file() -> anyhow::Result<SdxlComponents> {
    let source = ModelSource::SingleFile {
        path: fixture("sdxl_tiny.safetensors"),
        config_dir: Some(fixture("sdxl_tiny")),
    };
    Ok(SdxlComponents::load(
        &source,
        LoadOptions::default(),
        &Device::Cpu,
    )?)
}

fn tensors(path: &str) -> anyhow::Result<HashMap<String, Tensor>> {
    let path = fixture(path);
    candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
}

fn get<'a>(tensors: &'a HashMap<String, Tensor>, name: &str) -> anyhow::Result<&'a Tensor> {
    tensors
        .get(name)
        .ok_or_else(|| anyhow::anyhow!("reference has no tensor `{name}`"))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
    anyhow::ensure!(
        a.dims() == b.dims(),
        "shapes differ: {:?} vs {:?}",
        a.dims(),
        b.dims()
    );
    let a = a.to_dtype(DType::F32)?;
    let b = b.to_dtype(DType::F32)?;
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

fn read_png(path: &Path) -> anyhow::Result<RgbImage> {
    let file = std::fs::File::open(path)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info()?;
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels)?;
    anyhow::ensure!(
        info.color_type == png::ColorType::Rgb,
        "{} is not RGB",
        path.display()
    );
    pixels.truncate(info.buffer_size());
    RgbImage::from_raw(info.width, info.height, pixels)
        .ok_or_else(|| anyhow::anyhow!("{}: pixel buffer does not match its size", path.display()))
}

fn max_level_diff(a: &RgbImage, b: &RgbImage) -> anyhow::Result<u8> {
    anyhow::ensure!(a.dimensions() == b.dimensions(), "image sizes differ");
    Ok(a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0))
}

fn unet_call(
    components: &SdxlComponents,
    reference: &HashMap<String, Tensor>,
    suffix: &str,
) -> anyhow::Result<f32> {
    let timestep = get(reference, &format!("timestep{suffix}"))?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?[0];
    let added = AddedConditions {
        text_embeds: get(reference, &format!("text_embeds{suffix}"))?.clone(),
        time_ids: get(reference, &format!("time_ids{suffix}"))?.clone(),
    };
    let out = components.unet.forward(
        get(reference, &format!("sample{suffix}"))?,
        timestep,
        get(reference, &format!("encoder_hidden_states{suffix}"))?,
        &added,
        None,
    )?;
    max_abs_diff(&out, get(reference, &format!("out{suffix}"))?)
}

#[test]
fn unet_forward_matches_diffusers() -> anyhow::Result<()> {
    let components = load_folder()?;
    let reference = tensors("sdxl_tiny_reference/unet.safetensors")?;
    for suffix in ["", "_2"] {
        let difference = unet_call(&components, &reference, suffix)?;
        assert!(
            difference < 1e-4,
            "unet call{suffix}: max difference {difference}"
        );
    }
    Ok(())
}

/// The device-generic formulation of every layer — what runs on a GPU, where huatu-kernels'
/// fast paths (taken only for f32 tensors on the CPU) step aside — gives diffusers' UNet
/// output too. Run here in f16 on the CPU, which takes those same branches: within half
/// precision's error of the f32 reference (seen: ≤ 2e-3 of the output's largest value).
#[test]
fn unet_generic_layers_in_f16_match_diffusers_within_half_precision() -> anyhow::Result<()> {
    let source = ModelSource::from_path(&fixture("sdxl_tiny"))?;
    let options = LoadOptions {
        dtype: DType::F16,
        ..LoadOptions::default()
    };
    let components = SdxlComponents::load(&source, options, &Device::Cpu)?;
    let reference = tensors("sdxl_tiny_reference/unet.safetensors")?;
    let half =
        |name: &str| -> anyhow::Result<Tensor> { Ok(get(&reference, name)?.to_dtype(DType::F16)?) };
    for suffix in ["", "_2"] {
        let timestep = get(&reference, &format!("timestep{suffix}"))?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?[0];
        let added = AddedConditions {
            text_embeds: half(&format!("text_embeds{suffix}"))?,
            time_ids: half(&format!("time_ids{suffix}"))?,
        };
        let out = components.unet.forward(
            &half(&format!("sample{suffix}"))?,
            timestep,
            &half(&format!("encoder_hidden_states{suffix}"))?,
            &added,
            None,
        )?;
        assert_eq!(out.dtype(), DType::F16);
        let expected = get(&reference, &format!("out{suffix}"))?;
        let scale = expected.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let relative = max_abs_diff(&out, expected)? / scale;
        assert!(
            relative < 5e-3,
            "unet call{suffix} in f16: max difference {relative} of the largest value"
        );
    }
    Ok(())
}

/// bf16 weights for an f32 model (`--dtype bf16` on the CPU): where the CPU has AVX-512
/// BF16 the linear layers and convolutions multiply in bf16 (activations rounded to bf16,
/// sums in f32: `huatu_kernels::bf16`), elsewhere they widen the weights. Either way the
/// UNet output stays within bf16's error of diffusers' f32 output (seen on the two calls:
/// 1.1e-2 and 9.6e-3 of its largest value with bf16 products, 7.8e-3 and 9.2e-3 with
/// widened weights — the weights' own rounding dominates).
#[test]
fn unet_with_bf16_weights_matches_diffusers_within_bf16_precision() -> anyhow::Result<()> {
    let source = ModelSource::from_path(&fixture("sdxl_tiny"))?;
    let options = LoadOptions {
        storage_dtype: Some(DType::BF16),
        ..LoadOptions::default()
    };
    let components = SdxlComponents::load(&source, options, &Device::Cpu)?;
    let reference = tensors("sdxl_tiny_reference/unet.safetensors")?;
    for suffix in ["", "_2"] {
        let timestep = get(&reference, &format!("timestep{suffix}"))?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?[0];
        let added = AddedConditions {
            text_embeds: get(&reference, &format!("text_embeds{suffix}"))?.clone(),
            time_ids: get(&reference, &format!("time_ids{suffix}"))?.clone(),
        };
        let out = components.unet.forward(
            get(&reference, &format!("sample{suffix}"))?,
            timestep,
            get(&reference, &format!("encoder_hidden_states{suffix}"))?,
            &added,
            None,
        )?;
        assert_eq!(out.dtype(), DType::F32);
        let expected = get(&reference, &format!("out{suffix}"))?;
        let scale = expected.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let relative = max_abs_diff(&out, expected)? / scale;
        eprintln!("unet call{suffix} with bf16 weights: {relative:.2e} of the largest value");
        assert!(
            relative < 1.5e-2,
            "unet call{suffix} with bf16 weights: max difference {relative} of the largest value"
        );
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    scheduler: SchedulerKind,
    prompt: String,
    negative_prompt: Option<String>,
    height: usize,
    width: usize,
    num_inference_steps: usize,
    guidance_scale: f64,
    guidance_rescale: f64,
    original_size: (usize, usize),
    crops_coords_top_left: (usize, usize),
    target_size: (usize, usize),
}

fn cases() -> anyhow::Result<Vec<Case>> {
    let path = fixture("sdxl_tiny_reference/pipeline/cases.json");
    Ok(serde_json::from_str(&std::fs::read_to_string(&path)?)?)
}

fn request(case: &Case, latents: Tensor) -> Text2ImageRequest {
    let mut request = Text2ImageRequest::new(case.prompt.clone());
    request.settings.negative_prompt = case.negative_prompt.clone();
    request.height = case.height;
    request.width = case.width;
    request.settings.num_inference_steps = case.num_inference_steps;
    request.settings.guidance_scale = case.guidance_scale;
    request.settings.guidance_rescale = case.guidance_rescale;
    request.settings.scheduler = case.scheduler;
    request.settings.noise = Some(latents);
    request.settings.micro_conditioning = MicroConditioning {
        original_size: Some(case.original_size),
        crops_coords_top_left: case.crops_coords_top_left,
        target_size: Some(case.target_size),
    };
    request
}

/// Runs every reference case; returns the failures rather than stopping at the first.
fn check_every_case(components: &SdxlComponents) -> anyhow::Result<Vec<String>> {
    let mut failures = Vec::new();
    for case in cases()? {
        let reference = tensors(&format!(
            "sdxl_tiny_reference/pipeline/{}.safetensors",
            case.name
        ))?;
        let output = text_to_image(
            components,
            &request(&case, get(&reference, "latents_in")?.clone()),
            &mut NoProgress,
        )?;
        let latent_difference = max_abs_diff(&output.latents, get(&reference, "latents_out")?)?;
        let expected_png = read_png(&fixture(&format!(
            "sdxl_tiny_reference/pipeline/{}.png",
            case.name
        )))?;
        let level_difference = max_level_diff(&output.image, &expected_png)?;
        eprintln!(
            "{}: latents max diff {latent_difference:.2e}, png max diff {level_difference}",
            case.name
        );
        if latent_difference > 2e-4 || level_difference > 1 {
            failures.push(format!(
                "{}: latents {latent_difference}, png {level_difference}",
                case.name
            ));
        }
    }
    Ok(failures)
}

#[test]
fn text_to_image_matches_diffusers_for_every_case() -> anyhow::Result<()> {
    let failures = check_every_case(&load_folder()?)?;
    assert!(
        failures.is_empty(),
        "cases off the reference: {failures:#?}"
    );
    Ok(())
}

#[test]
fn single_file_checkpoint_loads_the_same_model_as_the_folder() -> anyhow::Result<()> {
    let single = load_single_file()?;
    // The fixture script keeps the folder's weights exactly representable in the
    // checkpoint's f16, so both loads must give the same tensors bit for bit.
    let case = cases()?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no cases"))?;
    let reference = tensors(&format!(
        "sdxl_tiny_reference/pipeline/{}.safetensors",
        case.name
    ))?;
    let latents = get(&reference, "latents_in")?.clone();
    let from_folder = text_to_image(
        &load_folder()?,
        &request(&case, latents.clone()),
        &mut NoProgress,
    )?;
    let from_file = text_to_image(&single, &request(&case, latents), &mut NoProgress)?;
    let difference = max_abs_diff(&from_folder.latents, &from_file.latents)?;
    assert_eq!(
        difference, 0.0,
        "single file vs folder: latents differ by {difference}"
    );
    assert_eq!(from_folder.image, from_file.image);
    Ok(())
}

#[test]
fn single_file_without_configs_says_what_is_missing() {
    let source = ModelSource::SingleFile {
        path: fixture("sdxl_tiny.safetensors"),
        config_dir: None,
    };
    let error = SdxlComponents::load(&source, LoadOptions::default(), &Device::Cpu)
        .err()
        .map(|e| e.to_string());
    let message = error.unwrap_or_default();
    assert!(message.contains("configs and tokenizers"), "{message}");
}

#[test]
fn a_diffusers_component_file_is_not_taken_for_a_checkpoint() {
    let source = ModelSource::SingleFile {
        path: fixture("sdxl_tiny/unet/diffusion_pytorch_model.safetensors"),
        config_dir: Some(fixture("sdxl_tiny")),
    };
    let message = SdxlComponents::load(&source, LoadOptions::default(), &Device::Cpu)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("not a single-file SDXL checkpoint"),
        "{message}"
    );
}
