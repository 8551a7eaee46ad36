//! The router: one file per API area, plus the layers every request passes (metrics,
//! CORS, bearer-key auth on `/v1`, body size limit) and JSON 404/405 answers.

pub mod agent;
pub mod edits;
pub mod extract;
pub mod images;
pub mod jobs;
pub mod system;
pub mod web;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

/// The whole HTTP API as a `Router`; tests can call it without a socket.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/images/generations", post(images::generations))
        .route("/v1/images/edits", post(edits::edits))
        .route("/v1/images/{id}", get(images::get_image))
        .route("/v1/agent", post(agent::agent))
        .route("/v1/jobs", get(jobs::list_jobs))
        .route("/v1/jobs/{id}", get(jobs::get_job).delete(jobs::cancel_job))
        .route("/v1/jobs/{id}/events", get(jobs::job_events))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_api_key,
        ));
    Router::new()
        .route("/", get(web::index))
        .route("/app.js", get(web::script))
        .route("/style.css", get(web::style))
        .route("/healthz", get(system::healthz))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_upload_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .shared
        .metrics
        .record_request(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// `Authorization: Bearer KEY` when keys are configured; open otherwise.
async fn require_api_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let keys = &state.config.api_keys;
    if keys.is_empty() || request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    let error = match given {
        None => ApiError::unauthorized(
            "this server needs an API key: send `Authorization: Bearer <key>`",
        ),
        Some(key)
            if keys
                .iter()
                .any(|known| constant_time_equal(known.as_bytes(), key.as_bytes())) =>
        {
            return next.run(request).await;
        }
        Some(_) => ApiError::unauthorized("the API key is not valid"),
    };
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Compares keys without an early exit on the first differing byte.
fn constant_time_equal(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

/// CORS for the configured origins: preflights answered here, allowed origins echoed.
async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let origins = &state.config.cors_origins;
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allowed = origin.as_ref().and_then(|origin| {
        let text = origin.to_str().ok()?;
        if origins.iter().any(|allowed| allowed == "*") {
            Some(HeaderValue::from_static("*"))
        } else if origins.iter().any(|allowed| allowed == text) {
            Some(origin.clone())
        } else {
            None
        }
    });
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        match &allowed {
            Some(_) => StatusCode::NO_CONTENT.into_response(),
            None => ApiError::new(
                StatusCode::FORBIDDEN,
                "cors_forbidden",
                "this origin may not call the API (see --cors-origin)",
            )
            .into_response(),
        }
    } else {
        next.run(request).await
    };
    if let Some(allowed) = allowed {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        if preflight {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after, location"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    use super::*;
    use crate::config::ServerConfig;
    use crate::state::Inner;
    use crate::worker::Shared;

    /// The router alone, no socket and no worker: what `app(state)` is for.
    fn state(dir: &std::path::Path) -> anyhow::Result<AppState> {
        let shared = Arc::new(Shared {
            store: Arc::new(crate::store::Store::open(&dir.join("jobs.sqlite3"))?),
            blobs: Arc::new(crate::blobs::Blobs::open(&dir.join("blobs"))?),
            hub: Arc::default(),
            metrics: Arc::default(),
            wakeup: Arc::default(),
            cancels: Arc::default(),
            shutdown: Arc::new(AtomicBool::new(false)),
        });
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        Ok(AppState {
            inner: Arc::new(Inner {
                config: ServerConfig::new(dir),
                shared,
                model_loaded: false,
                native_size: (1024, 1024),
                capabilities: Default::default(),
                assistant: None,
                stopping,
                started_at: Instant::now(),
            }),
        })
    }

    #[tokio::test]
    async fn answers_without_a_socket() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let router = app(state(dir.path())?);
        let health = router
            .clone()
            .oneshot(HttpRequest::get("/healthz").body(Body::empty())?)
            .await?;
        assert_eq!(health.status(), StatusCode::OK);
        let request = HttpRequest::post("/v1/images/generations")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"prompt": "a cat", "size": "64x64"}"#))?;
        let response = router.oneshot(request).await?;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await?;
        let body: serde_json::Value = serde_json::from_slice(&body)?;
        assert_eq!(body["error"]["code"], "unavailable");
        Ok(())
    }
}
