//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` and the
//! request and response types (`ToSchema`). `routes::app` builds the router and the
//! document from the same route list, so they cannot disagree.

use std::sync::Arc;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "huatu API",
        description = "Self-hosted SDXL image creation: an OpenAI-compatible Images API over a durable job queue. Errors are always {\"error\": {\"code\", \"message\"}}. With API keys configured, every /v1 route needs `Authorization: Bearer KEY`."
    ),
    security(("bearer" = []), ()),
    components(responses(ErrorBody)),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

/// `Authorization: Bearer KEY` (`--api-key`).
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as served at `/openapi.json`, rendered once.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<str>);
