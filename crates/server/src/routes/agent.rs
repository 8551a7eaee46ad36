//! `POST /v1/agent`: an instruction plus optional original/condition images and an edit
//! region → the recognised intent, the plan and a job (huatu-agent's intent model and
//! planner). Also the multipart form reader shared with `/v1/images/edits`.

use std::collections::HashMap;

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use huatu_agent::planner::{Plan, PlanInputs};
use huatu_imaging::{center_crop_to_multiple, GrayImage, RgbImage};
use serde::Deserialize;
use serde_json::json;

use super::edits::{submit_with_inputs, Input};
use crate::assistant::{map_plan, plan_view, EditInputs, Mapped, Overrides};
use crate::error::{ApiError, ApiResult};
use crate::jobs::JobSpec;
use crate::png_codec::{decode_upload, encode_gray_png, encode_png, Upload};
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
    if super::extract::is_body_timeout(&error) {
        super::extract::body_timeout()
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
        return Err(ApiError::invalid(
            "a region needs an original image to lie in",
        ));
    };
    let values = [region.x, region.y, region.width, region.height];
    let inside = region.width > 0.0
        && region.height > 0.0
        && region.x - region.width / 2.0 >= -0.5
        && region.y - region.height / 2.0 >= -0.5
        && region.x + region.width / 2.0 <= original.width() as f64 + 0.5
        && region.y + region.height / 2.0 <= original.height() as f64 + 0.5;
    if values.iter().any(|value| !value.is_finite()) || !inside {
        return Err(ApiError::invalid(format!(
            "region (center {}, {}, size {}×{}) must lie inside the {}×{} original image",
            region.x,
            region.y,
            region.width,
            region.height,
            original.width(),
            original.height()
        )));
    }
    Ok(region)
}

/// A region of the uploaded original moved into its crop at (`left`, `top`) and clamped
/// to the cropped image.
fn shift_region(region: &Region, left: u32, top: u32, cropped: &RgbImage) -> Region {
    let clamp = |value: f64, extent: u32| value.clamp(0.0, f64::from(extent));
    let x0 = clamp(region.x - region.width / 2.0 - left as f64, cropped.width());
    let x1 = clamp(region.x + region.width / 2.0 - left as f64, cropped.width());
    let y0 = clamp(
        region.y - region.height / 2.0 - top as f64,
        cropped.height(),
    );
    let y1 = clamp(
        region.y + region.height / 2.0 - top as f64,
        cropped.height(),
    );
    Region {
        x: (x0 + x1) / 2.0,
        y: (y0 + y1) / 2.0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

const AGENT_FIELDS: &[&str] = &[
    "instruction",
    "original",
    "condition",
    "region",
    "size",
    "steps",
    "seed",
];

/// `POST /v1/agent` (multipart: `instruction`, optional `original`, `condition`,
/// `region`, and `size`/`steps`/`seed` overriding the plan's). Understands the
/// instruction, plans, and queues the plan's job: 200 with the intent, the plan and the
/// job, or with a `reply` (a question back, a refusal, or why a plan is not run).
pub async fn agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_multipart",
            format!(
                "send the instruction as multipart/form-data: {}",
                rejection.body_text()
            ),
        )
    })?;
    let form = read_form(&mut multipart, &state, &["original", "condition"]).await?;
    if let Some(unknown) = form.text_names().find(|name| !AGENT_FIELDS.contains(name)) {
        return Err(ApiError::invalid(format!(
            "unknown field `{unknown}`, expected one of {}",
            AGENT_FIELDS.join(", ")
        )));
    }
    let instruction = form
        .text("instruction")
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    if instruction.is_empty() {
        return Err(ApiError::invalid(
            "instruction is required and must not be empty",
        ));
    }
    if instruction.chars().count() > 1000 {
        return Err(ApiError::invalid(
            "instruction may have at most 1000 characters",
        ));
    }
    let uploaded = form.image("original");
    let mut region = match form.text("region") {
        Some(text) => Some(parse_region(text, uploaded)?),
        None => None,
    };
    let mut input_notes = Vec::new();
    let original = match uploaded {
        Some(image) if image.width() < 64 || image.height() < 64 => {
            return Err(ApiError::invalid(format!(
                "original width and height must be at least 64, got {}×{}",
                image.width(),
                image.height()
            )));
        }
        Some(image) => {
            let (cropped, left, top) = center_crop_to_multiple(image, 8);
            if (cropped.width(), cropped.height()) != (image.width(), image.height()) {
                input_notes.push(format!(
                    "the original ({}×{}) is edited as its centered {}×{} crop: SDXL needs sides that are multiples of 8",
                    image.width(), image.height(), cropped.width(), cropped.height()
                ));
                if let Some(region) = &mut region {
                    *region = shift_region(region, left, top, &cropped);
                    if region.width < 1.0 || region.height < 1.0 {
                        return Err(ApiError::invalid(format!(
                            "the region lies in the edge cropped off the original (it is edited as its centered {}×{} crop)",
                            cropped.width(), cropped.height()
                        )));
                    }
                }
            }
            Some(cropped)
        }
        None => None,
    };
    let overrides = Overrides {
        size: match form.text("size").map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(super::images::parse_size(text, state.config.max_dimension)?),
        },
        steps: match form.text("steps").map(str::trim) {
            None | Some("") => None,
            Some(text) => {
                let steps = text
                    .parse::<usize>()
                    .ok()
                    .filter(|steps| (1..=state.config.max_steps).contains(steps));
                Some(steps.ok_or_else(|| {
                    ApiError::invalid(format!(
                        "steps must be a whole number from 1 to {}, got `{text}`",
                        state.config.max_steps
                    ))
                })?)
            }
        },
        seed: match form.text("seed").map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse().map_err(|_| {
                ApiError::invalid(format!("seed must be a whole number ≥ 0, got `{text}`"))
            })?),
        },
    };
    let Some(assistant) = state.assistant.clone() else {
        return Err(ApiError::unavailable("the agent has no intent model loaded: start the server with --intent-model DIR (e.g. models/intent)"));
    };

    // Inputs by content hash; the planner sees where they are to be stored (it does not
    // read them); they are written only once a job that uses them is accepted.
    let blobs = state.shared.blobs.clone();
    let condition = form.image("condition").cloned();
    let mask = match (&original, &region) {
        (Some(image), Some(region)) => Some(crate::assistant::region_mask(
            image.width() as usize,
            image.height() as usize,
            region,
        )),
        _ => None,
    };
    let lora_dir = state.config.data_dir.join("loras");
    let text = instruction.clone();
    let stored_mask = mask.clone();
    let image_size = original.as_ref().map_or((0, 0), |image| {
        (image.width() as usize, image.height() as usize)
    });
    let planned = crate::blocking::spawn(move || -> Result<_, String> {
        let encode = |image: &RgbImage| -> Result<Input, String> {
            encode_png(image, "{}")
                .map(Input::new)
                .map_err(|error| error.to_string())
        };
        let original = original.as_ref().map(encode).transpose()?;
        let condition = condition.as_ref().map(encode).transpose()?;
        let mask = match &stored_mask {
            Some(mask) => Some(Input::new(
                encode_gray_png(mask).map_err(|error| error.to_string())?,
            )),
            None => None,
        };
        let parse = assistant
            .model
            .parse(&text)
            .map_err(|error| crate::engine::chain(&error))?;
        let inputs = PlanInputs {
            image: original.as_ref().and_then(|input| blobs.path(&input.id)),
            condition_image: condition.as_ref().and_then(|input| blobs.path(&input.id)),
            lora_dir,
        };
        let plan = huatu_agent::plan(&parse, &inputs, &assistant.scenes, assistant.lexicon);
        Ok((parse, plan, original, condition, mask))
    })
    .await
    .map_err(|error| ApiError::internal("running the agent", &error))?;
    let (parse, plan, original_input, condition_input, mask_input) = planned
        .map_err(|error| ApiError::internal("running the agent", &std::io::Error::other(error)))?;
    let id_of = |input: &Option<Input>| input.as_ref().map(|input| input.id.clone());
    let (original_id, condition_id, mask_id) = (
        id_of(&original_input),
        id_of(&condition_input),
        id_of(&mask_input),
    );

    let mut answer = json!({
        "instruction": instruction,
        "intent": parse.intent,
        "confidence": parse.confidence,
        "slots": parse.slots,
        "plan": null,
        "reply": null,
        "notes": [],
        "job": null,
    });
    let task = match plan {
        Plan::Question(text) | Plan::Refusal(text) => {
            answer["reply"] = json!(text);
            return Ok(Json(answer).into_response());
        }
        Plan::Task(task) => task,
    };
    answer["plan"] = plan_view(&task);
    let edit = EditInputs {
        image: original_id,
        mask,
        mask_id,
        condition: condition_id,
        image_size,
    };
    let lora_dir = state.config.data_dir.join("loras");
    let mapped = map_plan(
        &instruction,
        &task,
        overrides,
        &lora_dir,
        &edit,
        state.config.max_images,
        state.capabilities,
    );
    match mapped {
        Mapped::NotRun(reply, notes) => {
            answer["reply"] = json!(reply);
            answer["notes"] = json!([input_notes, notes].concat());
        }
        Mapped::Job(spec, notes) => {
            answer["notes"] = json!([input_notes, notes].concat());
            if let JobSpec::Agent(agent) = &spec {
                // The plan as it runs: overrides applied, edits at the original's size.
                answer["plan"] = plan_view(&agent.plan);
            }
            if let JobSpec::Agent(agent) = &spec {
                let (width, height, max) = (
                    agent.plan.width,
                    agent.plan.height,
                    state.config.max_dimension,
                );
                if width > max || height > max {
                    return Err(ApiError::invalid(format!(
                        "the plan's size {width}×{height} is over this server's limit of {max}; send `size` to choose a smaller one"
                    )));
                }
            }
            let inputs = [original_input, condition_input, mask_input]
                .into_iter()
                .flatten()
                .collect();
            let (job, _events) = submit_with_inputs(&state, spec, inputs).await?;
            answer["job"] = super::jobs::job_view(&state, &headers, &job);
        }
    }
    Ok(Json(answer).into_response())
}
