//! Workers: one OS thread per device, each owning its model. A worker claims the oldest
//! queued job from the store, runs it (compute stays off the async runtime), stores the
//! results by content hash and reports every step to the event hub. A step hook checks
//! for cancellation and shutdown, which is how a running job is stopped.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use huatu_diffusion::pipelines::Progress;

use crate::blobs::Blobs;
use crate::engine::{Engine, GenerateError};
use crate::events::EventHub;
use crate::jobs::{AgentSpec, EditSpec, GenerationSpec, Job, JobEvent, JobSpec};
use crate::metrics::Metrics;
use crate::store::Store;

/// Wakes sleeping workers when a job arrives or the server stops.
#[derive(Default)]
pub struct Wakeup {
    pending: Mutex<bool>,
    condvar: Condvar,
}

impl Wakeup {
    pub fn notify(&self) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *pending = true;
        self.condvar.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !*pending {
            pending = match self.condvar.wait_timeout(pending, timeout) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        *pending = false;
    }
}

/// Ids of running jobs whose cancellation was asked for.
#[derive(Default)]
pub struct CancelRequests {
    ids: Mutex<HashSet<String>>,
}

impl CancelRequests {
    pub fn request(&self, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id.to_string());
    }

    fn contains(&self, id: &str) -> bool {
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(id)
    }

    fn forget(&self, id: &str) {
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(id);
    }
}

/// What workers share with the HTTP side.
pub struct Shared {
    pub store: Arc<Store>,
    pub blobs: Arc<Blobs>,
    pub hub: Arc<EventHub>,
    pub metrics: Arc<Metrics>,
    pub wakeup: Arc<Wakeup>,
    pub cancels: Arc<CancelRequests>,
    pub shutdown: Arc<AtomicBool>,
}

/// Runs jobs on `engine` until `shared.shutdown` is set.
pub fn run_worker(shared: Arc<Shared>, mut engine: Engine) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        let job = match shared.store.claim() {
            Ok(Some(job)) => job,
            Ok(None) => {
                shared.hub.prune();
                shared.wakeup.wait(Duration::from_millis(500));
                continue;
            }
            Err(error) => {
                tracing::error!("cannot claim a job: {error}");
                shared.wakeup.wait(Duration::from_secs(1));
                continue;
            }
        };
        tracing::info!(job = %job.id, attempt = job.attempts, "job started");
        shared.hub.publish(
            &job.id,
            JobEvent::Running {
                attempt: job.attempts,
            },
        );
        let started = Instant::now();
        engine.start_job(); // --max-job-secs counts from here
        let outcome = catch_unwind(AssertUnwindSafe(|| run_job(&shared, &mut engine, &job)))
            .unwrap_or_else(|_| {
                Outcome::Failed("internal error: the pipeline panicked (see the server log)".into())
            });
        shared
            .metrics
            .job_run_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        shared.cancels.forget(&job.id);
        finish(&shared, &job, outcome);
    }
}

enum Outcome {
    Succeeded(Vec<String>),
    Failed(String),
    Cancelled,
    /// Stopped by a graceful shutdown: back to the queue.
    Interrupted,
}

fn finish(shared: &Shared, job: &Job, outcome: Outcome) {
    let (result, event) = match outcome {
        Outcome::Succeeded(images) => {
            shared
                .metrics
                .jobs_succeeded
                .fetch_add(1, Ordering::Relaxed);
            (
                shared.store.succeed(&job.id, &images),
                Some(JobEvent::Done { images }),
            )
        }
        Outcome::Failed(reason) => {
            tracing::warn!(job = %job.id, "job failed: {reason}");
            shared.metrics.jobs_failed.fetch_add(1, Ordering::Relaxed);
            (
                shared.store.fail(&job.id, &reason),
                Some(JobEvent::Failed { reason }),
            )
        }
        Outcome::Cancelled => {
            shared
                .metrics
                .jobs_cancelled
                .fetch_add(1, Ordering::Relaxed);
            (
                shared.store.mark_cancelled(&job.id),
                Some(JobEvent::Cancelled),
            )
        }
        Outcome::Interrupted => {
            tracing::info!(job = %job.id, "job interrupted by shutdown; it stays queued");
            (shared.store.requeue_after_shutdown(&job.id), None)
        }
    };
    if let Err(error) = result {
        tracing::error!(job = %job.id, "cannot record the job's outcome: {error}");
    }
    if let Some(event) = event {
        tracing::info!(job = %job.id, outcome = event.name(), "job finished");
        shared.hub.publish(&job.id, event);
    }
}

fn run_job(shared: &Shared, engine: &mut Engine, job: &Job) -> Outcome {
    match &job.spec {
        JobSpec::Generation(spec) => run_generation(shared, engine, job, spec),
        JobSpec::Edit(spec) => run_edit(shared, engine, job, spec),
        JobSpec::Agent(spec) => run_agent(shared, engine, job, spec),
    }
}

/// Whether the running job is to stop (cancelled, or the server shuts down).
fn stop_requested(shared: &Shared, job: &Job) -> bool {
    shared.shutdown.load(Ordering::SeqCst) || shared.cancels.contains(&job.id)
}

/// A progress hook for image `index` of `count`: publishes steps over the whole job and
/// stops the pipeline on cancel or shutdown.
fn step_hook<'a>(
    shared: &'a Shared,
    job: &'a Job,
    index: usize,
    count: usize,
) -> impl FnMut(Progress) -> huatu_diffusion::Result<()> + 'a {
    move |progress: Progress| {
        if stop_requested(shared, job) {
            return Err(huatu_diffusion::Error::Cancelled);
        }
        if let Progress::Step { step, total } = progress {
            shared.metrics.steps.fetch_add(1, Ordering::Relaxed);
            shared.hub.publish(
                &job.id,
                JobEvent::Step {
                    step: index * total + step,
                    total: total * count,
                },
            );
        }
        Ok(())
    }
}

/// Encodes and stores a result image; its settings go into a PNG text chunk.
fn store_result(
    shared: &Shared,
    image: &huatu_diffusion::pipelines::RgbImage,
    settings: &serde_json::Value,
) -> Result<String, String> {
    let bytes = crate::png_codec::encode_png(image, &settings.to_string())
        .map_err(|error| error.to_string())?;
    let id = shared
        .blobs
        .put(&bytes)
        .map_err(|error| format!("cannot store the image: {error}"))?;
    shared.metrics.images.fetch_add(1, Ordering::Relaxed);
    Ok(id)
}

fn cancelled_outcome(shared: &Shared) -> Outcome {
    if shared.shutdown.load(Ordering::SeqCst) {
        Outcome::Interrupted
    } else {
        Outcome::Cancelled
    }
}

/// The stored input `id`.
fn load_input(shared: &Shared, id: &str) -> Result<Vec<u8>, String> {
    shared
        .blobs
        .get(id)
        .map_err(|error| format!("cannot read input {id}: {error}"))?
        .ok_or_else(|| format!("input {id} is missing from the data directory"))
}

fn run_edit(shared: &Shared, engine: &mut Engine, job: &Job, spec: &EditSpec) -> Outcome {
    let load = |id: &str| load_input(shared, id);
    let image = match load(&spec.image).and_then(|bytes| crate::png_codec::decode_rgb(&bytes)) {
        Ok(image) => image,
        Err(reason) => return Outcome::Failed(reason),
    };
    let mask = match &spec.mask {
        Some(id) => match load(id).and_then(|bytes| crate::png_codec::decode_gray(&bytes)) {
            Ok(mask) => Some(mask),
            Err(reason) => return Outcome::Failed(reason),
        },
        None => None,
    };
    let mut images = Vec::with_capacity(spec.n);
    for index in 0..spec.n {
        let mut hook = step_hook(shared, job, index, spec.n);
        let result = match engine.edit(spec, index, &image, mask.as_ref(), &mut hook) {
            Ok(result) => result,
            Err(GenerateError::Cancelled) => return cancelled_outcome(shared),
            Err(GenerateError::Failed(reason)) => return Outcome::Failed(reason),
        };
        let settings = serde_json::json!({
            "edit": if mask.is_some() { "inpaint" } else { "img2img" },
            "prompt": spec.prompt,
            "negative_prompt": spec.negative_prompt,
            "image": spec.image,
            "mask": spec.mask,
            "strength": spec.strength,
            "steps": spec.steps,
            "guidance": spec.guidance,
            "scheduler": spec.scheduler.unwrap_or_else(|| engine.default_scheduler()).to_string(),
            "seed": spec.seed.wrapping_add(index as u64),
            "loras": spec.loras,
        });
        match store_result(shared, &result, &settings) {
            Ok(id) => images.push(id),
            Err(reason) => return Outcome::Failed(reason),
        }
    }
    Outcome::Succeeded(images)
}

fn run_generation(
    shared: &Shared,
    engine: &mut Engine,
    job: &Job,
    spec: &GenerationSpec,
) -> Outcome {
    let mut images = Vec::with_capacity(spec.n);
    for index in 0..spec.n {
        let mut hook = step_hook(shared, job, index, spec.n);
        let image = match engine.generate(spec, index, &mut hook) {
            Ok(image) => image,
            Err(GenerateError::Cancelled) => return cancelled_outcome(shared),
            Err(GenerateError::Failed(reason)) => return Outcome::Failed(reason),
        };
        let settings = serde_json::json!({
            "prompt": spec.prompt,
            "negative_prompt": spec.negative_prompt,
            "width": spec.width,
            "height": spec.height,
            "steps": spec.steps,
            "guidance": spec.guidance,
            "scheduler": spec.scheduler.unwrap_or_else(|| engine.default_scheduler()).to_string(),
            "seed": spec.seed.wrapping_add(index as u64),
            "loras": spec.loras,
        });
        match store_result(shared, &image, &settings) {
            Ok(id) => images.push(id),
            Err(reason) => return Outcome::Failed(reason),
        }
    }
    Outcome::Succeeded(images)
}

fn run_agent(shared: &Shared, engine: &mut Engine, job: &Job, spec: &AgentSpec) -> Outcome {
    let input_path = |id: &Option<String>| -> Result<Option<std::path::PathBuf>, String> {
        let Some(id) = id else { return Ok(None) };
        match shared.blobs.path(id) {
            Some(path) if path.is_file() => Ok(Some(path)),
            _ => Err(format!("input {id} is missing from the data directory")),
        }
    };
    let inputs = input_path(&spec.image).and_then(|image| {
        let condition = input_path(&spec.condition)?;
        let mask = match &spec.mask {
            Some(id) => Some(crate::png_codec::decode_gray(&load_input(shared, id)?)?),
            None => None,
        };
        Ok((image, condition, mask))
    });
    let (image, condition, mask) = match inputs {
        Ok(inputs) => inputs,
        Err(reason) => return Outcome::Failed(reason),
    };
    // Steps over the whole job: a plan may make several images, each with its own count.
    let total = job.spec.total_steps();
    let mut done = 0;
    let mut hook = |progress: Progress| {
        if stop_requested(shared, job) {
            return Err(huatu_diffusion::Error::Cancelled);
        }
        if let Progress::Step { .. } = progress {
            done += 1;
            shared.metrics.steps.fetch_add(1, Ordering::Relaxed);
            shared.hub.publish(
                &job.id,
                JobEvent::Step {
                    step: done.min(total),
                    total,
                },
            );
        }
        Ok(())
    };
    let results = match engine.run_plan(spec, image, condition, mask, &mut hook) {
        Ok(results) => results,
        Err(GenerateError::Cancelled) => return cancelled_outcome(shared),
        Err(GenerateError::Failed(reason)) => return Outcome::Failed(reason),
    };
    let plan = &spec.plan;
    let mut images = Vec::with_capacity(results.len());
    for (index, result) in results.iter().enumerate() {
        let settings = serde_json::json!({
            "instruction": spec.instruction,
            "intent": plan.intent,
            "scene": plan.scene,
            "pipeline": plan.pipeline,
            "prompt": plan.prompt,
            "negative_prompt": plan.negative_prompt,
            "steps": plan.steps,
            "guidance": plan.guidance,
            "scheduler": plan.scheduler,
            "seed": spec.seed.wrapping_add(index as u64),
            "loras": spec.loras,
            "enhancer": plan.enhancer,
            "image": spec.image,
            "condition": spec.condition,
            "mask": spec.mask,
        });
        match store_result(shared, result, &settings) {
            Ok(id) => images.push(id),
            Err(reason) => return Outcome::Failed(reason),
        }
    }
    Outcome::Succeeded(images)
}
