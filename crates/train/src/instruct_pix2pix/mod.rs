//! InstructPix2Pix fine-tuning of SDXL, step for step as diffusers'
//! `examples/instruct_pix2pix/train_instruct_pix2pix_sdxl.py` (see `../shared/TRAINING.md`):
//!
//! 1. The UNet's `conv_in` takes 8 channels (`unet`): widened from a base SDXL (new 4 zero)
//!    or as an InstructPix2Pix model has it.
//! 2. Latents of the edited image = VAE posterior × `scaling_factor`; the original image's
//!    latents = VAE posterior, not scaled (the script's `original_image_embeds`; the
//!    pipelines encode the input image the same way). The script samples both posteriors.
//! 3. ε and t drawn (or replayed), noisy = DDPM `add_noise`.
//! 4. Conditioning dropout with probability p (`--conditioning-dropout-prob`, none by
//!    default as in the script): one u ~ U[0, 1) per sample; u < 2p → the instruction's
//!    prompt embeds become the empty prompt's (its `hidden_states[-2]` of both encoders; the
//!    pooled embeds stay the instruction's); p ≤ u < 3p → the original-image latents × 0.
//! 5. UNet(cat(noisy, original latents) on channels, t, prompt embeds, {pooled, time ids
//!    (res, res, 0, 0, res, res)}); loss = MSE against ε (or v) in f32; gradient
//!    accumulation divides it.
//! 6. `clip_grad_norm_` over every trained weight (1.0 by default, the script's), torch's
//!    AdamW, the learning-rate schedule.
//!
//! What is trained (`TrainingMode`): `full`, every UNet weight (the script); `lora`, LoRA
//! adapters on the UNet's linear layers (`--targets`) plus `conv_in`'s weight and bias.
//! Memory for `full`: the weights, their gradients and AdamW's two moments in f32 are 16
//! bytes per parameter, about 41 GB for SDXL's 2.6 B UNet parameters, plus the activations
//! (`gradient_checkpointing` keeps one UNet stage's graph at a time); `lora` needs the
//! frozen UNet (10 GB in f32) plus the adapters, their moments and the activations.
//!
//! Reproducibility contract (`--noise FILE`, as `huatu train lora`'s): a safetensors file
//! with `noise` [steps, batch, 4, h/8, w/8] f32, `timesteps` [steps, batch] i64 and, when a
//! dropout probability is set, `dropout_random` [steps, batch] f32 (the script's
//! `torch.rand(bsz, generator=generator)`, one row per forward pass). Pairs are then taken
//! in `metadata.jsonl` line order with no shuffling, and both latents are the posterior
//! means. `--init-lora` starts `lora` mode from given adapters. A run's state (`state`) is
//! saved every `save_every` steps, at the end and on a stop; `resume` continues it (a
//! replayed run exactly as if it had not stopped). The whole step is checked
//! against scripts/fixtures/train_ip2p_tiny.py (crates/train/tests/parity/train_ip2p_parity.rs).
//!
//! Deviations from the script, on purpose: the widened `conv_in` keeps the base's bias (the
//! script's new `nn.Conv2d` keeps a random one); images are fitted by the project's center
//! crop (the script stretches to the square, the same for square images).

mod dropout;
pub mod pairs;
pub mod save;
mod state;
pub mod unet;

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use huatu_diffusion::loading::SdxlComponents;
use huatu_diffusion::models::unet_2d_condition::AddedConditions;
use huatu_imaging::Size;
use rand::{Rng, SeedableRng};

use crate::checkpoint::Progress;
use crate::checkpointing::checkpointed_gradients_with;
use crate::latent_cache::LatentCache;
use crate::lora_params::{LoraParams, LoraTargets};
use crate::lr_schedule::LrSchedule;
use crate::noising::{NoiseSchedule, NoiseSource};
use crate::observer::{StepRecord, TrainingObserver};
use crate::optimizer::AdamW;
use crate::text_conditioning::CaptionCache;
use crate::training_loop::{
    noise_source, plain_gradients, resume, AccumulatedGradients, BatchOrder, StateSaving,
};
use crate::training_settings::{validate_lora_shape, TrainingSettings};
use crate::{Error, Result};

pub use unet::{load_trainable, TrainingMode, UnetVars};

/// Everything an InstructPix2Pix run needs besides the model.
#[derive(Debug, Clone)]
pub struct InstructPix2PixTrainingRequest {
    /// A folder with `metadata.jsonl` (see `pairs`).
    pub data: PathBuf,
    pub mode: TrainingMode,
    /// LoRA settings (`mode` lora).
    pub rank: usize,
    pub alpha: f64,
    pub targets: LoraTargets,
    pub init_lora: Option<PathBuf>,
    pub noise_file: Option<PathBuf>,
    /// Square training side in pixels.
    pub resolution: u32,
    /// Random left–right flips of both images of a pair together (not when replaying).
    pub flip: bool,
    pub conditioning_dropout_prob: Option<f64>,
    /// The batch, the optimizer, the seed and the run's state.
    pub training: TrainingSettings,
}

impl InstructPix2PixTrainingRequest {
    /// The rules every setting must follow, checked before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::Setting(message));
        if self.mode == TrainingMode::Lora {
            validate_lora_shape(self.rank, self.alpha)?;
        }
        if self.mode == TrainingMode::Full && self.init_lora.is_some() {
            return bad("starting from given adapters needs lora mode".into());
        }
        self.training.validate()?;
        if self.resolution == 0 || !self.resolution.is_multiple_of(8) {
            return bad(format!(
                "the resolution must be a positive multiple of 8, got {}",
                self.resolution
            ));
        }
        if let Some(p) = self
            .conditioning_dropout_prob
            .filter(|p| !(0.0..=1.0).contains(p))
        {
            return bad(format!(
                "the conditioning dropout probability must be in [0, 1], got {p}"
            ));
        }
        Ok(())
    }
}

/// What a run did; the trained weights stay in the model (and `lora`).
pub struct InstructPix2PixOutcome {
    pub lora: Option<LoraParams>,
    pub unet: UnetVars,
    pub steps_done: usize,
    /// The step this run started at (0, or where a resumed state stood).
    pub first_step: usize,
    pub pairs_used: usize,
    pub stopped_early: bool,
}

/// Runs the training loop on a model loaded by [`load_trainable`] with `unet`'s variables.
pub fn train_instruct_pix2pix(
    components: &mut SdxlComponents,
    unet: UnetVars,
    request: &InstructPix2PixTrainingRequest,
    observer: &mut dyn TrainingObserver,
) -> Result<InstructPix2PixOutcome> {
    request.validate()?;
    if components.unet.config().in_channels != 8 {
        return Err(Error::Setting(format!(
            "the UNet has {} input channels; load the model with instruct_pix2pix::load_trainable",
            components.unet.config().in_channels
        )));
    }
    let device = components.device.clone();
    let replaying = request.noise_file.is_some();
    let forward_passes = request.training.forward_passes();
    let mut noise = noise_source(
        request.noise_file.as_deref(),
        request.training.seed,
        0.0,
        forward_passes,
        &format!("the run needs {forward_passes}"),
    )?;
    let mut dropout = dropout::DropoutDraws::new(request, forward_passes)?;
    let schedule = NoiseSchedule::new(
        &components.scheduler_config,
        request.training.prediction_type,
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(request.training.seed ^ 0x9e37_79b9_7f4a_7c15);

    let pairs = pairs::read_pairs(&request.data)?;
    let started = Instant::now();
    let mut cache = request.training.cache_latents.then(|| {
        LatentCache::open(
            &request.data,
            format!(
                "instruct-pix2pix (posterior, unscaled) model {} vae {:?} resolution {} fit center-crop",
                request.training.model_id, components.vae_config, request.resolution
            ),
        )
    });
    let (encoded, from_cache) = pairs::encode_pairs(
        components,
        &pairs,
        request.resolution,
        request.flip && !replaying,
        cache.as_mut(),
    )?;
    if let Some(cache) = &cache {
        cache.save()?;
    }
    observer.message(&format!(
        "encoded {} edit pairs with the VAE in {:.1}s{}",
        pairs.len(),
        started.elapsed().as_secs_f64(),
        if from_cache > 0 {
            format!(" ({from_cache} images from the latent cache)")
        } else {
            String::new()
        }
    ));

    let lora = match request.mode {
        TrainingMode::Lora => Some(unet::build_lora(components, request)?),
        TrainingMode::Full => None,
    };
    let mut vars: Vec<Var> = lora.as_ref().map(LoraParams::vars).unwrap_or_default();
    vars.extend(unet.vars.iter().map(|(_, var)| var.clone()));
    let count: usize = vars.iter().map(|var| var.elem_count()).sum();
    observer.message(&format!(
        "InstructPix2Pix {} training{}: {count} trainable parameters{}",
        request.mode,
        match &lora {
            Some(params) => format!(
                " (LoRA rank {} alpha {} on {} layers + conv_in)",
                params.rank,
                params.alpha,
                params.layers.len()
            ),
            None => String::new(),
        },
        if unet.base_in_channels == 4 {
            ", conv_in widened from 4 to 8 input channels"
        } else {
            ""
        }
    ));
    let mut optimizer = AdamW::new(&vars, request.training.adamw);
    let names = state::trained_names(lora.as_ref(), &unet);
    let config = components.unet.config();
    let identity = format!(
        "{} training, unet channels {:?} cross {} layers {}{}, {} tensors",
        request.mode,
        config.block_out_channels,
        config.cross_attention_dim,
        config.layers_per_block,
        match &lora {
            Some(params) => format!(
                ", LoRA rank {} alpha {} targets {}",
                params.rank, params.alpha, request.targets
            ),
            None => String::new(),
        },
        names.len()
    );
    let mut start = Progress {
        step: 0,
        forward_index: 0,
        epoch: 0,
    };
    if let Some(path) = &request.training.resume {
        start = resume(path, request.training.steps, observer, || {
            state::load_state(path, &identity, (&names, &vars), &mut optimizer)
        })?;
        if !replaying {
            // A resumed seeded run draws afresh from generators seeded by seed and step.
            let seed = request.training.seed ^ (start.step as u64).rotate_left(32);
            noise = NoiseSource::seeded(seed, 0.0);
            rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
            dropout = dropout::DropoutDraws::Seeded(Box::new(rand::rngs::StdRng::seed_from_u64(
                seed ^ 0x6970_3270,
            )));
        }
    }
    let saving = StateSaving {
        save_every: request.training.save_every,
        total_steps: request.training.steps,
    };
    let save_state_now = |progress: Progress, optimizer: &AdamW| -> Result<()> {
        match &request.training.state_path {
            Some(path) => state::save_state(path, &identity, progress, (&names, &vars), optimizer),
            None => Ok(()),
        }
    };
    let lr_schedule = LrSchedule {
        kind: request.training.lr_schedule,
        base_lr: request.training.learning_rate,
        warmup_steps: request.training.warmup_steps,
        total_steps: request.training.steps,
    };

    let mut captions = CaptionCache::default();
    let (null_embeds, _) = captions.batch(components, &[String::new()])?; // [1, 77, d]
    let side = request.resolution as f32;
    let sizes = vec![Size::new(request.resolution, request.resolution); pairs.len()];
    let mut batches = BatchOrder::new(&sizes, 1, request.training.batch_size, start, replaying);
    let mut forward_index = start.forward_index;
    let mut steps_done = start.step;
    let mut stopped_early = false;
    let scaling_factor = components.vae_config.scaling_factor;
    let accumulation = request.training.gradient_accumulation as f64;

    for step in start.step..request.training.steps {
        if observer.should_stop() {
            stopped_early = true;
            break;
        }
        let step_started = Instant::now();
        let mut accumulated = AccumulatedGradients::new(request.training.gradient_accumulation);
        for _ in 0..request.training.gradient_accumulation {
            let batch = batches.next((!replaying).then_some(&mut rng))?;
            let b = batch.len();
            let mut edited = Vec::with_capacity(b);
            let mut original = Vec::with_capacity(b);
            for &index in &batch {
                let pair = &encoded[index];
                // Both images flipped together, or neither (none when replaying).
                let (edited_posterior, input_posterior) = match &pair.mirrored {
                    Some((edited, input)) if rng.gen::<bool>() => (edited, input),
                    _ => (&pair.edited, &pair.input),
                };
                let sample = (!replaying).then_some(&mut rng);
                edited.push(pairs::posterior(edited_posterior, sample)?);
                let sample = (!replaying).then_some(&mut rng);
                original.push(pairs::posterior(input_posterior, sample)?);
            }
            let latents = (Tensor::cat(&edited, 0)? * scaling_factor)?; // [b, 4, h/8, w/8]
            let mut original_latents = Tensor::cat(&original, 0)?; // unscaled
            let (epsilon, timesteps) =
                noise.draw(forward_index, &latents, schedule.num_train_timesteps())?;
            let instructions: Vec<String> = batch
                .iter()
                .map(|&index| pairs[index].edit_prompt.clone())
                .collect();
            let (mut prompt_embeds, pooled) = captions.batch(components, &instructions)?;
            if let Some(p) = request.conditioning_dropout_prob {
                let draws = dropout.draw(forward_index, b)?;
                (prompt_embeds, original_latents) =
                    dropout::apply(p, &draws, &prompt_embeds, &null_embeds, &original_latents)?;
            }
            forward_index += 1;
            let noisy = schedule.add_noise(&latents, &epsilon, &timesteps)?;
            let target = schedule.target(&latents, &epsilon, &timesteps)?;
            let sample = Tensor::cat(&[&noisy, &original_latents], 1)?; // [b, 8, h/8, w/8]
            let time_ids = Tensor::from_vec(
                [side, side, 0.0, 0.0, side, side].repeat(b),
                (b, 6),
                &device,
            )?;
            let added = AddedConditions {
                text_embeds: pooled,
                time_ids,
            };
            let timestep_tensor = Tensor::new(timesteps.as_slice(), &device)?;
            let loss_of = |prediction: &Tensor| -> Result<Tensor> {
                let loss = (prediction.to_dtype(DType::F32)? - target.to_dtype(DType::F32)?)?
                    .sqr()?
                    .mean_all()?;
                Ok((loss / accumulation)?)
            };
            let (scaled, step_grads) = if request.training.gradient_checkpointing {
                // The adapters (none in full mode), then the UNet's own variables: `vars`' order.
                let no_adapters = LoraParams {
                    rank: 1,
                    alpha: 1.0,
                    layers: Vec::new(),
                };
                let unet_vars: Vec<Var> = unet.vars.iter().map(|(_, var)| var.clone()).collect();
                checkpointed_gradients_with(
                    &mut components.unet,
                    lora.as_ref().unwrap_or(&no_adapters),
                    &unet_vars,
                    &sample,
                    &timestep_tensor,
                    &prompt_embeds,
                    &added,
                    &loss_of,
                )?
            } else {
                plain_gradients(
                    &mut components.unet,
                    &vars,
                    &sample,
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
        optimizer.step(&vars, &grads, &vec![lr; vars.len()])?;
        steps_done = step + 1;
        observer.step(
            &StepRecord {
                step: steps_done,
                loss: mean_loss,
                lr,
                grad_norm,
                seconds: step_started.elapsed().as_secs_f64(),
                epoch: batches.epoch,
            },
            request.training.steps,
        )?;
        if saving.due_after(steps_done) {
            save_state_now(
                Progress {
                    step: steps_done,
                    forward_index,
                    epoch: batches.epoch,
                },
                &optimizer,
            )?;
        }
    }
    if saving.due_at_end(stopped_early) {
        save_state_now(
            Progress {
                step: steps_done,
                forward_index,
                epoch: batches.epoch,
            },
            &optimizer,
        )?;
    }
    Ok(InstructPix2PixOutcome {
        lora,
        unet,
        steps_done,
        first_step: start.step,
        pairs_used: pairs.len(),
        stopped_early,
    })
}
