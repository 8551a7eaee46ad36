//! What a job is: its spec (what to compute, stored as JSON in the queue with a schema
//! version), its status and the events it emits while it runs.

use huatu_agent::planner::{PipelineKind, TaskPlan};
use huatu_diffusion::pipelines::{EditMode, GenerationSettings, Inpainting};
use huatu_diffusion::schedulers::SchedulerKind;
use huatu_imaging::GrayImage;
use serde::{Deserialize, Serialize};

/// A LoRA adapter by name: the file `<data>/loras/<name>.safetensors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraSpec {
    pub name: String,
    pub scale: f64,
}

/// What text-to-image and edit jobs share: the prompt, the sampler settings, how many
/// images (image `i` of `n` uses seed `seed + i`) and the LoRAs. Flattened into each spec,
/// so the stored JSON has these fields at its top level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingSpec {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub steps: usize,
    pub guidance: f64,
    /// `None`: the model's own scheduler.
    pub scheduler: Option<SchedulerKind>,
    pub seed: u64,
    pub n: usize,
    pub loras: Vec<LoraSpec>,
}

impl SamplingSpec {
    /// The pipelines' settings for image `index`; `default_scheduler` when none is named.
    pub fn settings(&self, index: usize, default_scheduler: SchedulerKind) -> GenerationSettings {
        let mut settings = GenerationSettings::new(self.prompt.clone());
        settings.negative_prompt = self.negative_prompt.clone();
        settings.num_inference_steps = self.steps;
        settings.guidance_scale = self.guidance;
        settings.scheduler = self.scheduler.unwrap_or(default_scheduler);
        settings.seed = self.seed.wrapping_add(index as u64);
        settings
    }

    /// The settings stored beside result `index` (its own seed, the scheduler it ran with).
    pub fn record(&self, index: usize, default_scheduler: SchedulerKind) -> serde_json::Value {
        serde_json::json!({
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "steps": self.steps,
            "guidance": self.guidance,
            "scheduler": self.scheduler.unwrap_or(default_scheduler).to_string(),
            "seed": self.seed.wrapping_add(index as u64),
            "loras": self.loras,
        })
    }
}

/// A checked text-to-image request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationSpec {
    #[serde(flatten)]
    pub sampling: SamplingSpec,
    pub width: usize,
    pub height: usize,
}

/// A checked edit of an uploaded image: inpainting inside `mask` (white = repaint), or
/// image-to-image over the whole picture without one. Inputs are blob ids (PNG).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditSpec {
    #[serde(flatten)]
    pub sampling: SamplingSpec,
    /// The original, RGB PNG.
    pub image: String,
    /// Grayscale PNG, white where to repaint; `None`: the whole image (img2img).
    pub mask: Option<String>,
    pub width: usize,
    pub height: usize,
    /// How much of the original is replaced, in (0, 1].
    pub strength: f64,
}

impl EditSpec {
    /// How the pipelines edit: inpainting inside the mask, image-to-image without one.
    pub fn mode(&self, mask: Option<GrayImage>) -> EditMode<'static> {
        match mask {
            Some(mask) => EditMode::Inpaint(Inpainting {
                strength: self.strength,
                ..Inpainting::new(mask)
            }),
            None => EditMode::ImageToImage {
                strength: self.strength,
            },
        }
    }

    /// Denoising steps one image runs: the strength cuts the schedule.
    pub fn steps_run(&self) -> usize {
        EditMode::ImageToImage {
            strength: self.strength,
        }
        .steps_run(self.sampling.steps)
    }
}

/// An agent plan to run as the planner decided it (pipeline, prompt, sampler settings,
/// enhancer), with its inputs as blob ids; the plan's own file paths are not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub instruction: String,
    pub plan: TaskPlan,
    /// The original (edits), RGB PNG.
    pub image: Option<String>,
    /// The image to put into the original (edit.reference), RGB PNG.
    pub condition: Option<String>,
    /// The drawn region as a grayscale PNG, white = change; `None`: the plan's frame words.
    pub mask: Option<String>,
    pub seed: u64,
    /// The plan's LoRA as a name under `<data>/loras`.
    pub loras: Vec<LoraSpec>,
}

impl AgentSpec {
    /// Images the plan makes: text-to-image makes `num_images`, an edit one.
    pub fn images(&self) -> usize {
        match self.plan.pipeline {
            PipelineKind::TextToImage => self.plan.num_images.max(1),
            _ => 1,
        }
    }
}

/// The version of the stored spec JSON, kept in each row beside it. Raise it when a
/// change to the spec types would make stored rows read differently; a row of another
/// version is failed with a clear reason when a worker claims it instead of being run
/// under a wrong reading.
pub const SPEC_VERSION: u32 = 1;

/// Everything the queue can run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    Generation(GenerationSpec),
    Edit(EditSpec),
    Agent(Box<AgentSpec>),
    /// A stored row this version cannot read (another spec version, or damaged JSON):
    /// listed with its kind, never run (the store fails it when it is claimed). Never
    /// stored and never read from JSON.
    #[serde(skip_deserializing)]
    Unreadable {
        /// The row's own kind column (`generation`, `edit`, `agent`).
        stored_kind: String,
    },
}

impl JobSpec {
    pub fn kind(&self) -> &str {
        match self {
            JobSpec::Generation(_) => "generation",
            JobSpec::Edit(_) => "edit",
            JobSpec::Agent(_) => "agent",
            JobSpec::Unreadable { stored_kind } => stored_kind,
        }
    }

    /// The stored blobs (uploads) the job reads: they must stay while the job is kept.
    pub fn input_blobs(&self) -> Vec<&str> {
        let ids: Vec<Option<&String>> = match self {
            JobSpec::Generation(_) | JobSpec::Unreadable { .. } => Vec::new(),
            JobSpec::Edit(spec) => vec![Some(&spec.image), spec.mask.as_ref()],
            JobSpec::Agent(spec) => vec![
                spec.image.as_ref(),
                spec.condition.as_ref(),
                spec.mask.as_ref(),
            ],
        };
        let mut ids: Vec<&str> = ids.into_iter().flatten().map(String::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Denoising steps the whole job runs (for progress totals).
    pub fn total_steps(&self) -> usize {
        match self {
            JobSpec::Generation(spec) => spec.sampling.steps * spec.sampling.n,
            JobSpec::Edit(spec) => spec.steps_run() * spec.sampling.n,
            // Edits of a plan run the whole schedule (strength 1).
            JobSpec::Agent(spec) => spec.plan.steps * spec.images(),
            JobSpec::Unreadable { .. } => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// One row of the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub spec: JobSpec,
    pub status: JobStatus,
    /// How many times a worker has started it (a crash mid-run leaves it at 1: it is
    /// retried once).
    pub attempts: u32,
    pub error: Option<String>,
    /// Content hashes of the result images.
    pub images: Vec<String>,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
}

/// What `/v1/jobs/{id}/events` streams; `type` is also the SSE event name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// Waiting; `position` jobs are ahead of it.
    Queued {
        position: usize,
    },
    Running {
        attempt: u32,
    },
    /// Step `step` of `total` (over all images of the job) has finished.
    Step {
        step: usize,
        total: usize,
    },
    Done {
        images: Vec<String>,
    },
    Failed {
        reason: String,
    },
    Cancelled,
}

impl JobEvent {
    pub fn name(&self) -> &'static str {
        match self {
            JobEvent::Queued { .. } => "queued",
            JobEvent::Running { .. } => "running",
            JobEvent::Step { .. } => "step",
            JobEvent::Done { .. } => "done",
            JobEvent::Failed { .. } => "failed",
            JobEvent::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobEvent::Done { .. } | JobEvent::Failed { .. } | JobEvent::Cancelled
        )
    }
}

/// A fresh job id: `job_` and 24 hex digits of randomness.
pub fn new_job_id() -> String {
    let bits: u128 = rand::random();
    format!("job_{:024x}", bits >> 32)
}

/// Whether `text` is shaped like an id from `new_job_id` (checked before any lookup).
pub fn is_job_id(text: &str) -> bool {
    text.strip_prefix("job_")
        .is_some_and(|hex| hex.len() == 24 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_spellings_round_trip() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(serde_json::json!(status.as_str()))
            );
        }
    }

    #[test]
    fn job_ids_are_recognised() {
        let id = new_job_id();
        assert!(is_job_id(&id), "{id}");
        assert!(!is_job_id("job_../../etc/passwd"));
        assert!(!is_job_id("../job"));
    }

    #[test]
    fn spec_json_round_trips() {
        let spec = JobSpec::Generation(GenerationSpec {
            sampling: SamplingSpec {
                prompt: "猫".into(),
                negative_prompt: None,
                steps: 2,
                guidance: 5.0,
                scheduler: Some(SchedulerKind::Euler),
                seed: 3,
                n: 1,
                loras: vec![LoraSpec {
                    name: "poster".into(),
                    scale: 0.8,
                }],
            },
            width: 64,
            height: 64,
        });
        let text = serde_json::to_string(&spec).unwrap_or_default();
        assert!(text.contains("\"kind\":\"generation\""), "{text}");
        assert_eq!(serde_json::from_str::<JobSpec>(&text).ok(), Some(spec));
    }
}
