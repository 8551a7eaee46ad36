//! The arguments `generate` and `edit` share — which model, its precision and LoRA
//! adapters; the sampler settings; latents in and out — and loading the model with them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use candle_core::{Device, Tensor};
use clap::Args;
use huatu_diffusion::device::DtypeChoice;
use huatu_diffusion::loading::latents_file::{read_latents, write_latents};
use huatu_diffusion::loading::{ModelSource, SdxlComponents};
use huatu_diffusion::lora::{LoraFile, UnmatchedModules};
use huatu_diffusion::pipelines::{Progress, ProgressSink};
use huatu_diffusion::schedulers::SchedulerKind;

use crate::device_args::DeviceArgs;

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// A diffusers SDXL folder or a single-file SDXL checkpoint (.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// For a single-file checkpoint: a diffusers folder to take configs and tokenizers from.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Compute precision: auto (f32 on the CPU; bf16 on a GPU that has it, else f16),
    /// f32, f16 or bf16. The VAE stays f32 for f16 where its config says so.
    #[arg(long, default_value = "auto")]
    pub dtype: DtypeChoice,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// A LoRA adapter (kohya or diffusers .safetensors) with an optional scale, FILE[:SCALE]
    /// (default 1.0). Repeat for several at once.
    #[arg(long = "lora", value_parser = parse_lora)]
    pub loras: Vec<(PathBuf, f64)>,
    /// Skip LoRA modules that match no layer of the model (with a warning) instead of failing.
    #[arg(long)]
    pub lora_allow_partial: bool,
}

#[derive(Args, Debug)]
pub struct SamplingArgs {
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    #[arg(long, default_value_t = 5.0)]
    pub guidance: f64,
    #[arg(long, default_value_t = 0.0)]
    pub guidance_rescale: f64,
    /// euler, euler-a, ddim, dpmpp-2m, dpmpp-2m-karras. Default: the model's own scheduler.
    #[arg(long)]
    pub scheduler: Option<SchedulerKind>,
    /// Seed of the noise; image i of a batch uses seed + i. Default: random.
    #[arg(long, conflicts_with = "latents")]
    pub seed: Option<u64>,
    /// Initial noise latents (safetensors, key `latents`, [1,4,H/8,W/8], f32) instead of a
    /// seed; input images are then encoded with the VAE mean, so runs compare with diffusers.
    #[arg(long)]
    pub latents: Option<PathBuf>,
    /// Output PNG; with several images, `-N` is added before the extension.
    #[arg(long, default_value = "huatu.png")]
    pub out: PathBuf,
    /// Writes the final denoised latents (before VAE decoding, unscaled) here.
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
}

/// `FILE[:SCALE]`; a suffix after the last `:` that is not a number belongs to the path.
pub fn parse_lora(text: &str) -> Result<(PathBuf, f64), String> {
    if let Some((path, scale)) = text.rsplit_once(':') {
        if let Ok(scale) = scale.trim().parse::<f64>() {
            if !scale.is_finite() {
                return Err(format!("LoRA scale must be a finite number, got `{scale}`"));
            }
            return Ok((PathBuf::from(path), scale));
        }
    }
    Ok((PathBuf::from(text), 1.0))
}

impl ModelArgs {
    /// Reads the LoRA files first (a bad one fails before the long model load), loads the
    /// model and merges the adapters.
    pub fn load(&self, device: &Device) -> anyhow::Result<SdxlComponents> {
        let loras = self
            .loras
            .iter()
            .map(|(path, _)| {
                LoraFile::read(path)
                    .with_context(|| format!("cannot use --lora {}", path.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let source = match ModelSource::from_path(&self.model)? {
            ModelSource::SingleFile { path, .. } => ModelSource::SingleFile {
                path,
                config_dir: self.config.clone(),
            },
            ModelSource::DiffusersFolder(_) if self.config.is_some() => {
                anyhow::bail!(
                    "--config is for single-file checkpoints; {} is a diffusers folder",
                    self.model.display()
                )
            }
            folder => folder,
        };
        let started = Instant::now();
        let mut components = SdxlComponents::load(&source, self.dtype.load_options(device), device)
            .with_context(|| format!("cannot load the model from {}", self.model.display()))?;
        eprintln!(
            "loaded {} in {:.1}s",
            self.model.display(),
            started.elapsed().as_secs_f64()
        );
        if !loras.is_empty() {
            let set: Vec<(&LoraFile, f64)> = loras
                .iter()
                .zip(&self.loras)
                .map(|(file, (_, scale))| (file, *scale))
                .collect();
            let policy = if self.lora_allow_partial {
                UnmatchedModules::Skip
            } else {
                UnmatchedModules::Error
            };
            let report = components.set_loras(&set, policy).map_err(|error| {
                let unmatched = matches!(error, huatu_diffusion::Error::LoraUnmatched { .. });
                let error = anyhow::Error::new(error);
                if unmatched {
                    error.context("cannot apply --lora (--lora-allow-partial skips the modules that match no layer)")
                } else {
                    error
                }
            })?;
            for skipped in &report.skipped {
                eprintln!("warning: LoRA module matches no layer, skipped: {skipped}");
            }
            eprintln!(
                "applied {} LoRA modules ({} weights) in {:.2}s",
                report.modules_applied, report.weights_written, report.seconds
            );
        }
        Ok(components)
    }

    /// The adapters as JSON for the PNG settings chunk.
    pub fn loras_json(&self) -> serde_json::Value {
        self.loras
            .iter()
            .map(|(path, scale)| serde_json::json!({"file": path.display().to_string(), "scale": scale}))
            .collect()
    }

    /// ` <lora:name:scale>` tags, the web UIs' way of recording adapters in the prompt line.
    pub fn lora_tags(&self) -> String {
        self.loras
            .iter()
            .map(|(path, scale)| {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                format!(" <lora:{name}:{scale}>")
            })
            .collect()
    }
}

impl SamplingArgs {
    pub fn read_latents(&self, device: &Device) -> anyhow::Result<Option<Tensor>> {
        match &self.latents {
            Some(path) => Ok(Some(
                read_latents(path, device).context("cannot use --latents")?,
            )),
            None => Ok(None),
        }
    }

    pub fn scheduler_for(&self, components: &SdxlComponents) -> SchedulerKind {
        self.scheduler
            .or(components.default_scheduler)
            .unwrap_or(SchedulerKind::Euler)
    }

    pub fn save_latents(&self, latents: &Tensor, index: usize, count: usize) -> anyhow::Result<()> {
        if let Some(path) = &self.save_latents {
            let path = numbered_path(path, index, count);
            write_latents(&path, latents)?;
            eprintln!("saved latents to {}", path.display());
        }
        Ok(())
    }
}

/// `out.png` → `out-2.png` for image 2 of a batch.
pub fn numbered_path(path: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_else(|| "png".into());
    path.with_file_name(format!("{stem}-{}.{extension}", index + 1))
}

pub fn random_seed() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// A progress bar on stderr with steps per second, fed by a pipeline's reports.
pub struct StepBar(indicatif::ProgressBar);

impl StepBar {
    pub fn new(steps: usize) -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(steps as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        let style = indicatif::ProgressStyle::with_template(
            "{msg:>16} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        Self(bar)
    }

    pub fn finish(self) {
        self.0.finish_and_clear();
    }
}

impl ProgressSink for StepBar {
    fn report(&mut self, progress: Progress) -> huatu_diffusion::Result<()> {
        match progress {
            Progress::EncodingPrompt => self.0.set_message("encoding prompt"),
            Progress::Step { step, total } => {
                self.0.set_message("denoising");
                self.0.set_length(total as u64);
                self.0.set_position(step as u64);
            }
            Progress::Decoding => self.0.set_message("decoding"),
        }
        Ok(())
    }
}
