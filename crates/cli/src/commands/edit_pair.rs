//! `huatu edit-pair`: an original/edited image pair from two captions with Prompt-to-Prompt
//! self-attention sharing, as InstructPix2Pix generated its training data. One JSON line
//! on stdout: both paths, the seed and the shared fraction `p`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use huatu_diffusion::loading::latents_file::read_latents;
use huatu_diffusion::pipelines::prompt_to_prompt::LocalBlend;
use huatu_diffusion::pipelines::{
    edit_pair, CrossAttentionMode, EditPairRequest, Text2ImageRequest,
};
use huatu_diffusion::schedulers::SchedulerKind;

use crate::model_args::{random_seed, ModelArgs, StepBar};
use huatu_imaging::io::write_png;

#[derive(Args, Debug)]
pub struct EditPairArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The original image's caption.
    #[arg(long)]
    pub caption: String,
    /// The edited image's caption.
    #[arg(long)]
    pub edited_caption: String,
    /// Not given: zero negative conditioning (SDXL's force_zeros_for_empty_prompt).
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Fraction of the steps whose self-attention maps the edited image takes from the
    /// original. Default: drawn from the seed in [0.1, 0.9], as InstructPix2Pix samples it.
    #[arg(long)]
    pub p: Option<f64>,
    /// Google's prompt-to-prompt cross-attention edit on top: off (InstructPix2Pix),
    /// replace (a word swapped, same token length) or refine (shared words keep the
    /// original's maps).
    #[arg(long, default_value = "off")]
    pub cross_attention: CrossAttentionMode,
    /// Fraction of the steps the cross-attention edit and re-weighting apply to.
    #[arg(long, default_value_t = 0.8)]
    pub cross_p: f64,
    /// Scale the cross-attention maps of a word of the edited caption, WORD=FACTOR
    /// (e.g. snowy=2); repeat for several.
    #[arg(long, value_name = "WORD=FACTOR", value_parser = parse_reweight)]
    pub reweight: Vec<(String, f64)>,
    /// Local blend: the edited image may differ only where these words (of either
    /// caption) attend; repeat for several, e.g. --blend cat --blend dog.
    #[arg(long, value_name = "WORD")]
    pub blend: Vec<String>,
    /// Local blend: the share of the normalised attention a pixel needs to change.
    #[arg(long, default_value_t = 0.3, requires = "blend")]
    pub blend_threshold: f64,
    /// Local blend: fraction of the steps after which it starts.
    #[arg(long, default_value_t = 0.2, requires = "blend")]
    pub blend_start: f64,
    /// Default: the model's native size (unet sample_size × 8).
    #[arg(long)]
    pub width: Option<usize>,
    #[arg(long)]
    pub height: Option<usize>,
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// euler, euler-a, ddim, dpmpp-2m, dpmpp-2m-karras. Default: the model's own scheduler.
    #[arg(long)]
    pub scheduler: Option<SchedulerKind>,
    /// Seed of the shared initial noise. Default: random.
    #[arg(long, conflicts_with = "latents")]
    pub seed: Option<u64>,
    /// Initial latents (safetensors, key `latents`, [1,4,H/8,W/8]) shared by both images.
    #[arg(long)]
    pub latents: Option<PathBuf>,
    #[arg(long)]
    pub out_original: PathBuf,
    #[arg(long)]
    pub out_edited: PathBuf,
}

fn parse_reweight(text: &str) -> Result<(String, f64), String> {
    let (word, factor) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("expected WORD=FACTOR, got `{text}`"))?;
    let factor: f64 = factor
        .trim()
        .parse()
        .map_err(|_| format!("`{factor}` is not a number"))?;
    if word.trim().is_empty() || !factor.is_finite() {
        return Err(format!(
            "expected WORD=FACTOR with a finite factor, got `{text}`"
        ));
    }
    Ok((word.trim().to_string(), factor))
}

/// InstructPix2Pix's p: uniform in [0.1, 0.9], here drawn from the seed (SplitMix64).
pub fn sampled_p(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    0.1 + 0.8 * ((z >> 11) as f64 / (1u64 << 53) as f64)
}

pub fn run(args: EditPairArgs) -> anyhow::Result<()> {
    if args.out_original == args.out_edited {
        bail!("--out-original and --out-edited must be different files");
    }
    let device = args.model.device.open()?;
    let latents = match &args.latents {
        Some(path) => Some(read_latents(path, &device).context("cannot use --latents")?),
        None => None,
    };
    let components = args.model.load(&device)?;
    let native = components.unet.config().sample_size.unwrap_or(128) * 8;
    let seed = args.seed.unwrap_or_else(random_seed);
    let mut base = Text2ImageRequest::new(args.caption.clone());
    base.settings.negative_prompt = args.negative_prompt.clone();
    base.height = args.height.unwrap_or(native);
    base.width = args.width.unwrap_or(native);
    base.settings.num_inference_steps = args.steps;
    base.settings.guidance_scale = args.guidance;
    base.settings.scheduler = args
        .scheduler
        .or(components.default_scheduler)
        .unwrap_or(SchedulerKind::Euler);
    base.settings.seed = seed;
    base.settings.noise = latents;
    let request = EditPairRequest {
        cross_attention: args.cross_attention,
        cross_attention_fraction: args.cross_p,
        reweight: args.reweight.clone(),
        local_blend: (!args.blend.is_empty()).then(|| LocalBlend {
            words: args.blend.clone(),
            threshold: args.blend_threshold,
            start: args.blend_start,
        }),
        ..EditPairRequest::new(
            base,
            args.edited_caption.clone(),
            args.p.unwrap_or_else(|| sampled_p(seed)),
        )
    };
    request.validate()?;
    let mut bar = StepBar::new(args.steps);
    let output = edit_pair(&components, &request, &mut bar)?;
    bar.finish();
    let settings = |caption: &str| {
        serde_json::json!({
            "mode": "edit-pair",
            "model": args.model.model.display().to_string(),
            "prompt": caption,
            "caption": request.base.settings.prompt,
            "edited_caption": request.edited_prompt,
            "p": request.self_attention_fraction,
            "cross_attention": format!("{:?}", request.cross_attention).to_lowercase(),
            "cross_p": request.cross_attention_fraction,
            "reweight": request.reweight,
            "blend": args.blend,
            "steps": request.base.settings.num_inference_steps,
            "guidance_scale": request.base.settings.guidance_scale,
            "scheduler": request.base.settings.scheduler.to_string(),
            "seed": if args.latents.is_some() { serde_json::Value::Null } else { seed.into() },
            "huatu_version": env!("CARGO_PKG_VERSION"),
        })
        .to_string()
    };
    write_png(
        &args.out_original,
        &output.original,
        &[("huatu", settings(&args.caption))],
    )?;
    write_png(
        &args.out_edited,
        &output.edited,
        &[("huatu", settings(&args.edited_caption))],
    )?;
    println!(
        "{}",
        serde_json::json!({
            "original": args.out_original.display().to_string(),
            "edited": args.out_edited.display().to_string(),
            "seed": seed,
            "p": request.self_attention_fraction,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sampled_p;

    #[test]
    fn p_is_drawn_within_the_references_range() {
        let draws: Vec<f64> = (0..1000).map(sampled_p).collect();
        assert!(draws.iter().all(|p| (0.1..0.9).contains(p)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.03, "{mean}");
        assert_eq!(sampled_p(7), sampled_p(7));
    }
}
