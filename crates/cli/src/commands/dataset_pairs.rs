//! `huatu dataset instruct-pix2pix`: captions → edit instructions → Prompt-to-Prompt pairs
//! over several seeds → CLIP filter → an InstructPix2Pix training folder
//! (huatu_data::instruct_pix2pix has the chain). Resumable: run it again with the same
//! settings and it goes on where it stopped.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use huatu_agent::chat_backend::ChatBackend;
use huatu_agent::edit_instructions::{template_edit, EditIdea};
use huatu_agent::scenes::{PromptBackend, Scenes};
use huatu_data::instruct_pix2pix::similarity::ClipThresholds;
use huatu_data::instruct_pix2pix::{
    build_pair_dataset, CaptionEdit, EditWriter, PairDatasetRequest,
};
use huatu_data::ClipModel;
use huatu_diffusion::schedulers::SchedulerKind;

use crate::model_args::ModelArgs;

#[derive(Args, Debug)]
pub struct PairArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A CLIP model folder for the filter (e.g. clip-vit-large-patch14, the paper's).
    #[arg(long, value_name = "DIR")]
    pub clip: PathBuf,
    /// Captions: a text file (one per line) or JSON lines with `caption` or `text`.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "from",
        conflicts_with = "from"
    )]
    pub captions: Option<PathBuf>,
    /// A `dataset build` folder: its metadata.jsonl's captions.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// Pairs tried per caption (different seeds, p and guidance).
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub samples: usize,
    /// Pairs kept per caption at most, best directional similarity first.
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub keep: usize,
    /// Range the shared self-attention fraction p is drawn from.
    #[arg(long, default_value_t = 0.1)]
    pub p_min: f64,
    #[arg(long, default_value_t = 0.9)]
    pub p_max: f64,
    /// Range the guidance scale is drawn from.
    #[arg(long, default_value_t = 7.5)]
    pub guidance_min: f64,
    #[arg(long, default_value_t = 15.0)]
    pub guidance_max: f64,
    /// Each image against its caption: at least this CLIP similarity.
    #[arg(long, default_value_t = ClipThresholds::default().caption, allow_negative_numbers = true)]
    pub clip_threshold: f32,
    /// Image change against caption change: at least this directional similarity.
    #[arg(long, default_value_t = ClipThresholds::default().direction, allow_negative_numbers = true)]
    pub clip_dir_threshold: f32,
    /// Original against edited image: at least this CLIP similarity.
    #[arg(long, default_value_t = ClipThresholds::default().image, allow_negative_numbers = true)]
    pub clip_img_threshold: f32,
    #[arg(long, default_value_t = 512)]
    pub width: usize,
    #[arg(long, default_value_t = 512)]
    pub height: usize,
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// euler, euler-a, ddim, dpmpp-2m, dpmpp-2m-karras. Default: the model's own scheduler.
    #[arg(long)]
    pub scheduler: Option<SchedulerKind>,
    /// Seed of the run: every caption's edit choice and pair seeds derive from it.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// A scenes.toml whose `[prompt]` chat server writes the edits (templates otherwise,
    /// and for any caption the server fails on).
    #[arg(long, value_name = "FILE")]
    pub scenes: Option<PathBuf>,
    /// The dataset folder (created; a folder from an earlier run with the same settings
    /// is resumed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

fn caption_edit(idea: EditIdea) -> CaptionEdit {
    CaptionEdit {
        instruction: idea.instruction,
        instruction_zh: idea.instruction_zh,
        edited_caption: idea.edited_caption,
    }
}

/// The offline templates.
struct TemplateEdits;

impl EditWriter for TemplateEdits {
    fn name(&self) -> String {
        "templates".into()
    }

    fn write(&self, caption: &str, seed: u64) -> Result<CaptionEdit, String> {
        template_edit(caption, seed)
            .map(caption_edit)
            .ok_or_else(|| "no template applies".to_string())
    }
}

/// A chat server, with the templates for the captions it fails on.
struct LlmEdits(ChatBackend);

impl EditWriter for LlmEdits {
    fn name(&self) -> String {
        format!(
            "LLM {} at {} (templates when it fails)",
            self.0.model, self.0.base_url
        )
    }

    fn write(&self, caption: &str, seed: u64) -> Result<CaptionEdit, String> {
        match self.0.write_edit(caption) {
            Ok(idea) => Ok(caption_edit(idea)),
            Err(error) => {
                eprintln!("the LLM failed on \"{caption}\" ({error}); using a template");
                TemplateEdits.write(caption, seed)
            }
        }
    }
}

/// Captions from a text or JSON-lines file, or a `dataset build` folder.
fn read_captions(args: &PairArgs) -> anyhow::Result<Vec<String>> {
    let (path, folder) = match (&args.captions, &args.from) {
        (Some(file), _) => (file.clone(), false),
        (None, Some(dir)) => (dir.join("metadata.jsonl"), true),
        (None, None) => bail!("give --captions FILE or --from DATASET_DIR"),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut captions = Vec::new();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
    {
        let line = line.trim();
        if !line.starts_with('{') {
            if folder {
                bail!("{} line {}: not JSON", path.display(), number + 1);
            }
            captions.push(line.to_string());
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", path.display(), number + 1))?;
        let caption = ["caption", "text"]
            .iter()
            .find_map(|key| value.get(*key).and_then(|v| v.as_str()))
            .with_context(|| {
                format!(
                    "{} line {}: no `caption` or `text`",
                    path.display(),
                    number + 1
                )
            })?;
        captions.push(caption.to_string());
    }
    if captions.is_empty() {
        bail!("{} holds no captions", path.display());
    }
    Ok(captions)
}

pub fn run(args: PairArgs) -> anyhow::Result<()> {
    let captions = read_captions(&args)?;
    let writer: Box<dyn EditWriter> = match &args.scenes {
        Some(path) => match Scenes::with_overrides(path)?.prompt_backend {
            PromptBackend::Chat(backend) => Box::new(LlmEdits(backend)),
            PromptBackend::Lexicon => Box::new(TemplateEdits),
        },
        None => Box::new(TemplateEdits),
    };
    let device = args.model.device.open()?;
    let clip = ClipModel::load(&args.clip, &device)?;
    let components = args.model.load(&device)?;
    let request = PairDatasetRequest {
        captions,
        samples: args.samples,
        keep: args.keep,
        p_range: (args.p_min, args.p_max),
        guidance_range: (args.guidance_min, args.guidance_max),
        thresholds: ClipThresholds {
            caption: args.clip_threshold,
            direction: args.clip_dir_threshold,
            image: args.clip_img_threshold,
        },
        width: args.width,
        height: args.height,
        steps: args.steps,
        scheduler: args
            .scheduler
            .or(components.default_scheduler)
            .unwrap_or(SchedulerKind::Euler),
        seed: args.seed,
        negative_prompt: args.negative_prompt.clone(),
    };
    let report = build_pair_dataset(
        &components,
        &clip,
        writer.as_ref(),
        &request,
        &args.out,
        &mut |message| eprintln!("{message}"),
    )?;
    let out: &Path = &report.out;
    println!(
        "{}",
        serde_json::json!({
            "out": out.display().to_string(),
            "captions": report.captions,
            "resumed": report.resumed,
            "pairs_tried": report.pairs_tried,
            "pairs_passed": report.pairs_passed,
            "pairs_kept": report.pairs_kept,
            "rejections": report.rejections,
            "edit_writer": report.edit_writer,
        })
    );
    Ok(())
}
