//! The router: one file per API area, plus the layers every request passes (metrics,
//! security headers, the open-server guard, CORS, bearer-key auth on `/v1`, body size
//! limit) and JSON 404/405 answers. Auth is tower-http's `ValidateRequestHeaderLayer`
//! with our own check (`security::ApiKeys`); the hand-written layers are in `layers`.

pub mod agent;
pub mod edits;
pub mod extract;
pub mod fields;
pub mod form;
pub mod images;
pub mod jobs;
pub mod layers;
pub mod openapi;
pub mod system;
pub mod views;
pub mod web;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware;
use axum::{Extension, Router};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::validate_request::ValidateRequestHeaderLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::layers::{cors, guard_open_server, record_metrics};
use self::openapi::{ApiDoc, OpenApiJson};
use crate::error::ApiError;
use crate::security::{ApiKeys, CONTENT_SECURITY_POLICY};
use crate::state::AppState;

/// Headers every response carries unless its handler set them.
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// The routes open without a key: the web page, probes and this document.
fn open_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(web::index))
        .routes(routes!(web::script))
        .routes(routes!(web::style))
        .routes(routes!(system::healthz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi))
}

/// The `/v1` API (bearer-key auth when keys are configured).
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(images::generations))
        .routes(routes!(edits::edits))
        .routes(routes!(images::get_image))
        .routes(routes!(agent::agent))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job, jobs::cancel_job))
        .routes(routes!(jobs::job_events))
}

/// The OpenAPI document of every route `app` serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(open_routes())
        .merge(api_routes())
        .into_openapi()
}

/// The whole HTTP API as a `Router`; tests can call it without a socket.
pub fn app(state: AppState) -> Router {
    let api = api_routes().route_layer(ValidateRequestHeaderLayer::custom(ApiKeys::new(
        &state.config.api_keys,
    )));
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(open_routes())
        .merge(api)
        .split_for_parts();
    let document = document
        .to_pretty_json()
        .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
    let mut router = router
        .layer(Extension(OpenApiJson(document.into())))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_upload_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard_open_server,
        ));
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    use super::*;
    use crate::config::ServerConfig;
    use crate::job_services::JobServices;
    use crate::state::HandlerContext;

    /// The router alone, no socket and no worker: what `app(state)` is for.
    fn state(dir: &std::path::Path) -> anyhow::Result<AppState> {
        state_with_workers(dir, Arc::default())
    }

    fn state_with_workers(
        dir: &std::path::Path,
        workers: Arc<crate::state::WorkerHealth>,
    ) -> anyhow::Result<AppState> {
        let services = Arc::new(JobServices::new(
            Arc::new(crate::job_queue::SqliteQueue::open(
                &dir.join("jobs.sqlite3"),
            )?),
            Arc::new(crate::blobs::Blobs::open(&dir.join("blobs"))?),
            None,
        ));
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        Ok(AppState {
            context: Arc::new(HandlerContext {
                config: ServerConfig::new(dir),
                services,
                model_loaded: false,
                native_size: (1024, 1024),
                capabilities: Default::default(),
                agent_planner: None,
                stopping,
                started_at: std::time::Instant::now(),
                hosts: crate::security::HostPolicy::new(
                    std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                    None,
                    &[],
                ),
                workers,
                connections: Arc::default(),
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

    #[tokio::test]
    async fn healthz_is_503_once_a_worker_thread_died() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let workers = Arc::new(crate::state::WorkerHealth::default());
        let router = app(state_with_workers(dir.path(), workers.clone())?);
        let health = |router: Router| async move {
            let response = router
                .oneshot(HttpRequest::get("/healthz").body(Body::empty())?)
                .await?;
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await?;
            anyhow::Ok((status, serde_json::from_slice::<serde_json::Value>(&body)?))
        };
        // One worker alive, one that panics outside any job.
        let (alive_sender, alive_receiver) = std::sync::mpsc::channel::<()>();
        let alive = {
            let workers = workers.clone();
            std::thread::spawn(move || {
                let _alive = workers.enter();
                let _ = alive_receiver.recv();
            })
        };
        let dying = {
            let workers = workers.clone();
            std::thread::spawn(move || {
                let _alive = workers.enter();
                panic!("a worker thread dies");
            })
        };
        assert!(dying.join().is_err());
        let (status, body) = health(router.clone()).await?;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "worker_died");
        assert_eq!(body["workers"]["started"], 2);
        assert_eq!(body["workers"]["alive"], 1);
        drop(alive_sender);
        assert!(alive.join().is_ok());
        Ok(())
    }

    /// The document is generated from the routes `app` serves; this holds the other way:
    /// every operation it lists reaches a handler (not the 404/405 fallbacks).
    #[tokio::test]
    async fn every_documented_operation_is_routed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let router = app(state(dir.path())?);
        let document = serde_json::to_value(openapi_document())?;
        let paths = document["paths"].as_object().cloned().unwrap_or_default();
        let mut operations = 0;
        for (path, methods) in &paths {
            let concrete = path
                .replace("/v1/images/{id}", &format!("/v1/images/{}", "0".repeat(64)))
                .replace("{id}", &format!("job_{}", "0".repeat(24)));
            for method in methods
                .as_object()
                .into_iter()
                .flat_map(|methods| methods.keys())
            {
                let request = HttpRequest::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&concrete)
                    .body(Body::empty())?;
                let response = router.clone().oneshot(request).await?;
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
                let text = String::from_utf8_lossy(&body);
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(!text.contains("no route for"), "{method} {path}: {text}");
                operations += 1;
            }
        }
        assert_eq!(operations, 14, "{:?}", paths.keys().collect::<Vec<_>>());
        let served = router
            .oneshot(HttpRequest::get("/openapi.json").body(Body::empty())?)
            .await?;
        let body = axum::body::to_bytes(served.into_body(), 1 << 20).await?;
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body)?,
            document
        );
        Ok(())
    }

    #[tokio::test]
    async fn healthz_is_ok_while_every_worker_lives() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let workers = Arc::new(crate::state::WorkerHealth::default());
        let _alive = workers.enter();
        let router = app(state_with_workers(dir.path(), workers)?);
        let response = router
            .oneshot(HttpRequest::get("/healthz").body(Body::empty())?)
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        Ok(())
    }
}
