//! The agent as the server uses it: the intent model, the scenes and the lexicon, and the
//! translation of a `TaskPlan` into a job spec. The agent decides; this file only maps its
//! decision onto what the queue can run, and says plainly what it cannot run yet.

use std::path::{Path, PathBuf};

use huatu_agent::planner::{LoraChoice, PipelineKind, TaskPlan};
use huatu_agent::prompt::Lexicon;
use huatu_agent::scenes::Scenes;
use huatu_agent::IntentModel;
use huatu_diffusion::pipelines::GrayImage;
use serde_json::{json, Value};

use crate::error::ServerError;
use crate::jobs::{EditSpec, GenerationSpec, JobSpec, LoraSpec};

pub struct Assistant {
    pub model: IntentModel,
    pub scenes: Scenes,
    pub lexicon: &'static Lexicon,
}

impl Assistant {
    pub fn load(dir: &Path) -> Result<Self, ServerError> {
        let wrap = |error: huatu_agent::AgentError| ServerError::Agent {
            path: dir.to_path_buf(),
            message: crate::engine::chain(&error),
        };
        Ok(Self {
            model: IntentModel::load(dir).map_err(wrap)?,
            scenes: Scenes::builtin().map_err(wrap)?,
            lexicon: Lexicon::builtin(),
        })
    }
}

/// The intent model to use: the flag, else `$HUATU_INTENT_MODEL`, else `models/intent`
/// under the working directory when it is there.
pub fn intent_model_dir(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = flag {
        return Some(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("HUATU_INTENT_MODEL") {
        return Some(PathBuf::from(dir));
    }
    let local = PathBuf::from("models/intent");
    local.join("config.json").is_file().then_some(local)
}

/// The plan as the API shows it.
pub fn plan_view(task: &TaskPlan) -> Value {
    json!({
        "scene": task.scene,
        "pipeline": task.pipeline.as_str(),
        "prompt": task.prompt,
        "negative_prompt": task.negative_prompt,
        "width": task.width,
        "height": task.height,
        "steps": task.steps,
        "guidance": task.guidance,
        "scheduler": task.scheduler,
        "lora": task.lora.as_ref().map(|lora| json!({
            "file": lora.path.file_name().map(|name| name.to_string_lossy().into_owned()),
            "scale": lora.scale,
            "trigger": lora.trigger,
        })),
        "enhancer": task.enhancer,
        "num_images": task.num_images,
        "region": task.region,
        "chain": task.chain(),
    })
}

/// A scene's LoRA as a name under `<data>/loras` (the planner only picks files that exist).
fn lora_spec(lora: &LoraChoice, lora_dir: &Path) -> Option<LoraSpec> {
    let inside = lora.path.parent().is_some_and(|parent| parent == lora_dir);
    let name = lora
        .path
        .file_name()?
        .to_str()?
        .strip_suffix(".safetensors")?;
    (inside && crate::engine::is_lora_name(name)).then(|| LoraSpec {
        name: name.to_string(),
        scale: lora.scale,
    })
}

/// Settings the request may override (the web page's options; tests keep jobs small).
#[derive(Debug, Default, Clone, Copy)]
pub struct Overrides {
    pub size: Option<(usize, usize)>,
    pub steps: Option<usize>,
    pub seed: Option<u64>,
}

/// What the queue runs for a plan, or why it runs nothing (said to the user), plus notes.
pub enum Mapped {
    Job(JobSpec, Vec<String>),
    NotRun(String, Vec<String>),
}

pub struct EditInputs {
    pub image: Option<String>,
    pub mask: Option<GrayImage>,
    pub mask_id: Option<String>,
    pub image_size: (usize, usize),
}

pub fn map_plan(
    task: &TaskPlan,
    overrides: Overrides,
    lora_dir: &Path,
    edit: &EditInputs,
    max_images: usize,
) -> Mapped {
    // The planner's notes name files; clients see them relative to the data directory.
    let shown_dir = lora_dir.display().to_string();
    let mut notes: Vec<String> = task
        .notes
        .iter()
        .map(|note| note.replace(&shown_dir, "<data>/loras"))
        .collect();
    if let Some((width, height)) = overrides.size {
        notes.push(format!(
            "size {width}×{height} requested instead of the plan's {}×{}",
            task.width, task.height
        ));
    }
    if let Some(steps) = overrides.steps {
        notes.push(format!(
            "{steps} steps requested instead of the plan's {}",
            task.steps
        ));
    }
    if let Some(enhancer) = &task.enhancer {
        notes.push(format!("enhancer `{enhancer}` is planned; the server does not run enhancers yet, so the image is delivered as generated"));
    }
    let loras: Vec<LoraSpec> = task
        .lora
        .as_ref()
        .and_then(|lora| lora_spec(lora, lora_dir))
        .into_iter()
        .collect();
    let steps = overrides.steps.unwrap_or(task.steps);
    let seed = overrides.seed.unwrap_or_else(rand::random);
    let scheduler = task.scheduler.parse().ok();
    let negative_prompt = (!task.negative_prompt.is_empty()).then(|| task.negative_prompt.clone());
    let n = task.num_images.clamp(1, max_images);
    match task.pipeline {
        PipelineKind::TextToImage => {
            let (width, height) = overrides.size.unwrap_or((task.width, task.height));
            Mapped::Job(
                JobSpec::Generation(GenerationSpec {
                    prompt: task.prompt.clone(),
                    negative_prompt,
                    width,
                    height,
                    steps,
                    guidance: task.guidance,
                    scheduler,
                    seed,
                    n,
                    loras,
                }),
                notes,
            )
        }
        PipelineKind::InstructPix2Pix => {
            let Some(image) = edit.image.clone() else {
                return Mapped::NotRun("请上传要编辑的图片。".into(), notes);
            };
            notes.push(
                "the server has no InstructPix2Pix model loaded: the instruction runs as a prompt through inpainting (inside the drawn region) or image-to-image (no region) on the base model".into(),
            );
            let (width, height) = edit.image_size;
            Mapped::Job(
                JobSpec::Edit(EditSpec {
                    prompt: task.prompt.clone(),
                    negative_prompt,
                    image,
                    mask: edit.mask_id.clone(),
                    width,
                    height,
                    steps,
                    guidance: task.guidance,
                    scheduler,
                    seed,
                    n,
                    strength: if edit.mask.is_some() { 0.9999 } else { 0.75 },
                    loras,
                }),
                notes,
            )
        }
        PipelineKind::ControlNetInpaint => Mapped::NotRun(
            "计划已生成，但本服务器尚未加载 ControlNet 模型，暂时不能把素材图放进原图（图文编辑）。".into(),
            {
                notes.push("edit.reference needs ControlNet-inpaint; the server loads no ControlNet model yet, so this plan is not run".into());
                notes
            },
        ),
    }
}

/// A mask from a region (center and size, pixels of the original): 255 inside, 0 outside.
pub fn region_mask(
    width: usize,
    height: usize,
    region: &crate::routes::agent::Region,
) -> GrayImage {
    let left = (region.x - region.width / 2.0).round().max(0.0) as usize;
    let top = (region.y - region.height / 2.0).round().max(0.0) as usize;
    let right = ((region.x + region.width / 2.0).round() as usize).min(width);
    let bottom = ((region.y + region.height / 2.0).round() as usize).min(height);
    let mut pixels = vec![0u8; width * height];
    for y in top..bottom {
        for x in left..right {
            pixels[y * width + x] = 255;
        }
    }
    GrayImage {
        width,
        height,
        pixels,
    }
}
