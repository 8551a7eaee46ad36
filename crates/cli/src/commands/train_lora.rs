//! `huatu train lora`: trains a LoRA adapter on a folder of captioned images and writes it
//! in kohya's or diffusers' format. The flags translate into one `LoraTrainingRequest`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use huatu_diffusion::loading::SdxlComponents;
use huatu_diffusion::pipelines::{text_to_image, NoProgress, Text2ImageRequest};
use huatu_diffusion::schedulers::PredictionType;
use huatu_imaging::FitMode;
use huatu_train::dataset::{tag_frequency, CaptionOptions, ImageOptions};
use huatu_train::lora_params::{LoraParams, LoraTargets};
use huatu_train::lora_save::{save_lora, SaveFormat, SaveMetadata};
use huatu_train::lr_schedule::LrScheduleKind;
use huatu_train::optimizer::AdamWConfig;
use huatu_train::trainer::{
    checkpoint_layout, train_lora, LoraTrainingRequest, StepRecord, TrainingObserver,
};
use huatu_train::training_settings::TrainingSettings;

use crate::commands::train_progress::RunProgress;
use crate::device_args::DeviceArgs;
use crate::model_args::ModelArgs;
use huatu_imaging::io::write_png;

/// AdamW's settings and gradient clipping, the same flags for both training commands.
#[derive(Args, Debug)]
pub struct OptimizerArgs {
    #[arg(long, default_value_t = 1e-2)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0.9)]
    pub adam_beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    pub adam_beta2: f64,
    #[arg(long, default_value_t = 1e-8)]
    pub adam_epsilon: f64,
    /// Clip the total gradient norm (0 turns clipping off).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
}

impl OptimizerArgs {
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            beta1: self.adam_beta1,
            beta2: self.adam_beta2,
            eps: self.adam_epsilon,
            weight_decay: self.weight_decay,
        }
    }

    /// `None` (no clipping) for 0.
    pub fn max_grad_norm(&self) -> Option<f64> {
        (self.max_grad_norm > 0.0).then_some(self.max_grad_norm)
    }
}

#[derive(Args, Debug)]
pub struct TrainLoraArgs {
    /// The base SDXL model: a diffusers folder, or a single-file checkpoint with --config.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// For a single-file checkpoint: a diffusers folder to take configs and tokenizers from.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Images with a caption .txt beside each (kohya), or a metadata.jsonl (file_name, text).
    #[arg(long)]
    pub data: PathBuf,
    /// The adapter file to write (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// kohya (A1111/ComfyUI) or diffusers (`save_lora_weights`).
    #[arg(long, default_value = "kohya")]
    pub format: SaveFormat,
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// Scale alpha/rank; defaults to the rank (scale 1).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// attn (to_q/k/v/out.0, diffusers' default), attn+ff, all-linear.
    #[arg(long, default_value = "attn")]
    pub targets: LoraTargets,
    /// Start from these LoRA weights instead of a random init (same targets, rank, alpha).
    #[arg(long)]
    pub init_lora: Option<PathBuf>,
    /// Replay noise and timesteps (safetensors `noise` [steps, batch, 4, h/8, w/8],
    /// `timesteps` [steps, batch]); images in file-name order, no augmentation, posterior mean.
    #[arg(long)]
    pub noise: Option<PathBuf>,
    /// Training side in pixels (square), or the bucket area's side with --buckets.
    #[arg(long, default_value_t = 1024)]
    pub resolution: u32,
    /// Each image to the SDXL aspect-ratio bucket nearest its shape, scaled to --resolution².
    #[arg(long)]
    pub buckets: bool,
    /// center-crop, random-crop or pad (mean colour).
    #[arg(long, default_value = "center-crop")]
    pub fit: FitMode,
    /// Random horizontal flips.
    #[arg(long)]
    pub flip: bool,
    /// Put first in every caption (and the caption of images that have none).
    #[arg(long)]
    pub trigger: Option<String>,
    /// Times each image is seen per epoch.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Probability of training an image with an empty caption (the trigger stays).
    #[arg(long, default_value_t = 0.0)]
    pub caption_dropout: f64,
    /// Shuffle the comma-separated tags after the trigger word.
    #[arg(long)]
    pub shuffle_captions: bool,
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub gradient_accumulation: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Also train LoRA adapters on both text encoders (q/k/v/out projections).
    #[arg(long)]
    pub train_text_encoder: bool,
    /// The text encoders' learning rate (default: --lr).
    #[arg(long, requires = "train_text_encoder")]
    pub text_encoder_lr: Option<f64>,
    /// adamw (torch's AdamW).
    #[arg(long, default_value = "adamw", value_parser = ["adamw"])]
    pub optimizer: String,
    #[command(flatten)]
    pub optimizer_args: OptimizerArgs,
    /// Recompute block activations in the backward pass instead of keeping them (far less
    /// memory, about one more forward pass of time); needed for 1024² on most machines.
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
    /// Min-SNR-γ loss weighting (5.0 is the paper's choice).
    #[arg(long)]
    pub snr_gamma: Option<f64>,
    #[arg(long, default_value_t = 0.0)]
    pub noise_offset: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Every N steps: save the run's state (OUT.state.safetensors, for --resume) and a
    /// snapshot adapter (OUT-stepNNNNNN.safetensors).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Continue a run from its state file (same model, targets, rank and alpha).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Keep the images' VAE latents in DATA/.huatu-cache (reused while the images, the
    /// model and the image settings stay the same); not with random crops or flips.
    #[arg(long)]
    pub cache_latents: bool,
    /// Every N steps, draw each --sample-prompt with the adapter as trained so far
    /// (OUT-samples/stepNNNNNN-I.png).
    #[arg(long, requires = "sample_prompt")]
    pub sample_every: Option<usize>,
    /// A prompt for the sample images (repeat for several).
    #[arg(long)]
    pub sample_prompt: Vec<String>,
    #[arg(long, default_value_t = 1)]
    pub sample_seed: u64,
    #[arg(long, default_value_t = 20)]
    pub sample_steps: usize,
    /// Sample size, WxH (default: --resolution square).
    #[arg(long, value_name = "WxH")]
    pub sample_size: Option<huatu_imaging::Size>,
    /// One JSON object per optimizer step: step, loss, lr, grad_norm, seconds, epoch.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

/// `--prediction-type` of both training commands, spelt as diffusers' training scripts.
pub(crate) fn parse_prediction_type(text: &str) -> Result<PredictionType, String> {
    match text {
        "epsilon" => Ok(PredictionType::Epsilon),
        "v_prediction" | "v-prediction" => Ok(PredictionType::VPrediction),
        other => Err(format!(
            "unknown prediction type `{other}` (expected epsilon or v_prediction)"
        )),
    }
}

impl TrainLoraArgs {
    fn request(&self) -> LoraTrainingRequest {
        LoraTrainingRequest {
            data: self.data.clone(),
            rank: self.rank,
            alpha: self.alpha.unwrap_or(self.rank as f64),
            targets: self.targets,
            init_lora: self.init_lora.clone(),
            noise_file: self.noise.clone(),
            image: ImageOptions {
                resolution: self.resolution,
                buckets: self.buckets,
                fit: self.fit,
                flip: self.flip,
            },
            captions: CaptionOptions {
                trigger: self.trigger.clone(),
                dropout: self.caption_dropout,
                shuffle: self.shuffle_captions,
            },
            repeats: self.repeats,
            train_text_encoder: self.train_text_encoder,
            text_encoder_lr: self.text_encoder_lr,
            snr_gamma: self.snr_gamma,
            noise_offset: self.noise_offset,
            format: self.format,
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

/// Where a run's state goes: beside the adapter.
fn state_path(out: &Path) -> PathBuf {
    out.with_extension("state.safetensors")
}

/// `OUT` with `-SUFFIX` before the extension.
fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!("{stem}-{suffix}.safetensors"))
}

/// Snapshots and sample images during the run.
struct Snapshots {
    save_every: Option<usize>,
    sample_every: Option<usize>,
    samples: Vec<Text2ImageRequest>,
    out: PathBuf,
    format: SaveFormat,
    metadata: SaveMetadata,
}

impl Snapshots {
    fn after_step(
        &self,
        step: usize,
        params: &LoraParams,
        components: &mut SdxlComponents,
    ) -> anyhow::Result<Vec<String>> {
        let mut written = Vec::new();
        if self
            .save_every
            .is_some_and(|every| every > 0 && step.is_multiple_of(every))
        {
            let mut metadata = self.metadata.clone();
            metadata.entries.insert("ss_steps".into(), step.to_string());
            let path = sibling(&self.out, &format!("step{step:06}"));
            save_lora(
                params,
                self.format,
                &checkpoint_layout(components),
                &metadata,
                &path,
            )?;
            written.push(path.display().to_string());
        }
        if self
            .sample_every
            .is_some_and(|every| every > 0 && step.is_multiple_of(every))
        {
            let folder = self.out.with_extension("").with_file_name(format!(
                "{}-samples",
                self.out
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            // Sampling runs without a graph: the adapters go on detached, then back.
            params.attach_to(components, true)?;
            let drawn: anyhow::Result<()> =
                self.samples
                    .iter()
                    .enumerate()
                    .try_for_each(|(index, request)| {
                        let output = text_to_image(components, request, &mut NoProgress)?;
                        let path = folder.join(format!("step{step:06}-{index}.png"));
                        write_png(
                            &path,
                            &output.image,
                            &[("parameters", request.settings.prompt.clone())],
                        )?;
                        written.push(path.display().to_string());
                        Ok(())
                    });
            params.attach_to(components, false)?;
            drawn?;
        }
        Ok(written)
    }
}

/// Progress bar, `--log` lines, Ctrl-C, snapshots and samples.
struct CliObserver {
    progress: RunProgress,
    snapshots: Snapshots,
}

impl TrainingObserver for CliObserver {
    fn message(&mut self, text: &str) {
        self.progress.message(text);
    }

    fn step(&mut self, record: &StepRecord, total_steps: usize) -> huatu_train::Result<()> {
        self.progress.step(record, total_steps)
    }

    fn should_stop(&self) -> bool {
        self.progress.should_stop()
    }

    fn after_step(
        &mut self,
        step: usize,
        params: &LoraParams,
        components: &mut SdxlComponents,
    ) -> huatu_train::Result<()> {
        let written = self
            .snapshots
            .after_step(step, params, components)
            .map_err(|error| huatu_train::Error::Setting(format!("step {step}: {error:#}")))?;
        for path in written {
            self.message(&format!("step {step}: wrote {path}"));
        }
        Ok(())
    }
}

/// The process's peak resident memory (VmHWM), where the OS reports it.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// sd-scripts' `ss_*` keys and the modelspec entries (kohya files; diffusers' writer
/// leaves them out). `captions`: each image's caption as trained, for `ss_tag_frequency`.
fn kohya_metadata(
    args: &TrainLoraArgs,
    request: &LoraTrainingRequest,
    steps: usize,
    captions: &[String],
) -> SaveMetadata {
    let folder_name = args
        .data
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let title = args
        .out
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let resolution = request.image.resolution;
    let mut entries = std::collections::BTreeMap::new();
    let mut put = |key: &str, value: String| {
        entries.insert(key.to_string(), value);
    };
    put("ss_network_module", "networks.lora".into());
    put("ss_network_dim", request.rank.to_string());
    put("ss_network_alpha", request.alpha.to_string());
    put("ss_base_model_version", "sdxl_base_v1-0".into());
    put("ss_sd_model_name", args.model.display().to_string());
    put(
        "ss_num_train_images",
        (captions.len() * request.repeats).to_string(),
    );
    put("ss_steps", steps.to_string());
    put(
        "ss_learning_rate",
        request.training.learning_rate.to_string(),
    );
    put("ss_lr_scheduler", request.training.lr_schedule.to_string());
    put("ss_optimizer", "torch.optim.AdamW".into());
    put("ss_resolution", format!("({resolution}, {resolution})"));
    put("ss_seed", request.training.seed.to_string());
    put(
        "ss_tag_frequency",
        tag_frequency(&folder_name, captions).to_string(),
    );
    put(
        "ss_training_comment",
        format!("huatu train lora, targets {}", request.targets),
    );
    put("ss_output_name", title.clone());
    put("modelspec.sai_model_spec", "1.0.0".into());
    put(
        "modelspec.architecture",
        "stable-diffusion-xl-v1-base/lora".into(),
    );
    put(
        "modelspec.implementation",
        "https://github.com/Stability-AI/generative-models".into(),
    );
    put("modelspec.title", title);
    if let Some(trigger) = &request.captions.trigger {
        put("modelspec.trigger_phrase", trigger.clone());
    }
    SaveMetadata { entries }
}

/// The sample images' requests: each prompt at the fixed seed.
fn sample_requests(args: &TrainLoraArgs) -> anyhow::Result<Vec<Text2ImageRequest>> {
    let (width, height) = match args.sample_size {
        Some(size) => (size.width as usize, size.height as usize),
        None => (args.resolution as usize, args.resolution as usize),
    };
    args.sample_prompt
        .iter()
        .map(|prompt| {
            let mut request = Text2ImageRequest::new(prompt.clone());
            request.width = width;
            request.height = height;
            request.settings.num_inference_steps = args.sample_steps;
            request.settings.seed = args.sample_seed;
            request.validate()?;
            Ok(request)
        })
        .collect()
}

pub fn run(args: TrainLoraArgs) -> anyhow::Result<()> {
    let request = args.request();
    request.validate()?;
    let samples = sample_requests(&args)?;
    // Each image's caption as trained, for the snapshots' metadata (the final file's comes
    // from the images the run could read).
    let captions: Vec<String> = huatu_train::dataset::scan_folder(&args.data)?
        .entries
        .iter()
        .map(|entry| request.captions.caption(entry.caption.as_deref(), None))
        .collect();
    let progress = RunProgress::start(args.log.as_deref())?;
    // Training runs in f32 (as the reference does on the CPU), on the base model alone.
    let model = ModelArgs {
        model: args.model.clone(),
        config: args.config.clone(),
        dtype: huatu_diffusion::device::DtypeChoice::Fixed(candle_core::DType::F32),
        device: args.device.clone(),
        loras: Vec::new(),
        lora_allow_partial: false,
    };
    let mut components = model.load(&model.device.open()?)?;
    let mut observer = CliObserver {
        progress,
        snapshots: Snapshots {
            save_every: args.save_every,
            sample_every: args.sample_every,
            samples,
            out: args.out.clone(),
            format: request.format,
            metadata: kohya_metadata(&args, &request, 0, &captions),
        },
    };
    let started = Instant::now();
    let outcome = train_lora(&mut components, &request, &mut observer)?;
    observer.progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    let metadata = kohya_metadata(&args, &request, outcome.steps_done, &outcome.captions);
    save_lora(
        &outcome.params,
        request.format,
        &checkpoint_layout(&components),
        &metadata,
        &args.out,
    )?;
    let peak = peak_rss_mib()
        .map(|mib| format!(", peak memory {mib:.0} MiB"))
        .unwrap_or_default();
    eprintln!(
        "{} {} steps in {seconds:.1}s ({:.2} s/step){peak}; wrote {} ({} format)",
        if outcome.stopped_early {
            "stopped after"
        } else {
            "trained"
        },
        outcome.steps_done,
        seconds / (outcome.steps_done - outcome.first_step).max(1) as f64,
        args.out.display(),
        request.format
    );
    if outcome.stopped_early || request.training.save_every.is_some() {
        eprintln!(
            "run state: {} (continue with --resume)",
            state_path(&args.out).display()
        );
    }
    Ok(())
}
