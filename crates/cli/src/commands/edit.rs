//! `huatu edit`: the three editing modes of huatu, chosen by the arguments given:
//! - text edit (InstructPix2Pix): `--instruction TEXT [--image-guidance F]`;
//! - region edit / inpainting: `--mask MASK.png | --region CX,CY,W,H | --box X0,Y0,X1,Y1`,
//!   optional `--prompt`, and with `--controlnet DIR` a control image — ready
//!   (`--control-image`) or made from a raw condition image (`--condition-image`: scaled
//!   into the region, Canny edges, on a black canvas). With a condition image and no
//!   prompt, the ControlNet runs in guess mode with an empty prompt;
//! - img2img: `--prompt TEXT --strength F` without a region.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::DType;
use clap::Args;
use huatu_diffusion::loading::controlnet::load_controlnet;
use huatu_diffusion::pipelines::{
    edit, ControlNetUnit, EditMode, EditModels, EditRequest, GenerationSettings, Inpainting,
};
use huatu_imaging::edit::{
    control_canvas, mask_bounds, masked_area, region_mask, CannyThresholds, Rect, Region,
};

use crate::model_args::{random_seed, ModelArgs, SamplingArgs, StepBar};
use huatu_imaging::io::write_png;
use huatu_imaging::{GrayImage, RgbImage};

#[derive(Args, Debug)]
pub struct EditArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The original image (PNG, JPEG or WebP; sides multiples of 8).
    #[arg(long)]
    pub image: PathBuf,
    /// Text edit with InstructPix2Pix: what to change ("make it winter").
    #[arg(long, conflicts_with_all = ["mask", "region", "box_corners", "prompt"])]
    pub instruction: Option<String>,
    /// InstructPix2Pix image guidance (how closely to keep the original). Default 1.5.
    #[arg(long)]
    pub image_guidance: Option<f64>,
    /// Mask image: white = repaint, black = keep.
    #[arg(long, conflicts_with_all = ["region", "box_corners"])]
    pub mask: Option<PathBuf>,
    /// Edit region CX,CY,W,H (pixels, or fractions written with a decimal point).
    #[arg(long, conflicts_with = "box_corners")]
    pub region: Option<String>,
    /// Edit region X0,Y0,X1,Y1 (pixels, or fractions written with a decimal point).
    #[arg(long = "box")]
    pub box_corners: Option<String>,
    #[arg(long)]
    pub prompt: Option<String>,
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// How much of the original is replaced: img2img default 0.8, inpainting 0.9999.
    #[arg(long)]
    pub strength: Option<f64>,
    /// Feathering of the pasted result inside the mask, in pixels.
    #[arg(long, default_value_t = 0)]
    pub mask_blur: usize,
    /// An SDXL ControlNet (diffusers folder or .safetensors with config.json beside it).
    #[arg(long)]
    pub controlnet: Option<PathBuf>,
    /// Default 1.0.
    #[arg(long)]
    pub controlnet_scale: Option<f64>,
    /// Fractions of the steps where the ControlNet starts and stops (default 0 and 1).
    #[arg(long)]
    pub control_start: Option<f64>,
    #[arg(long)]
    pub control_end: Option<f64>,
    /// A ready control image, the size of the original.
    #[arg(long, conflicts_with = "condition_image")]
    pub control_image: Option<PathBuf>,
    /// A raw condition image (logo, product): fitted into the region, Canny edges.
    #[arg(long)]
    pub condition_image: Option<PathBuf>,
    #[arg(long, default_value_t = 100.0)]
    pub canny_low: f32,
    #[arg(long, default_value_t = 200.0)]
    pub canny_high: f32,
    /// Paste the condition image as it is, without edge extraction (non-canny ControlNets).
    #[arg(long)]
    pub no_edges: bool,
    /// ControlNet on the conditional branch only (automatic with a condition image and no prompt).
    #[arg(long)]
    pub guess_mode: bool,
    /// Writes the control image used here.
    #[arg(long)]
    pub save_control: Option<PathBuf>,
    /// Inpaint only around the mask: crop it (plus --mask-padding), work at the model's
    /// resolution, scale back and paste — for images larger than the model's size.
    #[arg(long, conflicts_with = "instruction")]
    pub only_masked: bool,
    #[arg(long, default_value_t = 32)]
    pub mask_padding: u32,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

fn read_rgb(path: &Path, what: &str) -> anyhow::Result<RgbImage> {
    Ok(huatu_imaging::io::load_image(path)
        .with_context(|| format!("cannot use {what}"))?
        .to_rgb8())
}

fn read_gray(path: &Path, what: &str) -> anyhow::Result<GrayImage> {
    Ok(huatu_imaging::io::load_image(path)
        .with_context(|| format!("cannot use {what}"))?
        .to_luma8())
}

/// The mask and the region it covers, from --mask, --region or --box.
fn mask_and_region(args: &EditArgs, image: &RgbImage) -> anyhow::Result<Option<(GrayImage, Rect)>> {
    let (width, height) = image.dimensions();
    let region = match (&args.region, &args.box_corners) {
        (Some(text), _) => Some(Region::parse_center(text)?),
        (None, Some(text)) => Some(Region::parse_box(text)?),
        (None, None) => None,
    };
    if let Some(region) = region {
        let rect = region.to_rect(width, height)?;
        let mask = region_mask(rect, width, height);
        return Ok(Some((mask, rect)));
    }
    let Some(path) = &args.mask else {
        return Ok(None);
    };
    let mask = read_gray(path, "--mask")?;
    let rect = mask_bounds(mask.as_raw(), mask.width() as usize)
        .with_context(|| format!("{} is empty: no pixel ≥ 128 to repaint", path.display()))?;
    Ok(Some((mask, rect)))
}

/// Options the chosen mode would ignore are refused rather than silently dropped.
fn check_option_combinations(args: &EditArgs) -> anyhow::Result<()> {
    let given = |present: bool, option: &str, needs: &str| -> anyhow::Result<()> {
        if present {
            bail!("{option} only applies with {needs}");
        }
        Ok(())
    };
    given(
        args.instruction.is_none() && args.image_guidance.is_some(),
        "--image-guidance",
        "--instruction",
    )?;
    let no_controlnet = args.controlnet.is_none();
    given(
        no_controlnet && args.controlnet_scale.is_some(),
        "--controlnet-scale",
        "--controlnet",
    )?;
    given(
        no_controlnet && args.control_start.is_some(),
        "--control-start",
        "--controlnet",
    )?;
    given(
        no_controlnet && args.control_end.is_some(),
        "--control-end",
        "--controlnet",
    )?;
    given(
        no_controlnet && args.control_image.is_some(),
        "--control-image",
        "--controlnet",
    )?;
    given(
        no_controlnet && args.condition_image.is_some(),
        "--condition-image",
        "--controlnet",
    )?;
    given(
        args.condition_image.is_none() && args.no_edges,
        "--no-edges",
        "--condition-image",
    )?;
    let no_region = args.mask.is_none() && args.region.is_none() && args.box_corners.is_none();
    given(
        no_region && args.only_masked,
        "--only-masked",
        "a region (--mask, --region or --box)",
    )?;
    given(
        no_region && args.mask_blur > 0,
        "--mask-blur",
        "a region (--mask, --region or --box)",
    )?;
    Ok(())
}

pub fn run(args: EditArgs) -> anyhow::Result<()> {
    check_option_combinations(&args)?;
    let device = args.model.device.open()?;
    let image = read_rgb(&args.image, "--image")?;
    if image.width() % 8 != 0 || image.height() % 8 != 0 {
        bail!(
            "{} is {}×{}; SDXL needs both sides to be multiples of 8 (resize it first, e.g. `huatu preprocess`)",
            args.image.display(),
            image.width(),
            image.height()
        );
    }
    let noise = args.sampling.read_latents(&device)?;
    let region = mask_and_region(&args, &image)?;
    if args.controlnet.is_some() && region.is_none() {
        bail!("a ControlNet region edit needs the region: --region, --box or --mask");
    }
    if region.is_none() && args.instruction.is_none() && args.prompt.is_none() {
        bail!("nothing to do: give --instruction (text edit), a region (--region/--box/--mask) or --prompt with --strength (img2img)");
    }
    let components = args.model.load(&device)?;

    let guess_mode = args.guess_mode || (args.condition_image.is_some() && args.prompt.is_none());
    let prompt = args
        .instruction
        .clone()
        .or_else(|| args.prompt.clone())
        .unwrap_or_default();
    let mut settings = GenerationSettings::new(prompt);
    settings.negative_prompt = args.negative_prompt.clone();
    settings.num_inference_steps = args.sampling.steps;
    settings.guidance_scale = args.sampling.guidance;
    settings.guidance_rescale = args.sampling.guidance_rescale;
    settings.scheduler = args.sampling.scheduler_for(&components);
    settings.seed = args.sampling.seed.unwrap_or_else(random_seed);
    settings.noise = noise;

    let controlnet = match &args.controlnet {
        Some(path) => Some(
            load_controlnet(path, components.dtype, &device).context("cannot use --controlnet")?,
        ),
        None => None,
    };
    // With --only-masked the edit works on the crop around the mask, pasted back after.
    let mut crop = None;
    let (mode_name, mode, work_image) = if args.instruction.is_some() {
        let mode = EditMode::InstructPix2Pix {
            image_guidance_scale: args.image_guidance.unwrap_or(1.5),
        };
        ("instruct-pix2pix", mode, image.clone())
    } else if let Some((mask, rect)) = &region {
        let mut controlnets = Vec::new();
        if let Some(controlnet) = &controlnet {
            controlnets.push(ControlNetUnit {
                controlnet,
                control_image: control_image(&args, &image, *rect)?,
                controlnet_conditioning_scale: args.controlnet_scale.unwrap_or(1.0),
                control_guidance_start: args.control_start.unwrap_or(0.0),
                control_guidance_end: args.control_end.unwrap_or(1.0),
            });
        }
        if guess_mode && controlnets.is_empty() {
            bail!("--guess-mode and --condition-image need --controlnet");
        }
        if guess_mode {
            eprintln!("no prompt: the ControlNet infers the edit from the images (guess mode)");
        }
        let (mut work_image, mut work_mask) = (image.clone(), mask.clone());
        if args.only_masked {
            let native = components.unet.config().sample_size.unwrap_or(128) as u32 * 8;
            let area = MaskedArea::new(&image, mask, args.mask_padding, native)?;
            for unit in &mut controlnets {
                unit.control_image = area.crop(&unit.control_image)?;
            }
            (work_image, work_mask) = (area.image.clone(), area.mask.clone());
            crop = Some(area);
        }
        let name = if controlnet.is_some() {
            "controlnet-inpaint"
        } else {
            "inpaint"
        };
        let mode = EditMode::Inpaint(Inpainting {
            mask_image: work_mask,
            strength: args.strength.unwrap_or(0.9999),
            mask_blur: args.mask_blur,
            controlnets,
            guess_mode,
        });
        (name, mode, work_image)
    } else {
        let mode = EditMode::ImageToImage {
            strength: args.strength.unwrap_or(0.8),
        };
        ("img2img", mode, image.clone())
    };
    let request = EditRequest {
        settings,
        image: work_image,
        mode,
    };
    // One --model: the model of the mode asked for (an InstructPix2Pix model for
    // --instruction), so it serves as either.
    let models = EditModels {
        base: &components,
        instruct: Some(&components),
    };
    let mut bar = StepBar::new(args.sampling.steps);
    let output = edit(models, &request, &mut bar)?;
    let result = match (&crop, &region) {
        (Some(area), Some((mask, _))) => area.paste_back(&image, mask, &output.image)?,
        _ => output.image,
    };
    bar.finish();

    write_png(
        &args.sampling.out,
        &result,
        &settings_chunks(&args, mode_name, &request.settings, guess_mode),
    )?;
    args.sampling
        .save_latents(&output.latents.to_dtype(DType::F32)?, 0, 1)?;
    println!("{}", args.sampling.out.display());
    Ok(())
}

/// The crop an `--only-masked` run works on, scaled to the model's square resolution.
struct MaskedArea {
    rect: Rect,
    size: u32,
    image: RgbImage,
    mask: GrayImage,
}

impl MaskedArea {
    fn new(image: &RgbImage, mask: &GrayImage, padding: u32, size: u32) -> anyhow::Result<Self> {
        let rect = masked_area::crop_region(mask, padding, 1.0)?;
        let (crop, crop_mask) = masked_area::crop_and_scale(image, mask, rect, (size, size))?;
        eprintln!(
            "only the masked area: {}×{} at ({}, {}), worked at {size}×{size}",
            rect.width(),
            rect.height(),
            rect.left,
            rect.top
        );
        Ok(Self {
            rect,
            size,
            image: crop,
            mask: crop_mask,
        })
    }

    fn crop(&self, image: &RgbImage) -> anyhow::Result<RgbImage> {
        let empty = GrayImage::new(image.width(), image.height());
        let (crop, _) =
            masked_area::crop_and_scale(image, &empty, self.rect, (self.size, self.size))?;
        Ok(crop)
    }

    fn paste_back(
        &self,
        original: &RgbImage,
        mask: &GrayImage,
        result: &RgbImage,
    ) -> anyhow::Result<RgbImage> {
        Ok(masked_area::paste_back(original, mask, self.rect, result)?)
    }
}

/// The ready control image, or the condition image fitted into the region (with edges).
fn control_image(args: &EditArgs, image: &RgbImage, rect: Rect) -> anyhow::Result<RgbImage> {
    let control = match (&args.control_image, &args.condition_image) {
        (Some(path), _) => read_rgb(path, "--control-image")?,
        (None, Some(path)) => {
            let condition = read_rgb(path, "--condition-image")?;
            let edges = (!args.no_edges).then_some(CannyThresholds {
                low: args.canny_low,
                high: args.canny_high,
            });
            control_canvas(&condition, rect, image.width(), image.height(), edges)?
        }
        (None, None) => {
            bail!("--controlnet needs --control-image (ready) or --condition-image (raw)")
        }
    };
    if let Some(path) = &args.save_control {
        write_png::<&str>(path, &control, &[])?;
        eprintln!("saved the control image to {}", path.display());
    }
    Ok(control)
}

fn settings_chunks(
    args: &EditArgs,
    mode: &str,
    settings: &GenerationSettings,
    guess_mode: bool,
) -> Vec<(&'static str, String)> {
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let json = serde_json::json!({
        "mode": mode,
        "model": args.model.model.display().to_string(),
        "image": args.image.display().to_string(),
        "prompt": settings.prompt,
        "negative_prompt": settings.negative_prompt,
        "mask": path(&args.mask),
        "region": args.region,
        "box": args.box_corners,
        "strength": args.strength,
        "image_guidance_scale": args.instruction.as_ref().map(|_| args.image_guidance.unwrap_or(1.5)),
        "controlnet": path(&args.controlnet),
        "controlnet_conditioning_scale": args.controlnet.as_ref().map(|_| args.controlnet_scale.unwrap_or(1.0)),
        "control_image": path(&args.control_image),
        "condition_image": path(&args.condition_image),
        "guess_mode": guess_mode,
        "only_masked": args.only_masked.then_some(args.mask_padding),
        "steps": settings.num_inference_steps,
        "guidance_scale": settings.guidance_scale,
        "scheduler": settings.scheduler.to_string(),
        "seed": if args.sampling.latents.is_some() { serde_json::Value::Null } else { settings.seed.into() },
        "latents": path(&args.sampling.latents),
        "loras": args.model.loras_json(),
        "huatu_version": env!("CARGO_PKG_VERSION"),
    });
    let mut parameters = settings.prompt.clone();
    parameters.push_str(&args.model.lora_tags());
    if let Some(negative) = &settings.negative_prompt {
        parameters.push_str(&format!("\nNegative prompt: {negative}"));
    }
    parameters.push_str(&format!(
        "\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {}, Mode: {mode}, Model: {}",
        settings.num_inference_steps,
        settings.scheduler,
        settings.guidance_scale,
        settings.seed,
        args.model.model.display()
    ));
    vec![("huatu", json.to_string()), ("parameters", parameters)]
}
