//! Answers as the API shows them: a job, a plan, the 202 for an accepted job and
//! OpenAI's images response.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use huatu_agent::planner::TaskPlan;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::ToSchema;

use super::fields::ResponseFormat;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{Job, JobSpec, JobStatus};
use crate::state::AppState;

/// Where clients reach this server: `--public-url`, else from the Host header.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    match host {
        Some(host) if !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic()) => {
            format!("http://{host}")
        }
        _ => format!("http://{}", state.config.listen),
    }
}

/// A job as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Job)]
pub struct JobView {
    pub id: String,
    /// Always `job`.
    #[schema(pattern = "^job$")]
    pub object: &'static str,
    #[schema(schema_with = job_kind_schema)]
    pub kind: String,
    #[schema(schema_with = job_status_schema)]
    pub status: &'static str,
    /// Runs started; a job interrupted by a crash is retried once, then failed with the
    /// reason.
    pub attempts: u32,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub error: Option<String>,
    pub progress: JobProgress,
    pub queue_position: Option<usize>,
    pub images: Vec<ImageLink>,
    /// The checked request as the queue stores it.
    #[schema(value_type = Object)]
    pub request: JobSpec,
    pub events_url: String,
    /// Set by `DELETE /v1/jobs/{id}` when the running job will stop at its next step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobProgress {
    pub step: usize,
    pub total: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImageLink {
    pub id: String,
    pub url: String,
}

fn job_kind_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["generation", "edit", "agent"]))
}

fn job_status_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(JobStatus::ALL.iter().map(|status| status.as_str())))
}

/// `GET /v1/jobs`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Always `list`.
    #[schema(pattern = "^list$")]
    pub object: &'static str,
    pub data: Vec<JobView>,
}

/// OpenAI's images answer, plus the job under `huatu`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImagesResponse {
    pub created: i64,
    pub data: Vec<ImageData>,
    pub huatu: ImagesJob,
}

/// One image: inline (`b64_json`) or by `url`, as `response_format` asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub revised_prompt: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImagesJob {
    pub job: JobView,
}

/// A job as the API shows it.
pub fn job_view(state: &AppState, headers: &HeaderMap, job: &Job) -> JobView {
    let base = base_url(state, headers);
    let total = job.spec.total_steps();
    let step = match job.status {
        JobStatus::Succeeded => total,
        JobStatus::Running => state
            .services
            .events
            .progress(&job.id)
            .map_or(0, |(step, _)| step),
        _ => 0,
    };
    let queue_position = match job.status {
        JobStatus::Queued => state.services.queue.queue_position(&job.id).ok().flatten(),
        _ => None,
    };
    let images = job
        .images
        .iter()
        .map(|image| ImageLink {
            id: image.clone(),
            url: format!("{base}/v1/images/{image}"),
        })
        .collect();
    JobView {
        id: job.id.clone(),
        object: "job",
        kind: job.spec.kind().to_string(),
        status: job.status.as_str(),
        attempts: job.attempts,
        created_at: job.created_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
        error: job.error.clone(),
        progress: JobProgress { step, total },
        queue_position,
        images,
        request: job.spec.clone(),
        events_url: format!("/v1/jobs/{}/events", job.id),
        cancel_requested: None,
    }
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

/// 202 with the job and `Location: /v1/jobs/{id}`.
pub fn accepted(state: &AppState, headers: &HeaderMap, job: &Job) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(job_view(state, headers, job))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/jobs/{}", job.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
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
            ResponseFormat::Url => ImageData {
                b64_json: None,
                url: Some(format!("{base}/v1/images/{image}")),
                revised_prompt: prompt.to_string(),
            },
            ResponseFormat::B64Json => {
                let bytes = state
                    .services
                    .blobs
                    .get(image)
                    .map_err(|error| ApiError::internal("reading a result image", &error))?
                    .ok_or_else(|| {
                        ApiError::not_found(format!(
                            "result image {image} is missing from the data directory"
                        ))
                    })?;
                ImageData {
                    b64_json: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                    url: None,
                    revised_prompt: prompt.to_string(),
                }
            }
        };
        data.push(item);
    }
    let created = job.finished_at.unwrap_or(job.created_at) as i64;
    let body = ImagesResponse {
        created,
        data,
        huatu: ImagesJob {
            job: job_view(state, headers, job),
        },
    };
    Ok(Json(body).into_response())
}
