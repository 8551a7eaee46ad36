//! The request fields that generation, editing and the agent share, checked once: size,
//! prompts, sampler settings, LoRAs and the response format, with defaults resolved.

use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::job_runner::{is_lora_name, lora_path};
use crate::jobs::{LoraSpec, SamplingSpec};
use crate::state::AppState;

const MAX_PROMPT_CHARS: usize = 4000;
const MAX_LORAS: usize = 8;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoraRequest {
    /// The file <data>/loras/<name>.safetensors.
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")]
    pub name: String,
    #[schema(minimum = -4, maximum = 4, default = 1)]
    pub scale: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    B64Json,
    Url,
}

pub fn parse_response_format(text: Option<&str>) -> ApiResult<ResponseFormat> {
    match text {
        None | Some("b64_json") => Ok(ResponseFormat::B64Json),
        Some("url") => Ok(ResponseFormat::Url),
        Some(other) => Err(ApiError::invalid(format!(
            "response_format must be `b64_json` or `url`, got `{other}`"
        ))),
    }
}

/// `WxH` → (width, height), each a multiple of 8 within [64, max].
pub fn parse_size(text: &str, max_dimension: usize) -> ApiResult<(usize, usize)> {
    let rule = || {
        format!("size must be `WIDTHxHEIGHT` with multiples of 8 from 64 to {max_dimension}, got `{text}`")
    };
    let (width, height) = text
        .split_once(['x', 'X', '×'])
        .ok_or_else(|| ApiError::invalid(rule()))?;
    let (width, height) = match (
        width.trim().parse::<usize>(),
        height.trim().parse::<usize>(),
    ) {
        (Ok(width), Ok(height)) => (width, height),
        _ => return Err(ApiError::invalid(rule())),
    };
    let fits = |side: usize| side % 8 == 0 && (64..=max_dimension).contains(&side);
    if !fits(width) || !fits(height) {
        return Err(ApiError::invalid(rule()));
    }
    Ok((width, height))
}

pub fn check_prompt(field: &str, text: &str) -> ApiResult<()> {
    let chars = text.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(ApiError::invalid(format!(
            "{field} may have at most {MAX_PROMPT_CHARS} characters, got {chars}"
        )));
    }
    Ok(())
}

/// The fields generation and editing share, as sent.
#[derive(Default)]
pub struct SentFields<'a> {
    pub prompt: Option<&'a str>,
    pub negative_prompt: Option<&'a str>,
    pub n: Option<usize>,
    pub steps: Option<usize>,
    pub guidance: Option<f64>,
    pub scheduler: Option<&'a str>,
    pub seed: Option<u64>,
    pub loras: &'a [LoraRequest],
    pub response_format: Option<&'a str>,
}

/// Those fields checked, with defaults resolved.
pub struct CheckedFields {
    pub sampling: SamplingSpec,
    pub response_format: ResponseFormat,
}

pub fn check_fields(state: &AppState, input: &SentFields<'_>) -> ApiResult<CheckedFields> {
    let config = &state.config;
    let prompt = input.prompt.map(str::trim).unwrap_or_default();
    if prompt.is_empty() {
        return Err(ApiError::invalid(
            "prompt is required and must not be empty",
        ));
    }
    check_prompt("prompt", prompt)?;
    if let Some(negative) = input.negative_prompt {
        check_prompt("negative_prompt", negative)?;
    }
    let n = input.n.unwrap_or(1);
    if !(1..=config.max_images).contains(&n) {
        return Err(ApiError::invalid(format!(
            "n must be from 1 to {}, got {n}",
            config.max_images
        )));
    }
    let steps = input.steps.unwrap_or(30);
    if !(1..=config.max_steps).contains(&steps) {
        return Err(ApiError::invalid(format!(
            "steps must be from 1 to {}, got {steps}",
            config.max_steps
        )));
    }
    let guidance = input.guidance.unwrap_or(5.0);
    if !guidance.is_finite() || !(0.0..=30.0).contains(&guidance) {
        return Err(ApiError::invalid(format!(
            "guidance must be a number from 0 to 30, got {guidance}"
        )));
    }
    let scheduler = match input.scheduler {
        None => None,
        Some(name) => Some(
            name.parse()
                .map_err(|error: huatu_diffusion::Error| ApiError::invalid(error.to_string()))?,
        ),
    };
    let response_format = parse_response_format(input.response_format)?;
    if input.loras.len() > MAX_LORAS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_LORAS} LoRAs per request, got {}",
            input.loras.len()
        )));
    }
    let lora_dir = config.data_dir.join("loras");
    let loras = input
        .loras
        .iter()
        .map(|lora| {
            if !is_lora_name(&lora.name) {
                return Err(ApiError::invalid(format!(
                    "LoRA name `{}` is not valid: 1-64 letters, digits, `_`, `-` or `.`, not starting with `.`",
                    lora.name
                )));
            }
            if !lora_path(&lora_dir, &lora.name).is_file() {
                return Err(ApiError::invalid(format!(
                    "unknown LoRA `{}`: the server has no loras/{}.safetensors in its data directory",
                    lora.name, lora.name
                )));
            }
            let scale = lora.scale.unwrap_or(1.0);
            if !scale.is_finite() || !(-4.0..=4.0).contains(&scale) {
                return Err(ApiError::invalid(format!("LoRA `{}`: scale must be from -4 to 4, got {scale}", lora.name)));
            }
            Ok(LoraSpec { name: lora.name.clone(), scale })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(CheckedFields {
        sampling: SamplingSpec {
            prompt: prompt.to_string(),
            negative_prompt: input.negative_prompt.map(String::from),
            n,
            steps,
            guidance,
            scheduler,
            seed: input.seed.unwrap_or_else(rand::random),
            loras,
        },
        response_format,
    })
}
