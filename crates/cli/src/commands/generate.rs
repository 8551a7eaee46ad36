//! `huatu generate`: SDXL text-to-image from the command line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device};
use clap::Args;
use huatu_diffusion::loading::latents_file::{read_latents, write_latents};
use huatu_diffusion::loading::{LoadOptions, ModelSource, SdxlComponents};
use huatu_diffusion::pipelines::{
    text_to_image, DecodeOptions, MicroConditioning, Progress, Text2ImageRequest, VaeTiling,
};
use huatu_diffusion::lora::{LoraFile, UnmatchedModules};
use huatu_diffusion::schedulers::SchedulerKind;

use crate::png_output::write_png;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A diffusers SDXL folder or a single-file SDXL checkpoint (.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// For a single-file checkpoint: a diffusers folder to take configs and tokenizers from.
    #[arg(long)]
    pub config: Option<PathBuf>,
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
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    #[arg(long, default_value_t = 5.0)]
    pub guidance: f64,
    #[arg(long, default_value_t = 0.0)]
    pub guidance_rescale: f64,
    /// euler, euler-a, ddim, dpmpp-2m, dpmpp-2m-karras. Default: the model's own scheduler.
    #[arg(long)]
    pub scheduler: Option<SchedulerKind>,
    /// Seed of the initial noise; image i of a batch uses seed + i. Default: random.
    #[arg(long, conflicts_with = "latents")]
    pub seed: Option<u64>,
    /// Initial latents (safetensors, key `latents`, [1,4,H/8,W/8], f32) instead of noise.
    #[arg(long)]
    pub latents: Option<PathBuf>,
    /// Number of images to make.
    #[arg(long, default_value_t = 1)]
    pub num_images: usize,
    /// Output PNG; with several images, `-N` is added before the extension.
    #[arg(long, default_value = "huatu.png")]
    pub out: PathBuf,
    /// Writes the final denoised latents (before VAE decoding, unscaled) here.
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    /// Compute precision: f32, f16 or bf16 (the VAE stays f32 for f16).
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    pub dtype: DType,
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
    /// A LoRA adapter (kohya or diffusers .safetensors) with an optional scale, FILE[:SCALE]
    /// (default 1.0). Repeat for several at once.
    #[arg(long = "lora", value_parser = parse_lora)]
    pub loras: Vec<(PathBuf, f64)>,
    /// Skip LoRA modules that match no layer of the model (with a warning) instead of failing.
    #[arg(long)]
    pub lora_allow_partial: bool,
}

/// `FILE[:SCALE]`; a suffix after the last `:` that is not a number belongs to the path.
pub fn parse_lora(text: &str) -> Result<(PathBuf, f64), String> {
    if let Some((path, scale)) = text.rsplit_once(':') {
        if let Ok(scale) = scale.trim().parse::<f64>() {
            if !scale.is_finite() {
                return Err(format!("LoRA scale must be a finite number, got `{scale}`"));
            }
            return Ok((PathBuf::from(path), scale));
        }
    }
    Ok((PathBuf::from(text), 1.0))
}

fn parse_dtype(text: &str) -> Result<DType, String> {
    match text {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(format!("unknown dtype `{other}` (expected f32, f16 or bf16)")),
    }
}

fn parse_tiling(text: &str) -> Result<VaeTiling, String> {
    match text {
        "auto" => Ok(VaeTiling::Auto),
        "always" => Ok(VaeTiling::Always),
        "never" => Ok(VaeTiling::Never),
        other => Err(format!("unknown tiling `{other}` (expected auto, always or never)")),
    }
}

fn parse_numbers(text: &str, separator: char) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = text.split(separator).collect();
    match parts.as_slice() {
        [first, second] => Ok((
            first.trim().parse().map_err(|_| format!("`{first}` is not a whole number"))?,
            second.trim().parse().map_err(|_| format!("`{second}` is not a whole number"))?,
        )),
        _ => Err(format!("expected two numbers separated by `{separator}`, got `{text}`")),
    }
}

fn parse_size(text: &str) -> Result<(usize, usize), String> {
    parse_numbers(text, 'x')
}

fn parse_pair(text: &str) -> Result<(usize, usize), String> {
    parse_numbers(text, ',')
}

/// `out.png` → `out-2.png` for image 2 of a batch.
fn numbered_path(path: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let extension = path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "png".into());
    path.with_file_name(format!("{stem}-{}.{extension}", index + 1))
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    if args.num_images == 0 {
        bail!("--num-images must be at least 1");
    }
    if args.latents.is_some() && args.num_images > 1 {
        bail!("--latents fixes the initial noise, so it makes one image; drop --num-images");
    }
    let device = Device::Cpu;
    let initial_latents = match &args.latents {
        Some(path) => Some(read_latents(path, &device).context("cannot use --latents")?),
        None => None,
    };

    let source = match ModelSource::from_path(&args.model)? {
        ModelSource::SingleFile { path, .. } => ModelSource::SingleFile { path, config_dir: args.config.clone() },
        folder => folder,
    };
    let loras = args
        .loras
        .iter()
        .map(|(path, _)| LoraFile::read(path).with_context(|| format!("cannot use --lora {}", path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let mut components = SdxlComponents::load(&source, LoadOptions { dtype: args.dtype, vae_dtype: None }, &device)
        .with_context(|| format!("cannot load the model from {}", args.model.display()))?;
    eprintln!("loaded {} in {:.1}s", args.model.display(), started.elapsed().as_secs_f64());
    if !loras.is_empty() {
        let set: Vec<(&LoraFile, f64)> = loras.iter().zip(&args.loras).map(|(file, (_, scale))| (file, *scale)).collect();
        let policy = if args.lora_allow_partial { UnmatchedModules::Skip } else { UnmatchedModules::Error };
        let report = components.set_loras(&set, policy)?;
        for skipped in &report.skipped {
            eprintln!("warning: LoRA module matches no layer, skipped: {skipped}");
        }
        eprintln!(
            "applied {} LoRA modules ({} weights) in {:.2}s",
            report.modules_applied, report.weights_written, report.seconds
        );
    }

    let native = components.unet.config().sample_size.unwrap_or(128) * 8;
    let scheduler = args.scheduler.or(components.default_scheduler).unwrap_or(SchedulerKind::Euler);
    let base_seed = args.seed.unwrap_or_else(random_seed);

    let mut request = Text2ImageRequest::new(args.prompt.clone());
    request.negative_prompt = args.negative_prompt.clone();
    request.height = args.height.unwrap_or(native);
    request.width = args.width.unwrap_or(native);
    request.num_inference_steps = args.steps;
    request.guidance_scale = args.guidance;
    request.guidance_rescale = args.guidance_rescale;
    request.scheduler = scheduler;
    request.latents = initial_latents;
    request.micro_conditioning = MicroConditioning {
        original_size: args.original_size,
        crops_coords_top_left: args.crop,
        target_size: args.target_size,
    };
    request.decode = DecodeOptions { tiling: args.vae_tiling };
    request.validate()?;

    for index in 0..args.num_images {
        request.seed = base_seed.wrapping_add(index as u64);
        let bar = progress_bar(args.steps);
        let output = text_to_image(&components, &request, &mut |progress: Progress| {
            match progress {
                Progress::EncodingPrompt => bar.set_message("encoding prompt"),
                Progress::Step { step, .. } => {
                    bar.set_message("denoising");
                    bar.set_position(step as u64);
                }
                Progress::Decoding => bar.set_message("decoding"),
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        let out = numbered_path(&args.out, index, args.num_images);
        write_png(&out, &output.image, &settings_chunks(&args, &request))?;
        if let Some(path) = &args.save_latents {
            let path = numbered_path(path, index, args.num_images);
            write_latents(&path, &output.latents)?;
            eprintln!("saved latents to {}", path.display());
        }
        println!("{}", out.display());
    }
    Ok(())
}

fn progress_bar(steps: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(steps as u64), indicatif::ProgressDrawTarget::stderr());
    let style = indicatif::ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar
}

fn random_seed() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (nanos as u64) ^ (std::process::id() as u64).rotate_left(32)
}

/// The PNG text chunks that make the image reproducible.
fn settings_chunks(args: &GenerateArgs, request: &Text2ImageRequest) -> Vec<(&'static str, String)> {
    let settings = serde_json::json!({
        "model": args.model.display().to_string(),
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "width": request.width,
        "height": request.height,
        "steps": request.num_inference_steps,
        "guidance_scale": request.guidance_scale,
        "guidance_rescale": request.guidance_rescale,
        "scheduler": request.scheduler.to_string(),
        "seed": if args.latents.is_some() { serde_json::Value::Null } else { request.seed.into() },
        "latents": args.latents.as_ref().map(|p| p.display().to_string()),
        "dtype": format!("{:?}", args.dtype).to_lowercase(),
        "original_size": request.micro_conditioning.original_size,
        "crops_coords_top_left": request.micro_conditioning.crops_coords_top_left,
        "target_size": request.micro_conditioning.target_size,
        "loras": args.loras.iter().map(|(path, scale)| serde_json::json!({"file": path.display().to_string(), "scale": scale})).collect::<Vec<_>>(),
        "huatu_version": env!("CARGO_PKG_VERSION"),
    });
    let mut parameters = request.prompt.clone();
    // the web UIs' way of recording adapters in the prompt line
    for (path, scale) in &args.loras {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        parameters.push_str(&format!(" <lora:{name}:{scale}>"));
    }
    if let Some(negative) = &request.negative_prompt {
        parameters.push_str(&format!("\nNegative prompt: {negative}"));
    }
    parameters.push_str(&format!(
        "\nSteps: {}, Sampler: {}, CFG scale: {}, Seed: {}, Size: {}x{}, Model: {}",
        request.num_inference_steps,
        request.scheduler,
        request.guidance_scale,
        request.seed,
        request.width,
        request.height,
        args.model.display()
    ));
    vec![("huatu", settings.to_string()), ("parameters", parameters)]
}
