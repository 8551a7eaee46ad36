//! `POST /v1/images/edits` (OpenAI-compatible multipart): inpainting inside the mask
//! (white, or transparent in an RGBA mask as OpenAI has it), image-to-image without one.
//! Also `submit_with_inputs`, shared with `/v1/agent`: uploads reach the blob store only
//! once their job is accepted.

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::agent::{read_form, Form};
use super::images::{
    accepted, images_response, parse_size, submit, validate_common, wait_for_job, CommonInput,
    LoraRequest,
};
use crate::blobs::{content_hash, describe_write_error, is_storage_full};
use crate::error::{ApiError, ApiResult};
use crate::events::Subscription;
use crate::jobs::{EditSpec, Job, JobEvent, JobSpec};
use crate::png_codec::{encode_gray_png, encode_png};
use crate::state::AppState;

/// An upload to store for a job: its bytes as stored (PNG) and their content hash.
pub struct Input {
    pub id: String,
    bytes: Vec<u8>,
}

impl Input {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            id: content_hash(&bytes),
            bytes,
        }
    }
}

/// Queues `spec`, then stores those of `inputs` it reads. Nothing is written for a job
/// that is refused (429, 503): the inputs are pinned before the job is accepted (a
/// worker that claims it at once waits for them, retention leaves them alone) and
/// written after. A write that fails (a full disk) fails the job with the reason and
/// answers 507 (or 500).
pub async fn submit_with_inputs(
    state: &AppState,
    spec: JobSpec,
    inputs: Vec<Input>,
) -> ApiResult<(Job, Subscription)> {
    let used = spec.input_blobs();
    let mut inputs: Vec<Input> = inputs
        .into_iter()
        .filter(|input| used.contains(&input.id.as_str()))
        .collect();
    inputs.sort_by(|a, b| a.id.cmp(&b.id));
    inputs.dedup_by(|a, b| a.id == b.id);
    let shared = state.shared.clone();
    let pins = shared
        .blobs
        .pin(inputs.iter().map(|input| input.id.clone()));
    // Refused: the pins drop here and nothing was written.
    let (job, events) = submit(state, spec)?;
    let id = job.id.clone();
    // Not the bounded pool: the write must happen even if this request goes away now.
    // The pins drop when the write has ended, either way.
    let written = tokio::task::spawn_blocking(move || {
        let _pins = pins;
        let stored = inputs
            .iter()
            .try_for_each(|input| shared.blobs.put(&input.bytes).map(drop));
        let Err(error) = stored else { return Ok(()) };
        tracing::error!(job = %id, "cannot store the job's uploads: {error}");
        let reason = format!(
            "the uploaded images could not be stored: {}",
            describe_write_error(&error)
        );
        // Before the pins drop: a worker waiting for the inputs then finds the job ended.
        match shared.store.fail_unfinished(&id, &reason) {
            Ok(true) => {
                shared
                    .metrics
                    .jobs_failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shared.hub.publish(&id, JobEvent::Failed { reason });
            }
            Ok(false) => {}
            Err(db_error) => tracing::error!(job = %id, "cannot fail the job: {db_error}"),
        }
        Err(error)
    })
    .await
    .map_err(|error| ApiError::internal("storing the uploads", &error))?;
    match written {
        Ok(()) => Ok((job, events)),
        Err(error) if is_storage_full(&error) => Err(ApiError::storage_full()),
        Err(error) => Err(ApiError::internal("storing the uploads", &error)),
    }
}

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

/// `POST /v1/images/edits` (multipart, OpenAI's fields plus huatu's): with a mask,
/// inpainting inside it (white, or transparent in an RGBA mask as OpenAI has it, is
/// repainted; every pixel outside stays the original's); without one, image-to-image.
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
    let common = validate_common(
        &state,
        &CommonInput {
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
    if ((common.steps as f64) * strength) < 1.0 {
        return Err(ApiError::invalid(format!(
            "strength {strength} with {} steps leaves no denoising step; raise one of them",
            common.steps
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
    let prompt = common.prompt.clone();
    let spec = EditSpec {
        prompt: common.prompt,
        negative_prompt: common.negative_prompt,
        image: image_id,
        mask: mask_id,
        width,
        height,
        steps: common.steps,
        guidance: common.guidance,
        scheduler: common.scheduler,
        seed: common.seed,
        n: common.n,
        strength,
        loras: common.loras,
    };
    let inputs = std::iter::once(image_input).chain(mask_input).collect();
    let (job, events) = submit_with_inputs(&state, JobSpec::Edit(spec), inputs).await?;
    if run_async {
        return Ok(accepted(&state, &headers, &job));
    }
    let job = wait_for_job(&state, &job.id, events).await?;
    images_response(&state, &headers, &job, common.response_format, &prompt)
}
