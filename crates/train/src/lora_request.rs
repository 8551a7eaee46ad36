//! The settings of one LoRA training run (`huatu train lora`'s flags) and the rules they
//! must follow.

use std::path::PathBuf;

use huatu_imaging::FitMode;

use crate::dataset::{CaptionOptions, ImageOptions};
use crate::lora_params::LoraTargets;
use crate::lora_save::SaveFormat;
use crate::training_settings::{validate_lora_shape, TrainingSettings};
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
    /// Also train LoRA adapters on both text encoders' attention projections.
    pub train_text_encoder: bool,
    /// The text encoders' learning rate; `None`: `training.learning_rate`.
    pub text_encoder_lr: Option<f64>,
    pub snr_gamma: Option<f64>,
    pub noise_offset: f64,
    pub format: SaveFormat,
    /// The batch, the optimizer, the seed and the run's state (cached latents: fixed images only).
    pub training: TrainingSettings,
}

impl LoraTrainingRequest {
    /// The rules every setting must follow, checked before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::Setting(message));
        validate_lora_shape(self.rank, self.alpha)?;
        self.training.validate()?;
        if self.repeats == 0 {
            return bad("the repeats must be at least 1".into());
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
        if self.training.cache_latents && !images_are_fixed(self) {
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
