//! `POST /v1/images/edits` (OpenAI-compatible multipart): inpainting inside the mask
//! (white, or transparent in an RGBA mask as OpenAI has it), image-to-image without one.

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use utoipa::ToSchema;

use super::fields::{check_fields, parse_size, LoraRequest, SentFields};
use super::form::{read_form, Form};
use super::images::scheduler_schema;
use super::views::{accepted, images_response, ImagesResponse, JobView};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::jobs::{EditSpec, JobSpec};
use crate::png_codec::{encode_gray_png, encode_png};
use crate::queue_service::{submit_with_inputs, wait_for_job, Input};
use crate::state::AppState;

/// Fields `/v1/images/edits` knows (OpenAI's, then huatu's).
const EDIT_FIELDS: &[&str] = &[
    "image",
    "image[]",
    "mask",
    "prompt",
    "n",
    "size",
    "response_format",
    "model",
    "quality",
    "user",
    "negative_prompt",
    "steps",
    "guidance",
    "scheduler",
    "seed",
    "strength",
    "loras",
    "async",
];

fn form_number<T: std::str::FromStr>(form: &Form, name: &str, kind: &str) -> ApiResult<Option<T>> {
    match form.text(name).map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(format!("{name} must be {kind}, got `{text}`"))),
    }
}

/// The multipart form of `POST /v1/images/edits`, for the OpenAPI document (the handler
/// reads it field by field; a test holds its fields to `EDIT_FIELDS`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EditForm {
    /// The picture to edit (PNG, JPEG or WebP), sides multiples of 8, at least 64.
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// The same as `image`, as some OpenAI clients name it.
    #[serde(rename = "image[]")]
    #[schema(value_type = Option<String>, format = Binary)]
    image_list: Option<Vec<u8>>,
    /// White (or transparent in an RGBA mask) is repainted; the size of `image`.
    #[schema(value_type = Option<String>, format = Binary)]
    mask: Option<Vec<u8>>,
    #[schema(max_length = 4000)]
    prompt: String,
    n: Option<usize>,
    /// The image's own size or `auto`: edits keep the original's size.
    size: Option<String>,
    #[schema(pattern = "^(b64_json|url)$")]
    response_format: Option<String>,
    /// Accepted and ignored.
    model: Option<String>,
    /// Accepted and ignored.
    quality: Option<String>,
    /// Accepted and ignored.
    user: Option<String>,
    #[schema(max_length = 4000)]
    negative_prompt: Option<String>,
    steps: Option<usize>,
    guidance: Option<f64>,
    #[schema(schema_with = scheduler_schema)]
    scheduler: Option<String>,
    seed: Option<u64>,
    /// Default 0.9999 with a mask, 0.8 without.
    #[schema(exclusive_minimum = 0, maximum = 1)]
    strength: Option<f64>,
    /// JSON list of {name, scale}
    loras: Option<String>,
    #[serde(rename = "async")]
    #[schema(pattern = "^(true|false|1|0)$")]
    run_async: Option<String>,
}

/// Edit an image (OpenAI-compatible multipart). With a mask: inpainting inside it (white, or transparent in an RGBA mask, is repainted; pixels outside stay the original's). Without: image-to-image. Synchronous unless async=true.
#[utoipa::path(
    post,
    path = "/v1/images/edits",
    request_body(content = EditForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The images", body = ImagesResponse),
        (status = 202, description = "Accepted (async): the job", body = JobView),
        (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody),
        (status = 413, response = ErrorBody),
        (status = 429, response = ErrorBody),
        (status = 500, response = ErrorBody),
        (status = 503, response = ErrorBody),
        (status = 504, response = ErrorBody),
    )
)]
pub async fn edits(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_multipart",
            format!(
                "send the edit as multipart/form-data: {}",
                rejection.body_text()
            ),
        )
    })?;
    let form = read_form(&mut multipart, &state, &["image", "image[]", "mask"]).await?;
    if let Some(unknown) = form.text_names().find(|name| !EDIT_FIELDS.contains(name)) {
        return Err(ApiError::invalid(format!(
            "unknown field `{unknown}`, expected one of {}",
            EDIT_FIELDS.join(", ")
        )));
    }
    let image = form
        .image("image")
        .or_else(|| form.image("image[]"))
        .ok_or_else(|| {
            ApiError::invalid("image is required: the picture to edit (PNG, JPEG or WebP)")
        })?
        .clone();
    if image.width() % 8 != 0
        || image.height() % 8 != 0
        || image.width() < 64
        || image.height() < 64
    {
        return Err(ApiError::invalid(format!(
            "image width and height must be multiples of 8 and at least 64, got {}×{}",
            image.width(),
            image.height()
        )));
    }
    let mask = match form.mask("mask") {
        None => None,
        Some(mask) if (mask.width(), mask.height()) != (image.width(), image.height()) => {
            return Err(ApiError::invalid(format!(
                "mask must be the size of image: image is {}×{}, mask is {}×{}",
                image.width(),
                image.height(),
                mask.width(),
                mask.height()
            )));
        }
        Some(mask) => {
            let painted = mask.as_raw().iter().filter(|&&pixel| pixel >= 128).count();
            if painted == 0 {
                return Err(ApiError::invalid(
                    "the mask marks nothing to edit (white, or transparent in an RGBA mask, means edit)",
                ));
            }
            // A mask over everything is an edit of the whole picture: image-to-image.
            (painted < mask.as_raw().len()).then(|| mask.clone())
        }
    };
    match form.text("size").map(str::trim) {
        None | Some("") | Some("auto") => {}
        Some(size) => {
            let (width, height) = parse_size(size, state.config.max_dimension)?;
            if (width, height) != (image.width() as usize, image.height() as usize) {
                return Err(ApiError::invalid(format!(
                    "size must be the image's own ({}x{}) or auto: edits keep the original's size, got `{size}`",
                    image.width(), image.height()
                )));
            }
        }
    }
    let loras: Vec<LoraRequest> = match form.text("loras") {
        None => Vec::new(),
        Some(text) => serde_json::from_str(text).map_err(|error| {
            ApiError::invalid(format!(
                "loras must be a JSON list of {{\"name\", \"scale\"}}: {error}"
            ))
        })?,
    };
    let common = check_fields(
        &state,
        &SentFields {
            prompt: form.text("prompt"),
            negative_prompt: form.text("negative_prompt"),
            n: form_number(&form, "n", "a whole number")?,
            steps: form_number(&form, "steps", "a whole number")?,
            guidance: form_number(&form, "guidance", "a number")?,
            scheduler: form.text("scheduler").map(str::trim),
            seed: form_number(&form, "seed", "a whole number ≥ 0")?,
            loras: &loras,
            response_format: form.text("response_format").map(str::trim),
        },
    )?;
    let strength = form_number::<f64>(&form, "strength", "a number")?
        .unwrap_or(if mask.is_some() { 0.9999 } else { 0.8 });
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(ApiError::invalid(format!(
            "strength must be within (0, 1], got {strength}"
        )));
    }
    if ((common.sampling.steps as f64) * strength) < 1.0 {
        return Err(ApiError::invalid(format!(
            "strength {strength} with {} steps leaves no denoising step; raise one of them",
            common.sampling.steps
        )));
    }
    let run_async = matches!(form.text("async").map(str::trim), Some("true" | "1"));

    // Encoded here, stored by content hash once the job is accepted.
    let encoded = crate::blocking::spawn(move || -> Result<(Input, Option<Input>), String> {
        let image = Input::new(encode_png(&image, "{}").map_err(|error| error.to_string())?);
        let mask = match &mask {
            Some(mask) => Some(Input::new(
                encode_gray_png(mask).map_err(|error| error.to_string())?,
            )),
            None => None,
        };
        Ok((image, mask))
    })
    .await
    .map_err(|error| ApiError::internal("encoding the inputs", &error))?;
    let (image_input, mask_input) = encoded.map_err(|error| {
        ApiError::internal("encoding the inputs", &std::io::Error::other(error))
    })?;
    let image_id = image_input.id.clone();
    let mask_id = mask_input.as_ref().map(|mask| mask.id.clone());
    let (width, height) = form
        .image("image")
        .or_else(|| form.image("image[]"))
        .map_or((0, 0), |image| {
            (image.width() as usize, image.height() as usize)
        });
    let prompt = common.sampling.prompt.clone();
    let spec = EditSpec {
        sampling: common.sampling,
        image: image_id,
        mask: mask_id,
        width,
        height,
        strength,
    };
    let inputs = std::iter::once(image_input).chain(mask_input).collect();
    let (job, events) = submit_with_inputs(&state, JobSpec::Edit(spec), inputs).await?;
    if run_async {
        return Ok(accepted(&state, &headers, &job));
    }
    let job = wait_for_job(&state, &job.id, events).await?;
    images_response(&state, &headers, &job, common.response_format, &prompt)
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;

    #[test]
    fn the_documented_form_has_every_field_the_handler_reads() {
        let schema = serde_json::to_value(EditForm::schema()).unwrap_or_default();
        let mut documented: Vec<&str> = schema["properties"]
            .as_object()
            .map(|fields| fields.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut read = EDIT_FIELDS.to_vec();
        documented.sort_unstable();
        read.sort_unstable();
        assert_eq!(documented, read);
    }
}
