//! `scheduler_config.json`: one serde struct with the keys the five schedulers read
//! (diffusers `EulerDiscreteScheduler`, `EulerAncestralDiscreteScheduler`, `DDIMScheduler`,
//! `DPMSolverMultistepScheduler` `__init__` arguments), each defaulting to diffusers' value.
//!
//! diffusers switches schedulers with `X.from_config(pipe.scheduler.config)`: keys present in
//! the file are passed on, keys absent from it take the *new* class's default
//! (`ConfigMixin.extract_init_dict` drops `_use_default_values`). The one key whose default
//! differs between our schedulers is `timestep_spacing`, so it stays an `Option` here and each
//! scheduler resolves it. Unknown keys are ignored.

use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredcosCapV2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    VPrediction,
    /// diffusers still accepts the old spelling `original_sample`.
    #[serde(alias = "original_sample")]
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Linspace,
    Leading,
    Trailing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterpolationType {
    Linear,
    LogLinear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepType {
    Discrete,
    Continuous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmasType {
    Zero,
    SigmaMin,
}

/// The scheduler part of a diffusers folder. Field names are the JSON keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    /// The class the model was saved with; the user's choice of scheduler wins over it.
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: PredictionType,
    /// `None`: the scheduler's own default (`leading` for DDIM, `linspace` otherwise).
    pub timestep_spacing: Option<TimestepSpacing>,
    pub steps_offset: usize,
    pub rescale_betas_zero_snr: bool,

    // Euler
    pub interpolation_type: InterpolationType,
    #[serde(deserialize_with = "null_as_default")]
    pub use_karras_sigmas: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub use_exponential_sigmas: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub use_beta_sigmas: bool,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub timestep_type: TimestepType,
    pub final_sigmas_type: FinalSigmasType,

    // DDIM
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub set_alpha_to_one: bool,
    pub thresholding: bool,
    pub dynamic_thresholding_ratio: f64,
    pub sample_max_value: f64,

    // DPM-Solver multistep. `algorithm_type` and `solver_type` stay strings: configs of other
    // solvers (DEIS, UniPC) use values of their own that must not make the file unreadable.
    pub solver_order: usize,
    pub algorithm_type: String,
    pub solver_type: String,
    pub lower_order_final: bool,
    pub euler_at_final: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub use_lu_lambdas: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub use_flow_sigmas: bool,
    /// `None` is diffusers' `-inf` (JSON has no infinity; see [`SchedulerConfig::from_json`]).
    pub lambda_min_clipped: Option<f64>,
    pub variance_type: Option<String>,
}

impl Default for SchedulerConfig {
    /// diffusers' `__init__` defaults.
    fn default() -> Self {
        Self {
            class_name: None,
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: None,
            steps_offset: 0,
            rescale_betas_zero_snr: false,
            interpolation_type: InterpolationType::Linear,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            sigma_min: None,
            sigma_max: None,
            timestep_type: TimestepType::Discrete,
            final_sigmas_type: FinalSigmasType::Zero,
            clip_sample: true,
            clip_sample_range: 1.0,
            set_alpha_to_one: true,
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            sample_max_value: 1.0,
            solver_order: 2,
            algorithm_type: "dpmsolver++".to_string(),
            solver_type: "midpoint".to_string(),
            lower_order_final: true,
            euler_at_final: false,
            use_lu_lambdas: false,
            use_flow_sigmas: false,
            lambda_min_clipped: None,
            variance_type: None,
        }
    }
}

impl SchedulerConfig {
    /// Parses a config as Python's `json` writes it: the non-standard literals `Infinity`,
    /// `-Infinity` and `NaN` (diffusers saves `"lambda_min_clipped": -Infinity`) read as null.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(&non_finite_literals_as_null(text))
    }

    /// `timestep_spacing`, or the given scheduler default when the file has none.
    pub fn timestep_spacing_or(&self, default: TimestepSpacing) -> TimestepSpacing {
        self.timestep_spacing.unwrap_or(default)
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Replaces `Infinity`, `-Infinity` and `NaN` outside of strings with `null`.
fn non_finite_literals_as_null(text: &str) -> String {
    let mut output = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(character) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == '"' {
                in_string = false;
            }
        } else if character == '"' {
            in_string = true;
        } else if let Some(literal) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|literal| rest.starts_with(literal))
        {
            output.push_str("null");
            rest = &rest[literal.len()..];
            continue;
        }
        output.push(character);
        rest = &rest[character.len_utf8()..];
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdxl_config_reads_with_defaults_for_missing_keys() {
        let text = include_str!("../../presets/sdxl-base-1.0/scheduler.json");
        let config = SchedulerConfig::from_json(text).unwrap();
        assert_eq!(config.class_name.as_deref(), Some("EulerDiscreteScheduler"));
        assert_eq!(config.beta_schedule, BetaSchedule::ScaledLinear);
        assert_eq!(config.beta_start, 0.00085);
        assert_eq!(config.timestep_spacing, Some(TimestepSpacing::Leading));
        assert_eq!(config.steps_offset, 1);
        assert!(!config.clip_sample);
        assert!(!config.set_alpha_to_one);
        assert_eq!(config.final_sigmas_type, FinalSigmasType::Zero);
        assert!(config.lower_order_final);
        assert_eq!(config.solver_order, 2);
    }

    #[test]
    fn python_json_literals_and_nulls() {
        let text = r#"{"lambda_min_clipped": -Infinity, "algorithm_type": "say -Infinity",
            "use_karras_sigmas": null, "sigma_min": null, "prediction_type": "original_sample",
            "solver_type": "bh2", "unknown": NaN}"#;
        let config = SchedulerConfig::from_json(text).unwrap();
        assert_eq!(config.lambda_min_clipped, None);
        assert_eq!(config.algorithm_type, "say -Infinity");
        assert!(!config.use_karras_sigmas);
        assert_eq!(config.prediction_type, PredictionType::Sample);
        assert_eq!(config.solver_type, "bh2");
        assert_eq!(
            SchedulerConfig::from_json("{}").unwrap(),
            SchedulerConfig::default()
        );
    }
}
