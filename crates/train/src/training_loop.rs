//! The bookkeeping both training loops (LoRA in `trainer`, InstructPix2Pix in
//! `instruct_pix2pix`) share, written once: the noise source and its length check, resuming
//! a saved state, the batch order across epochs, gradient accumulation with clipping, the
//! gradients of a plain (not checkpointed) forward pass, and when the state is saved. What
//! a step feeds the UNet stays in each trainer.

use std::path::Path;

use candle_core::{Tensor, Var};
use huatu_diffusion::models::unet_2d_condition::{AddedConditions, UNet2DConditionModel};
use huatu_imaging::Size;
use rand::rngs::StdRng;

use crate::checkpoint::Progress;
use crate::dataset;
use crate::noising::NoiseSource;
use crate::observer::TrainingObserver;
use crate::optimizer::clip_grad_norm;
use crate::{Error, Result};

/// The run's noise: replayed from `noise_file` (refused when it holds fewer than
/// `forward_passes`; `needs` says what needs them) or drawn from `seed`.
pub(crate) fn noise_source(
    noise_file: Option<&Path>,
    seed: u64,
    noise_offset: f64,
    forward_passes: usize,
    needs: &str,
) -> Result<NoiseSource> {
    let Some(path) = noise_file else {
        return Ok(NoiseSource::seeded(seed, noise_offset));
    };
    let noise = NoiseSource::replay(path)?;
    if let Some(held) = noise.replay_steps().filter(|&held| held < forward_passes) {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            message: format!("holds noise for {held} forward passes; {needs}"),
        });
    }
    Ok(noise)
}

/// Reads the state at `path` with `load` and says so; refused when it has done `total_steps`.
pub(crate) fn resume(
    path: &Path,
    total_steps: usize,
    observer: &mut dyn TrainingObserver,
    load: impl FnOnce() -> Result<Progress>,
) -> Result<Progress> {
    let start = load()?;
    if start.step >= total_steps {
        return Err(Error::Resume {
            path: path.to_path_buf(),
            message: format!(
                "it is at step {}, and the run has {total_steps} steps in all: nothing is left to train",
                start.step
            ),
        });
    }
    observer.message(&format!(
        "resuming at step {} (epoch {}) from {}",
        start.step,
        start.epoch,
        path.display()
    ));
    Ok(start)
}

/// The batches in the order the run takes them, epoch after epoch.
pub(crate) struct BatchOrder<'a> {
    sizes: &'a [Size],
    repeats: usize,
    batch_size: usize,
    /// This epoch's batches still to take, the next last.
    pending: Vec<Vec<usize>>,
    /// Epochs begun.
    pub epoch: usize,
}

impl<'a> BatchOrder<'a> {
    /// Continues at `start`; a replayed order is fixed, so the batches of the current epoch
    /// already trained on are skipped.
    pub fn new(
        sizes: &'a [Size],
        repeats: usize,
        batch_size: usize,
        start: Progress,
        replaying: bool,
    ) -> Self {
        let mut pending = Vec::new();
        if replaying && start.forward_index > 0 {
            let per_epoch = dataset::epoch_batches(sizes, repeats, batch_size, None);
            let done_in_epoch = start.forward_index % per_epoch.len();
            if done_in_epoch > 0 {
                pending = per_epoch[done_in_epoch..].iter().rev().cloned().collect();
            }
        }
        Self {
            sizes,
            repeats,
            batch_size,
            pending,
            epoch: start.epoch,
        }
    }

    /// The next batch's indices; a new epoch (shuffled with `rng`, if given) when this one is done.
    pub fn next(&mut self, rng: Option<&mut StdRng>) -> Result<Vec<usize>> {
        if self.pending.is_empty() {
            self.pending = dataset::epoch_batches(self.sizes, self.repeats, self.batch_size, rng);
            self.pending.reverse();
            self.epoch += 1;
        }
        self.pending
            .pop()
            .ok_or_else(|| Error::Setting("the dataset produced no batch".into()))
    }
}

/// One optimizer step's gradients summed over its accumulated forward passes.
pub(crate) struct AccumulatedGradients {
    accumulation: usize,
    summed: Option<Vec<Option<Tensor>>>,
    loss_total: f64,
}

impl AccumulatedGradients {
    pub fn new(accumulation: usize) -> Self {
        Self {
            accumulation,
            summed: None,
            loss_total: 0.0,
        }
    }

    /// Adds one forward pass: its loss divided by the accumulation and its gradients.
    pub fn add(&mut self, scaled_loss: &Tensor, grads: Vec<Option<Tensor>>) -> Result<()> {
        self.loss_total += f64::from(scaled_loss.to_scalar::<f32>()?) * self.accumulation as f64;
        self.summed = Some(match self.summed.take() {
            None => grads,
            Some(previous) => previous
                .into_iter()
                .zip(grads)
                .map(|pair| match pair {
                    (Some(a), Some(b)) => Ok(Some((a + b)?)),
                    (a, b) => Ok(a.or(b)),
                })
                .collect::<Result<Vec<_>>>()?,
        });
        Ok(())
    }

    /// The gradients, clipped to `max_grad_norm` when given, their norm before clipping and
    /// the mean loss over the forward passes.
    pub fn finish(self, max_grad_norm: Option<f64>) -> Result<(Vec<Option<Tensor>>, f64, f64)> {
        let mut grads = self
            .summed
            .ok_or_else(|| Error::Setting("no gradient was computed".into()))?;
        let grad_norm = match max_grad_norm {
            Some(max_norm) => clip_grad_norm(&mut grads, max_norm)?,
            None => clip_grad_norm(&mut grads.clone(), f64::INFINITY)?,
        };
        Ok((grads, grad_norm, self.loss_total / self.accumulation as f64))
    }
}

/// The scaled loss and each of `vars`' gradients (`None` where none reaches it) from one
/// forward pass of the whole UNet with its graph kept (no gradient checkpointing).
pub(crate) fn plain_gradients(
    unet: &mut UNet2DConditionModel,
    vars: &[Var],
    sample: &Tensor,
    timesteps: &Tensor,
    prompt_embeds: &Tensor,
    added: &AddedConditions,
    loss_of: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Vec<Option<Tensor>>)> {
    let prediction = unet.forward_timesteps(sample, timesteps, prompt_embeds, added, None)?;
    let scaled = loss_of(&prediction)?;
    let grads = scaled.backward()?;
    let grads = vars
        .iter()
        .map(|var| grads.get(var.as_tensor()).cloned())
        .collect();
    Ok((scaled, grads))
}

/// When a run writes its state: every `save_every` optimizer steps (not the last), and at
/// the end when `save_every` is set or the run was stopped.
pub(crate) struct StateSaving {
    pub save_every: Option<usize>,
    pub total_steps: usize,
}

impl StateSaving {
    pub fn due_after(&self, steps_done: usize) -> bool {
        self.save_every.is_some_and(|every| {
            every > 0 && steps_done.is_multiple_of(every) && steps_done < self.total_steps
        })
    }

    pub fn due_at_end(&self, stopped_early: bool) -> bool {
        self.save_every.is_some() || stopped_early
    }
}
