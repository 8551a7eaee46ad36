//! `POST /v1/agent`: an instruction plus optional original/condition images and an edit
//! region → the recognised intent, the plan and a job (huatu-agent's intent model and
//! planner).

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use huatu_agent::planner::{Plan, PlanInputs};
use huatu_imaging::edit::DrawnRegion;
use huatu_imaging::{center_crop_to_multiple, RgbImage};
use serde_json::json;
use utoipa::ToSchema;

use super::fields::parse_size;
use super::form::read_form;
use super::views::{job_view, plan_view};
use crate::agent_jobs::{job_for_plan, AgentUploads, Overrides, PlannedJob};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::jobs::JobSpec;
use crate::png_codec::{encode_gray_png, encode_png};
use crate::queue_service::{submit_with_inputs, Input};
use crate::state::AppState;

/// Parses a drawn region and checks it lies inside the original image.
fn parse_region(text: &str, original: Option<&RgbImage>) -> ApiResult<DrawnRegion> {
    let region: DrawnRegion = serde_json::from_str(text).map_err(|error| {
        ApiError::invalid(format!("region must be JSON {{\"x\", \"y\", \"width\", \"height\"}} (center and size in pixels): {error}"))
    })?;
    let Some(original) = original else {
        return Err(ApiError::invalid(
            "a region needs an original image to lie in",
        ));
    };
    region
        .check_inside(original.width(), original.height())
        .map_err(|error| ApiError::invalid(error.to_string()))?;
    Ok(region)
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

/// The multipart form of `POST /v1/agent`, for the OpenAPI document (the handler reads
/// it field by field; a test holds its fields to `AGENT_FIELDS`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AgentForm {
    #[schema(max_length = 1000)]
    instruction: String,
    /// the picture to edit, at least 64×64; sides that are not multiples of 8 are cropped
    /// to its centered crop (said in `notes`), the region moving with it
    #[schema(value_type = Option<String>, format = Binary)]
    original: Option<Vec<u8>>,
    /// the picture to put into the original (edit.reference)
    #[schema(value_type = Option<String>, format = Binary)]
    condition: Option<Vec<u8>>,
    /// JSON {x, y, width, height}: center and size in pixels of the original; edits
    /// change only inside it
    region: Option<String>,
    /// WxH overriding the plan's size (text-to-image only; edits keep the original's size)
    size: Option<String>,
    /// overrides the plan's number of steps
    #[schema(minimum = 1)]
    steps: Option<usize>,
    seed: Option<u64>,
}

/// An instruction (+ optional original/condition images and region) → the recognised intent, slots, the plan and its job
///
/// The job is of kind `agent`: the plan's pipeline — text-to-image, InstructPix2Pix with
/// --instruct-model, ControlNet inpainting with --controlnet — then its enhancer. Or a
/// `reply` (a question back, a refusal, or why the plan is not run). Needs an intent
/// model (503 without).
#[utoipa::path(
    post,
    path = "/v1/agent",
    request_body(content = AgentForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "{instruction, intent, confidence, slots, plan, reply, notes, job}", body = Object),
        (status = 400, response = ErrorBody),
        (status = 401, response = ErrorBody),
        (status = 413, response = ErrorBody),
        (status = 503, response = ErrorBody),
    )
)]
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
                    *region = region.in_crop(left, top, cropped.width(), cropped.height());
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
            Some(text) => Some(parse_size(text, state.config.max_dimension)?),
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
    let Some(planner) = state.agent_planner.clone() else {
        return Err(ApiError::unavailable("the agent has no intent model loaded: start the server with --intent-model DIR (e.g. models/intent)"));
    };

    // Inputs by content hash; the planner sees where they are to be stored (it does not
    // read them); they are written only once a job that uses them is accepted.
    let blobs = state.services.blobs.clone();
    let condition = form.image("condition").cloned();
    let mask = match (&original, &region) {
        (Some(image), Some(region)) => Some(region.mask(image.width(), image.height())),
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
        let parse = planner
            .model
            .parse(&text)
            .map_err(|error| crate::error::one_line_chain(&error))?;
        let inputs = PlanInputs {
            image: original.as_ref().and_then(|input| blobs.path(&input.id)),
            condition_image: condition.as_ref().and_then(|input| blobs.path(&input.id)),
            lora_dir,
        };
        let plan = planner.plan(&parse, &inputs);
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
    let edit = AgentUploads {
        image: original_id,
        mask,
        mask_id,
        condition: condition_id,
        image_size,
    };
    let lora_dir = state.config.data_dir.join("loras");
    let mapped = job_for_plan(
        &instruction,
        &task,
        overrides,
        &lora_dir,
        &edit,
        state.config.max_images,
        state.capabilities,
    );
    match mapped {
        PlannedJob::NotRun(reply, notes) => {
            answer["reply"] = json!(reply);
            answer["notes"] = json!([input_notes, notes].concat());
        }
        PlannedJob::Job(spec, notes) => {
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
            answer["job"] = json!(job_view(&state, &headers, &job));
        }
    }
    Ok(Json(answer).into_response())
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;

    #[test]
    fn the_documented_form_has_every_field_the_handler_reads() {
        let schema = serde_json::to_value(AgentForm::schema()).unwrap_or_default();
        let mut documented: Vec<&str> = schema["properties"]
            .as_object()
            .map(|fields| fields.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut read = AGENT_FIELDS.to_vec();
        documented.sort_unstable();
        read.sort_unstable();
        assert_eq!(documented, read);
    }
}
