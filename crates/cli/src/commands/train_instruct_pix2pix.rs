//! `huatu train instruct-pix2pix`: fine-tunes an SDXL model (or an InstructPix2Pix model)
//! into an InstructPix2Pix edit model on a folder of edit pairs (`metadata.jsonl`, as
//! `huatu dataset instruct-pix2pix` writes it) and writes a diffusers model folder that
//! `huatu edit --instruction` loads. The flags translate into one
//! `InstructPix2PixTrainingRequest`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use huatu_diffusion::schedulers::PredictionType;
use huatu_train::instruct_pix2pix::save::{check_output, save_edit_model};
use huatu_train::instruct_pix2pix::{
    load_trainable, train_instruct_pix2pix, InstructPix2PixTrainingRequest, TrainingMode,
};
use huatu_train::lora_params::LoraTargets;
use huatu_train::lr_schedule::LrScheduleKind;
use huatu_train::training_settings::TrainingSettings;

use crate::commands::train_lora::{parse_prediction_type, OptimizerArgs};
use crate::commands::train_progress::RunProgress;
use crate::device_args::DeviceArgs;

#[derive(Args, Debug)]
pub struct TrainInstructPix2PixArgs {
    /// The model to start from, a diffusers folder: an SDXL model (its UNet's conv_in is
    /// widened to 8 input channels, the new ones zero) or an InstructPix2Pix model.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Edit pairs: a folder with metadata.jsonl (input_image, edit_prompt, edited_image).
    #[arg(long)]
    pub data: PathBuf,
    /// The model folder to write (must not exist or be empty).
    #[arg(long)]
    pub out: PathBuf,
    /// full (every UNet weight, as diffusers' script) or lora (adapters + conv_in).
    #[arg(long, default_value = "lora")]
    pub mode: TrainingMode,
    /// LoRA rank (--mode lora).
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// Scale alpha/rank; defaults to the rank (scale 1).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// attn (to_q/k/v/out.0), attn+ff, all-linear (--mode lora).
    #[arg(long, default_value = "attn")]
    pub targets: LoraTargets,
    /// Start the adapters from these LoRA weights (--mode lora; same targets, rank, alpha).
    #[arg(long)]
    pub init_lora: Option<PathBuf>,
    /// Replay noise, timesteps and dropout draws (safetensors `noise` [steps, batch, 4,
    /// h/8, w/8], `timesteps` [steps, batch], `dropout_random` [steps, batch]); pairs in
    /// metadata.jsonl order, posterior means.
    #[arg(long)]
    pub noise: Option<PathBuf>,
    /// Training side in pixels (square; diffusers' script defaults to 256).
    #[arg(long, default_value_t = 1024)]
    pub resolution: u32,
    /// Random left–right flips, the original and the edited image together (the script's
    /// --random_flip; not with --noise).
    #[arg(long)]
    pub flip: bool,
    /// Drop the instruction (below 2p) and the original image (in [p, 3p)) of a sample,
    /// for classifier-free guidance on both (the paper uses 0.05).
    #[arg(long)]
    pub conditioning_dropout_prob: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub gradient_accumulation: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    #[command(flatten)]
    pub optimizer_args: OptimizerArgs,
    /// Recompute the UNet's blocks in the backward pass instead of keeping them (far less
    /// memory, about one more forward pass of time).
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// constant, constant_with_warmup, cosine, linear.
    #[arg(long, default_value = "constant")]
    pub lr_scheduler: LrScheduleKind,
    #[arg(long, default_value_t = 0)]
    pub lr_warmup_steps: usize,
    /// epsilon or v_prediction; default: the model's scheduler config.
    #[arg(long, value_parser = parse_prediction_type)]
    pub prediction_type: Option<PredictionType>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Every N steps: save the run's state (OUT.state.safetensors, for --resume).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Continue a run from its state file (same model, mode, targets, rank and alpha); the
    /// model folder at --out is replaced when the run ends.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Keep the pairs' VAE latents in DATA/.huatu-cache (reused while the images, the model
    /// and the resolution stay the same).
    #[arg(long)]
    pub cache_latents: bool,
    /// One JSON object per optimizer step: step, loss, lr, grad_norm, seconds, epoch.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

impl TrainInstructPix2PixArgs {
    fn request(&self) -> InstructPix2PixTrainingRequest {
        InstructPix2PixTrainingRequest {
            data: self.data.clone(),
            mode: self.mode,
            rank: self.rank,
            alpha: self.alpha.unwrap_or(self.rank as f64),
            targets: self.targets,
            init_lora: self.init_lora.clone(),
            noise_file: self.noise.clone(),
            resolution: self.resolution,
            flip: self.flip,
            conditioning_dropout_prob: self.conditioning_dropout_prob,
            training: TrainingSettings {
                batch_size: self.batch_size,
                gradient_accumulation: self.gradient_accumulation,
                steps: self.steps,
                learning_rate: self.lr,
                adamw: self.optimizer_args.adamw(),
                max_grad_norm: self.optimizer_args.max_grad_norm(),
                gradient_checkpointing: self.gradient_checkpointing,
                lr_schedule: self.lr_scheduler,
                warmup_steps: self.lr_warmup_steps,
                prediction_type: self.prediction_type,
                seed: self.seed,
                resume: self.resume.clone(),
                state_path: Some(state_path(&self.out)),
                save_every: self.save_every,
                cache_latents: self.cache_latents,
                model_id: self.model.display().to_string(),
            },
        }
    }
}

/// Where a run's state goes: beside the model folder, `OUT.state.safetensors`.
fn state_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    out.with_file_name(format!("{name}.state.safetensors"))
}

pub fn run(args: TrainInstructPix2PixArgs) -> anyhow::Result<()> {
    let request = args.request();
    request.validate()?;
    if args.resume.is_none() {
        check_output(&args.out)?;
    }
    let mut observer = RunProgress::start(args.log.as_deref())?;
    // Training runs in f32, as the reference does on the CPU.
    let (mut components, vars) = load_trainable(&args.model, request.mode, &args.device.open()?)?;
    let started = Instant::now();
    let outcome = train_instruct_pix2pix(&mut components, vars, &request, &mut observer)?;
    observer.finish();
    let seconds = started.elapsed().as_secs_f64();
    let mut metadata = BTreeMap::new();
    metadata.insert(
        "huatu_training".to_string(),
        serde_json::json!({
            "kind": "instruct-pix2pix",
            "mode": request.mode.as_str(),
            "base_model": args.model.display().to_string(),
            "steps": outcome.steps_done,
            "first_step": outcome.first_step,
            "pairs": outcome.pairs_used,
            "learning_rate": request.training.learning_rate,
            "resolution": request.resolution,
            "conditioning_dropout_prob": request.conditioning_dropout_prob,
            "rank": (request.mode == TrainingMode::Lora).then_some(request.rank),
        })
        .to_string(),
    );
    save_edit_model(
        &components,
        outcome.lora.as_ref(),
        &args.model,
        &args.out,
        metadata,
        args.resume.is_some(),
    )?;
    eprintln!(
        "{} {} steps on {} edit pairs in {seconds:.1}s; wrote {} (edit with `huatu edit --model {} --instruction ...`)",
        if outcome.stopped_early {
            "stopped after"
        } else {
            "trained"
        },
        outcome.steps_done,
        outcome.pairs_used,
        args.out.display(),
        args.out.display()
    );
    if outcome.stopped_early || request.training.save_every.is_some() {
        eprintln!(
            "run state: {} (continue with --resume)",
            state_path(&args.out).display()
        );
    }
    Ok(())
}
