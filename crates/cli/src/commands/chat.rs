//! `huatu chat "INSTRUCTION"`: the whole chain — understand the instruction (intent and
//! slots), plan (scene, prompt, pipeline, LoRA, enhancer), run it, save the images —
//! printing each step; `--dry-run` prints the plan and stops. The SDXL model: `--model`, `$HUATU_MODEL` or the config file
//! (`model_lookup`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::Device;
use clap::Args;
use huatu_agent::execute::{execute, switch_lora, Models, RunOptions};
use huatu_agent::Plan;
use huatu_diffusion::device::DtypeChoice;
use huatu_diffusion::loading::controlnet::load_controlnet;
use huatu_diffusion::loading::{ModelSource, SdxlComponents};
use huatu_imaging::edit::{region_mask, Rect, Region};
use huatu_imaging::Size;

use crate::commands::plan::{plan_text, PlanSetup, Planner};
use crate::device_args::DeviceArgs;
use crate::model_args::{numbered_path, random_seed, StepBar};
use crate::model_lookup::sdxl_model;
use huatu_imaging::io::write_png;
use huatu_imaging::GrayImage;

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// What to make or change, in Chinese (or mixed Chinese/English).
    pub instruction: String,
    #[command(flatten)]
    pub setup: PlanSetup,
    /// Print the plan (as `huatu plan` does) and stop: no model is loaded, nothing runs.
    #[arg(long)]
    pub dry_run: bool,
    /// Where to edit, as a center and size `CX,CY,W,H` (pixels, or fractions like 0.5),
    /// instead of the frame words of the instruction. Needs --image.
    #[arg(long, requires = "image", conflicts_with = "box_corners")]
    pub region: Option<String>,
    /// Where to edit, as corners `X0,Y0,X1,Y1` (pixels or fractions). Needs --image.
    #[arg(long = "box", requires = "image")]
    pub box_corners: Option<String>,
    /// SDXL model (diffusers folder). Default: $HUATU_MODEL, else `model` in
    /// $XDG_CONFIG_HOME/huatu/config.toml (~/.config/huatu/config.toml).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// InstructPix2Pix SDXL model, for text edits.
    #[arg(long)]
    pub instruct_model: Option<PathBuf>,
    /// SDXL canny ControlNet, for region edits.
    #[arg(long)]
    pub controlnet: Option<PathBuf>,
    /// Real-ESRGAN weights, for enhancer presets that upscale.
    #[arg(long)]
    pub sr_model: Option<PathBuf>,
    /// Override the scene's size, WxH.
    #[arg(long, value_name = "WxH")]
    pub size: Option<Size>,
    /// Override the scene's number of steps.
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output PNG; with several images, `-N` is added before the extension.
    #[arg(long, default_value = "huatu-chat.png")]
    pub out: PathBuf,
    /// Compute precision of the SDXL models: auto (f32 on the CPU; bf16 on a GPU that
    /// has it, else f16), f32, f16 or bf16.
    #[arg(long, default_value = "auto")]
    pub dtype: DtypeChoice,
    #[command(flatten)]
    pub device: DeviceArgs,
}

fn load_sdxl(
    path: &std::path::Path,
    dtype: DtypeChoice,
    device: &Device,
) -> anyhow::Result<SdxlComponents> {
    let options = dtype.load_options(device);
    SdxlComponents::load(&ModelSource::from_path(path)?, options, device)
        .with_context(|| format!("cannot load the model from {}", path.display()))
}

/// The mask of --region/--box at the original's size (white inside), and its rectangle.
fn drawn_mask(args: &ChatArgs) -> anyhow::Result<Option<(GrayImage, Rect)>> {
    let region = match (&args.region, &args.box_corners) {
        (Some(text), _) => Region::parse_center(text)?,
        (None, Some(text)) => Region::parse_box(text)?,
        (None, None) => return Ok(None),
    };
    let Some(path) = &args.setup.image else {
        return Ok(None);
    };
    let (width, height) = image::image_dimensions(path)
        .with_context(|| format!("cannot read the image {}", path.display()))?;
    let rect = region.to_rect(width, height)?;
    Ok(Some((region_mask(rect, width, height), rect)))
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let planner = Planner::load(&args.setup)?;
    let (parse, plan) = planner.plan(&args.instruction)?;
    let plan = match plan {
        Plan::Task(mut task) => {
            if let Some(size) = args.size {
                (task.width, task.height) = (size.width as usize, size.height as usize);
            }
            if let Some(steps) = args.steps {
                task.steps = steps;
            }
            Plan::Task(task)
        }
        other => other,
    };
    if args.dry_run {
        print!("{}", plan_text(&parse, &plan)?);
        return Ok(());
    }
    println!("instruction: {}", args.instruction);
    println!(
        "intent: {} (confidence {:.2})",
        parse.intent, parse.confidence
    );
    println!("slots: {}", serde_json::to_string(&parse.slots)?);
    let task = match plan {
        Plan::Task(task) => task,
        Plan::Question(question) => {
            println!("question: {question}");
            return Ok(());
        }
        Plan::Refusal(refusal) => {
            println!("reply: {refusal}");
            return Ok(());
        }
    };
    println!("scene: {}", task.scene);
    for (index, step) in task.chain().iter().enumerate() {
        println!("plan {}. {step}", index + 1);
    }
    for note in &task.notes {
        println!("note: {note}");
    }

    let device = args.device.open()?;
    if args.sr_model.is_none()
        && task
            .enhancer
            .as_deref()
            .is_some_and(huatu_imaging::enhancer_upscales)
    {
        bail!("the scene's enhancer upscales with Real-ESRGAN: pass --sr-model FILE (.pth or .safetensors)");
    }
    let mask = drawn_mask(&args)?;
    if let Some((_, rect)) = &mask {
        println!(
            "region: box ({}, {})–({}, {}) of the original",
            rect.left, rect.top, rect.right, rect.bottom
        );
    }
    let model_dir = sdxl_model(args.model.as_deref())?;
    let mut base = load_sdxl(&model_dir, args.dtype, &device)?;
    let instruct = args
        .instruct_model
        .as_deref()
        .map(|path| load_sdxl(path, args.dtype, &device))
        .transpose()?;
    let controlnet = match &args.controlnet {
        Some(path) => {
            Some(load_controlnet(path, base.dtype, &device).context("cannot use --controlnet")?)
        }
        None => None,
    };
    let upscaler = match &args.sr_model {
        Some(path) => {
            Some(huatu_imaging::Upscaler::load_on(path, &device).context("cannot use --sr-model")?)
        }
        None => None,
    };
    switch_lora(&task, &mut base)?;
    let models = Models {
        base: &base,
        instruct: instruct.as_ref(),
        controlnet: controlnet.as_ref(),
        upscaler: upscaler.as_ref(),
    };
    let options = RunOptions {
        seed: args.seed.unwrap_or_else(random_seed),
        noise: None,
        mask: mask.map(|(mask, _)| mask),
    };
    let mut bar = StepBar::new(task.steps);
    let images = execute(&task, models, &options, &mut bar)?;
    bar.finish();
    if images.is_empty() {
        bail!("the plan produced no image");
    }
    let settings = serde_json::json!({
        "mode": "chat",
        "instruction": args.instruction,
        "intent": parse.intent.to_string(),
        "scene": task.scene,
        "prompt": task.prompt,
        "negative_prompt": task.negative_prompt,
        "pipeline": task.pipeline.to_string(),
        "width": task.width,
        "height": task.height,
        "steps": task.steps,
        "guidance_scale": task.guidance,
        "scheduler": task.scheduler,
        "seed": options.seed,
        "lora": task.lora.as_ref().map(|l| serde_json::json!({"file": l.path.display().to_string(), "scale": l.scale})),
        "enhancer": task.enhancer,
        "model": model_dir.display().to_string(),
        "huatu_version": env!("CARGO_PKG_VERSION"),
    });
    for (index, image) in images.iter().enumerate() {
        let out = numbered_path(&args.out, index, images.len());
        write_png(
            &out,
            image,
            &[
                ("huatu", settings.to_string()),
                ("parameters", task.prompt.clone()),
            ],
        )?;
        println!("output: {}", out.display());
    }
    Ok(())
}
