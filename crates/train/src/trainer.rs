//! One LoRA training run, step for step as diffusers' `train_text_to_image_lora_sdxl.py`:
//! latents = VAE posterior × scaling factor, forward noising with the model's schedule,
//! ε or v target, MSE (optionally min-SNR-γ weighted), backward, gradient clipping over
//! every trainable parameter, AdamW, learning-rate schedule; gradient accumulation divides
//! the loss and steps the optimizer once per accumulated batch.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use huatu_diffusion::loading::original_keys::Component;
use huatu_diffusion::loading::SdxlComponents;
use huatu_diffusion::models::unet_2d_condition::AddedConditions;
use huatu_imaging::FitReport;
use rand::SeedableRng;

pub use crate::adapters::{build_params, checkpoint_layout};
use crate::checkpoint::{load_state, save_state, Progress, RunIdentity};
use crate::checkpointing::checkpointed_gradients;
use crate::dataset::{self, Scan};
use crate::lora_params::LoraParams;
pub use crate::lora_request::LoraTrainingRequest;
use crate::lr_schedule::LrSchedule;
use crate::noising::{NoiseSchedule, NoiseSource};
pub use crate::observer::{StepRecord, TrainingObserver};
use crate::optimizer::AdamW;
use crate::text_conditioning::{encode_batch_with_graph, CaptionCache};
use crate::training_images::{batch_latents, load_images};
use crate::training_loop::{
    noise_source, plain_gradients, resume, AccumulatedGradients, BatchOrder, StateSaving,
};
use crate::Result;

/// What a state file must match to be resumed by this run.
fn run_identity(
    components: &SdxlComponents,
    request: &LoraTrainingRequest,
    params: &LoraParams,
) -> RunIdentity {
    let config = components.unet.config();
    RunIdentity {
        model: format!(
            "unet in {} out {} channels {:?} cross {} layers {}{}",
            config.in_channels,
            config.out_channels,
            config.block_out_channels,
            config.cross_attention_dim,
            config.layers_per_block,
            if request.train_text_encoder {
                " + text encoders"
            } else {
                ""
            }
        ),
        rank: params.rank,
        alpha: params.alpha,
        targets: request.targets.to_string(),
        layers: params.layers.len(),
    }
}

/// The trained adapters and what the run did.
pub struct TrainingOutcome {
    pub params: LoraParams,
    pub steps_done: usize,
    /// The step this run started at (0, or where a resumed state stood).
    pub first_step: usize,
    pub images_used: usize,
    /// Each image's caption as trained (trigger first), once per image.
    pub captions: Vec<String>,
    pub scan: Scan,
    pub stopped_early: bool,
}

/// Runs the whole training loop and returns the trained adapters (still attached).
pub fn train_lora(
    components: &mut SdxlComponents,
    request: &LoraTrainingRequest,
    observer: &mut dyn TrainingObserver,
) -> Result<TrainingOutcome> {
    request.validate()?;
    let device = components.device.clone();
    let replaying = request.replaying();
    let forward_passes = request.training.forward_passes();
    let mut noise = noise_source(
        request.noise_file.as_deref(),
        request.training.seed,
        request.noise_offset,
        forward_passes,
        &format!(
            "the run needs {forward_passes} ({} steps × gradient accumulation {})",
            request.training.steps, request.training.gradient_accumulation
        ),
    )?;
    let schedule = NoiseSchedule::new(
        &components.scheduler_config,
        request.training.prediction_type,
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(request.training.seed ^ 0x9e37_79b9_7f4a_7c15);

    let mut scan = dataset::scan_folder(&request.data)?;
    let images = load_images(components, request, &mut scan, observer)?;
    if !scan.uncaptioned.is_empty() {
        observer.message(&format!(
            "{} images have no caption and train with {}",
            scan.uncaptioned.len(),
            match &request.captions.trigger {
                Some(trigger) => format!("the trigger word `{trigger}` alone"),
                None => "an empty caption (give a trigger or class word)".to_string(),
            }
        ));
    }

    let params = build_params(components, request)?;
    let vars = params.vars();
    observer.message(&format!(
        "LoRA rank {} alpha {} on {} layers ({}{}): {} trainable parameters",
        params.rank,
        params.alpha,
        params.layers.len(),
        request.targets,
        if request.train_text_encoder {
            " and both text encoders"
        } else {
            ""
        },
        params.parameter_count()
    ));
    let mut optimizer = AdamW::new(&vars, request.training.adamw);
    let identity = run_identity(components, request, &params);
    let mut start = Progress {
        step: 0,
        forward_index: 0,
        epoch: 0,
    };
    if let Some(path) = &request.training.resume {
        start = resume(path, request.training.steps, observer, || {
            load_state(path, &identity, &params, &mut optimizer)
        })?;
        if !replaying {
            // A resumed seeded run draws afresh from a generator seeded by seed and step.
            noise = NoiseSource::seeded(
                request.training.seed ^ (start.step as u64).rotate_left(32),
                request.noise_offset,
            );
            rng = rand::rngs::StdRng::seed_from_u64(
                request.training.seed ^ 0x9e37_79b9_7f4a_7c15 ^ start.step as u64,
            );
        }
    }
    let lr_schedule = LrSchedule {
        kind: request.training.lr_schedule,
        base_lr: request.training.learning_rate,
        warmup_steps: request.training.warmup_steps,
        total_steps: request.training.steps,
    };
    let mut captions_cache = CaptionCache::default();
    let captions_used: Vec<String> = images
        .entries
        .iter()
        .map(|entry| request.captions.caption(entry.caption.as_deref(), None))
        .collect();
    let mut batches = BatchOrder::new(
        &images.sizes,
        request.repeats,
        request.training.batch_size,
        start,
        replaying,
    );
    let mut forward_index = start.forward_index;
    let mut stopped_early = false;
    let mut steps_done = start.step;
    let saving = StateSaving {
        save_every: request.training.save_every,
        total_steps: request.training.steps,
    };
    let save_state_now =
        |progress: Progress, params: &LoraParams, optimizer: &AdamW| -> Result<()> {
            match &request.training.state_path {
                Some(path) => save_state(path, &identity, progress, params, optimizer),
                None => Ok(()),
            }
        };

    for step in start.step..request.training.steps {
        if observer.should_stop() {
            stopped_early = true;
            break;
        }
        let started = Instant::now();
        let mut accumulated = AccumulatedGradients::new(request.training.gradient_accumulation);
        for _ in 0..request.training.gradient_accumulation {
            let batch = batches.next((!replaying).then_some(&mut rng))?;
            let captions: Vec<String> = batch
                .iter()
                .map(|&index| {
                    request.captions.caption(
                        images.entries[index].caption.as_deref(),
                        (!replaying).then_some(&mut rng),
                    )
                })
                .collect();
            let (latents, reports) = batch_latents(components, request, &images, &batch, &mut rng)?;
            let (epsilon, timesteps) =
                noise.draw(forward_index, &latents, schedule.num_train_timesteps())?;
            forward_index += 1;
            let (prompt_embeds, pooled) = if request.train_text_encoder {
                encode_batch_with_graph(components, &captions)?
            } else {
                captions_cache.batch(components, &captions)?
            };
            let time_ids = time_ids(&reports, &device)?;
            let noisy = schedule.add_noise(&latents, &epsilon, &timesteps)?;
            let target = schedule.target(&latents, &epsilon, &timesteps)?;
            let timestep_tensor = Tensor::new(timesteps.as_slice(), &device)?;
            let added = AddedConditions {
                text_embeds: pooled,
                time_ids,
            };
            let accumulation = request.training.gradient_accumulation as f64;
            let loss_of = |prediction: &Tensor| -> Result<Tensor> {
                let loss = loss(
                    &schedule,
                    prediction,
                    &target,
                    &timesteps,
                    request.snr_gamma,
                )?;
                Ok((loss / accumulation)?)
            };
            let (scaled, step_grads) = if request.training.gradient_checkpointing {
                checkpointed_gradients(
                    &mut components.unet,
                    &params,
                    &noisy,
                    &timestep_tensor,
                    &prompt_embeds,
                    &added,
                    &loss_of,
                )?
            } else {
                plain_gradients(
                    &mut components.unet,
                    &vars,
                    &noisy,
                    &timestep_tensor,
                    &prompt_embeds,
                    &added,
                    &loss_of,
                )?
            };
            accumulated.add(&scaled, step_grads)?;
        }
        let (grads, grad_norm, mean_loss) = accumulated.finish(request.training.max_grad_norm)?;
        let lr = lr_schedule.lr_at(step);
        let text_encoder_lr = request
            .text_encoder_lr
            .map_or(lr, |base| lr * base / request.training.learning_rate);
        let learning_rates: Vec<f64> = params
            .layers
            .iter()
            .flat_map(|layer| {
                let rate = if layer.component == Component::Unet {
                    lr
                } else {
                    text_encoder_lr
                };
                [rate, rate]
            })
            .collect();
        optimizer.step(&vars, &grads, &learning_rates)?;
        steps_done = step + 1;
        let record = StepRecord {
            step: steps_done,
            loss: mean_loss,
            lr,
            grad_norm,
            seconds: started.elapsed().as_secs_f64(),
            epoch: batches.epoch,
        };
        observer.step(&record, request.training.steps)?;
        if saving.due_after(steps_done) {
            save_state_now(
                Progress {
                    step: steps_done,
                    forward_index,
                    epoch: batches.epoch,
                },
                &params,
                &optimizer,
            )?;
        }
        observer.after_step(steps_done, &params, components)?;
    }
    if saving.due_at_end(stopped_early) {
        save_state_now(
            Progress {
                step: steps_done,
                forward_index,
                epoch: batches.epoch,
            },
            &params,
            &optimizer,
        )?;
    }
    Ok(TrainingOutcome {
        params,
        steps_done,
        first_step: start.step,
        images_used: images.entries.len(),
        captions: captions_used,
        scan,
        stopped_early,
    })
}

/// MSE over every element in f32, or the min-SNR-γ weighted mean of per-sample MSEs.
fn loss(
    schedule: &NoiseSchedule,
    prediction: &Tensor,
    target: &Tensor,
    timesteps: &[i64],
    snr_gamma: Option<f64>,
) -> Result<Tensor> {
    let squared = (prediction.to_dtype(DType::F32)? - target.to_dtype(DType::F32)?)?.sqr()?;
    match snr_gamma {
        None => Ok(squared.mean_all()?),
        Some(gamma) => {
            let batch = squared.dim(0)?;
            let per_sample = squared.reshape((batch, ()))?.mean(1)?; // [b]
            let weights = Tensor::new(
                schedule.min_snr_weights(timesteps, gamma)?.as_slice(),
                squared.device(),
            )?;
            Ok((per_sample * weights)?.mean_all()?)
        }
    }
}

/// [b, 6] of (original h, w, crop top, left, target h, w).
fn time_ids(reports: &[FitReport], device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = reports
        .iter()
        .flat_map(|report| report.sdxl_micro_conditioning().map(|value| value as f32))
        .collect();
    Ok(Tensor::from_vec(values, (reports.len(), 6), device)?)
}
