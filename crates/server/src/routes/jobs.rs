//! Jobs: `GET /v1/jobs` (history, newest first), `GET /v1/jobs/{id}`,
//! `GET /v1/jobs/{id}/events` (Server-Sent Events: queued, running, step, then one of
//! done/failed/cancelled) and `DELETE /v1/jobs/{id}` (cancel).

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use tokio::sync::watch;

use super::views::{job_view, JobList, JobView};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::events::Subscription;
use crate::jobs::{is_job_id, Job, JobEvent, JobStatus};
use crate::queue_service::{cancel_queued, ROW_RECHECK};
use crate::state::AppState;

fn find_job(state: &AppState, id: &str) -> ApiResult<Job> {
    if !is_job_id(id) {
        return Err(ApiError::not_found(format!(
            "`{id}` is not a job id (job_ and 24 hex digits)"
        )));
    }
    state
        .services
        .queue
        .get(id)?
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// Jobs, newest first
///
/// `GET /v1/jobs?limit=N` (1–200, default 50).
#[utoipa::path(
    get,
    path = "/v1/jobs",
    params(("limit" = Option<usize>, Query, minimum = 1, maximum = 200)),
    responses(
        (status = 200, description = "The jobs", body = JobList),
        (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody),
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<JobList>> {
    let mut limit = 50;
    for pair in query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        match pair.split_once('=') {
            Some(("limit", value)) => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|limit| (1..=200).contains(limit))
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "limit must be a whole number from 1 to 200, got `{value}`"
                        ))
                    })?;
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter `{pair}` (only `limit` is known)"
                )))
            }
        }
    }
    let jobs = state.services.queue.list(limit)?;
    let data = jobs
        .iter()
        .map(|job| job_view(&state, &headers, job))
        .collect();
    Ok(Json(JobList {
        object: "list",
        data,
    }))
}

/// A job
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    params(("id" = String, Path, pattern = "^job_[0-9a-f]{24}$")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, response = ErrorBody),
        (status = 404, response = ErrorBody),
    )
)]
pub async fn get_job(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let job = find_job(&state, &id)?;
    Ok(Json(job_view(&state, &headers, &job)))
}

/// Cancel: a queued job at once (200), a running one at its next step (202)
///
/// A running one ends with a `cancelled` event; a finished one is 409.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    params(("id" = String, Path, pattern = "^job_[0-9a-f]{24}$")),
    responses(
        (status = 200, description = "Cancelled", body = JobView),
        (status = 202, description = "Cancellation requested", body = JobView),
        (status = 401, response = ErrorBody),
        (status = 404, response = ErrorBody),
        (status = 409, response = ErrorBody),
    )
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let job = find_job(&state, &id)?;
    if job.status == JobStatus::Queued && cancel_queued(&state, &id)? {
        let job = find_job(&state, &id)?;
        return Ok(Json(job_view(&state, &headers, &job)).into_response());
    }
    let job = find_job(&state, &id)?;
    match job.status {
        // 202 only when the worker took the cancel: the job then ends `cancelled`.
        JobStatus::Running if state.services.request_cancel(&id)? => {
            let mut view = job_view(&state, &headers, &job);
            view.cancel_requested = Some(true);
            Ok((StatusCode::ACCEPTED, Json(view)).into_response())
        }
        // The worker recorded the end between the read above and the request.
        JobStatus::Running => {
            let job = find_job(&state, &id)?;
            Err(ApiError::conflict(format!(
                "job {id} has just ended ({}); nothing to cancel",
                job.status.as_str()
            )))
        }
        status => Err(ApiError::conflict(format!(
            "job {id} is already {}; nothing to cancel",
            status.as_str()
        ))),
    }
}

/// The last event of a finished job, from its row.
fn terminal_event(job: &Job) -> Option<JobEvent> {
    match job.status {
        JobStatus::Succeeded => Some(JobEvent::Done {
            images: job.images.clone(),
        }),
        JobStatus::Failed => Some(JobEvent::Failed {
            reason: job.error.clone().unwrap_or_default(),
        }),
        JobStatus::Cancelled => Some(JobEvent::Cancelled),
        JobStatus::Queued | JobStatus::Running => None,
    }
}

/// Where a job stands now, as the events a listener would have seen last.
fn snapshot(state: &AppState, job: &Job) -> Vec<JobEvent> {
    if let Some(event) = terminal_event(job) {
        return vec![event];
    }
    match job.status {
        JobStatus::Queued => {
            let position = state
                .services
                .queue
                .queue_position(&job.id)
                .ok()
                .flatten()
                .unwrap_or(0);
            vec![JobEvent::Queued { position }]
        }
        _ => {
            let mut events = vec![JobEvent::Running {
                attempt: job.attempts,
            }];
            if let Some((step, total)) = state.services.events.progress(&job.id) {
                events.push(JobEvent::Step { step, total });
            }
            events
        }
    }
}

struct Follow {
    state: AppState,
    id: String,
    events: Subscription,
    pending: VecDeque<JobEvent>,
    finished: bool,
    stopping: watch::Receiver<bool>,
}

impl Follow {
    /// After a gap (lagged or closed channel): the state from the row.
    fn resync(&mut self) {
        match self.state.services.queue.get(&self.id) {
            Ok(Some(job)) => {
                if !job.status.is_terminal() && self.events.is_closed() {
                    self.events = self.state.services.events.subscribe(&self.id);
                }
                self.pending.extend(snapshot(&self.state, &job));
            }
            Ok(None) => self.pending.push_back(JobEvent::Failed {
                reason: "the job is gone".into(),
            }),
            Err(error) => {
                tracing::error!("job events: {error}");
                self.pending.push_back(JobEvent::Failed {
                    reason: "internal error reading the job".into(),
                });
            }
        }
    }

    /// Without news for a while: the terminal event if the row says the job ended.
    fn check_ended(&mut self) {
        if let Ok(Some(job)) = self.state.services.queue.get(&self.id) {
            self.pending.extend(terminal_event(&job));
        }
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                if self.finished {
                    continue;
                }
                self.finished = event.is_terminal();
                let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
                return Some((Ok(Event::default().event(event.name()).data(data)), self));
            }
            if self.finished {
                return None;
            }
            let received = tokio::select! {
                received = self.events.recv() => Some(Some(received)),
                // Events from other nodes can be missed (a broken connection): the row
                // decides whether the job has ended.
                _ = tokio::time::sleep(ROW_RECHECK) => Some(None),
                _ = self.stopping.wait_for(|stopping| *stopping) => None,
            };
            match received {
                None => return None,
                Some(Some(Ok(event))) => self.pending.push_back(event),
                Some(Some(Err(_))) => self.resync(),
                Some(None) => self.check_ended(),
            }
        }
    }
}

/// Server-Sent Events: the current state, then queued / running / step {step, total} until done {images} / failed {reason} / cancelled
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    params(("id" = String, Path, pattern = "^job_[0-9a-f]{24}$")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 401, response = ErrorBody),
        (status = 404, response = ErrorBody),
    )
)]
pub async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    if !is_job_id(&id) {
        return Err(ApiError::not_found(format!(
            "`{id}` is not a job id (job_ and 24 hex digits)"
        )));
    }
    // Subscribe before reading the row so no event falls in between.
    let events = state.services.events.subscribe(&id);
    let job = find_job(&state, &id)?;
    let pending: VecDeque<JobEvent> = snapshot(&state, &job).into();
    let stopping = state.stopping.clone();
    let follow = Follow {
        state,
        id,
        events,
        pending,
        finished: false,
        stopping,
    };
    Ok(Sse::new(stream::unfold(follow, Follow::next)).keep_alive(KeepAlive::default()))
}
