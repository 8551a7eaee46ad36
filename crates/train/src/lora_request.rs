//! The settings of one LoRA training run (`huatu train lora`'s flags) and the rules they
//! must follow.

use std::path::PathBuf;

use huatu_diffusion::schedulers::PredictionType;
use huatu_imaging::FitMode;

use crate::dataset::{CaptionOptions, ImageOptions};
use crate::lora_params::LoraTargets;
use crate::lora_save::SaveFormat;
use crate::lr_schedule::LrScheduleKind;
use crate::optimizer::AdamWConfig;
use crate::{Error, Result};

/// Everything a run needs besides the model.
#[derive(Debug, Clone)]
pub struct LoraTrainingRequest {
    pub data: PathBuf,
    pub rank: usize,
    pub alpha: f64,
    pub targets: LoraTargets,
    pub init_lora: Option<PathBuf>,
    /// Replays noise and timesteps; images in file-name order, no augmentation, posterior mean.
    pub noise_file: Option<PathBuf>,
    pub image: ImageOptions,
    pub captions: CaptionOptions,
    pub repeats: usize,
    pub batch_size: usize,
    pub gradient_accumulation: usize,
    /// Optimizer steps.
    pub steps: usize,
    pub learning_rate: f64,
    /// Also train LoRA adapters on both text encoders' attention projections.
    pub train_text_encoder: bool,
    /// The text encoders' learning rate; `None`: `learning_rate`.
    pub text_encoder_lr: Option<f64>,
    pub adamw: AdamWConfig,
    /// `None`: no clipping.
    pub max_grad_norm: Option<f64>,
    /// Recompute block activations in the backward pass (memory for 1024² steps).
    pub gradient_checkpointing: bool,
    pub lr_schedule: LrScheduleKind,
    pub warmup_steps: usize,
    pub prediction_type: Option<PredictionType>,
    pub snr_gamma: Option<f64>,
    pub noise_offset: f64,
    pub seed: u64,
    pub format: SaveFormat,
    /// Continue the run saved in this state file.
    pub resume: Option<PathBuf>,
    /// Where the run's state is written: every `save_every` steps, at the end and on a stop.
    pub state_path: Option<PathBuf>,
    pub save_every: Option<usize>,
    /// Keep the images' VAE latents on disk beside the data (fixed images only).
    pub cache_latents: bool,
    /// Names the model in the latent cache (its path), so another model's latents are not used.
    pub model_id: String,
}

impl LoraTrainingRequest {
    /// The rules every setting must follow, checked before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::Setting(message));
        if self.rank == 0 {
            return bad("the LoRA rank must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!(
                "the LoRA alpha must be a positive number, got {}",
                self.alpha
            ));
        }
        if self.batch_size == 0
            || self.steps == 0
            || self.repeats == 0
            || self.gradient_accumulation == 0
        {
            return bad(
                "the batch size, steps, repeats and gradient accumulation must each be at least 1"
                    .into(),
            );
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(format!(
                "the learning rate must be a positive number, got {}",
                self.learning_rate
            ));
        }
        if self.image.resolution == 0 || !self.image.resolution.is_multiple_of(8) {
            return bad(format!(
                "the resolution must be a positive multiple of 8, got {}",
                self.image.resolution
            ));
        }
        if !(0.0..=1.0).contains(&self.captions.dropout) {
            return bad(format!(
                "the caption dropout rate must be in [0, 1], got {}",
                self.captions.dropout
            ));
        }
        if let Some(gamma) = self
            .snr_gamma
            .filter(|gamma| !(gamma.is_finite() && *gamma > 0.0))
        {
            return bad(format!(
                "the Min-SNR gamma must be a positive number, got {gamma}"
            ));
        }
        if self.cache_latents && !images_are_fixed(self) {
            return bad(
                "cached latents need the same pixels every epoch: not with random crops or flips"
                    .into(),
            );
        }
        if let Some(lr) = self
            .text_encoder_lr
            .filter(|lr| !(lr.is_finite() && *lr > 0.0))
        {
            return bad(format!(
                "the text encoders' learning rate must be a positive number, got {lr}"
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

    pub(crate) fn replaying(&self) -> bool {
        self.noise_file.is_some()
    }
}

/// Whether every epoch sees the same pixels of an image (its latents can be cached).
pub(crate) fn images_are_fixed(request: &LoraTrainingRequest) -> bool {
    request.replaying() || (request.image.fit != FitMode::RandomCrop && !request.image.flip)
}
