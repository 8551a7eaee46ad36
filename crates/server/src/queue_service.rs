//! The queue as the API uses it: submit a job (storing its uploads only once it is
//! accepted), wait until it settles, and cancel it, also when its client went away.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use tokio::sync::broadcast;

use crate::blobs::{content_hash, describe_write_error, is_storage_full};
use crate::error::{ApiError, ApiResult};
use crate::events::Subscription;
use crate::job_queue::{QueueError, SubmitError};
use crate::jobs::{new_job_id, Job, JobEvent, JobSpec, JobStatus};
use crate::state::AppState;

/// How often a waiting request or an event stream reads its job's row even without an
/// event: events from other nodes travel over a connection that can break.
pub const ROW_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Puts a job in the queue, subscribed to its events first so none is missed.
pub fn submit(state: &AppState, spec: JobSpec) -> ApiResult<(Job, Subscription)> {
    crate::limits::check_job_cost(&spec, &state.config)?;
    if !state.model_loaded {
        return Err(ApiError::unavailable(
            "no model is loaded: start the server with --model DIR",
        ));
    }
    if *state.stopping.borrow() {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let services = &state.services;
    let id = new_job_id();
    let events = services.events.subscribe(&id);
    match services
        .queue
        .submit(&id, &spec, state.config.queue_capacity)
    {
        Ok(job) => {
            services
                .metrics
                .jobs_submitted
                .fetch_add(1, Ordering::Relaxed);
            services.wakeup.notify();
            Ok((job, events))
        }
        Err(SubmitError::Full { active }) => {
            services
                .metrics
                .jobs_rejected_full
                .fetch_add(1, Ordering::Relaxed);
            let per_job = services.metrics.mean_job_seconds().unwrap_or(5.0);
            let retry_after = (per_job * active as f64).ceil().clamp(1.0, 3600.0) as u64;
            Err(ApiError::queue_full(
                state.config.queue_capacity,
                retry_after,
            ))
        }
        Err(SubmitError::Database(error)) => Err(error.into()),
    }
}

/// Cancels the job when the waiting request is dropped (its client disconnected) before
/// the wait settled; disarmed when the job ends, the wait times out (504: the job goes
/// on, as the answer says) or the server stops (the job stays queued).
struct CancelOnDrop<'a> {
    state: &'a AppState,
    id: &'a str,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            cancel_abandoned(self.state, self.id);
        }
    }
}

/// Waits until the job ends (or the sync timeout, or shutdown) and returns its final row.
/// If the request is dropped while it waits (the client went away), the job is cancelled.
pub async fn wait_for_job(state: &AppState, id: &str, events: Subscription) -> ApiResult<Job> {
    let mut guard = CancelOnDrop {
        state,
        id,
        armed: true,
    };
    let result = wait_until_settled(state, id, events).await;
    guard.armed = false;
    result
}

async fn wait_until_settled(
    state: &AppState,
    id: &str,
    mut events: Subscription,
) -> ApiResult<Job> {
    let mut stopping = state.stopping.clone();
    let deadline = tokio::time::Instant::now() + state.config.sync_timeout;
    loop {
        if let Some(job) = state.services.queue.get(id)? {
            if job.status.is_terminal() {
                return Ok(job);
            }
        }
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) if !event.is_terminal() => continue,
                // Terminal, lagged or closed: the row says how it ended.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => events = state.services.events.subscribe(id),
            },
            // Events from other nodes can be missed (a broken connection): the row decides.
            _ = tokio::time::sleep(ROW_RECHECK) => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Err(ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", format!(
                    "job {id} is not done after {} s; it goes on: follow it at /v1/jobs/{id}",
                    state.config.sync_timeout.as_secs()
                )));
            }
            _ = stopping.wait_for(|stopping| *stopping) => {
                return Err(ApiError::unavailable(format!(
                    "the server is shutting down; job {id} stays queued and runs after the restart (see /v1/jobs/{id})"
                )));
            }
        }
    }
}

/// An upload to store for a job: its bytes as stored (PNG) and their content hash.
pub struct Input {
    pub id: String,
    bytes: Vec<u8>,
}

impl Input {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            id: content_hash(&bytes),
            bytes,
        }
    }
}

/// Queues `spec`, then stores those of `inputs` it reads. Nothing is written for a job
/// that is refused (429, 503): the inputs are pinned before the job is accepted (a
/// worker that claims it at once waits for them, retention leaves them alone) and
/// written after. A write that fails (a full disk) fails the job with the reason and
/// answers 507 (or 500).
pub async fn submit_with_inputs(
    state: &AppState,
    spec: JobSpec,
    inputs: Vec<Input>,
) -> ApiResult<(Job, Subscription)> {
    let used = spec.input_blobs();
    let mut inputs: Vec<Input> = inputs
        .into_iter()
        .filter(|input| used.contains(&input.id.as_str()))
        .collect();
    inputs.sort_by(|a, b| a.id.cmp(&b.id));
    inputs.dedup_by(|a, b| a.id == b.id);
    let services = state.services.clone();
    let pins = services
        .blobs
        .pin(inputs.iter().map(|input| input.id.clone()));
    // Refused: the pins drop here and nothing was written.
    let (job, events) = submit(state, spec)?;
    let id = job.id.clone();
    // Not the bounded pool: the write must happen even if this request goes away now.
    // The pins drop when the write has ended, either way.
    let written = tokio::task::spawn_blocking(move || {
        let _pins = pins;
        let stored = inputs
            .iter()
            .try_for_each(|input| services.blobs.put(&input.bytes).map(drop));
        let Err(error) = stored else { return Ok(()) };
        tracing::error!(job = %id, "cannot store the job's uploads: {error}");
        let reason = format!(
            "the uploaded images could not be stored: {}",
            describe_write_error(&error)
        );
        // Before the pins drop: a worker waiting for the inputs then finds the job ended.
        match services.queue.fail_unfinished(&id, &reason) {
            Ok(true) => {
                services.metrics.jobs_failed.fetch_add(1, Ordering::Relaxed);
                services.publish(&id, JobEvent::Failed { reason });
            }
            Ok(false) => {}
            Err(db_error) => tracing::error!(job = %id, "cannot fail the job: {db_error}"),
        }
        Err(error)
    })
    .await
    .map_err(|error| ApiError::internal("storing the uploads", &error))?;
    match written {
        Ok(()) => Ok((job, events)),
        Err(error) if is_storage_full(&error) => Err(ApiError::storage_full()),
        Err(error) => Err(ApiError::internal("storing the uploads", &error)),
    }
}

/// Cancels a job if it is still queued (true), publishing `cancelled`.
pub fn cancel_queued(state: &AppState, id: &str) -> Result<bool, QueueError> {
    let services = &state.services;
    let cancelled = services.queue.cancel_queued(id)?;
    if cancelled {
        services
            .metrics
            .jobs_cancelled
            .fetch_add(1, Ordering::Relaxed);
        services.publish(id, JobEvent::Cancelled);
    }
    Ok(cancelled)
}

/// Cancels a job whoever asked for it is gone (a synchronous client that disconnected):
/// a queued job at once, a running one at its next step, a finished one stays as it is.
pub fn cancel_abandoned(state: &AppState, id: &str) {
    match cancel_queued(state, id) {
        Ok(true) => tracing::info!(job = %id, "client went away: queued job cancelled"),
        Ok(false) => match state.services.queue.get(id) {
            Ok(Some(job)) if job.status == JobStatus::Running => {
                tracing::info!(job = %id, "client went away: cancelling the running job");
                if let Err(error) = state.services.request_cancel(id) {
                    tracing::error!(job = %id, "cannot cancel an abandoned job: {error}");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::error!(job = %id, "cannot cancel an abandoned job: {error}"),
        },
        Err(error) => tracing::error!(job = %id, "cannot cancel an abandoned job: {error}"),
    }
}
