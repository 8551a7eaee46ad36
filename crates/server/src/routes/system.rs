//! `/healthz`, `/metrics` (Prometheus text) and `/openapi.json`; open without a key so
//! that probes and scrapers need no secret.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiResult;
use crate::state::AppState;

const OPENAPI: &str = include_str!("../openapi.json");

pub async fn healthz(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let counts = state.shared.store.counts()?;
    Ok(Json(json!({
        "status": if *state.stopping.borrow() { "stopping" } else { "ok" },
        "model_loaded": state.model_loaded,
        "uptime_seconds": state.started_at.elapsed().as_secs_f64(),
        "queue": { "queued": counts.queued, "running": counts.running, "capacity": state.config.queue_capacity },
        "auth": !state.config.api_keys.is_empty(),
        "agent": state.assistant.is_some(),
        "edits": true,
        "limits": {
            "max_dimension": state.config.max_dimension,
            "max_megapixel_steps": state.config.max_megapixel_steps,
            "max_job_secs": state.config.max_job.as_secs_f64(),
            "native_size": [state.native_size.0, state.native_size.1],
        },
        "models": {
            "instruct_pix2pix": state.capabilities.instruct,
            "controlnet": state.capabilities.controlnet,
            "upscaler": state.capabilities.upscaler,
        },
    })))
}

pub async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let counts = state.shared.store.counts()?;
    let text = state.shared.metrics.render(counts, state.model_loaded);
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

pub async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
