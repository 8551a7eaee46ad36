//! Workers: one OS thread per device, each owning its model. A worker claims the oldest
//! queued job it can run from the queue (under a lease, see `lease_keeper.rs`), runs it
//! (compute stays off the async runtime), stores the
//! results by content hash and reports every step to the event hub. A step hook checks
//! for cancellation and shutdown, which is how a running job is stopped.
//!
//! A job is recorded `succeeded` only after every result is on disk (see `Blobs::put`); a
//! result that cannot be written (a full disk) fails the job with the reason. Results of
//! a job that does not succeed are deleted. Reasons clients see have the server's paths
//! taken out (`Redactor`); the log has the full text.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use huatu_diffusion::pipelines::Progress;

use crate::blobs::{describe_write_error, BlobStoreError, LocalFile, Pins};
use crate::job_queue::{Lease, WorkerIdentity};
use crate::job_runner::{GenerateError, JobRunner};
use crate::job_services::JobServices;
use crate::jobs::JobStatus;
use crate::jobs::{AgentSpec, EditSpec, GenerationSpec, Job, JobEvent, JobSpec};
use crate::redact::Redactor;

/// How long a worker waits for an upload that its request is still writing.
const INPUT_WAIT: Duration = Duration::from_secs(60);

/// Result images stored so far, pinned until the job's outcome is recorded.
#[derive(Default)]
struct Results {
    ids: Vec<String>,
    pins: Vec<Pins>,
}

/// Runs jobs on `engine` as `identity` until `shared.shutdown` is set; `redactor` takes
/// the server's paths out of failure reasons.
pub fn run_worker(
    shared: Arc<JobServices>,
    mut engine: JobRunner,
    redactor: Redactor,
    identity: WorkerIdentity,
) {
    // Failures the database could not take yet (a full disk): retried every round.
    let mut unrecorded: Vec<(Lease, String)> = Vec::new();
    while !shared.shutdown.load(Ordering::SeqCst) {
        unrecorded.retain(|(lease, reason)| match shared.queue.fail(lease, reason) {
            Ok(None) => false,
            Ok(Some(status)) => {
                shared.publish(&lease.job, ended_event(status, reason, &[]));
                false
            }
            Err(_) => true,
        });
        let job = match shared.cancels.claim(|| shared.queue.claim(&identity)) {
            Ok(Some(job)) => job,
            Ok(None) => {
                shared.events.prune();
                shared.wakeup.wait(Duration::from_millis(500));
                continue;
            }
            Err(error) => {
                tracing::error!("cannot claim a job: {error}");
                shared.wakeup.wait(Duration::from_secs(1));
                continue;
            }
        };
        let lease = Lease {
            job: job.id.clone(),
            attempt: job.attempts,
            worker: identity.name.clone(),
        };
        shared.leases.hold(lease.clone());
        tracing::info!(job = %job.id, attempt = job.attempts, worker = %identity.name, "job started");
        shared.publish(
            &job.id,
            JobEvent::Running {
                attempt: job.attempts,
            },
        );
        let started = Instant::now();
        engine.start_job(); // --max-job-secs counts from here
        let mut results = Results::default();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run_job(&shared, &mut engine, &job, &mut results)
        }))
        .unwrap_or_else(|_| {
            Outcome::Failed("internal error: the pipeline panicked (see the server log)".into())
        });
        shared
            .metrics
            .job_run_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        if let Some(unrecorded_failure) = finish(&shared, &lease, outcome, results, &redactor) {
            unrecorded.push(unrecorded_failure);
        }
        shared.leases.release(&job.id);
    }
}

/// The event that tells listeners how a job ended with `status`.
fn ended_event(status: JobStatus, reason: &str, images: &[String]) -> JobEvent {
    match status {
        JobStatus::Succeeded => JobEvent::Done {
            images: images.to_vec(),
        },
        JobStatus::Cancelled => JobEvent::Cancelled,
        _ => JobEvent::Failed {
            reason: reason.to_string(),
        },
    }
}

enum Outcome {
    Succeeded(Vec<String>),
    Failed(String),
    Cancelled,
    /// Stopped by a graceful shutdown: back to the queue.
    Interrupted,
}

/// Records the outcome under `lease` (a cancel accepted meanwhile wins; an outcome whose
/// lease was lost is discarded), deletes results that no job keeps and tells listeners.
/// Returns a failure the database could not take yet.
fn finish(
    shared: &JobServices,
    lease: &Lease,
    outcome: Outcome,
    results: Results,
    redactor: &Redactor,
) -> Option<(Lease, String)> {
    let store = &shared.queue;
    let metrics = &shared.metrics;
    let id = &lease.job;
    let discarded = || {
        tracing::warn!(job = %id, worker = %lease.worker, attempt = lease.attempt, "this run's lease was lost (the job was re-queued): its outcome is discarded");
        metrics
            .stale_results_discarded
            .fetch_add(1, Ordering::Relaxed);
        (None, None)
    };
    let (event, unrecorded) = shared.cancels.settle(id, |cancel_requested| {
        let outcome = match outcome {
            // Accepted cancels win over whatever the run came to.
            _ if cancel_requested => Outcome::Cancelled,
            // A run stopped because its lease was lost: nothing of it is recorded.
            _ if shared.leases.is_lost(id) => return discarded(),
            outcome => outcome,
        };
        let failure = |reason: String| match store.fail(lease, &reason) {
            Ok(Some(status)) => {
                match status {
                    JobStatus::Cancelled => metrics.jobs_cancelled.fetch_add(1, Ordering::Relaxed),
                    _ => metrics.jobs_failed.fetch_add(1, Ordering::Relaxed),
                };
                (Some(ended_event(status, &reason, &[])), None)
            }
            // Already ended (its uploads could not be stored), or the lease was lost.
            Ok(None) => (None, None),
            Err(error) => {
                tracing::error!(job = %id, "cannot record the job's failure (retried): {error}");
                (None, Some((lease.clone(), reason)))
            }
        };
        match outcome {
            Outcome::Succeeded(images) => match store.succeed(lease, &images) {
                Ok(Some(status)) => {
                    match status {
                        JobStatus::Cancelled => {
                            metrics.jobs_cancelled.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => metrics.jobs_succeeded.fetch_add(1, Ordering::Relaxed),
                    };
                    (Some(ended_event(status, "", &images)), None)
                }
                Ok(None) if store.is_shared() => discarded(),
                Ok(None) => (None, None),
                Err(error) => {
                    tracing::error!(job = %id, "cannot record the job's results: {error}");
                    failure(if error.is_storage_full() {
                        "the data directory is full: the results could not be recorded".into()
                    } else {
                        "internal error: the results could not be recorded (see the server log)"
                            .into()
                    })
                }
            },
            Outcome::Failed(reason) => {
                tracing::warn!(job = %id, "job failed: {reason}");
                failure(redactor.redact(&reason))
            }
            Outcome::Cancelled => match store.mark_cancelled(lease) {
                Ok(true) => {
                    metrics.jobs_cancelled.fetch_add(1, Ordering::Relaxed);
                    (Some(JobEvent::Cancelled), None)
                }
                Ok(false) => discarded(),
                Err(error) => {
                    tracing::error!(job = %id, "cannot record the cancel: {error}");
                    (Some(JobEvent::Cancelled), None)
                }
            },
            Outcome::Interrupted => {
                tracing::info!(job = %id, "job interrupted by shutdown; it stays queued");
                if let Err(error) = store.requeue_after_shutdown(lease) {
                    tracing::error!(job = %id, "cannot put the job back in the queue: {error}");
                }
                (None, None)
            }
        }
    });
    // Results of a job that did not succeed: kept by no job unless another shares them.
    let Results { ids, pins } = results;
    drop(pins);
    if !matches!(event, Some(JobEvent::Done { .. })) && !ids.is_empty() {
        let removed = shared
            .blobs
            .remove_unreferenced(ids.iter().map(String::as_str), |id| {
                store.is_referenced(id).unwrap_or(true)
            });
        match removed {
            Ok(removed) => shared.metrics.record_blobs_removed(removed.files),
            Err(error) => {
                tracing::warn!(job = %id, "cannot delete the results of an unfinished job: {error}")
            }
        }
    }
    if let Some(event) = event {
        tracing::info!(job = %id, outcome = event.name(), "job finished");
        shared.publish(id, event);
    }
    unrecorded
}

fn run_job(
    shared: &JobServices,
    engine: &mut JobRunner,
    job: &Job,
    results: &mut Results,
) -> Outcome {
    match &job.spec {
        JobSpec::Generation(spec) => run_generation(shared, engine, job, spec, results),
        JobSpec::Edit(spec) => run_edit(shared, engine, job, spec, results),
        JobSpec::Agent(spec) => run_agent(shared, engine, job, spec, results),
        // The store fails these when they are claimed; never run one.
        JobSpec::Unreadable { .. } => {
            Outcome::Failed("this job's stored request cannot be read; submit it again".into())
        }
    }
}

/// Whether the running job is to stop (cancelled, or the server shuts down).
fn stop_requested(shared: &JobServices, job: &Job) -> bool {
    shared.shutdown.load(Ordering::SeqCst)
        || shared.cancels.contains(&job.id)
        || shared.leases.is_lost(&job.id)
}

/// A progress hook for image `index` of `count`: publishes steps over the whole job and
/// stops the pipeline on cancel or shutdown.
fn step_hook<'a>(
    shared: &'a JobServices,
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
            shared.publish(
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

/// Encodes and stores a result image (pinned in `results` until the outcome is
/// recorded); its settings go into a PNG text chunk.
fn store_result(
    shared: &JobServices,
    image: &huatu_imaging::RgbImage,
    settings: &serde_json::Value,
    results: &mut Results,
) -> Result<(), String> {
    let bytes = crate::png_codec::encode_png(image, &settings.to_string())
        .map_err(|error| error.to_string())?;
    let (id, pins) = shared.blobs.put_pinned(&bytes).map_err(|error| {
        tracing::error!("cannot store a result image: {error}");
        format!(
            "cannot store the result image: {}",
            describe_write_error(&error)
        )
    })?;
    results.ids.push(id);
    results.pins.push(pins);
    shared.metrics.images.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// A stop seen by the step hook: shutdown puts the job back unless a cancel was accepted
/// (`finish` checks that again under the lock).
fn cancelled_outcome(shared: &JobServices) -> Outcome {
    if shared.shutdown.load(Ordering::SeqCst) {
        Outcome::Interrupted
    } else {
        Outcome::Cancelled
    }
}

/// A failed read of input `id` as the job's failure reason: an S3 error (which names
/// the bucket and endpoint) goes to the log only.
fn describe_read_error(id: &str, error: &std::io::Error) -> String {
    if BlobStoreError::is_in(error) {
        tracing::error!("cannot read input {id}: {error}");
        format!("cannot read input {id} from the blob store (see the server log)")
    } else {
        format!("cannot read input {id}: {error}")
    }
}

/// The stored input `id` (waiting while its request still writes it).
fn load_input(shared: &JobServices, id: &str) -> Result<Vec<u8>, String> {
    shared.blobs.wait_until_present(id, INPUT_WAIT);
    shared
        .blobs
        .get(id)
        .map_err(|error| describe_read_error(id, &error))?
        .ok_or_else(|| format!("input {id} is missing from the data directory"))
}

fn run_edit(
    shared: &JobServices,
    engine: &mut JobRunner,
    job: &Job,
    spec: &EditSpec,
    results: &mut Results,
) -> Outcome {
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
    for index in 0..spec.sampling.n {
        let mut hook = step_hook(shared, job, index, spec.sampling.n);
        let result = match engine.edit(spec, index, &image, mask.as_ref(), &mut hook) {
            Ok(result) => result,
            Err(GenerateError::Cancelled) => return cancelled_outcome(shared),
            Err(GenerateError::Failed(reason)) => return Outcome::Failed(reason),
        };
        let mut settings = spec.sampling.record(index, engine.default_scheduler());
        settings["edit"] = (if mask.is_some() { "inpaint" } else { "img2img" }).into();
        settings["image"] = spec.image.clone().into();
        settings["mask"] = spec.mask.clone().into();
        settings["strength"] = spec.strength.into();
        if let Err(reason) = store_result(shared, &result, &settings, results) {
            return Outcome::Failed(reason);
        }
    }
    Outcome::Succeeded(results.ids.clone())
}

fn run_generation(
    shared: &JobServices,
    engine: &mut JobRunner,
    job: &Job,
    spec: &GenerationSpec,
    results: &mut Results,
) -> Outcome {
    for index in 0..spec.sampling.n {
        let mut hook = step_hook(shared, job, index, spec.sampling.n);
        let image = match engine.generate(spec, index, &mut hook) {
            Ok(image) => image,
            Err(GenerateError::Cancelled) => return cancelled_outcome(shared),
            Err(GenerateError::Failed(reason)) => return Outcome::Failed(reason),
        };
        let mut settings = spec.sampling.record(index, engine.default_scheduler());
        settings["width"] = spec.width.into();
        settings["height"] = spec.height.into();
        if let Err(reason) = store_result(shared, &image, &settings, results) {
            return Outcome::Failed(reason);
        }
    }
    Outcome::Succeeded(results.ids.clone())
}

fn run_agent(
    shared: &JobServices,
    engine: &mut JobRunner,
    job: &Job,
    spec: &AgentSpec,
    results: &mut Results,
) -> Outcome {
    // The plan reads its images from paths: the stored files, or (S3) local copies
    // that stay until this function returns.
    let input_file = |id: &Option<String>| -> Result<Option<LocalFile>, String> {
        let Some(id) = id else { return Ok(None) };
        match shared.blobs.local_file(id, INPUT_WAIT) {
            Ok(Some(file)) => Ok(Some(file)),
            Ok(None) => Err(format!("input {id} is missing from the data directory")),
            Err(error) => Err(describe_read_error(id, &error)),
        }
    };
    let inputs = input_file(&spec.image).and_then(|image| {
        let condition = input_file(&spec.condition)?;
        let mask = match &spec.mask {
            Some(id) => Some(crate::png_codec::decode_gray(&load_input(shared, id)?)?),
            None => None,
        };
        Ok((image, condition, mask))
    });
    let (image_file, condition_file, mask) = match inputs {
        Ok(inputs) => inputs,
        Err(reason) => return Outcome::Failed(reason),
    };
    let path_of = |file: &Option<LocalFile>| file.as_ref().map(|file| file.path().to_path_buf());
    let (image, condition) = (path_of(&image_file), path_of(&condition_file));
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
            shared.publish(
                &job.id,
                JobEvent::Step {
                    step: done.min(total),
                    total,
                },
            );
        }
        Ok(())
    };
    let made = match engine.run_plan(spec, image, condition, mask, &mut hook) {
        Ok(made) => made,
        Err(GenerateError::Cancelled) => return cancelled_outcome(shared),
        Err(GenerateError::Failed(reason)) => return Outcome::Failed(reason),
    };
    let plan = &spec.plan;
    for (index, result) in made.iter().enumerate() {
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
        if let Err(reason) = store_result(shared, result, &settings, results) {
            return Outcome::Failed(reason);
        }
    }
    Outcome::Succeeded(results.ids.clone())
}
