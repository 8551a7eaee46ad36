//! The editing pipelines against diffusers on tiny models, references from
//! scripts/fixtures/edit_tiny.py (tests/fixtures/edit_tiny_reference): img2img (euler and
//! dpmpp-2m), inpainting with a 4-channel and a 9-channel UNet at strength 0.75 and 1,
//! InstructPix2Pix, ControlNet + inpainting with and without guess mode. Noise injected,
//! images encoded with the VAE mean.
//!
//! mirrors diffusers `StableDiffusionXLImg2ImgPipeline`, `StableDiffusionXLInpaintPipeline`,
//! `StableDiffusionXLInstructPix2PixPipeline`, `StableDiffusionXLControlNetInpaintPipeline`
//! `__call__`. Tolerances: final latents 1e-4 absolute; decoded PNG within 1 level per
//! channel; inpainting output: the original exactly outside the mask.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use huatu_diffusion::loading::controlnet::load_controlnet;
use huatu_diffusion::loading::{LoadOptions, ModelSource, SdxlComponents};
use huatu_diffusion::pipelines::{
    edit, inpaint, ControlNetUnit, EditMode, EditModels, EditRequest, GenerationSettings,
    Inpainting, NoProgress,
};
use huatu_diffusion::schedulers::SchedulerKind;
use huatu_imaging::{GrayImage, RgbImage};

use crate::common::fixture;

fn load(folder: &str) -> anyhow::Result<SdxlComponents> {
    let source = ModelSource::from_path(&fixture(folder))?;
    Ok(SdxlComponents::load(
        &source,
        LoadOptions::default(),
        &Device::Cpu,
    )?)
}

fn read_png(path: &Path) -> anyhow::Result<(usize, usize, png::ColorType, Vec<u8>)> {
    let file = std::fs::File::open(path)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info()?;
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels)?;
    pixels.truncate(info.buffer_size());
    Ok((
        info.width as usize,
        info.height as usize,
        info.color_type,
        pixels,
    ))
}

fn rgb(name: &str) -> anyhow::Result<RgbImage> {
    let (width, height, color, pixels) =
        read_png(&fixture(&format!("edit_tiny_reference/{name}")))?;
    anyhow::ensure!(color == png::ColorType::Rgb, "{name} is not RGB");
    RgbImage::from_raw(width as u32, height as u32, pixels)
        .ok_or_else(|| anyhow::anyhow!("{name}: pixel buffer does not match its size"))
}

fn gray(name: &str) -> anyhow::Result<GrayImage> {
    let (width, height, color, pixels) =
        read_png(&fixture(&format!("edit_tiny_reference/{name}")))?;
    anyhow::ensure!(
        color == png::ColorType::Grayscale,
        "{name} is not grayscale"
    );
    GrayImage::from_raw(width as u32, height as u32, pixels)
        .ok_or_else(|| anyhow::anyhow!("{name}: pixel buffer does not match its size"))
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    scheduler: SchedulerKind,
    prompt: String,
    negative_prompt: String,
    num_inference_steps: usize,
    guidance_scale: f64,
    #[serde(default)]
    strength: Option<f64>,
    #[serde(default)]
    image_guidance_scale: Option<f64>,
    #[serde(default)]
    controlnet_conditioning_scale: Option<f64>,
    #[serde(default)]
    control_guidance_start: Option<f64>,
    #[serde(default)]
    control_guidance_end: Option<f64>,
    #[serde(default)]
    guess_mode: Option<bool>,
}

fn case(name: &str) -> anyhow::Result<(Case, Tensor, Tensor)> {
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(fixture(
        "edit_tiny_reference/cases.json",
    ))?)?;
    let case = cases
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| anyhow::anyhow!("no case {name}"))?;
    let tensors = candle_core::safetensors::load(
        fixture(&format!("edit_tiny_reference/{name}.safetensors")),
        &Device::Cpu,
    )?;
    Ok((
        case,
        tensors["noise"].clone(),
        tensors["latents_out"].clone(),
    ))
}

fn settings(case: &Case, noise: Tensor) -> GenerationSettings {
    let mut settings = GenerationSettings::new(case.prompt.clone());
    settings.negative_prompt = Some(case.negative_prompt.clone());
    settings.num_inference_steps = case.num_inference_steps;
    settings.guidance_scale = case.guidance_scale;
    settings.scheduler = case.scheduler;
    settings.noise = Some(noise);
    settings
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
    anyhow::ensure!(
        a.dims() == b.dims(),
        "shapes {:?} vs {:?}",
        a.dims(),
        b.dims()
    );
    Ok((a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?)
}

fn check(
    name: &str,
    latents: &Tensor,
    expected_latents: &Tensor,
    image: &RgbImage,
) -> anyhow::Result<()> {
    let latent_difference = max_abs_diff(latents, expected_latents)?;
    let expected = rgb(&format!("{name}.png"))?;
    let level_difference = image
        .as_raw()
        .iter()
        .zip(expected.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(255);
    eprintln!("{name}: latents max diff {latent_difference:.2e}, png max diff {level_difference}");
    anyhow::ensure!(
        latent_difference < 1e-4,
        "{name}: latents differ by {latent_difference}"
    );
    anyhow::ensure!(
        level_difference <= 1,
        "{name}: png differs by {level_difference} levels"
    );
    Ok(())
}

#[test]
fn img2img_matches_diffusers() -> anyhow::Result<()> {
    let components = load("sdxl_tiny")?;
    let models = EditModels {
        base: &components,
        instruct: None,
    };
    for name in ["img2img_0.6", "img2img_dpmpp_0.5"] {
        let (case, noise, expected) = case(name)?;
        let request = EditRequest {
            settings: settings(&case, noise),
            image: rgb("image.png")?,
            mode: EditMode::ImageToImage {
                strength: case.strength.unwrap_or(0.3),
            },
        };
        let output = edit(models, &request, &mut NoProgress)?;
        check(name, &output.latents, &expected, &output.image)?;
    }
    Ok(())
}

fn inpainting<'a>(case: &Case) -> anyhow::Result<Inpainting<'a>> {
    let mut inpainting = Inpainting::new(gray("mask.png")?);
    inpainting.strength = case.strength.unwrap_or(0.9999);
    Ok(inpainting)
}

fn assert_outside_mask_is_original(output: &RgbImage, original: &RgbImage, mask: &GrayImage) {
    for (x, y, m) in mask.enumerate_pixels() {
        if m[0] < 128 {
            assert_eq!(
                output.get_pixel(x, y),
                original.get_pixel(x, y),
                "pixel ({x}, {y})"
            );
        }
    }
}

#[test]
fn inpainting_matches_diffusers_with_4_and_9_channel_unets() -> anyhow::Result<()> {
    let original = rgb("image.png")?;
    for (folder, prefix) in [("sdxl_tiny", "inpaint4"), ("sdxl_tiny_inpaint", "inpaint9")] {
        let components = load(folder)?;
        for strength in ["0.75", "1.0"] {
            let name = format!("{prefix}_{strength}");
            let (case, noise, expected) = case(&name)?;
            let mode = inpainting(&case)?;
            let output = inpaint(
                &components,
                &settings(&case, noise),
                &original,
                &mode,
                &mut NoProgress,
            )?;
            check(&name, &output.latents, &expected, &output.decoded)?;
            assert_outside_mask_is_original(&output.image, &original, &mode.mask_image);
            assert_ne!(output.image, original, "{name}: nothing was repainted");
        }
    }
    Ok(())
}

#[test]
fn instruct_pix2pix_matches_diffusers() -> anyhow::Result<()> {
    let base = load("sdxl_tiny")?;
    let instruct = load("sdxl_tiny_instruct_pix2pix")?;
    let (case, noise, expected) = case("instruct_pix2pix")?;
    let request = EditRequest {
        settings: settings(&case, noise),
        image: rgb("image.png")?,
        mode: EditMode::InstructPix2Pix {
            image_guidance_scale: case.image_guidance_scale.unwrap_or(1.5),
        },
    };
    let models = EditModels {
        base: &base,
        instruct: Some(&instruct),
    };
    let output = edit(models, &request, &mut NoProgress)?;
    check(
        "instruct_pix2pix",
        &output.latents,
        &expected,
        &output.image,
    )?;
    // Without an InstructPix2Pix model the text edit is refused, naming what is missing.
    let models = EditModels {
        base: &base,
        instruct: None,
    };
    let message = edit(models, &request, &mut NoProgress)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("needs an InstructPix2Pix SDXL model"),
        "{message}"
    );
    Ok(())
}

#[test]
fn controlnet_inpainting_matches_diffusers_with_and_without_guess_mode() -> anyhow::Result<()> {
    let components = load("sdxl_tiny")?;
    let controlnet = load_controlnet(&fixture("controlnet_tiny"), DType::F32, &Device::Cpu)?;
    let original = rgb("image.png")?;
    for name in ["controlnet_inpaint", "controlnet_inpaint_guess"] {
        let (case, noise, expected) = case(name)?;
        let mut mode = inpainting(&case)?;
        mode.controlnets.push(ControlNetUnit {
            controlnet: &controlnet,
            control_image: rgb("control.png")?,
            controlnet_conditioning_scale: case.controlnet_conditioning_scale.unwrap_or(1.0),
            control_guidance_start: case.control_guidance_start.unwrap_or(0.0),
            control_guidance_end: case.control_guidance_end.unwrap_or(1.0),
        });
        mode.guess_mode = case.guess_mode.unwrap_or(false);
        let output = inpaint(
            &components,
            &settings(&case, noise),
            &original,
            &mode,
            &mut NoProgress,
        )?;
        check(name, &output.latents, &expected, &output.decoded)?;
        assert_outside_mask_is_original(&output.image, &original, &mode.mask_image);
    }
    Ok(())
}

#[test]
fn each_mode_refuses_a_unet_with_the_wrong_input_channels() -> anyhow::Result<()> {
    let pix2pix = load("sdxl_tiny_instruct_pix2pix")?;
    let base = load("sdxl_tiny")?;
    let (case, noise, _) = case("inpaint4_1.0")?;
    let mut request = EditRequest {
        settings: settings(&case, noise),
        image: rgb("image.png")?,
        mode: EditMode::Inpaint(inpainting(&case)?),
    };
    let wrong = EditModels {
        base: &pix2pix,
        instruct: Some(&base),
    };
    let message = edit(wrong, &request, &mut NoProgress)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("8 input channels"), "{message}");

    request.mode = EditMode::InstructPix2Pix {
        image_guidance_scale: 1.5,
    };
    let message = edit(wrong, &request, &mut NoProgress)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("needs an 8-channel UNet"), "{message}");
    Ok(())
}

#[test]
fn bad_masks_and_sizes_are_refused_clearly() -> anyhow::Result<()> {
    let components = load("sdxl_tiny")?;
    let (case, noise, _) = case("inpaint4_1.0")?;
    let settings = settings(&case, noise);
    let original = rgb("image.png")?;
    let mut mode = inpainting(&case)?;
    let refusal = |mode: &Inpainting<'_>| {
        inpaint(&components, &settings, &original, mode, &mut NoProgress)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    mode.mask_image.iter_mut().for_each(|p| *p = 0);
    let message = refusal(&mode);
    assert!(message.contains("the mask is empty"), "{message}");

    mode.mask_image.iter_mut().for_each(|p| *p = 255);
    let message = refusal(&mode);
    assert!(message.contains("covers the whole image"), "{message}");

    mode.mask_image = GrayImage::from_raw(32, 64, vec![255; 32 * 64])
        .ok_or_else(|| anyhow::anyhow!("mask buffer"))?;
    let message = refusal(&mode);
    assert!(
        message.contains("the mask is 32×64 but the image is 64×64"),
        "{message}"
    );
    Ok(())
}
