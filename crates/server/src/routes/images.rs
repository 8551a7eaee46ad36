//! The OpenAI-compatible Images API: `POST /v1/images/generations` (synchronous like
//! OpenAI's, or `"async": true` for a job) and `GET /v1/images/{id}` for stored images;
//! the field checks and the queue/wait/answer helpers that `edits.rs` and `agent.rs` share.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::extract::ApiJson;
use super::jobs::{base_url, cancel_abandoned, job_view};
use crate::blobs::{is_blob_id, sniff_image_type};
use crate::engine::{is_lora_name, lora_path};
use crate::error::{ApiError, ApiResult};
use crate::events::Subscription;
use crate::jobs::{new_job_id, GenerationSpec, Job, JobSpec, JobStatus, LoraSpec};
use crate::state::AppState;
use crate::store::SubmitError;

const MAX_PROMPT_CHARS: usize = 4000;
const MAX_LORAS: usize = 8;

/// The body of `POST /v1/images/generations`: OpenAI's fields plus huatu's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationRequest {
    pub prompt: Option<String>,
    pub n: Option<usize>,
    /// `WxH`, e.g. `1024x1024`; default the model's native size.
    pub size: Option<String>,
    /// `b64_json` (default) or `url`.
    pub response_format: Option<String>,
    /// Accepted for OpenAI clients and ignored: the server has one model.
    pub model: Option<String>,
    pub quality: Option<String>,
    pub style: Option<String>,
    pub user: Option<String>,
    pub negative_prompt: Option<String>,
    pub steps: Option<usize>,
    pub guidance: Option<f64>,
    pub scheduler: Option<String>,
    pub seed: Option<u64>,
    pub loras: Option<Vec<LoraRequest>>,
    /// Answer 202 with the job at once instead of waiting for the images.
    #[serde(rename = "async")]
    pub run_async: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraRequest {
    pub name: String,
    pub scale: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    B64Json,
    Url,
}

pub fn parse_response_format(text: Option<&str>) -> ApiResult<ResponseFormat> {
    match text {
        None | Some("b64_json") => Ok(ResponseFormat::B64Json),
        Some("url") => Ok(ResponseFormat::Url),
        Some(other) => Err(ApiError::invalid(format!(
            "response_format must be `b64_json` or `url`, got `{other}`"
        ))),
    }
}

/// `WxH` → (width, height), each a multiple of 8 within [64, max].
pub fn parse_size(text: &str, max_dimension: usize) -> ApiResult<(usize, usize)> {
    let rule = || {
        format!("size must be `WIDTHxHEIGHT` with multiples of 8 from 64 to {max_dimension}, got `{text}`")
    };
    let (width, height) = text
        .split_once(['x', 'X', '×'])
        .ok_or_else(|| ApiError::invalid(rule()))?;
    let (width, height) = match (
        width.trim().parse::<usize>(),
        height.trim().parse::<usize>(),
    ) {
        (Ok(width), Ok(height)) => (width, height),
        _ => return Err(ApiError::invalid(rule())),
    };
    let fits = |side: usize| side % 8 == 0 && (64..=max_dimension).contains(&side);
    if !fits(width) || !fits(height) {
        return Err(ApiError::invalid(rule()));
    }
    Ok((width, height))
}

pub fn check_prompt(field: &str, text: &str) -> ApiResult<()> {
    let chars = text.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(ApiError::invalid(format!(
            "{field} may have at most {MAX_PROMPT_CHARS} characters, got {chars}"
        )));
    }
    Ok(())
}

/// The fields generation and editing share, as sent.
#[derive(Default)]
pub struct CommonInput<'a> {
    pub prompt: Option<&'a str>,
    pub negative_prompt: Option<&'a str>,
    pub n: Option<usize>,
    pub steps: Option<usize>,
    pub guidance: Option<f64>,
    pub scheduler: Option<&'a str>,
    pub seed: Option<u64>,
    pub loras: &'a [LoraRequest],
    pub response_format: Option<&'a str>,
}

/// Those fields checked, with defaults resolved.
pub struct Common {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub n: usize,
    pub steps: usize,
    pub guidance: f64,
    pub scheduler: Option<huatu_diffusion::schedulers::SchedulerKind>,
    pub seed: u64,
    pub loras: Vec<LoraSpec>,
    pub response_format: ResponseFormat,
}

pub fn validate_common(state: &AppState, input: &CommonInput<'_>) -> ApiResult<Common> {
    let config = &state.config;
    let prompt = input.prompt.map(str::trim).unwrap_or_default();
    if prompt.is_empty() {
        return Err(ApiError::invalid(
            "prompt is required and must not be empty",
        ));
    }
    check_prompt("prompt", prompt)?;
    if let Some(negative) = input.negative_prompt {
        check_prompt("negative_prompt", negative)?;
    }
    let n = input.n.unwrap_or(1);
    if !(1..=config.max_images).contains(&n) {
        return Err(ApiError::invalid(format!(
            "n must be from 1 to {}, got {n}",
            config.max_images
        )));
    }
    let steps = input.steps.unwrap_or(30);
    if !(1..=config.max_steps).contains(&steps) {
        return Err(ApiError::invalid(format!(
            "steps must be from 1 to {}, got {steps}",
            config.max_steps
        )));
    }
    let guidance = input.guidance.unwrap_or(5.0);
    if !guidance.is_finite() || !(0.0..=30.0).contains(&guidance) {
        return Err(ApiError::invalid(format!(
            "guidance must be a number from 0 to 30, got {guidance}"
        )));
    }
    let scheduler = match input.scheduler {
        None => None,
        Some(name) => Some(
            name.parse()
                .map_err(|error: huatu_diffusion::Error| ApiError::invalid(error.to_string()))?,
        ),
    };
    let response_format = parse_response_format(input.response_format)?;
    if input.loras.len() > MAX_LORAS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_LORAS} LoRAs per request, got {}",
            input.loras.len()
        )));
    }
    let lora_dir = config.data_dir.join("loras");
    let loras = input
        .loras
        .iter()
        .map(|lora| {
            if !is_lora_name(&lora.name) {
                return Err(ApiError::invalid(format!(
                    "LoRA name `{}` is not valid: 1-64 letters, digits, `_`, `-` or `.`, not starting with `.`",
                    lora.name
                )));
            }
            if !lora_path(&lora_dir, &lora.name).is_file() {
                return Err(ApiError::invalid(format!(
                    "unknown LoRA `{}`: the server has no loras/{}.safetensors in its data directory",
                    lora.name, lora.name
                )));
            }
            let scale = lora.scale.unwrap_or(1.0);
            if !scale.is_finite() || !(-4.0..=4.0).contains(&scale) {
                return Err(ApiError::invalid(format!("LoRA `{}`: scale must be from -4 to 4, got {scale}", lora.name)));
            }
            Ok(LoraSpec { name: lora.name.clone(), scale })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Common {
        prompt: prompt.to_string(),
        negative_prompt: input.negative_prompt.map(String::from),
        n,
        steps,
        guidance,
        scheduler,
        seed: input.seed.unwrap_or_else(rand::random),
        loras,
        response_format,
    })
}

/// Checks every field and resolves defaults; the result is what the queue stores.
pub fn validate_generation(
    state: &AppState,
    request: &GenerationRequest,
) -> ApiResult<(GenerationSpec, ResponseFormat)> {
    let common = validate_common(
        state,
        &CommonInput {
            prompt: request.prompt.as_deref(),
            negative_prompt: request.negative_prompt.as_deref(),
            n: request.n,
            steps: request.steps,
            guidance: request.guidance,
            scheduler: request.scheduler.as_deref(),
            seed: request.seed,
            loras: request.loras.as_deref().unwrap_or_default(),
            response_format: request.response_format.as_deref(),
        },
    )?;
    let (width, height) = match request.size.as_deref() {
        None | Some("auto") => state.native_size,
        Some(text) => parse_size(text, state.config.max_dimension)?,
    };
    let spec = GenerationSpec {
        prompt: common.prompt,
        negative_prompt: common.negative_prompt,
        width,
        height,
        steps: common.steps,
        guidance: common.guidance,
        scheduler: common.scheduler,
        seed: common.seed,
        n: common.n,
        loras: common.loras,
    };
    Ok((spec, common.response_format))
}

/// Puts a job in the queue, subscribed to its events first so none is missed.
pub fn submit(state: &AppState, spec: JobSpec) -> ApiResult<(Job, Subscription)> {
    use std::sync::atomic::Ordering;
    crate::limits::check_job_cost(&spec, &state.config)?;
    if !state.model_loaded {
        return Err(ApiError::unavailable(
            "no model is loaded: start the server with --model DIR",
        ));
    }
    if *state.stopping.borrow() {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let shared = &state.shared;
    let id = new_job_id();
    let events = shared.hub.subscribe(&id);
    match shared.store.submit(&id, &spec, state.config.queue_capacity) {
        Ok(job) => {
            shared
                .metrics
                .jobs_submitted
                .fetch_add(1, Ordering::Relaxed);
            shared.wakeup.notify();
            Ok((job, events))
        }
        Err(SubmitError::Full { active }) => {
            shared
                .metrics
                .jobs_rejected_full
                .fetch_add(1, Ordering::Relaxed);
            let per_job = shared.metrics.mean_job_seconds().unwrap_or(5.0);
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
        if let Some(job) = state.shared.store.get(id)? {
            if job.status.is_terminal() {
                return Ok(job);
            }
        }
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) if !event.is_terminal() => continue,
                // Terminal, lagged or closed: the row says how it ended.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => events = state.shared.hub.subscribe(id),
            },
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

/// OpenAI's `{"created", "data": [...]}` for a finished job, plus the job under `huatu`.
pub fn images_response(
    state: &AppState,
    headers: &HeaderMap,
    job: &Job,
    format: ResponseFormat,
    prompt: &str,
) -> ApiResult<Response> {
    match job.status {
        JobStatus::Succeeded => {}
        JobStatus::Failed => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "job_failed",
                format!(
                    "job {} failed: {}",
                    job.id,
                    job.error.as_deref().unwrap_or("no reason recorded")
                ),
            ))
        }
        JobStatus::Cancelled => {
            return Err(ApiError::conflict(format!("job {} was cancelled", job.id)))
        }
        JobStatus::Queued | JobStatus::Running => {
            return Err(ApiError::conflict(format!("job {} is not done", job.id)))
        }
    }
    let base = base_url(state, headers);
    let mut data = Vec::with_capacity(job.images.len());
    for image in &job.images {
        let item = match format {
            ResponseFormat::Url => {
                serde_json::json!({ "url": format!("{base}/v1/images/{image}"), "revised_prompt": prompt })
            }
            ResponseFormat::B64Json => {
                let bytes = state
                    .shared
                    .blobs
                    .get(image)
                    .map_err(|error| ApiError::internal("reading a result image", &error))?
                    .ok_or_else(|| {
                        ApiError::not_found(format!(
                            "result image {image} is missing from the data directory"
                        ))
                    })?;
                serde_json::json!({ "b64_json": base64::engine::general_purpose::STANDARD.encode(bytes), "revised_prompt": prompt })
            }
        };
        data.push(item);
    }
    let created = job.finished_at.unwrap_or(job.created_at) as i64;
    let body = serde_json::json!({ "created": created, "data": data, "huatu": { "job": job_view(state, headers, job) } });
    Ok(Json(body).into_response())
}

/// `POST /v1/images/generations`.
pub async fn generations(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<GenerationRequest>,
) -> ApiResult<Response> {
    let (spec, format) = validate_generation(&state, &request)?;
    let prompt = spec.prompt.clone();
    let (job, events) = submit(&state, JobSpec::Generation(spec))?;
    if request.run_async.unwrap_or(false) {
        return Ok(accepted(&state, &headers, &job));
    }
    let job = wait_for_job(&state, &job.id, events).await?;
    images_response(&state, &headers, &job, format, &prompt)
}

/// 202 with the job and `Location: /v1/jobs/{id}`.
pub fn accepted(state: &AppState, headers: &HeaderMap, job: &Job) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(job_view(state, headers, job))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// `GET /v1/images/{id}`: a stored image by content hash.
pub async fn get_image(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = id.strip_suffix(".png").unwrap_or(&id).to_string();
    if !is_blob_id(&id) {
        return Err(ApiError::not_found(format!(
            "`{id}` is not an image id (64 lowercase hex digits)"
        )));
    }
    let blobs = state.shared.blobs.clone();
    let lookup = id.clone();
    let bytes = crate::blocking::spawn(move || blobs.get(&lookup))
        .await
        .map_err(|error| ApiError::internal("reading an image", &error))?
        .map_err(|error| ApiError::internal("reading an image", &error))?
        .ok_or_else(|| ApiError::not_found(format!("no image {id}")))?;
    let content_type = sniff_image_type(&bytes).unwrap_or("application/octet-stream");
    let disposition = format!("inline; filename=\"huatu-{}.png\"", &id[..12]);
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
