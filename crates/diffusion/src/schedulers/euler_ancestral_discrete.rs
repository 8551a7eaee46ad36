//! Ancestral Euler sampler (k-diffusion `sample_euler_ancestral`) as diffusers'
//! `EulerAncestralDiscreteScheduler` (schedulers/scheduling_euler_ancestral_discrete.py):
//! an Euler step down to `sigma_down`, then fresh noise of scale `sigma_up`.

use candle_core::{DType, Tensor};

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::noise::NoiseSource;
use super::noise_schedule::{
    alphas_cumprod_for_sigmas, check_step_count, interpolate, training_sigmas,
};
use super::sample_ops::{divide, scale};
use super::sigma_schedule::{euler_timesteps, MissingTimestep, SigmaSchedule};
use super::Scheduler;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct EulerAncestralDiscreteScheduler {
    config: SchedulerConfig,
    spacing: TimestepSpacing,
    alphas_cumprod: Vec<f32>,
    schedule: SigmaSchedule,
}

impl EulerAncestralDiscreteScheduler {
    /// `EulerAncestralDiscreteScheduler.from_config(config)` then
    /// `set_timesteps(num_inference_steps)`.
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self> {
        if config.prediction_type == PredictionType::Sample {
            return Err(Error::Config(
                "EulerAncestralDiscreteScheduler does not implement prediction_type \"sample\""
                    .to_string(),
            ));
        }
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
        let timesteps = euler_timesteps(
            self.spacing,
            config.num_train_timesteps,
            num_inference_steps,
            config.steps_offset,
        );
        let training = training_sigmas(&self.alphas_cumprod);
        let sigmas = timesteps
            .iter()
            .map(|&timestep| interpolate(timestep, &training) as f32)
            .chain(std::iter::once(0.0))
            .collect();
        self.schedule = SigmaSchedule::new(timesteps, sigmas, MissingTimestep::Fail);
        Ok(())
    }

    /// The noise levels, one per timestep plus the final zero (`scheduler.sigmas`).
    pub fn sigmas(&self) -> &[f32] {
        &self.schedule.sigmas
    }

    /// The step counter (`scheduler.step_index`): `None` before the first step.
    pub fn step_index(&self) -> Option<usize> {
        self.schedule.step_index
    }

    /// [`Scheduler::step`] with the ancestral noise given (diffusers draws it from its
    /// generator with `model_output`'s shape); for reproducing a reference run.
    pub fn step_with_noise(
        &mut self,
        model_output: &Tensor,
        timestep: f64,
        sample: &Tensor,
        noise: &Tensor,
    ) -> Result<Tensor> {
        let index = self.schedule.step_index_for(timestep)?;
        let output_dtype = model_output.dtype();
        let sample = sample.to_dtype(DType::F32)?;
        let model_output = model_output.to_dtype(DType::F32)?;
        let sigma = self.schedule.sigmas[index];
        let pred_original_sample =
            match self.config.prediction_type {
                PredictionType::Epsilon => (&sample - scale(&model_output, sigma)?)?,
                PredictionType::VPrediction => {
                    let variance = sigma * sigma + 1.0;
                    (scale(&model_output, -sigma / variance.sqrt())? + divide(&sample, variance)?)?
                }
                PredictionType::Sample => return Err(Error::Config(
                    "EulerAncestralDiscreteScheduler does not implement prediction_type \"sample\""
                        .to_string(),
                )),
            };
        let (sigma_from, sigma_to) = (sigma, self.schedule.sigmas[index + 1]);
        let (from_squared, to_squared) = (sigma_from * sigma_from, sigma_to * sigma_to);
        let sigma_up = (to_squared * (from_squared - to_squared) / from_squared).sqrt();
        let sigma_down = (to_squared - sigma_up * sigma_up).sqrt();
        let derivative = divide(&(&sample - &pred_original_sample)?, sigma)?;
        let prev_sample = (&sample + scale(&derivative, sigma_down - sigma)?)?;
        let noise = noise.to_dtype(DType::F32)?;
        let prev_sample = (prev_sample + scale(&noise, sigma_up)?)?;
        self.schedule.step_index = Some(index + 1);
        Ok(prev_sample.to_dtype(output_dtype)?)
    }
}

impl Scheduler for EulerAncestralDiscreteScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.schedule.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        self.schedule.init_noise_sigma(self.spacing)
    }

    fn scale_model_input(&self, sample: &Tensor, timestep: f64) -> Result<Tensor> {
        self.schedule.scale_model_input(sample, timestep)
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        timestep: f64,
        sample: &Tensor,
        noise: &mut NoiseSource,
    ) -> Result<Tensor> {
        let noise = noise.randn(
            model_output.dims(),
            model_output.device(),
            model_output.dtype(),
        )?;
        self.step_with_noise(model_output, timestep, sample, &noise)
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

    #[test]
    fn ancestral_step_by_hand() {
        let mut scheduler =
            EulerAncestralDiscreteScheduler::new(&SchedulerConfig::default(), 10).unwrap();
        assert_eq!(scheduler.timesteps()[0], 999.0);
        assert_eq!(scheduler.init_noise_sigma(), scheduler.sigmas()[0] as f64);
        let device = Device::Cpu;
        let sample = Tensor::new(&[1.0f32, -2.0], &device).unwrap();
        let model_output = Tensor::new(&[0.5f32, 0.25], &device).unwrap();
        let noise = Tensor::new(&[1.0f32, -1.0], &device).unwrap();
        let (sigma, next) = (scheduler.sigmas()[0] as f64, scheduler.sigmas()[1] as f64);
        let timestep = scheduler.timesteps()[0];
        let prev = scheduler
            .step_with_noise(&model_output, timestep, &sample, &noise)
            .unwrap();
        let prev = prev.to_vec1::<f32>().unwrap();
        let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
        let down = (next * next - up * up).sqrt();
        let expected = [
            1.0 + 0.5 * (down - sigma) + up,
            -2.0 + 0.25 * (down - sigma) - up,
        ];
        for (got, want) in prev.iter().zip(expected) {
            assert!(
                (*got as f64 - want).abs() < 1e-4 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
        // Seeded noise makes the whole run reproducible.
        let run = |seed| {
            let mut scheduler =
                EulerAncestralDiscreteScheduler::new(&SchedulerConfig::default(), 3).unwrap();
            let mut noise = NoiseSource::new(seed);
            let mut latents = sample.clone();
            for timestep in scheduler.timesteps().to_vec() {
                latents = scheduler
                    .step(&model_output, timestep, &latents, &mut noise)
                    .unwrap();
            }
            latents.to_vec1::<f32>().unwrap()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }
}
