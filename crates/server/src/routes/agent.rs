//! `POST /v1/agent`: an instruction plus optional original/condition images and an edit
//! region → the plan and a job. The agent's planner has not landed in huatu-agent yet,
//! so after the inputs are read and checked the answer is 501. Also the multipart form
//! reader shared with `/v1/images/edits`.

use std::collections::HashMap;

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use huatu_diffusion::pipelines::{GrayImage, RgbImage};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};
use crate::png_codec::{decode_upload, Upload};
use crate::state::AppState;

const MAX_TEXT_FIELD_BYTES: usize = 64 << 10;

/// A multipart form read in full: text fields and decoded, size-checked images.
#[derive(Default)]
pub struct Form {
    texts: HashMap<String, String>,
    images: HashMap<String, Upload>,
}

impl Form {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.texts.get(name).map(String::as_str)
    }

    pub fn image(&self, name: &str) -> Option<&RgbImage> {
        self.images.get(name).map(|upload| &upload.image)
    }

    /// The field read as a mask (white = repaint; transparent = repaint for RGBA).
    pub fn mask(&self, name: &str) -> Option<&GrayImage> {
        self.images.get(name).map(|upload| &upload.mask)
    }

    /// Names of the text fields sent.
    pub fn text_names(&self) -> impl Iterator<Item = &str> {
        self.texts.keys().map(String::as_str)
    }
}

fn multipart_error(error: MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large("the upload is larger than the server allows (see --max-upload-mib)")
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_multipart", format!("the multipart body is malformed: {}", error.body_text()))
    }
}

/// Reads every field; those named in `image_fields` must be images within the limits.
pub async fn read_form(multipart: &mut Multipart, state: &AppState, image_fields: &[&str]) -> ApiResult<Form> {
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(multipart_error)?;
        if image_fields.contains(&name.as_str()) {
            if form.images.contains_key(&name) {
                return Err(ApiError::invalid(format!("field `{name}` was sent twice")));
            }
            let max = state.config.max_dimension;
            let upload = tokio::task::spawn_blocking(move || decode_upload(&name, &bytes, max).map(|upload| (name, upload)))
                .await
                .map_err(|error| ApiError::internal("decoding an upload", &error))?
                .map_err(ApiError::invalid)?;
            form.images.insert(upload.0, upload.1);
        } else {
            if bytes.len() > MAX_TEXT_FIELD_BYTES {
                return Err(ApiError::invalid(format!("field `{name}` is longer than {MAX_TEXT_FIELD_BYTES} bytes")));
            }
            let text = String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::invalid(format!("field `{name}` is not UTF-8 text")))?;
            form.texts.insert(name, text);
        }
    }
    Ok(form)
}

/// An edit region: center point plus width and height, in pixels of the original image.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// Parses and checks a region against the original image.
pub fn parse_region(text: &str, original: Option<&RgbImage>) -> ApiResult<Region> {
    let region: Region = serde_json::from_str(text).map_err(|error| {
        ApiError::invalid(format!("region must be JSON {{\"x\", \"y\", \"width\", \"height\"}} (center and size in pixels): {error}"))
    })?;
    let Some(original) = original else {
        return Err(ApiError::invalid("a region needs an original image to lie in"));
    };
    let values = [region.x, region.y, region.width, region.height];
    let inside = region.width > 0.0
        && region.height > 0.0
        && region.x - region.width / 2.0 >= -0.5
        && region.y - region.height / 2.0 >= -0.5
        && region.x + region.width / 2.0 <= original.width as f64 + 0.5
        && region.y + region.height / 2.0 <= original.height as f64 + 0.5;
    if values.iter().any(|value| !value.is_finite()) || !inside {
        return Err(ApiError::invalid(format!(
            "region (center {}, {}, size {}×{}) must lie inside the {}×{} original image",
            region.x, region.y, region.width, region.height, original.width, original.height
        )));
    }
    Ok(region)
}

/// `POST /v1/agent` (multipart: `instruction`, optional `original`, `condition`, `region`).
pub async fn agent(State(state): State<AppState>, multipart: Result<Multipart, MultipartRejection>) -> ApiResult<Response> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_multipart", format!("send the instruction as multipart/form-data: {}", rejection.body_text()))
    })?;
    let form = read_form(&mut multipart, &state, &["original", "condition"]).await?;
    let instruction = form.text("instruction").map(str::trim).unwrap_or_default();
    if instruction.is_empty() {
        return Err(ApiError::invalid("instruction is required and must not be empty"));
    }
    if instruction.chars().count() > 1000 {
        return Err(ApiError::invalid("instruction may have at most 1000 characters"));
    }
    if let Some(region) = form.text("region") {
        parse_region(region, form.image("original"))?;
    }
    Err(ApiError::not_implemented(
        "the agent is not built yet: huatu-agent has no planner to turn an instruction into a plan; use /v1/images/generations with a prompt meanwhile",
    ))
}
