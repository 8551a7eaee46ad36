//! The settings every training run has, LoRA or InstructPix2Pix: the batch and its
//! accumulation, the optimizer and its learning-rate schedule, the noising target, the seed,
//! the run's saved state and the latent cache — with their one check. Each request
//! (`LoraTrainingRequest`, `InstructPix2PixTrainingRequest`) holds one beside what only
//! that kind of run has, as `GenerationSettings` sits in each generation request.

use std::path::PathBuf;

use huatu_diffusion::schedulers::PredictionType;

use crate::lr_schedule::LrScheduleKind;
use crate::optimizer::AdamWConfig;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct TrainingSettings {
    pub batch_size: usize,
    pub gradient_accumulation: usize,
    /// Optimizer steps.
    pub steps: usize,
    pub learning_rate: f64,
    pub adamw: AdamWConfig,
    /// `None`: no clipping.
    pub max_grad_norm: Option<f64>,
    /// Recompute the UNet's stages in the backward pass (see `checkpointing`).
    pub gradient_checkpointing: bool,
    pub lr_schedule: LrScheduleKind,
    pub warmup_steps: usize,
    /// `None`: the scheduler config's.
    pub prediction_type: Option<PredictionType>,
    pub seed: u64,
    /// Continue the run saved in this state file.
    pub resume: Option<PathBuf>,
    /// Where the run's state is written: every `save_every` steps, at the end and on a stop.
    pub state_path: Option<PathBuf>,
    pub save_every: Option<usize>,
    /// Keep the images' VAE latents on disk beside the data (`latent_cache`).
    pub cache_latents: bool,
    /// Names the model in the latent cache (its path), so another model's latents are not used.
    pub model_id: String,
}

impl TrainingSettings {
    /// The rules these settings must follow, checked before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::Setting(message));
        if self.batch_size == 0 || self.steps == 0 || self.gradient_accumulation == 0 {
            return bad(
                "the batch size, steps and gradient accumulation must each be at least 1".into(),
            );
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "the learning rate must be a positive number, got {}",
                self.learning_rate
            ));
        }
        if let Some(norm) = self
            .max_grad_norm
            .filter(|norm| !(norm.is_finite() && *norm > 0.0))
        {
            return bad(format!(
                "the gradient clipping norm must be a positive number, got {norm}"
            ));
        }
        Ok(())
    }

    /// UNet forward passes the whole run makes: one per micro-batch.
    pub fn forward_passes(&self) -> usize {
        self.steps * self.gradient_accumulation
    }
}

/// The rules of a LoRA adapter's shape, shared by every kind of run that trains one.
pub(crate) fn validate_lora_shape(rank: usize, alpha: f64) -> Result<()> {
    if rank == 0 {
        return Err(Error::Setting("the LoRA rank must be at least 1".into()));
    }
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(Error::Setting(format!(
            "the LoRA alpha must be a positive number, got {alpha}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TrainingSettings {
        TrainingSettings {
            batch_size: 1,
            gradient_accumulation: 1,
            steps: 1,
            learning_rate: 1e-4,
            adamw: AdamWConfig::default(),
            max_grad_norm: Some(1.0),
            gradient_checkpointing: false,
            lr_schedule: LrScheduleKind::Constant,
            warmup_steps: 0,
            prediction_type: None,
            seed: 0,
            resume: None,
            state_path: None,
            save_every: None,
            cache_latents: false,
            model_id: String::new(),
        }
    }

    fn message(settings: TrainingSettings) -> String {
        match settings.validate() {
            Err(Error::Setting(message)) => message,
            other => panic!("expected a setting error, got {other:?}"),
        }
    }

    #[test]
    fn each_rule_names_its_setting_and_value() {
        assert!(settings().validate().is_ok());
        assert!(message(TrainingSettings {
            gradient_accumulation: 0,
            ..settings()
        })
        .contains("gradient accumulation"));
        assert_eq!(
            message(TrainingSettings {
                learning_rate: f64::NAN,
                ..settings()
            }),
            "the learning rate must be a positive number, got NaN"
        );
        assert_eq!(
            message(TrainingSettings {
                max_grad_norm: Some(-1.0),
                ..settings()
            }),
            "the gradient clipping norm must be a positive number, got -1"
        );
    }

    #[test]
    fn lora_shape_needs_a_rank_and_a_positive_alpha() {
        assert!(validate_lora_shape(4, 4.0).is_ok());
        assert!(validate_lora_shape(0, 4.0).is_err());
        assert!(validate_lora_shape(4, 0.0).is_err());
    }
}
