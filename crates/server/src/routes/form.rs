//! The multipart form reader of `/v1/images/edits` and `/v1/agent`: every field read in
//! full, text fields as UTF-8, image fields decoded and size-checked off the runtime.

use std::collections::HashMap;

use axum::extract::multipart::{Multipart, MultipartError};
use axum::http::StatusCode;
use huatu_imaging::{GrayImage, RgbImage};

use super::extract::{body_timeout, is_body_timeout};
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
    if is_body_timeout(&error) {
        body_timeout()
    } else if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::payload_too_large(
            "the upload is larger than the server allows (see --max-upload-mib)",
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_multipart",
            format!("the multipart body is malformed: {}", error.body_text()),
        )
    }
}

/// Reads every field; those named in `image_fields` must be images within the limits.
pub async fn read_form(
    multipart: &mut Multipart,
    state: &AppState,
    image_fields: &[&str],
) -> ApiResult<Form> {
    let mut form = Form::default();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(multipart_error)?;
        if image_fields.contains(&name.as_str()) {
            if form.images.contains_key(&name) {
                return Err(ApiError::invalid(format!("field `{name}` was sent twice")));
            }
            let max = state.config.max_dimension;
            let upload = crate::blocking::spawn(move || {
                decode_upload(&name, &bytes, max).map(|upload| (name, upload))
            })
            .await
            .map_err(|error| ApiError::internal("decoding an upload", &error))?
            .map_err(ApiError::invalid)?;
            form.images.insert(upload.0, upload.1);
        } else {
            if bytes.len() > MAX_TEXT_FIELD_BYTES {
                return Err(ApiError::invalid(format!(
                    "field `{name}` is longer than {MAX_TEXT_FIELD_BYTES} bytes"
                )));
            }
            let text = String::from_utf8(bytes.to_vec())
                .map_err(|_| ApiError::invalid(format!("field `{name}` is not UTF-8 text")))?;
            form.texts.insert(name, text);
        }
    }
    Ok(form)
}
