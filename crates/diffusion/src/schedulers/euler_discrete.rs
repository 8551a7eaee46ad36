//! Euler sampler (Karras et al. 2022, algorithm 2) as diffusers'
//! `EulerDiscreteScheduler` (schedulers/scheduling_euler_discrete.py), SDXL's default.
//! Deterministic: `s_churn` and friends stay at their defaults (no added noise).

use candle_core::{DType, Tensor};

use super::config::{
    FinalSigmasType, InterpolationType, PredictionType, SchedulerConfig, TimestepSpacing,
    TimestepType,
};
use super::noise::NoiseSource;
use super::noise_schedule::{
    alphas_cumprod_for_sigmas, check_step_count, exponential_sigmas, interpolate, karras_sigmas,
    log_sigmas, sigma_from_alpha_cumprod, sigma_to_t, training_sigmas,
};
use super::sample_ops::{divide, scale};
use super::sigma_schedule::{euler_timesteps, MissingTimestep, SigmaSchedule};
use super::Scheduler;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct EulerDiscreteScheduler {
    config: SchedulerConfig,
    spacing: TimestepSpacing,
    alphas_cumprod: Vec<f32>,
    schedule: SigmaSchedule,
}

impl EulerDiscreteScheduler {
    /// `EulerDiscreteScheduler.from_config(config)` then `set_timesteps(num_inference_steps)`.
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self> {
        check_supported(config)?;
        let mut scheduler = Self {
            config: config.clone(),
            spacing: config.timestep_spacing_or(TimestepSpacing::Linspace),
            alphas_cumprod: alphas_cumprod_for_sigmas(config)?,
            schedule: SigmaSchedule::new(Vec::new(), Vec::new(), MissingTimestep::Fail),
        };
        scheduler.set_timesteps(num_inference_steps)?;
        Ok(scheduler)
    }

    /// Recomputes timesteps and sigmas for `num_inference_steps` and resets the step counter.
    pub fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let config = &self.config;
        check_step_count(num_inference_steps, config)?;
        let mut timesteps = euler_timesteps(
            self.spacing,
            config.num_train_timesteps,
            num_inference_steps,
            config.steps_offset,
        );
        let training = training_sigmas(&self.alphas_cumprod);
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|&timestep| interpolate(timestep, &training))
            .collect();
        if config.use_karras_sigmas || config.use_exponential_sigmas {
            sigmas = if config.use_karras_sigmas {
                karras_sigmas(&sigmas, num_inference_steps, config)
            } else {
                exponential_sigmas(&sigmas, num_inference_steps, config)
            };
            let log_sigmas = log_sigmas(&training);
            timesteps = sigmas
                .iter()
                .map(|&sigma| sigma_to_t(sigma, &log_sigmas) as f32 as f64)
                .collect();
        }
        let sigma_last = match config.final_sigmas_type {
            FinalSigmasType::SigmaMin => sigma_from_alpha_cumprod(self.alphas_cumprod[0]) as f64,
            FinalSigmasType::Zero => 0.0,
        };
        sigmas.push(sigma_last);
        let sigmas = sigmas.into_iter().map(|sigma| sigma as f32).collect();
        self.schedule = SigmaSchedule::new(timesteps, sigmas, MissingTimestep::Fail);
        Ok(())
    }

    /// The noise levels, one per timestep plus the final one (`scheduler.sigmas`).
    pub fn sigmas(&self) -> &[f32] {
        &self.schedule.sigmas
    }

    /// The step counter (`scheduler.step_index`): `None` before the first step.
    pub fn step_index(&self) -> Option<usize> {
        self.schedule.step_index
    }
}

fn check_supported(config: &SchedulerConfig) -> Result<()> {
    let unsupported = |what: &str| {
        Err(Error::Config(format!(
            "EulerDiscreteScheduler: {what} is not supported"
        )))
    };
    let choices = [
        config.use_karras_sigmas,
        config.use_exponential_sigmas,
        config.use_beta_sigmas,
    ];
    if choices.into_iter().filter(|&chosen| chosen).count() > 1 {
        return Err(Error::Config(
            "only one of use_karras_sigmas, use_exponential_sigmas and use_beta_sigmas can be set"
                .to_string(),
        ));
    }
    if config.use_beta_sigmas {
        return unsupported("use_beta_sigmas");
    }
    if config.interpolation_type == InterpolationType::LogLinear {
        return unsupported("interpolation_type \"log_linear\"");
    }
    if config.timestep_type == TimestepType::Continuous
        && config.prediction_type == PredictionType::VPrediction
    {
        return unsupported("timestep_type \"continuous\" with v_prediction");
    }
    Ok(())
}

impl Scheduler for EulerDiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.schedule.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.schedule.init_noise_sigma(self.spacing)
    }

    fn scale_model_input(&self, sample: &Tensor, timestep: f64) -> Result<Tensor> {
        self.schedule.scale_model_input(sample, timestep)
    }

    /// Upcasts to f32 (as diffusers does for the sample), returns `model_output`'s dtype.
    fn step(
        &mut self,
        model_output: &Tensor,
        timestep: f64,
        sample: &Tensor,
        _noise: &mut NoiseSource,
    ) -> Result<Tensor> {
        let index = self.schedule.step_index_for(timestep)?;
        let output_dtype = model_output.dtype();
        let sample = sample.to_dtype(DType::F32)?;
        let model_output = model_output.to_dtype(DType::F32)?;
        let sigma = self.schedule.sigmas[index];
        // s_churn = 0: gamma = 0, so sigma_hat = sigma and no noise is added.
        let sigma_hat = sigma;
        let pred_original_sample = match self.config.prediction_type {
            PredictionType::Sample => model_output,
            PredictionType::Epsilon => (&sample - scale(&model_output, sigma_hat)?)?,
            PredictionType::VPrediction => {
                let variance = sigma * sigma + 1.0;
                (scale(&model_output, -sigma / variance.sqrt())? + divide(&sample, variance)?)?
            }
        };
        // Convert to an ODE derivative and take an Euler step.
        let derivative = divide(&(&sample - &pred_original_sample)?, sigma_hat)?;
        let dt = self.schedule.sigmas[index + 1] - sigma_hat;
        let prev_sample = (&sample + scale(&derivative, dt)?)?;
        self.schedule.step_index = Some(index + 1);
        Ok(prev_sample.to_dtype(output_dtype)?)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor> {
        let sigma = self.schedule.sigmas[self.schedule.add_noise_index(timestep)?];
        Ok((original + scale(noise, sigma)?)?)
    }

    fn set_begin_index(&mut self, begin_index: usize) {
        self.schedule.begin_index = Some(begin_index);
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::schedulers::BetaSchedule;

    fn sdxl() -> SchedulerConfig {
        SchedulerConfig {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            timestep_spacing: Some(TimestepSpacing::Leading),
            steps_offset: 1,
            ..SchedulerConfig::default()
        }
    }

    #[test]
    fn sdxl_schedule() {
        let scheduler = EulerDiscreteScheduler::new(&sdxl(), 30).unwrap();
        let timesteps = scheduler.timesteps();
        assert_eq!(
            (timesteps.len(), timesteps[0], timesteps[29]),
            (30, 958.0, 1.0)
        );
        let sigmas = scheduler.sigmas();
        assert_eq!(sigmas.len(), 31);
        assert_eq!(sigmas[30], 0.0);
        // The training sigmas at t = 958 and t = 1 (values from diffusers).
        assert!((sigmas[0] - 11.476851).abs() < 1e-5, "{}", sigmas[0]);
        assert!((sigmas[29] - 0.041_314_48).abs() < 1e-7, "{}", sigmas[29]);
        assert!((scheduler.init_noise_sigma() - 11.5203).abs() < 1e-4);
    }

    #[test]
    fn karras_timesteps_are_fractional() {
        let config = SchedulerConfig {
            use_karras_sigmas: true,
            ..sdxl()
        };
        let scheduler = EulerDiscreteScheduler::new(&config, 10).unwrap();
        let plain = EulerDiscreteScheduler::new(&sdxl(), 10).unwrap();
        // Karras keeps the interpolated range's ends, in between spaces by rho = 7.
        assert!((scheduler.sigmas()[0] - plain.sigmas()[0]).abs() < 1e-5);
        assert!((scheduler.sigmas()[9] - plain.sigmas()[9]).abs() < 1e-5);
        // diffusers: 901.0, 815.0175, 710.5005, 581.6552, 426.5304, ...
        assert!((scheduler.timesteps()[0] - 901.0).abs() < 1e-2);
        assert!(
            (scheduler.timesteps()[4] - 426.5304).abs() < 1e-3,
            "{}",
            scheduler.timesteps()[4]
        );
    }

    #[test]
    fn one_step_by_hand() {
        let mut scheduler = EulerDiscreteScheduler::new(&sdxl(), 10).unwrap();
        let device = Device::Cpu;
        let sample = Tensor::new(&[1.0f32, -2.0], &device).unwrap();
        let model_output = Tensor::new(&[0.5f32, 0.25], &device).unwrap();
        let timestep = scheduler.timesteps()[0];
        let (sigma, next) = (scheduler.sigmas()[0], scheduler.sigmas()[1]);
        let prev = scheduler
            .step(&model_output, timestep, &sample, &mut NoiseSource::new(0))
            .unwrap();
        let prev = prev.to_vec1::<f32>().unwrap();
        // epsilon: x0 = x - sigma * eps, derivative = eps, x_prev = x + eps * (next - sigma)
        assert!((prev[0] - (1.0 + 0.5 * (next - sigma))).abs() < 1e-5);
        assert!((prev[1] - (-2.0 + 0.25 * (next - sigma))).abs() < 1e-5);
        assert_eq!(scheduler.step_index(), Some(1));
        let scaled = scheduler
            .scale_model_input(&sample, scheduler.timesteps()[1])
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!((scaled[0] - 1.0 / (next * next + 1.0).sqrt()).abs() < 1e-6);
    }
}
