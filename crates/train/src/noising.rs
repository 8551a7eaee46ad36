//! The forward diffusion process a trainer samples from, as diffusers' `DDPMScheduler`
//! (`add_noise`, `get_velocity`) and `training_utils.compute_snr` compute it, in f32, with
//! the model's own noise schedule; plus the noise and timesteps of one step, drawn from a
//! seeded generator or replayed from a file (`--noise`, for comparisons with the reference).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use huatu_diffusion::schedulers::{alphas_cumprod, PredictionType, SchedulerConfig};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::{Error, Result};

/// `alphas_cumprod` of the model's training schedule and its prediction type.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    alphas_cumprod: Vec<f32>,
    pub prediction_type: PredictionType,
}

impl NoiseSchedule {
    pub fn new(config: &SchedulerConfig, prediction_type: Option<PredictionType>) -> Result<Self> {
        Ok(Self {
            alphas_cumprod: alphas_cumprod(config)?,
            prediction_type: prediction_type.unwrap_or(config.prediction_type),
        })
    }

    pub fn num_train_timesteps(&self) -> usize {
        self.alphas_cumprod.len()
    }

    fn per_sample(
        &self,
        timesteps: &[i64],
        f: impl Fn(f32) -> f32,
        device: &Device,
    ) -> Result<Tensor> {
        let values = timesteps
            .iter()
            .map(|&t| {
                usize::try_from(t)
                    .ok()
                    .and_then(|t| self.alphas_cumprod.get(t))
                    .map(|&alpha| f(alpha))
                    .ok_or_else(|| {
                        Error::Setting(format!(
                            "timestep {t} is outside 0..{}",
                            self.alphas_cumprod.len()
                        ))
                    })
            })
            .collect::<Result<Vec<f32>>>()?;
        Ok(Tensor::from_vec(
            values,
            (timesteps.len(), 1, 1, 1),
            device,
        )?)
    }

    /// √ᾱ_t · x₀ + √(1 − ᾱ_t) · ε (`DDPMScheduler.add_noise`).
    pub fn add_noise(&self, latents: &Tensor, noise: &Tensor, timesteps: &[i64]) -> Result<Tensor> {
        let device = latents.device();
        let sqrt_alpha = self.per_sample(timesteps, f32::sqrt, device)?;
        let sqrt_one_minus = self.per_sample(timesteps, |alpha| (1.0 - alpha).sqrt(), device)?;
        Ok((latents.broadcast_mul(&sqrt_alpha)? + noise.broadcast_mul(&sqrt_one_minus)?)?)
    }

    /// What the model learns to predict: ε, or v = √ᾱ·ε − √(1 − ᾱ)·x₀ (`get_velocity`).
    pub fn target(&self, latents: &Tensor, noise: &Tensor, timesteps: &[i64]) -> Result<Tensor> {
        match self.prediction_type {
            PredictionType::Epsilon => Ok(noise.clone()),
            PredictionType::VPrediction => {
                let device = latents.device();
                let sqrt_alpha = self.per_sample(timesteps, f32::sqrt, device)?;
                let sqrt_one_minus =
                    self.per_sample(timesteps, |alpha| (1.0 - alpha).sqrt(), device)?;
                Ok(
                    (noise.broadcast_mul(&sqrt_alpha)?
                        - latents.broadcast_mul(&sqrt_one_minus)?)?,
                )
            }
            PredictionType::Sample => Err(Error::Setting(
                "prediction type `sample` is not supported for training (epsilon or v_prediction)"
                    .into(),
            )),
        }
    }

    /// Per-sample min-SNR-γ loss weights (Hang et al.; diffusers' `compute_snr` and the
    /// script's weighting): min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v. [b]
    pub fn min_snr_weights(&self, timesteps: &[i64], gamma: f64) -> Result<Vec<f32>> {
        timesteps
            .iter()
            .map(|&t| {
                let alpha = *usize::try_from(t)
                    .ok()
                    .and_then(|t| self.alphas_cumprod.get(t))
                    .ok_or_else(|| {
                        Error::Setting(format!("timestep {t} is outside the schedule"))
                    })?;
                // compute_snr: (√ᾱ / √(1 − ᾱ))², each factor in f32.
                let ratio = alpha.sqrt() / (1.0 - alpha).sqrt();
                let snr = ratio * ratio;
                let clipped = snr.min(gamma as f32);
                Ok(match self.prediction_type {
                    PredictionType::VPrediction => clipped / (snr + 1.0),
                    _ => clipped / snr,
                })
            })
            .collect()
    }
}

/// Where each step's noise and timesteps come from.
pub enum NoiseSource {
    /// Seeded: ε ~ N(0, 1) (plus `offset` · N(0, 1) per sample and channel), t ~ U{0..T−1}.
    Random {
        rng: Box<rand::rngs::StdRng>,
        offset: f64,
    },
    /// A file's `noise` [steps, batch, 4, h, w] f32 and `timesteps` [steps, batch] i64.
    Replay {
        path: PathBuf,
        noise: Tensor,
        timesteps: Tensor,
    },
}

impl NoiseSource {
    pub fn seeded(seed: u64, offset: f64) -> Self {
        Self::Random {
            rng: Box::new(rand::rngs::StdRng::seed_from_u64(seed)),
            offset,
        }
    }

    pub fn replay(path: &Path) -> Result<Self> {
        let bad = |message: String| Error::BadFile {
            path: path.to_path_buf(),
            message,
        };
        let mut tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|error| bad(format!("not a readable safetensors file: {error}")))?;
        let noise = tensors
            .remove("noise")
            .ok_or_else(|| bad("no `noise` tensor".into()))?;
        let timesteps = tensors
            .remove("timesteps")
            .ok_or_else(|| bad("no `timesteps` tensor".into()))?;
        if noise.rank() != 5 || noise.dtype() != DType::F32 {
            return Err(bad(format!(
                "`noise` must be f32 [steps, batch, 4, h/8, w/8], got {:?} {:?}",
                noise.dtype(),
                noise.dims()
            )));
        }
        if timesteps.rank() != 2
            || timesteps.dtype() != DType::I64
            || timesteps.dims()[..2] != noise.dims()[..2]
        {
            return Err(bad(format!(
                "`timesteps` must be i64 [steps, batch] = {:?}, got {:?} {:?}",
                &noise.dims()[..2],
                timesteps.dtype(),
                timesteps.dims()
            )));
        }
        Ok(Self::Replay {
            path: path.to_path_buf(),
            noise,
            timesteps,
        })
    }

    /// How many steps a replay file holds.
    pub fn replay_steps(&self) -> Option<usize> {
        match self {
            Self::Replay { noise, .. } => Some(noise.dims()[0]),
            Self::Random { .. } => None,
        }
    }

    /// ε shaped like `latents` and one timestep per sample for forward pass `index`.
    pub fn draw(
        &mut self,
        index: usize,
        latents: &Tensor,
        num_train_timesteps: usize,
    ) -> Result<(Tensor, Vec<i64>)> {
        let dims = latents.dims4()?;
        match self {
            Self::Random { rng, offset } => {
                let count = latents.elem_count();
                let mut values: Vec<f32> = (0..count).map(|_| StandardNormal.sample(rng)).collect();
                if *offset != 0.0 {
                    let plane = dims.2 * dims.3;
                    for chunk in values.chunks_mut(plane) {
                        let shift: f32 = StandardNormal.sample(rng);
                        chunk
                            .iter_mut()
                            .for_each(|value| *value += *offset as f32 * shift);
                    }
                }
                let timesteps = (0..dims.0)
                    .map(|_| rng.gen_range(0..num_train_timesteps as i64))
                    .collect();
                Ok((Tensor::from_vec(values, dims, latents.device())?, timesteps))
            }
            Self::Replay {
                path,
                noise,
                timesteps,
            } => {
                let bad = |message: String| Error::BadFile {
                    path: path.clone(),
                    message,
                };
                if index >= noise.dims()[0] {
                    return Err(bad(format!(
                        "holds {} steps, step {} was asked for",
                        noise.dims()[0],
                        index + 1
                    )));
                }
                let step_noise = noise.get(index)?;
                if step_noise.dims() != latents.dims() {
                    return Err(bad(format!(
                        "noise of a step is {:?}, the batch's latents are {:?}",
                        step_noise.dims(),
                        latents.dims()
                    )));
                }
                let step_timesteps = timesteps.get(index)?.to_vec1::<i64>()?;
                Ok((step_noise.to_device(latents.device())?, step_timesteps))
            }
        }
    }
}
