//! The layers every request passes besides tower-http's: metrics, CORS for the configured
//! origins, and the open-server guard (Host allowlist and cross-site checks, see
//! `security`).
//!
//! CORS stays hand-written: tower-http's `CorsLayer` answers a preflight from an origin
//! it does not allow with 200 and no CORS headers, where this server answers 403
//! `cors_forbidden` with a JSON reason (clients and tests rely on it).

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::security::cross_site;
use crate::state::AppState;

pub async fn record_metrics(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .services
        .metrics
        .record_request(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// CORS for the configured origins: preflights answered here, allowed origins echoed.
pub async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
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

/// Host allowlist and cross-site checks; only when no API key is configured (a bearer
/// key is never sent by a browser on its own, so keyed servers need neither).
pub async fn guard_open_server(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let config = &state.config;
    if !config.api_keys.is_empty() {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .map(|value| value.to_str().unwrap_or("(not text)").to_string())
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_string()));
    if let Some(host) = host {
        if !state.hosts.allows(&host) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "host_forbidden",
                format!(
                    "this server does not answer to the host `{host}` (a guard against DNS \
                     rebinding while no API key is set); add it with --allowed-host or \
                     --public-url"
                ),
            )
            .into_response();
        }
    }
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        if let Some(reason) = cross_site(request.headers(), config) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_site_forbidden",
                format!(
                    "a cross-site request may not change anything on this server ({reason}); \
                     allow the page's origin with --cors-origin, or set an API key"
                ),
            )
            .into_response();
        }
    }
    next.run(request).await
}
