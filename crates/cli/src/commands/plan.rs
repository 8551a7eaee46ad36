//! `huatu plan "INSTRUCTION"`: the plan `chat` would run — intent, slots, scene, prompt,
//! negative prompt, size, steps, LoRA, enhancer — without running it and without the
//! SDXL model; `--jsonl` reads `{"text": ...}` lines and writes one JSON object per line.
//! `chat --dry-run` prints the same through [`Planner`] and [`plan_text`].

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use huatu_agent::llm_writer::{rewrite_with, PromptModel};
use huatu_agent::planner::default_lora_dir;
use huatu_agent::prompt::Lexicon;
use huatu_agent::scenes::{PromptBackend, Scenes};
use huatu_agent::{plan, Intent, IntentModel, Parse, Plan, PlanInputs};
use serde_json::{json, Value};

use crate::intent_model_lookup::load_intent_model;

/// What the planner needs besides the instruction; shared by `plan` and `chat`.
#[derive(Args, Debug, Clone, Default)]
pub struct PlanSetup {
    /// The original image, for edits (only its path is used by the plan).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The image to put into the original (a logo, a product), for region edits.
    #[arg(long)]
    pub condition_image: Option<PathBuf>,
    /// Intent model folder. Default: $HUATU_INTENT_MODEL, else the model built into huatu.
    #[arg(long)]
    pub intent_model: Option<PathBuf>,
    /// A scenes.toml overriding the built-in scenes.
    #[arg(long)]
    pub scenes: Option<PathBuf>,
    /// Folder the scenes' LoRA files are in. Default: $HUATU_LORA_DIR or models/lora.
    #[arg(long)]
    pub lora_dir: Option<PathBuf>,
    /// A local instruction-tuned Qwen2/Qwen2.5/Qwen3 (transformers folder or .gguf file with
    /// tokenizer.json beside it) that writes the prompt; its answer is checked and the
    /// offline writer's prompt kept when it is unusable. Default: $HUATU_PROMPT_MODEL, else
    /// the scenes file's chat server when it names one, else the offline writer alone.
    #[arg(long)]
    pub prompt_model: Option<PathBuf>,
}

/// The intent model, the scenes and the inputs, loaded once for many instructions.
pub struct Planner {
    model: IntentModel,
    scenes: Scenes,
    inputs: PlanInputs,
    /// The language model that rewrites prompts, if any.
    writer: Option<PromptModel>,
}

impl Planner {
    pub fn load(setup: &PlanSetup) -> anyhow::Result<Self> {
        let model = load_intent_model(setup.intent_model.as_deref())?;
        let scenes = match &setup.scenes {
            Some(path) => Scenes::with_overrides(path)?,
            None => Scenes::builtin()?,
        };
        let inputs = PlanInputs {
            image: setup.image.clone(),
            condition_image: setup.condition_image.clone(),
            lora_dir: setup.lora_dir.clone().unwrap_or_else(default_lora_dir),
        };
        let prompt_model = setup
            .prompt_model
            .clone()
            .or_else(|| std::env::var_os("HUATU_PROMPT_MODEL").map(PathBuf::from));
        let writer = match (prompt_model, &scenes.prompt_backend) {
            (Some(path), _) => Some(PromptModel::load_local(&path)?),
            (None, PromptBackend::Chat(backend)) => Some(PromptModel::Chat(backend.clone())),
            (None, PromptBackend::Lexicon) => None,
        };
        Ok(Self {
            model,
            scenes,
            inputs,
            writer,
        })
    }

    pub fn parse(&self, text: &str) -> anyhow::Result<Parse> {
        Ok(self.model.parse(text)?)
    }

    /// The plan for a parse (its intent may have been set by the caller).
    pub fn plan_parse(&self, parse: &Parse) -> Plan {
        let mut plan = plan(parse, &self.inputs, &self.scenes, Lexicon::builtin());
        if let (Plan::Task(task), Some(writer)) = (&mut plan, &self.writer) {
            rewrite_with(task, &parse.text, writer);
        }
        plan
    }

    pub fn plan(&self, text: &str) -> anyhow::Result<(Parse, Plan)> {
        let parse = self.parse(text)?;
        let plan = self.plan_parse(&parse);
        Ok((parse, plan))
    }
}

/// One plan as a JSON object: the task's fields, or a question / reply with empty prompts.
pub fn plan_json(parse: &Parse, plan: &Plan) -> anyhow::Result<Value> {
    let mut value = match plan {
        Plan::Task(task) => serde_json::to_value(task.as_ref())?,
        Plan::Question(question) => {
            json!({"scene": null, "prompt": "", "negative_prompt": "", "question": question})
        }
        Plan::Refusal(reply) => {
            json!({"scene": null, "prompt": "", "negative_prompt": "", "reply": reply})
        }
    };
    if let Value::Object(map) = &mut value {
        map.insert("text".into(), json!(parse.text));
        map.insert("intent".into(), json!(parse.intent.to_string()));
        map.insert("confidence".into(), json!(parse.confidence));
        map.insert("slots".into(), serde_json::to_value(&parse.slots)?);
    }
    Ok(value)
}

/// One plan as the lines `plan` and `chat --dry-run` print.
pub fn plan_text(parse: &Parse, plan: &Plan) -> anyhow::Result<String> {
    let mut lines = vec![
        format!("instruction: {}", parse.text),
        format!(
            "intent: {} (confidence {:.2})",
            parse.intent, parse.confidence
        ),
        format!("slots: {}", serde_json::to_string(&parse.slots)?),
    ];
    match plan {
        Plan::Question(question) => lines.push(format!("question: {question}")),
        Plan::Refusal(reply) => lines.push(format!("reply: {reply}")),
        Plan::Task(task) => {
            lines.push(format!("scene: {}", task.scene));
            lines.push(format!("pipeline: {}", task.pipeline));
            lines.push(format!("prompt: {}", task.prompt));
            lines.push(format!("negative_prompt: {}", task.negative_prompt));
            lines.push(format!(
                "size: {}x{}, {} image(s)",
                task.width, task.height, task.num_images
            ));
            lines.push(format!(
                "steps: {}, guidance {}, {}",
                task.steps, task.guidance, task.scheduler
            ));
            lines.push(match &task.lora {
                Some(lora) => format!(
                    "lora: {} ×{} (trigger {})",
                    lora.path.display(),
                    lora.scale,
                    lora.trigger
                ),
                None => "lora: none (base model)".to_string(),
            });
            if let Some(region) = &task.region {
                lines.push(format!("region: {region}"));
            }
            lines.push(format!(
                "enhancer: {}",
                task.enhancer.as_deref().unwrap_or("none")
            ));
            lines.extend(task.notes.iter().map(|note| format!("note: {note}")));
        }
    }
    Ok(lines.join("\n") + "\n")
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The instruction to plan (omit with --jsonl).
    #[arg(required_unless_present = "jsonl", conflicts_with = "jsonl")]
    pub instruction: Option<String>,
    /// Read JSON lines with a `text` field from stdin; write one plan object per line.
    #[arg(long)]
    pub jsonl: bool,
    /// Print the one instruction's plan as a JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Plan as this intent instead of the one the model recognises (for testing writers).
    #[arg(long)]
    pub intent: Option<Intent>,
    #[command(flatten)]
    pub setup: PlanSetup,
}

fn read_texts() -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for (number, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.context("reading standard input")?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line)
            .with_context(|| format!("stdin line {}: not JSON", number + 1))?;
        let Some(text) = value.get("text").and_then(|t| t.as_str()) else {
            bail!("stdin line {}: no string field `text`", number + 1);
        };
        texts.push(text.to_string());
    }
    Ok(texts)
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    let planner = Planner::load(&args.setup)?;
    let mut parsing = Duration::ZERO;
    let mut planning = Duration::ZERO;
    let mut plan_one = |text: &str| -> anyhow::Result<(Parse, Plan)> {
        let started = Instant::now();
        let mut parse = planner.parse(text)?;
        parsing += started.elapsed();
        if let Some(intent) = args.intent {
            parse.intent = intent;
        }
        let started = Instant::now();
        let plan = planner.plan_parse(&parse);
        planning += started.elapsed();
        Ok((parse, plan))
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(text) = &args.instruction {
        let (parse, plan) = plan_one(text)?;
        if args.json {
            writeln!(out, "{}", plan_json(&parse, &plan)?)?;
        } else {
            write!(out, "{}", plan_text(&parse, &plan)?)?;
        }
        return Ok(());
    }
    let texts = read_texts()?;
    let started = Instant::now();
    for text in &texts {
        let (parse, plan) = plan_one(text)?;
        writeln!(out, "{}", plan_json(&parse, &plan)?)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let each = |time: Duration| 1000.0 * time.as_secs_f64() / texts.len().max(1) as f64;
    eprintln!(
        "planned {} instructions in {:.3} s: {:.2} ms each for the intent model, {:.2} ms for the plan and prompt",
        texts.len(),
        seconds,
        each(parsing),
        each(planning)
    );
    Ok(())
}
