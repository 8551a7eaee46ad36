//! Denoising diffusion implicit models (https://huggingface.co/papers/2010.02502) as diffusers'
//! `DDIMScheduler` (schedulers/scheduling_ddim.py). Deterministic at the default eta = 0;
//! integer timesteps; computes in the sample's dtype as diffusers does.

use candle_core::Tensor;

use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::noise::NoiseSource;
use super::noise_schedule::{
    alphas_cumprod, check_step_count, numpy_arange, numpy_linspace, numpy_round,
};
use super::sample_ops::{divide, scale, threshold_sample};
use super::Scheduler;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct DDIMScheduler {
    config: SchedulerConfig,
    spacing: TimestepSpacing,
    alphas_cumprod: Vec<f32>,
    /// `alphas_cumprod` before the first training step: 1 with `set_alpha_to_one`.
    final_alpha_cumprod: f32,
    num_inference_steps: usize,
    timesteps: Vec<f64>,
    eta: f32,
}

impl DDIMScheduler {
    /// `DDIMScheduler.from_config(config)` then `set_timesteps(num_inference_steps)`.
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self> {
        let alphas_cumprod = alphas_cumprod(config)?;
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let mut scheduler = Self {
            config: config.clone(),
            spacing: config.timestep_spacing_or(TimestepSpacing::Leading),
            alphas_cumprod,
            final_alpha_cumprod,
            num_inference_steps,
            timesteps: Vec::new(),
            eta: 0.0,
        };
        scheduler.set_timesteps(num_inference_steps)?;
        Ok(scheduler)
    }

    /// Recomputes the (integer) timesteps for `num_inference_steps`.
    pub fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        check_step_count(num_inference_steps, &self.config)?;
        let train = self.config.num_train_timesteps;
        self.timesteps = match self.spacing {
            TimestepSpacing::Linspace => {
                numpy_linspace(0.0, (train - 1) as f64, num_inference_steps)
                    .into_iter()
                    .rev()
                    .map(numpy_round)
                    .collect()
            }
            TimestepSpacing::Leading => {
                let ratio = train / num_inference_steps;
                (0..num_inference_steps)
                    .rev()
                    .map(|index| (index * ratio + self.config.steps_offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = train as f64 / num_inference_steps as f64;
                numpy_arange(train as f64, 0.0, -ratio)
                    .into_iter()
                    .map(|t| numpy_round(t) - 1.0)
                    .collect()
            }
        };
        self.num_inference_steps = num_inference_steps;
        Ok(())
    }

    /// The weight of the added noise in `step` (diffusers' `eta` argument; 0 = DDIM, 1 = DDPM).
    pub fn set_eta(&mut self, eta: f64) {
        self.eta = eta as f32;
    }

    fn alpha_cumprod_at(&self, timestep: i64) -> Result<f32> {
        usize::try_from(timestep)
            .ok()
            .and_then(|index| self.alphas_cumprod.get(index).copied())
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "timestep {timestep} is outside the {} training timesteps",
                    self.alphas_cumprod.len()
                ))
            })
    }
}

/// A DDIM timestep as the integer index diffusers uses.
fn integer_timestep(timestep: f64) -> Result<i64> {
    if timestep.fract() != 0.0 || !timestep.is_finite() {
        return Err(Error::InvalidRequest(format!(
            "DDIM takes integer timesteps, got {timestep}"
        )));
    }
    Ok(timestep as i64)
}

impl Scheduler for DDIMScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, sample: &Tensor, _timestep: f64) -> Result<Tensor> {
        Ok(sample.clone())
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        timestep: f64,
        sample: &Tensor,
        noise: &mut NoiseSource,
    ) -> Result<Tensor> {
        let timestep = integer_timestep(timestep)?;
        // The previous timestep is one spacing back, whatever the spacing (as diffusers).
        let prev_timestep =
            timestep - (self.config.num_train_timesteps / self.num_inference_steps) as i64;
        let alpha_prod_t = self.alpha_cumprod_at(timestep)?;
        let alpha_prod_t_prev = if prev_timestep >= 0 {
            self.alpha_cumprod_at(prev_timestep)?
        } else {
            self.final_alpha_cumprod
        };
        let beta_prod_t = 1.0 - alpha_prod_t;
        let model_output = model_output.to_dtype(sample.dtype())?;

        let (pred_original_sample, pred_epsilon) = match self.config.prediction_type {
            PredictionType::Epsilon => {
                let original = divide(
                    &(sample - scale(&model_output, beta_prod_t.sqrt())?)?,
                    alpha_prod_t.sqrt(),
                )?;
                (original, model_output.clone())
            }
            PredictionType::Sample => {
                let epsilon = divide(
                    &(sample - scale(&model_output, alpha_prod_t.sqrt())?)?,
                    beta_prod_t.sqrt(),
                )?;
                (model_output.clone(), epsilon)
            }
            PredictionType::VPrediction => (
                (scale(sample, alpha_prod_t.sqrt())? - scale(&model_output, beta_prod_t.sqrt())?)?,
                (scale(&model_output, alpha_prod_t.sqrt())? + scale(sample, beta_prod_t.sqrt())?)?,
            ),
        };
        let pred_original_sample = if self.config.thresholding {
            threshold_sample(
                &pred_original_sample,
                self.config.dynamic_thresholding_ratio,
                self.config.sample_max_value,
            )?
        } else if self.config.clip_sample {
            let range = self.config.clip_sample_range as f32;
            pred_original_sample.clamp(-range, range)?
        } else {
            pred_original_sample
        };

        // Formula (12) of the paper; std_dev_t is sigma_t of formula (16).
        let beta_prod_t_prev = 1.0 - alpha_prod_t_prev;
        let variance = (beta_prod_t_prev / beta_prod_t) * (1.0 - alpha_prod_t / alpha_prod_t_prev);
        let std_dev_t = self.eta * variance.sqrt();
        let direction = scale(
            &pred_epsilon,
            (1.0 - alpha_prod_t_prev - std_dev_t * std_dev_t).sqrt(),
        )?;
        let prev_sample = (scale(&pred_original_sample, alpha_prod_t_prev.sqrt())? + direction)?;
        if self.eta > 0.0 {
            let variance_noise = noise.randn(
                model_output.dims(),
                model_output.device(),
                model_output.dtype(),
            )?;
            return Ok((prev_sample + scale(&variance_noise, std_dev_t)?)?);
        }
        Ok(prev_sample)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor> {
        let alpha_prod = self.alpha_cumprod_at(integer_timestep(timestep)?)?;
        Ok((scale(original, alpha_prod.sqrt())? + scale(noise, (1.0 - alpha_prod).sqrt())?)?)
    }

    /// DDIM keeps no step counter: each step reads its timestep.
    fn set_begin_index(&mut self, _begin_index: usize) {}
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn spacings() {
        let config = SchedulerConfig {
            steps_offset: 1,
            ..SchedulerConfig::default()
        };
        let leading = DDIMScheduler::new(&config, 10).unwrap();
        assert_eq!(
            leading.timesteps(),
            &[901.0, 801.0, 701.0, 601.0, 501.0, 401.0, 301.0, 201.0, 101.0, 1.0]
        );
        let trailing = DDIMScheduler::new(
            &SchedulerConfig {
                timestep_spacing: Some(TimestepSpacing::Trailing),
                ..config.clone()
            },
            3,
        )
        .unwrap();
        assert_eq!(trailing.timesteps(), &[999.0, 666.0, 332.0]);
        let linspace = DDIMScheduler::new(
            &SchedulerConfig {
                timestep_spacing: Some(TimestepSpacing::Linspace),
                ..config
            },
            4,
        )
        .unwrap();
        assert_eq!(linspace.timesteps(), &[999.0, 666.0, 333.0, 0.0]);
    }

    #[test]
    fn last_step_with_alpha_one_returns_the_clipped_prediction() {
        // set_alpha_to_one: the step from t = 1 lands on alpha = 1, so prev = x0 (clipped).
        let config = SchedulerConfig {
            steps_offset: 1,
            ..SchedulerConfig::default()
        };
        let mut scheduler = DDIMScheduler::new(&config, 10).unwrap();
        let device = Device::Cpu;
        let sample = Tensor::new(&[0.3f32, -5.0], &device).unwrap();
        let model_output = Tensor::new(&[0.1f32, 0.2], &device).unwrap();
        let prev = scheduler
            .step(&model_output, 1.0, &sample, &mut NoiseSource::new(0))
            .unwrap();
        let alpha = scheduler.alphas_cumprod[1];
        let x0 = (0.3 - (1.0 - alpha).sqrt() * 0.1) / alpha.sqrt();
        let prev = prev.to_vec1::<f32>().unwrap();
        assert!((prev[0] - x0).abs() < 1e-6);
        assert_eq!(prev[1], -1.0);
        assert!(scheduler
            .step(&model_output, 1.5, &sample, &mut NoiseSource::new(0))
            .is_err());
    }
}
