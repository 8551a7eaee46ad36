//! The OpenAI-compatible Images API: `POST /v1/images/generations` (synchronous like
//! OpenAI's, or `"async": true` for a job) and `GET /v1/images/{id}` for stored images.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use serde::Deserialize;

use super::extract::ApiJson;
use super::fields::{check_fields, parse_size, LoraRequest, ResponseFormat, SentFields};
use super::views::{accepted, images_response};
use crate::blobs::{is_blob_id, sniff_image_type};
use crate::error::{ApiError, ApiResult};
use crate::jobs::{GenerationSpec, JobSpec};
use crate::queue_service::{submit, wait_for_job};
use crate::state::AppState;

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
