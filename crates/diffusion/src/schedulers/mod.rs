//! Schedulers: the [`Scheduler`] trait (diffusers' `SchedulerMixin` surface a pipeline uses),
//! one file per algorithm mirroring its diffusers class, and [`SchedulerKind`], the user's
//! choice of scheduler with one spelling shared by CLI, HTTP and logs.
//!
//! Choosing a kind for a model behaves like diffusers'
//! `X.from_config(pipe.scheduler.config, **overrides)`: the model's `scheduler_config.json`
//! supplies the noise schedule and spacing, the kind supplies the algorithm.

mod config;
mod ddim;
mod dpm_solver_multistep;
mod euler_ancestral_discrete;
mod euler_discrete;
mod noise;
mod noise_schedule;
mod sample_ops;
mod sigma_schedule;

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;

pub use config::{
    BetaSchedule, FinalSigmasType, InterpolationType, PredictionType, SchedulerConfig,
    TimestepSpacing, TimestepType,
};
pub use ddim::DDIMScheduler;
pub use dpm_solver_multistep::DPMSolverMultistepScheduler;
pub use euler_ancestral_discrete::EulerAncestralDiscreteScheduler;
pub use euler_discrete::EulerDiscreteScheduler;
pub use noise::NoiseSource;
pub use noise_schedule::alphas_cumprod;

use crate::{Error, Result};

/// A sampler over a fixed number of inference steps, used as diffusers pipelines use theirs:
/// for each `t` of [`timesteps`](Scheduler::timesteps): `scale_model_input`, run the model,
/// `step`.
pub trait Scheduler: Send {
    /// The timesteps the UNet receives, in order (`scheduler.timesteps`).
    fn timesteps(&self) -> &[f64];

    /// Standard deviation of the initial noise (`scheduler.init_noise_sigma`).
    fn init_noise_sigma(&self) -> f64;

    /// The model input at `timestep` (`scheduler.scale_model_input`).
    fn scale_model_input(&self, sample: &Tensor, timestep: f64) -> Result<Tensor>;

    /// One denoising step: the previous (less noisy) sample (`scheduler.step(...).prev_sample`).
    /// Stochastic schedulers draw their noise from `noise`.
    fn step(
        &mut self,
        model_output: &Tensor,
        timestep: f64,
        sample: &Tensor,
        noise: &mut NoiseSource,
    ) -> Result<Tensor>;

    /// `original` noised to the level of `timestep` (`scheduler.add_noise`).
    fn add_noise(&self, original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor>;

    /// Model evaluations per timestep (`scheduler.order`).
    fn order(&self) -> usize {
        1
    }

    /// Starts stepping at `timesteps()[begin_index]` instead of looking the first timestep up
    /// (`scheduler.set_begin_index`, which image-to-image pipelines call).
    fn set_begin_index(&mut self, begin_index: usize);
}

/// The schedulers huatu offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SchedulerKind {
    /// `EulerDiscreteScheduler`
    #[serde(rename = "euler")]
    Euler,
    /// `EulerAncestralDiscreteScheduler`
    #[serde(rename = "euler-a")]
    EulerAncestral,
    /// `DDIMScheduler` (eta = 0)
    #[serde(rename = "ddim")]
    Ddim,
    /// `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2)`
    #[serde(rename = "dpmpp-2m")]
    DpmPlusPlus2M,
    /// The same with `use_karras_sigmas=True`.
    #[serde(rename = "dpmpp-2m-karras")]
    DpmPlusPlus2MKarras,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 5] = [
        SchedulerKind::Euler,
        SchedulerKind::EulerAncestral,
        SchedulerKind::Ddim,
        SchedulerKind::DpmPlusPlus2M,
        SchedulerKind::DpmPlusPlus2MKarras,
    ];

    /// The one spelling of this kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            SchedulerKind::Euler => "euler",
            SchedulerKind::EulerAncestral => "euler-a",
            SchedulerKind::Ddim => "ddim",
            SchedulerKind::DpmPlusPlus2M => "dpmpp-2m",
            SchedulerKind::DpmPlusPlus2MKarras => "dpmpp-2m-karras",
        }
    }

    /// The kind for a config's `_class_name`, when huatu implements that class.
    pub fn from_class_name(class_name: &str) -> Option<Self> {
        match class_name {
            "EulerDiscreteScheduler" => Some(SchedulerKind::Euler),
            "EulerAncestralDiscreteScheduler" => Some(SchedulerKind::EulerAncestral),
            "DDIMScheduler" => Some(SchedulerKind::Ddim),
            "DPMSolverMultistepScheduler" => Some(SchedulerKind::DpmPlusPlus2M),
            _ => None,
        }
    }

    /// The kind a model's scheduler config describes: its class, with DPM-Solver's
    /// `use_karras_sigmas` told apart.
    pub fn from_config(config: &SchedulerConfig) -> Option<Self> {
        match Self::from_class_name(config.class_name.as_deref()?)? {
            SchedulerKind::DpmPlusPlus2M if config.use_karras_sigmas => {
                Some(SchedulerKind::DpmPlusPlus2MKarras)
            }
            kind => Some(kind),
        }
    }

    /// The model's config with this kind's overrides, as the `**kwargs` of diffusers'
    /// `from_config`: DPM++ 2M sets `algorithm_type="dpmsolver++"`, `solver_order=2`, and the
    /// Karras kind `use_karras_sigmas=True`. Other keys are kept as the model has them.
    pub fn config_for(&self, base: &SchedulerConfig) -> SchedulerConfig {
        let mut config = base.clone();
        match self {
            SchedulerKind::Euler | SchedulerKind::EulerAncestral | SchedulerKind::Ddim => {}
            SchedulerKind::DpmPlusPlus2M | SchedulerKind::DpmPlusPlus2MKarras => {
                config.algorithm_type = "dpmsolver++".to_string();
                config.solver_order = 2;
                if *self == SchedulerKind::DpmPlusPlus2MKarras {
                    config.use_karras_sigmas = true;
                }
            }
        }
        config
    }

    /// The scheduler for `config` (the model's), set to `num_inference_steps`.
    pub fn build(
        &self,
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Box<dyn Scheduler>> {
        let config = self.config_for(config);
        Ok(match self {
            SchedulerKind::Euler => {
                Box::new(EulerDiscreteScheduler::new(&config, num_inference_steps)?)
            }
            SchedulerKind::EulerAncestral => Box::new(EulerAncestralDiscreteScheduler::new(
                &config,
                num_inference_steps,
            )?),
            SchedulerKind::Ddim => Box::new(DDIMScheduler::new(&config, num_inference_steps)?),
            SchedulerKind::DpmPlusPlus2M | SchedulerKind::DpmPlusPlus2MKarras => Box::new(
                DPMSolverMultistepScheduler::new(&config, num_inference_steps)?,
            ),
        })
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for SchedulerKind {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        SchedulerKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| Error::UnknownScheduler(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_spellings_round_trip() {
        for kind in SchedulerKind::ALL {
            assert_eq!(kind.to_string().parse::<SchedulerKind>().unwrap(), kind);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
            assert_eq!(serde_json::from_str::<SchedulerKind>(&json).unwrap(), kind);
        }
        let error = "dpm++".parse::<SchedulerKind>().unwrap_err();
        assert!(
            matches!(error, Error::UnknownScheduler(ref name) if name == "dpm++"),
            "{error}"
        );
    }

    #[test]
    fn class_names() {
        assert_eq!(
            SchedulerKind::from_class_name("EulerDiscreteScheduler"),
            Some(SchedulerKind::Euler)
        );
        assert_eq!(
            SchedulerKind::from_class_name("DPMSolverMultistepScheduler"),
            Some(SchedulerKind::DpmPlusPlus2M)
        );
        assert_eq!(SchedulerKind::from_class_name("PNDMScheduler"), None);
        let config = SchedulerConfig {
            class_name: Some("DPMSolverMultistepScheduler".to_string()),
            use_karras_sigmas: true,
            ..SchedulerConfig::default()
        };
        assert_eq!(
            SchedulerKind::from_config(&config),
            Some(SchedulerKind::DpmPlusPlus2MKarras)
        );
        assert_eq!(
            SchedulerKind::from_config(&SchedulerConfig::default()),
            None
        );
    }

    #[test]
    fn every_kind_builds_for_sdxl() {
        let config =
            SchedulerConfig::from_json(include_str!("../../presets/sdxl-base-1.0/scheduler.json"))
                .unwrap();
        for kind in SchedulerKind::ALL {
            let scheduler = kind.build(&config, 30).unwrap();
            assert_eq!(scheduler.timesteps().len(), 30, "{kind}");
        }
        assert!(SchedulerKind::Euler.build(&config, 0).is_err());
    }
}
