//! `/healthz`, `/metrics` (Prometheus text) and `/openapi.json`; open without a key so
//! that probes and scrapers need no secret. `/healthz` answers 503 when a worker thread
//! has died (jobs would queue forever), so a supervisor can restart the server.

use std::fmt::Write;

use axum::extract::State;
use axum::Extension;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ApiResult;
use crate::state::AppState;

use super::openapi::OpenApiJson;

/// Liveness and queue state (no key needed)
#[utoipa::path(
    get,
    path = "/healthz",
    security(()),
    responses(
        (status = 200, description = "ok", body = Object),
        (status = 503, description = "A worker thread died (`status`: `worker_died`)", body = Object),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> ApiResult<Response> {
    let queue = &state.services.queue;
    let counts = queue.counts()?;
    let stopping = *state.stopping.borrow();
    // A shared queue: the workers on all machines (alive: a heartbeat within a lease).
    let cluster = if queue.is_shared() {
        let workers = queue.workers()?;
        let lease = state.config.lease.as_secs_f64();
        let alive = workers
            .iter()
            .filter(|worker| worker.silent_seconds < lease)
            .count();
        Some(json!({
            "database": queue.describe(),
            "events_connected": state.services.bus.as_ref().is_some_and(|bus| bus.is_listening()),
            "workers_alive": alive,
            "workers_known": workers.len(),
            "lease_expiries": queue.lease_expiries()?,
        }))
    } else {
        None
    };
    let (started, alive) = (state.workers.started(), state.workers.alive());
    let workers_dead = !stopping && alive < started;
    let status = if stopping {
        "stopping"
    } else if workers_dead {
        "worker_died"
    } else {
        "ok"
    };
    let body = Json(json!({
        "status": status,
        "workers": { "started": started, "alive": alive },
        "model_loaded": state.model_loaded,
        "uptime_seconds": state.started_at.elapsed().as_secs_f64(),
        "queue": { "queued": counts.queued, "running": counts.running, "capacity": state.config.queue_capacity },
        "cluster": cluster,
        "auth": !state.config.api_keys.is_empty(),
        "agent": state.agent_planner.is_some(),
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
    }));
    if workers_dead {
        tracing::error!(
            "{} of {started} worker threads died; jobs are not run",
            started - alive
        );
        return Ok((StatusCode::SERVICE_UNAVAILABLE, body).into_response());
    }
    Ok(body.into_response())
}

/// Prometheus text metrics (no key needed)
#[utoipa::path(
    get,
    path = "/metrics",
    security(()),
    responses((status = 200, description = "metrics", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let queue = &state.services.queue;
    let counts = queue.counts()?;
    let mut text = state.services.metrics.render(counts, state.model_loaded);
    if queue.is_shared() {
        let workers = queue.workers()?;
        crate::metrics::render_cluster(&mut text, queue.lease_expiries()?, &workers);
    }
    let gauges = [
        (
            "huatu_event_channels",
            "Live event channels (one per job someone listens to).",
            state.services.events.channels(),
        ),
        (
            "huatu_http_connections",
            "Open HTTP connections.",
            state.connections.open(),
        ),
        (
            "huatu_workers_started",
            "Worker threads started.",
            state.workers.started(),
        ),
        (
            "huatu_workers_alive",
            "Worker threads alive.",
            state.workers.alive(),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} gauge");
        let _ = writeln!(text, "{name} {value}");
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// This document
#[utoipa::path(
    get,
    path = "/openapi.json",
    security(()),
    responses((status = 200, description = "OpenAPI 3.1", body = Object))
)]
pub async fn openapi(Extension(document): Extension<OpenApiJson>) -> Response {
    let mut response = document.0.to_string().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
