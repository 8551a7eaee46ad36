//! The planner: intent + slots + scene → a task chain (prompt → pipeline with LoRA →
//! enhancer → output) as plain data, or a question back, or a polite refusal.
//!
//! It decides and describes; it runs nothing. The CLI and the server hand a `TaskPlan`
//! to the diffusion and imaging crates.

use std::fmt;
use std::path::{Path, PathBuf};

use huatu_diffusion::schedulers::SchedulerKind;
use serde::{Deserialize, Serialize};

use crate::corpus::SlotValue;
use crate::error::AgentError;
use crate::labels::{Intent, SlotName};
use crate::model::Parse;
use crate::plan::dictionary::DICTIONARY_VERSION;
use crate::plan::prompt::Lexicon;
use crate::plan::prompt_cache::{cached, PromptKey};
use crate::plan::scenes::Scenes;
use crate::plan::sizing::size_for_aspect;
use crate::plan::template::write_prompt;

/// Which pipeline a plan runs; spelled as in logs and the HTTP API (the `strum`
/// attributes; serde, `Display` and `FromStr` all use them).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(into = "&'static str", try_from = "String")]
#[strum(parse_err_ty = AgentError, parse_err_fn = unknown_pipeline)]
pub enum PipelineKind {
    #[strum(serialize = "text2img")]
    TextToImage,
    #[strum(serialize = "controlnet-inpaint")]
    ControlNetInpaint,
    #[strum(serialize = "instruct-pix2pix")]
    InstructPix2Pix,
}

impl PipelineKind {
    pub const ALL: [PipelineKind; 3] = [
        PipelineKind::TextToImage,
        PipelineKind::ControlNetInpaint,
        PipelineKind::InstructPix2Pix,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl TryFrom<String> for PipelineKind {
    type Error = AgentError;
    fn try_from(text: String) -> Result<Self, AgentError> {
        text.parse()
    }
}

fn unknown_pipeline(text: &str) -> AgentError {
    AgentError::UnknownPipeline(text.to_string())
}

/// The LoRA adapter a plan loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraChoice {
    pub path: PathBuf,
    pub scale: f64,
    pub trigger: String,
}

/// Everything the pipelines need, decided (JSON-serialisable, so a queue can keep it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskPlan {
    pub intent: Intent,
    pub confidence: f64,
    pub slots: crate::corpus::Slots,
    pub scene: String,
    pub pipeline: PipelineKind,
    pub prompt: String,
    pub negative_prompt: String,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance: f64,
    pub scheduler: SchedulerKind,
    pub lora: Option<LoraChoice>,
    pub enhancer: Option<String>,
    pub num_images: usize,
    /// The original image (edits).
    pub image: Option<PathBuf>,
    /// The image whose content goes into the region (edit.reference).
    pub condition_image: Option<PathBuf>,
    /// Where in the frame (edit.reference), as the user wrote it.
    pub region: Option<String>,
    /// Things the user should know (missing LoRA, untranslated words, capped counts).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Task(Box<TaskPlan>),
    /// Something is missing; ask the user (in Chinese, as they wrote).
    Question(String),
    /// Not an image request.
    Refusal(String),
}

/// What the planner sees besides the parse.
#[derive(Debug, Clone, Default)]
pub struct PlanInputs {
    pub image: Option<PathBuf>,
    pub condition_image: Option<PathBuf>,
    /// Folder the scenes' LoRA files are relative to.
    pub lora_dir: PathBuf,
}

pub const MAX_IMAGES: usize = 8;
/// Below this intent confidence the planner asks instead of guessing. Confidences are
/// temperature-calibrated (the model's `intent_temperature`), so below one half the
/// intent is more likely wrong than right.
pub const MIN_CONFIDENCE: f64 = 0.5;

pub const REFUSAL: &str = "抱歉，这个我帮不上忙。我是画图助手 huatu，可以帮您：生成海报和节日祝福图、人像、背景和壁纸、图标和 logo，或自由创作一张图；也可以按文字修改您的图片（如“把天空换成晚霞”），或把您上传的素材（如 logo）放进图片的指定位置。请告诉我您想画什么。";
pub const ASK_IMAGE: &str = "请上传要编辑的图片。";
pub const ASK_CONDITION: &str = "请上传要放进图片里的素材图（例如 logo 或产品图）。";
pub const ASK_SUBJECT: &str = "想画什么呢？请描述一下画面内容，例如“画一只在月球上的猫”。";
pub const ASK_EDIT: &str = "想怎么改这张图呢？请说说要改哪里、改成什么，例如“把天空换成晚霞”。";
pub const ASK_CLARIFY: &str =
    "我不太确定您的意思。您是想生成一张新图，还是修改已有的图片？请再具体说说。";

fn text_slot(parse: &Parse, slot: SlotName) -> Option<&str> {
    match parse.slots.get(&slot) {
        Some(SlotValue::Text(value)) => Some(value.as_str()),
        _ => None,
    }
}

pub fn plan(parse: &Parse, inputs: &PlanInputs, scenes: &Scenes, lexicon: &Lexicon) -> Plan {
    let intent = parse.intent;
    // An unsure `other` may be a request worded oddly: ask rather than refuse.
    if parse.confidence < MIN_CONFIDENCE {
        return Plan::Question(ASK_CLARIFY.into());
    }
    if intent == Intent::Other {
        return Plan::Refusal(REFUSAL.into());
    }
    if intent.is_edit() && inputs.image.is_none() {
        return Plan::Question(ASK_IMAGE.into());
    }
    if intent == Intent::EditReference && inputs.condition_image.is_none() {
        return Plan::Question(ASK_CONDITION.into());
    }
    // An instruction edit needs something to change: a target, new content or a style.
    if intent == Intent::EditInstruct
        && [SlotName::Target, SlotName::Content, SlotName::Style]
            .iter()
            .all(|&slot| text_slot(parse, slot).is_none())
    {
        return Plan::Question(ASK_EDIT.into());
    }
    let needs_subject = matches!(
        intent,
        Intent::GenerateFree
            | Intent::GeneratePortrait
            | Intent::GenerateIcon
            | Intent::GeneratePoster
    );
    if needs_subject
        && text_slot(parse, SlotName::Subject).is_none()
        && text_slot(parse, SlotName::Style).is_none()
    {
        return Plan::Question(ASK_SUBJECT.into());
    }
    let Some(scene) = scenes.for_intent(intent) else {
        return Plan::Question(format!(
            "没有为 {intent} 配置场景（scenes.toml），请添加一个 intent = \"{intent}\" 的场景。"
        ));
    };
    let mut notes = Vec::new();
    let lora = scene.lora.as_ref().and_then(|file| {
        let path = if file.is_absolute() { file.clone() } else { inputs.lora_dir.join(file) };
        if path.is_file() {
            Some(LoraChoice {
                path,
                scale: scene.lora_scale,
                trigger: scene.trigger.clone(),
            })
        } else {
            notes.push(format!(
                "LoRA file {} for scene {} not found: running on the base model without trigger word",
                path.display(),
                scene.name
            ));
            None
        }
    });
    let trigger = lora.as_ref().map(|l| l.trigger.as_str()).unwrap_or("");
    let key = PromptKey {
        instruction: parse.text.clone(),
        writer: "offline".into(),
        model: format!("{}+{}", lexicon.version(), DICTIONARY_VERSION),
        context: format!(
            "{intent}|{:?}|{}|{}|{}|{trigger}",
            parse.slots, scene.name, scene.prompt, scene.negative_prompt
        ),
    };
    let written = cached(key, || {
        write_prompt(scene, intent, &parse.text, &parse.slots, trigger, lexicon)
    });
    if !written.untranslated.is_empty() {
        notes.push(format!(
            "no English known for {}; left out of the prompt",
            written.untranslated.join("、")
        ));
    }
    let (mut width, mut height) = (scene.width, scene.height);
    if let Some(aspect) = text_slot(parse, SlotName::Aspect) {
        match size_for_aspect(aspect, scene.width, scene.height) {
            Some(size) => (width, height) = size,
            None => notes.push(format!(
                "aspect `{aspect}` not understood; using {width}×{height}"
            )),
        }
    }
    let mut num_images = match parse.slots.get(&SlotName::Count) {
        Some(SlotValue::Count(n)) => *n as usize,
        _ => 1,
    };
    if num_images > MAX_IMAGES {
        notes.push(format!(
            "{num_images} images asked; making {MAX_IMAGES}, the most per request"
        ));
        num_images = MAX_IMAGES;
    }
    let pipeline = match intent {
        Intent::EditReference => PipelineKind::ControlNetInpaint,
        Intent::EditInstruct => PipelineKind::InstructPix2Pix,
        _ => PipelineKind::TextToImage,
    };
    Plan::Task(Box::new(TaskPlan {
        intent,
        confidence: parse.confidence,
        slots: parse.slots.clone(),
        scene: scene.name.clone(),
        pipeline,
        prompt: written.prompt,
        negative_prompt: written.negative_prompt,
        width,
        height,
        steps: scene.steps,
        guidance: scene.guidance,
        scheduler: scene.scheduler,
        lora,
        enhancer: scene.enhancer.clone(),
        num_images,
        image: inputs.image.clone(),
        condition_image: inputs.condition_image.clone(),
        region: text_slot(parse, SlotName::Region).map(str::to_string),
        notes,
    }))
}

impl TaskPlan {
    /// The task chain as shown to the user before it runs.
    pub fn chain(&self) -> Vec<String> {
        let mut steps = vec![format!("prompt: {}", self.prompt)];
        let lora = match &self.lora {
            Some(l) => format!("LoRA {} ×{}", l.path.display(), l.scale),
            None => "base model".to_string(),
        };
        steps.push(format!(
            "{} ({lora}): {}×{}, {} steps, guidance {}, {}, {} image(s)",
            self.pipeline,
            self.width,
            self.height,
            self.steps,
            self.guidance,
            self.scheduler,
            self.num_images
        ));
        if let Some(region) = &self.region {
            steps.push(format!("region: {region}"));
        }
        steps.push(format!(
            "enhancer: {}",
            self.enhancer.as_deref().unwrap_or("none")
        ));
        steps.push("output".to_string());
        steps
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Question(q) => write!(f, "question: {q}"),
            Plan::Refusal(r) => write!(f, "refusal: {r}"),
            Plan::Task(task) => {
                writeln!(f, "intent: {} ({:.2})", task.intent, task.confidence)?;
                writeln!(f, "scene: {}", task.scene)?;
                for (i, step) in task.chain().iter().enumerate() {
                    writeln!(f, "{}. {step}", i + 1)?;
                }
                for note in &task.notes {
                    writeln!(f, "note: {note}")?;
                }
                Ok(())
            }
        }
    }
}

/// Where the scenes' LoRA files live by default: `$HUATU_LORA_DIR` or `models/lora`.
pub fn default_lora_dir() -> PathBuf {
    std::env::var_os("HUATU_LORA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("models/lora").to_path_buf())
}
