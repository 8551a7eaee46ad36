//! The OpenAI-compatible Images API: `POST /v1/images/generations` (synchronous like
//! OpenAI's, or `"async": true` for a job) and `GET /v1/images/{id}` for stored images.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use huatu_diffusion::schedulers::SchedulerKind;
use serde::Deserialize;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::ToSchema;

use super::extract::ApiJson;
use super::fields::{check_fields, parse_size, LoraRequest, ResponseFormat, SentFields};
use super::views::{accepted, images_response, ImagesResponse, JobView};
use crate::blobs::{is_blob_id, sniff_image_type};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::jobs::{GenerationSpec, JobSpec};
use crate::queue_service::{submit, wait_for_job};
use crate::state::AppState;

/// The body of `POST /v1/images/generations`: OpenAI's fields plus huatu's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationRequest {
    /// What to draw (required).
    #[schema(required = true, max_length = 4000)]
    pub prompt: Option<String>,
    #[schema(minimum = 1, maximum = 8, default = 1)]
    pub n: Option<usize>,
    /// WIDTHxHEIGHT, multiples of 8 from 64 to --max-dimension; `auto` or absent: the
    /// model's native size.
    #[schema(pattern = "^([0-9]+x[0-9]+|auto)$")]
    pub size: Option<String>,
    #[schema(value_type = Option<String>, pattern = "^(b64_json|url)$", default = "b64_json")]
    pub response_format: Option<String>,
    /// Accepted for OpenAI clients; ignored (the server has one model).
    pub model: Option<String>,
    /// Accepted and ignored.
    pub quality: Option<String>,
    /// Accepted and ignored.
    pub style: Option<String>,
    /// Accepted and ignored.
    pub user: Option<String>,
    #[schema(max_length = 4000)]
    pub negative_prompt: Option<String>,
    /// Denoising steps, at most --max-steps (150).
    #[schema(minimum = 1, default = 30)]
    pub steps: Option<usize>,
    #[schema(minimum = 0, maximum = 30, default = 5)]
    pub guidance: Option<f64>,
    /// Default: the model's own.
    #[schema(schema_with = scheduler_schema)]
    pub scheduler: Option<String>,
    /// Image i uses seed + i. Default: random (recorded in the job).
    pub seed: Option<u64>,
    #[schema(max_items = 8)]
    pub loras: Option<Vec<LoraRequest>>,
    /// true: answer 202 with the job at once instead of waiting.
    #[serde(rename = "async")]
    #[schema(default = false)]
    pub run_async: Option<bool>,
}

/// The scheduler names, from `SchedulerKind` (one spelling for the CLI, HTTP and logs).
pub fn scheduler_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(SchedulerKind::ALL.iter().map(|kind| kind.as_str())))
        .description(Some("Default: the model's own."))
}

/// Checks every field and resolves defaults; the result is what the queue stores.
pub fn validate_generation(
    state: &AppState,
    request: &GenerationRequest,
) -> ApiResult<(GenerationSpec, ResponseFormat)> {
    let common = check_fields(
        state,
        &SentFields {
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
        sampling: common.sampling,
        width,
        height,
    };
    Ok((spec, common.response_format))
}

/// Text to image (OpenAI-compatible; synchronous unless async=true)
#[utoipa::path(
    post,
    path = "/v1/images/generations",
    request_body = GenerationRequest,
    responses(
        (status = 200, description = "The images", body = ImagesResponse),
        (status = 202, description = "Accepted (async): the job; Location: /v1/jobs/{id}", body = JobView),
        (status = 429, description = "Queue full; Retry-After says when to retry", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody),
        (status = 409, response = ErrorBody),
        (status = 413, response = ErrorBody),
        (status = 415, response = ErrorBody),
        (status = 500, response = ErrorBody),
        (status = 503, response = ErrorBody),
        (status = 504, response = ErrorBody),
    )
)]
pub async fn generations(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<GenerationRequest>,
) -> ApiResult<Response> {
    let (spec, format) = validate_generation(&state, &request)?;
    let prompt = spec.sampling.prompt.clone();
    let (job, events) = submit(&state, JobSpec::Generation(spec))?;
    if request.run_async.unwrap_or(false) {
        return Ok(accepted(&state, &headers, &job));
    }
    let job = wait_for_job(&state, &job.id, events).await?;
    images_response(&state, &headers, &job, format, &prompt)
}

/// A stored image by content hash (sha256)
#[utoipa::path(
    get,
    path = "/v1/images/{id}",
    params(("id" = String, Path, pattern = "^[0-9a-f]{64}$")),
    responses(
        (status = 200, description = "The image", content_type = "image/png", body = Vec<u8>),
        (status = 401, response = ErrorBody),
        (status = 404, response = ErrorBody),
    )
)]
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
    let blobs = state.services.blobs.clone();
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
