//! The web page, embedded in the binary: one HTML file, its script and its style.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/app.js");
const STYLE: &str = include_str!("../web/style.css");

fn with_type(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The web page (Chinese UI)
#[utoipa::path(
    get,
    path = "/",
    security(()),
    responses((status = 200, description = "HTML", content_type = "text/html", body = String))
)]
pub async fn index() -> Response {
    with_type(INDEX, "text/html; charset=utf-8")
}

/// The web page's script
#[utoipa::path(
    get,
    path = "/app.js",
    security(()),
    responses((status = 200, description = "JavaScript", content_type = "text/javascript", body = String))
)]
pub async fn script() -> Response {
    with_type(SCRIPT, "text/javascript; charset=utf-8")
}

/// The web page's style
#[utoipa::path(
    get,
    path = "/style.css",
    security(()),
    responses((status = 200, description = "CSS", content_type = "text/css", body = String))
)]
pub async fn style() -> Response {
    with_type(STYLE, "text/css; charset=utf-8")
}
