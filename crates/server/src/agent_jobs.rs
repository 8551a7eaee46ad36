//! Agent jobs for the HTTP API: the planner the server holds (intent model, scenes,
//! lexicon) and the translation of its `TaskPlan` into a job spec. The agent decides; this
//! file only maps its decision onto what the queue can run with the models loaded, and
//! says plainly what it cannot run.

use std::path::{Path, PathBuf};

use huatu_agent::llm_writer::{rewrite_with, PromptModel};
use huatu_agent::planner::{LoraChoice, PipelineKind, Plan, TaskPlan};
use huatu_agent::prompt::Lexicon;
use huatu_agent::scenes::Scenes;
use huatu_agent::IntentModel;
use huatu_imaging::enhancer_upscales;
use huatu_imaging::GrayImage;

use crate::error::ServerError;
use crate::job_runner::Capabilities;
use crate::jobs::{AgentSpec, EditSpec, JobSpec, LoraSpec, SamplingSpec};

/// What `/v1/agent` plans with: the intent model, the scenes, the lexicon and the
/// language model that rewrites prompts, if one was given.
pub struct AgentPlanner {
    pub model: IntentModel,
    pub scenes: Scenes,
    pub lexicon: &'static Lexicon,
    pub writer: Option<PromptModel>,
}

impl AgentPlanner {
    /// Loads the intent model folder `dir` and the prompt model at `prompt_model` (a
    /// missing or unreadable one is a startup error naming it).
    pub fn load(dir: &Path, prompt_model: Option<&Path>) -> Result<Self, ServerError> {
        let wrap = |source| ServerError::Agent {
            path: dir.to_path_buf(),
            source,
        };
        let writer = prompt_model
            .map(|path| {
                PromptModel::load_local(path).map_err(|source| ServerError::PromptModel {
                    path: path.to_path_buf(),
                    source,
                })
            })
            .transpose()?;
        Ok(Self {
            model: IntentModel::load(dir).map_err(wrap)?,
            scenes: Scenes::builtin().map_err(wrap)?,
            lexicon: Lexicon::builtin(),
            writer,
        })
    }

    /// The plan for a parse, its prompt rewritten by the language model when one is loaded.
    pub fn plan(&self, parse: &huatu_agent::Parse, inputs: &huatu_agent::PlanInputs) -> Plan {
        let mut plan = huatu_agent::plan(parse, inputs, &self.scenes, self.lexicon);
        if let (Plan::Task(task), Some(writer)) = (&mut plan, &self.writer) {
            rewrite_with(task, &parse.text, writer);
        }
        plan
    }
}

/// A scene's LoRA as a name under `<data>/loras` (the planner only picks files that exist).
fn lora_spec(lora: &LoraChoice, lora_dir: &Path) -> Option<LoraSpec> {
    let inside = lora.path.parent().is_some_and(|parent| parent == lora_dir);
    let name = lora
        .path
        .file_name()?
        .to_str()?
        .strip_suffix(".safetensors")?;
    (inside && crate::job_runner::is_lora_name(name)).then(|| LoraSpec {
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
pub enum PlannedJob {
    Job(JobSpec, Vec<String>),
    NotRun(String, Vec<String>),
}

pub struct AgentUploads {
    pub image: Option<String>,
    /// The drawn region (center and size), when one was sent.
    pub mask: Option<GrayImage>,
    pub mask_id: Option<String>,
    pub condition: Option<String>,
    pub image_size: (usize, usize),
}

/// Maps the plan onto a job: an agent job runs the plan itself (pipeline, LoRA, enhancer)
/// when the workers hold the models it needs; a text edit without an InstructPix2Pix
/// model falls back to a prompt through inpainting / image-to-image; a region edit
/// without a ControlNet is not run.
pub fn job_for_plan(
    instruction: &str,
    task: &TaskPlan,
    overrides: Overrides,
    lora_dir: &Path,
    edit: &AgentUploads,
    max_images: usize,
    capabilities: Capabilities,
) -> PlannedJob {
    // The planner's notes name files; clients see them relative to the data directory.
    let shown_dir = lora_dir.display().to_string();
    let mut notes: Vec<String> = task
        .notes
        .iter()
        .map(|note| note.replace(&shown_dir, "<data>/loras"))
        .collect();
    let mut plan = task.clone();
    plan.num_images = plan.num_images.clamp(1, max_images);
    if let Some(steps) = overrides.steps {
        notes.push(format!(
            "{steps} steps requested instead of the plan's {}",
            plan.steps
        ));
        plan.steps = steps;
    }
    if plan.pipeline == PipelineKind::TextToImage {
        if let Some((width, height)) = overrides.size {
            notes.push(format!(
                "size {width}×{height} requested instead of the plan's {}×{}",
                plan.width, plan.height
            ));
            (plan.width, plan.height) = (width, height);
        }
    } else {
        // Edits keep the original's size.
        (plan.width, plan.height) = edit.image_size;
    }
    if !capabilities.upscaler && plan.enhancer.as_deref().is_some_and(enhancer_upscales) {
        notes.push(format!(
            "enhancer `{}` upscales with Real-ESRGAN, which this server has not loaded (--sr-model); it is skipped",
            plan.enhancer.take().unwrap_or_default()
        ));
    }
    let loras: Vec<LoraSpec> = plan
        .lora
        .as_ref()
        .and_then(|lora| lora_spec(lora, lora_dir))
        .into_iter()
        .collect();
    let seed = overrides.seed.unwrap_or_else(rand::random);
    // Inputs travel as blob ids and the LoRA as a name; the paths the planner saw are the
    // server's own and are not shown.
    (plan.image, plan.condition_image) = (None, None);
    if let Some(lora) = &mut plan.lora {
        lora.path = lora.path.file_name().map(PathBuf::from).unwrap_or_default();
    }
    plan.notes.clone_from(&notes);
    let agent_job = |plan: TaskPlan, loras: Vec<LoraSpec>, notes: Vec<String>| {
        PlannedJob::Job(
            JobSpec::Agent(Box::new(AgentSpec {
                instruction: instruction.to_string(),
                plan,
                image: edit.image.clone(),
                condition: edit.condition.clone(),
                mask: edit.mask_id.clone(),
                seed,
                loras,
            })),
            notes,
        )
    };
    match plan.pipeline {
        PipelineKind::TextToImage => agent_job(plan, loras, notes),
        PipelineKind::InstructPix2Pix if edit.image.is_none() => {
            PlannedJob::NotRun(huatu_agent::planner::ASK_IMAGE.into(), notes)
        }
        PipelineKind::InstructPix2Pix if capabilities.instruct => agent_job(plan, loras, notes),
        PipelineKind::InstructPix2Pix => {
            notes.push(
                "the server has no InstructPix2Pix model loaded (--instruct-model): the instruction runs as a prompt through inpainting (inside the drawn region) or image-to-image (no region) on the base model, without the enhancer".into(),
            );
            let scheduler = Some(plan.scheduler);
            let (width, height) = edit.image_size;
            PlannedJob::Job(
                JobSpec::Edit(EditSpec {
                    sampling: SamplingSpec {
                        prompt: plan.prompt.clone(),
                        negative_prompt: (!plan.negative_prompt.is_empty())
                            .then(|| plan.negative_prompt.clone()),
                        steps: plan.steps,
                        guidance: plan.guidance,
                        scheduler,
                        seed,
                        n: 1,
                        loras,
                    },
                    image: edit.image.clone().unwrap_or_default(),
                    mask: edit.mask_id.clone(),
                    width,
                    height,
                    strength: if edit.mask.is_some() { 0.9999 } else { 0.75 },
                }),
                notes,
            )
        }
        PipelineKind::ControlNetInpaint if capabilities.controlnet => {
            agent_job(plan, loras, notes)
        }
        PipelineKind::ControlNetInpaint => PlannedJob::NotRun(
            "计划已生成，但本服务器没有加载 ControlNet 模型（--controlnet），暂时不能把素材图放进原图（图文编辑）。".into(),
            {
                notes.push("edit.reference needs ControlNet-inpaint; start the server with --controlnet DIR (an SDXL canny ControlNet) to run it".into());
                notes
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use huatu_agent::corpus::SlotValue;
    use huatu_agent::{Intent, Parse, PlanInputs, SlotName};
    use huatu_diffusion::schedulers::SchedulerKind;

    use super::*;

    fn poster_plan(lora_dir: &Path) -> TaskPlan {
        let parse = Parse {
            text: "做一张中秋海报".into(),
            intent: Intent::GeneratePoster,
            confidence: 0.98,
            slots: [(SlotName::Subject, SlotValue::Text("中秋".into()))].into(),
        };
        let inputs = PlanInputs {
            lora_dir: lora_dir.to_path_buf(),
            ..PlanInputs::default()
        };
        let scenes = Scenes::builtin().expect("built-in scenes");
        match huatu_agent::plan(&parse, &inputs, &scenes, Lexicon::builtin()) {
            huatu_agent::Plan::Task(task) => *task,
            other => panic!("expected a plan, got {other:?}"),
        }
    }

    fn no_inputs() -> AgentUploads {
        AgentUploads {
            image: None,
            mask: None,
            mask_id: None,
            condition: None,
            image_size: (0, 0),
        }
    }

    #[test]
    fn agent_jobs_name_the_lora_and_never_the_servers_paths() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("poster.safetensors"), b"stand-in").expect("write");
        let task = poster_plan(dir.path());
        let overrides = Overrides {
            size: Some((64, 64)),
            steps: Some(3),
            seed: Some(9),
        };
        let PlannedJob::Job(JobSpec::Agent(spec), notes) = job_for_plan(
            "做一张中秋海报",
            &task,
            overrides,
            dir.path(),
            &no_inputs(),
            8,
            Capabilities::default(),
        ) else {
            panic!("expected an agent job")
        };
        assert_eq!(
            spec.loras,
            [LoraSpec {
                name: "poster".into(),
                scale: 0.8
            }]
        );
        assert_eq!(
            (
                spec.plan.width,
                spec.plan.height,
                spec.plan.steps,
                spec.seed
            ),
            (64, 64, 3, 9)
        );
        let stored = serde_json::to_string(&spec).expect("json");
        assert!(
            !stored.contains(&dir.path().display().to_string()),
            "{stored}"
        );
        assert!(
            notes.iter().any(|note| note.contains("3 steps")),
            "{notes:?}"
        );
    }

    #[test]
    fn an_upscaling_enhancer_is_skipped_without_weights_and_kept_with_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut task = poster_plan(dir.path());
        task.enhancer = Some("denoise,upscale:x2".into());
        let map = |capabilities| match job_for_plan(
            "x",
            &task,
            Overrides::default(),
            dir.path(),
            &no_inputs(),
            8,
            capabilities,
        ) {
            PlannedJob::Job(JobSpec::Agent(spec), notes) => (spec.plan.enhancer, notes),
            _ => panic!("expected an agent job"),
        };
        let (enhancer, notes) = map(Capabilities::default());
        assert_eq!(enhancer, None);
        assert!(
            notes.iter().any(|note| note.contains("--sr-model")),
            "{notes:?}"
        );
        let with_weights = Capabilities {
            upscaler: true,
            ..Capabilities::default()
        };
        assert_eq!(map(with_weights).0.as_deref(), Some("denoise,upscale:x2"));
    }

    #[test]
    fn the_fallback_edit_keeps_the_plans_scheduler() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut task = poster_plan(dir.path());
        task.pipeline = PipelineKind::InstructPix2Pix;
        task.scheduler = SchedulerKind::Ddim;
        let uploads = AgentUploads {
            image: Some("0".repeat(64)),
            image_size: (64, 64),
            ..no_inputs()
        };
        let scheduler = match job_for_plan(
            "x",
            &task,
            Overrides::default(),
            dir.path(),
            &uploads,
            8,
            Capabilities::default(),
        ) {
            PlannedJob::Job(JobSpec::Edit(spec), _) => spec.sampling.scheduler,
            _ => panic!("expected an edit job"),
        };
        assert_eq!(scheduler, Some(SchedulerKind::Ddim));
    }
}
