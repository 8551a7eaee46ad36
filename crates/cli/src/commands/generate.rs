//! `huatu generate`: SDXL text-to-image from the command line.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use huatu_diffusion::loading::SdxlComponents;
use huatu_diffusion::pipelines::{
    text_to_image, DecodeOptions, MicroConditioning, Text2ImageRequest, VaeTiling,
};

use crate::model_args::{numbered_path, random_seed, ModelArgs, SamplingArgs, StepBar};
use huatu_imaging::io::write_png;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long)]
    pub prompt: String,
    /// Not given: zero negative conditioning (SDXL's force_zeros_for_empty_prompt).
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Default: the model's native size (unet sample_size × 8).
    #[arg(long)]
    pub width: Option<usize>,
    #[arg(long)]
    pub height: Option<usize>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Number of images to make.
    #[arg(long, default_value_t = 1)]
    pub num_images: usize,
    /// VAE tiling: auto (above 1536² pixels), always, never.
    #[arg(long, default_value = "auto", value_parser = parse_tiling)]
    pub vae_tiling: VaeTiling,
    /// Micro-conditioning original size, HxW.
    #[arg(long, value_parser = parse_size)]
    pub original_size: Option<(usize, usize)>,
    /// Micro-conditioning crop top-left, TOP,LEFT.
    #[arg(long, value_parser = parse_pair, default_value = "0,0")]
    pub crop: (usize, usize),
    /// Micro-conditioning target size, HxW.
    #[arg(long, value_parser = parse_size)]
    pub target_size: Option<(usize, usize)>,
}

pub fn parse_tiling(text: &str) -> Result<VaeTiling, String> {
    match text {
        "auto" => Ok(VaeTiling::Auto),
        "always" => Ok(VaeTiling::Always),
        "never" => Ok(VaeTiling::Never),
        other => Err(format!(
            "unknown tiling `{other}` (expected auto, always or never)"
        )),
    }
}

fn parse_numbers(text: &str, separator: char) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = text.split(separator).collect();
    match parts.as_slice() {
        [first, second] => Ok((
            first
                .trim()
                .parse()
                .map_err(|_| format!("`{first}` is not a whole number"))?,
            second
                .trim()
                .parse()
                .map_err(|_| format!("`{second}` is not a whole number"))?,
        )),
        _ => Err(format!(
            "expected two numbers separated by `{separator}`, got `{text}`"
        )),
    }
}

fn parse_size(text: &str) -> Result<(usize, usize), String> {
    parse_numbers(text, 'x')
}

fn parse_pair(text: &str) -> Result<(usize, usize), String> {
    parse_numbers(text, ',')
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if args.num_images == 0 {
        bail!("--num-images must be at least 1");
    }
    if args.sampling.latents.is_some() && args.num_images > 1 {
        bail!("--latents fixes the initial noise, so it makes one image; drop --num-images");
    }
    let device = args.model.device.open()?;
    let initial_latents = args.sampling.read_latents(&device)?;
    let components = args.model.load(&device)?;

    let native = components.unet.config().sample_size.unwrap_or(128) * 8;
    let base_seed = args.sampling.seed.unwrap_or_else(random_seed);
    let mut request = Text2ImageRequest::new(args.prompt.clone());
    request.settings.negative_prompt = args.negative_prompt.clone();
    request.height = args.height.unwrap_or(native);
    request.width = args.width.unwrap_or(native);
    request.settings.num_inference_steps = args.sampling.steps;
    request.settings.guidance_scale = args.sampling.guidance;
    request.settings.guidance_rescale = args.sampling.guidance_rescale;
    request.settings.scheduler = args.sampling.scheduler_for(&components);
    request.settings.noise = initial_latents;
    request.settings.micro_conditioning = MicroConditioning {
        original_size: args.original_size,
        crops_coords_top_left: args.crop,
        target_size: args.target_size,
    };
    request.settings.decode = DecodeOptions {
        tiling: args.vae_tiling,
    };
    request.validate()?;

    for index in 0..args.num_images {
        request.settings.seed = base_seed.wrapping_add(index as u64);
        let mut bar = StepBar::new(args.sampling.steps);
        let output = text_to_image(&components, &request, &mut bar)?;
        bar.finish();
        let out: PathBuf = numbered_path(&args.sampling.out, index, args.num_images);
        write_png(
            &out,
            &output.image,
            &settings_chunks(&args, &request, &components),
        )?;
        args.sampling
            .save_latents(&output.latents, index, args.num_images)?;
        println!("{}", out.display());
    }
    Ok(())
}

/// The PNG text chunks that make the image reproducible.
fn settings_chunks(
    args: &GenerateArgs,
    request: &Text2ImageRequest,
    components: &SdxlComponents,
) -> Vec<(&'static str, String)> {
    let latents = &args.sampling.latents;
    let settings = serde_json::json!({
        "mode": "text-to-image",
        "model": args.model.model.display().to_string(),
        "prompt": request.settings.prompt,
        "negative_prompt": request.settings.negative_prompt,
        "width": request.width,
        "height": request.height,
        "steps": request.settings.num_inference_steps,
        "guidance_scale": request.settings.guidance_scale,
        "guidance_rescale": request.settings.guidance_rescale,
        "scheduler": request.settings.scheduler.to_string(),
        "seed": if latents.is_some() { serde_json::Value::Null } else { request.settings.seed.into() },
        "latents": latents.as_ref().map(|p| p.display().to_string()),
        "dtype": components.dtype.as_str(),
        "weight_dtype": components.weight_dtype.as_str(),
        "original_size": request.settings.micro_conditioning.original_size,
        "crops_coords_top_left": request.settings.micro_conditioning.crops_coords_top_left,
        "target_size": request.settings.micro_conditioning.target_size,
        "loras": args.model.loras_json(),
        "huatu_version": env!("CARGO_PKG_VERSION"),
    });
    let mut parameters = request.settings.prompt.clone();
    parameters.push_str(&args.model.lora_tags());
    if let Some(negative) = &request.settings.negative_prompt {
        parameters.push_str(&format!("\nNegative prompt: {negative}"));
    }
    parameters.push_str(&format!(
        "\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {}, Size: {}x{}, Model: {}",
        request.settings.num_inference_steps,
        request.settings.scheduler,
        request.settings.guidance_scale,
        request.settings.seed,
        request.width,
        request.height,
        args.model.model.display()
    ));
    vec![("huatu", settings.to_string()), ("parameters", parameters)]
}
