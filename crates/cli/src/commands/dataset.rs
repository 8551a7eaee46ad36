//! `huatu dataset build`: from example images (and/or a description) to a folder `huatu
//! train lora` trains on — search the image database, caption, write prompts, fit the
//! images (huatu_data::dataset has the chain). One JSON line on stdout sums it up;
//! `report.json` in the folder has every score and every dropped image with its reason.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use huatu_agent::chat_backend::ChatBackend;
use huatu_agent::plan::purpose::Purpose;
use huatu_agent::prompt::Lexicon;
use huatu_agent::scenes::{PromptBackend, Scenes};
use huatu_data::dataset::prompt::{PromptWriter, TemplatePromptWriter};
use huatu_data::dataset::{build_dataset, DatasetModels, DatasetRequest};
use huatu_data::{BlipForConditionalGeneration, CaptionOptions, ImageDatabase};
use huatu_imaging::ResizeFilter;

use crate::device_args::DeviceArgs;
use crate::fit_args::FitArgs;

#[derive(Subcommand, Debug)]
pub enum DatasetCommand {
    /// Builds a training folder (image + .txt, metadata.jsonl, report.json) from example
    /// images and/or a description: search, deduplicate, fit, caption, write prompts.
    Build(Box<BuildArgs>),
    /// InstructPix2Pix training data from captions: edit instructions, Prompt-to-Prompt
    /// pairs over several seeds, CLIP filter, the 5-tuple folder (resumable).
    #[command(name = "instruct-pix2pix")]
    InstructPix2Pix(Box<super::dataset_pairs::PairArgs>),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The image database to search (`huatu db add`); its CLIP model embeds the queries.
    #[arg(long, value_name = "DIR")]
    pub db: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Example images or folders of them: each searches the database, and they go into
    /// the dataset too (unless --no-examples).
    #[arg(long, value_name = "IMAGE|FOLDER", num_args = 1..)]
    pub examples: Vec<PathBuf>,
    /// A description that searches the database as well, e.g. "红色灯笼的节日海报".
    #[arg(long, value_name = "TEXT")]
    pub describe: Option<String>,
    /// How many database images to take.
    #[arg(long, value_name = "N")]
    pub take: usize,
    /// The trigger word, first in every prompt (default: the --scene's trigger).
    #[arg(long, value_name = "WORD")]
    pub trigger: Option<String>,
    /// The training size and how images are fitted to it.
    #[command(flatten)]
    pub fit: FitArgs,
    /// The output folder (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A BLIP captioning folder: captions every image and, when the search falls short,
    /// the examples, whose captions then search too. Without it, captions are those
    /// stored in the database, else the labels.
    #[arg(long, value_name = "DIR")]
    pub caption_model: Option<PathBuf>,
    /// The most tokens per caption.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 30,
        requires = "caption_model"
    )]
    pub max_tokens: usize,
    /// Beam search with this many beams; 1 is greedy search.
    #[arg(
        long,
        value_name = "K",
        default_value_t = 1,
        requires = "caption_model"
    )]
    pub num_beams: usize,
    /// A start every caption continues, e.g. "a picture of".
    #[arg(long, value_name = "TEXT", requires = "caption_model")]
    pub caption_prompt: Option<String>,
    /// Images captioned together.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 8,
        requires = "caption_model"
    )]
    pub batch_size: usize,
    /// Only database images at least this similar (cosine) to a query.
    #[arg(long, value_name = "S")]
    pub min_score: Option<f32>,
    /// Images at least this similar (cosine) to an example or a better hit are duplicates.
    #[arg(long, value_name = "S", default_value_t = 0.95)]
    pub duplicate_threshold: f32,
    /// Leave the examples out of the dataset (they still search).
    #[arg(long)]
    pub no_examples: bool,
    /// A scene whose prompt template frames each caption (its style words; `{subject}`
    /// is the caption), e.g. poster.
    #[arg(long, value_name = "NAME")]
    pub scene: Option<String>,
    /// Style words after each caption (without --scene).
    #[arg(long, value_name = "WORDS", conflicts_with = "scene")]
    pub style: Option<String>,
    /// A scenes.toml over the built-in scenes; its `[prompt]` chat server, when set,
    /// writes the prompts (the template steps in when it fails).
    #[arg(long, value_name = "FILE")]
    pub scenes: Option<PathBuf>,
}

pub fn run(command: DatasetCommand) -> anyhow::Result<()> {
    match command {
        DatasetCommand::Build(args) => build(*args),
        DatasetCommand::InstructPix2Pix(args) => super::dataset_pairs::run(*args),
    }
}

/// The prompt writer of a configured chat server.
struct LlmWriter {
    backend: ChatBackend,
    trigger: String,
    style: String,
}

impl PromptWriter for LlmWriter {
    fn name(&self) -> String {
        format!("LLM {} at {}", self.backend.model, self.backend.base_url)
    }

    fn write(&self, caption: Option<&str>, labels: &[String]) -> Result<String, String> {
        self.backend
            .write_training_prompt(caption, labels, &self.trigger, &self.style)
            .map_err(|error| error.to_string())
    }
}

fn build(args: BuildArgs) -> anyhow::Result<()> {
    if args.examples.is_empty() && args.describe.is_none() {
        bail!("give example images (--examples) or a description (--describe) to search with");
    }
    let scenes = match &args.scenes {
        Some(path) => Scenes::with_overrides(path)?,
        None => Scenes::builtin()?,
    };
    let scene = match &args.scene {
        Some(name) => Some(scenes.get(name).with_context(|| {
            let known: Vec<&str> = scenes.iter().map(|scene| scene.name.as_str()).collect();
            format!("no scene `{name}` (known: {})", known.join(", "))
        })?),
        None => None,
    };
    let trigger = match (&args.trigger, scene) {
        (Some(trigger), _) => trigger.trim().to_string(),
        (None, Some(scene)) => scene.trigger.clone(),
        (None, None) => bail!("give the dataset's trigger word: --trigger WORD (or a --scene)"),
    };
    if trigger.is_empty() || trigger.contains(',') {
        bail!("the trigger word must be non-empty and hold no comma, got {trigger:?}");
    }
    let template = match scene {
        // A training set mixes purposes: its images get the general poster wording.
        Some(scene) => TemplatePromptWriter {
            template: scene
                .prompt
                .replace("{purpose}", Purpose::General.wording()),
            trigger: trigger.clone(),
        },
        None => TemplatePromptWriter::new(&trigger, args.style.as_deref()),
    };
    let llm = match &scenes.prompt_backend {
        PromptBackend::Chat(backend) => Some(LlmWriter {
            backend: backend.clone(),
            trigger: trigger.clone(),
            style: template.style_words(),
        }),
        PromptBackend::Lexicon => None,
    };

    let database = ImageDatabase::open(&args.db)?;
    let device = args.device.open()?;
    let clip = database.load_model(&device)?;
    let blip = args
        .caption_model
        .as_deref()
        .map(|dir| BlipForConditionalGeneration::load(dir, &device).map_err(anyhow::Error::from))
        .transpose()?;
    let describe = args
        .describe
        .as_deref()
        .map(|text| search_text(&clip, text));
    let request = DatasetRequest {
        examples: args.examples,
        include_examples: !args.no_examples,
        describe,
        take: args.take,
        min_score: args.min_score,
        duplicate_threshold: args.duplicate_threshold,
        fit: args.fit.options(ResizeFilter::default())?,
        caption: CaptionOptions {
            max_new_tokens: args.max_tokens,
            num_beams: args.num_beams,
            prompt: args.caption_prompt,
        },
        batch_size: args.batch_size,
        out: args.out,
    };
    let models = DatasetModels {
        clip: &clip,
        blip: blip.as_ref(),
        writer: llm.as_ref().map(|writer| writer as &dyn PromptWriter),
        template: &template,
    };
    let report = build_dataset(&database, &models, &request, &mut |message| {
        eprintln!("{message}")
    })?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    for dropped in &report.dropped {
        eprintln!("dropped {}: {}", dropped.path, dropped.reason);
    }
    if !report.prompt_fallbacks.is_empty() {
        eprintln!(
            "{} prompt(s) came from the template because the writer failed, e.g. {}",
            report.prompt_fallbacks.len(),
            report.prompt_fallbacks[0]
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "out": report.out.display().to_string(),
            "images": report.images.len(),
            "from_examples": report.from_examples,
            "from_database": report.from_database,
            "shortfall": report.shortfall,
            "dropped": report.dropped.len(),
            "prompt_writer": report.prompt_writer,
            "report": report.out.join("report.json").display().to_string(),
        })
    );
    Ok(())
}

/// The description as the database's CLIP model can read it: an English CLIP's tokenizer
/// knows no Chinese, so a Chinese description is translated with the agent's lexicon
/// first (a Chinese-CLIP model reads it as it is).
fn search_text(clip: &huatu_data::ClipModel, text: &str) -> String {
    let has_cjk = text
        .chars()
        .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c));
    if !has_cjk || clip.is_chinese_clip() {
        return text.to_string();
    }
    let translation = Lexicon::builtin().translate(text);
    if translation.english.trim().is_empty() {
        return text.to_string();
    }
    eprintln!(
        "the database's CLIP model reads English: searching for \"{}\"{}",
        translation.english,
        if translation.unknown.is_empty() {
            String::new()
        } else {
            format!(" (not translated: {})", translation.unknown.join(", "))
        }
    );
    translation.english
}
