//! The models a worker owns: the SDXL base with the LoRA set merged into it now, plus the
//! optional InstructPix2Pix model, ControlNet and Real-ESRGAN weights the agent's plans use.
//! Translates job specs into the pipelines' requests (text-to-image, inpainting,
//! image-to-image, the agent's plans); no HTTP here. Each job runs against a deadline
//! (`--max-job-secs`) that its progress hook enforces, and a LoRA switch that fails leaves
//! the base model, never a half-merged one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::Device;
use huatu_agent::execute::{execute, Models, RunOptions};
use huatu_agent::AgentError;
use huatu_diffusion::loading::controlnet::load_controlnet;
use huatu_diffusion::loading::{ModelSource, SdxlComponents};
use huatu_diffusion::lora::{LoraFile, UnmatchedModules};
use huatu_diffusion::models::controlnet::ControlNetModel;
use huatu_diffusion::pipelines::{
    edit, text_to_image, EditModels, EditRequest, Progress, ProgressSink, Text2ImageRequest,
};
use huatu_diffusion::schedulers::SchedulerKind;

use crate::config::ServerConfig;
use crate::error::{one_line_chain, ServerError};
use huatu_imaging::{GrayImage, RgbImage, Upscaler};

use crate::jobs::{AgentSpec, EditSpec, GenerationSpec, LoraSpec};

pub struct JobRunner {
    components: SdxlComponents,
    instruct: Option<SdxlComponents>,
    controlnet: Option<ControlNetModel>,
    upscaler: Option<Upscaler>,
    lora_dir: PathBuf,
    active_loras: Vec<LoraSpec>,
    /// Longest a job may run (`--max-job-secs`).
    max_job: Duration,
    /// When the running job must stop (set by `start_job`).
    deadline: Option<Instant>,
}

/// Which optional models the workers hold; the agent plans around what is missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub instruct: bool,
    pub controlnet: bool,
    pub upscaler: bool,
}

impl Capabilities {
    /// What a server started with `config` runs (a model that fails to load stops start-up).
    pub fn of(config: &ServerConfig) -> Self {
        let with_model = |extra: &Option<PathBuf>| config.model.is_some() && extra.is_some();
        Self {
            instruct: with_model(&config.instruct_model),
            controlnet: with_model(&config.controlnet),
            upscaler: with_model(&config.sr_model),
        }
    }
}

/// Where LoRA `name` lives; names are checked by the API before they get here.
pub fn lora_path(lora_dir: &Path, name: &str) -> PathBuf {
    lora_dir.join(format!("{name}.safetensors"))
}

/// LoRA names: 1–64 of `A-Z a-z 0-9 _ - .`, not starting with a dot (so never a path).
pub fn is_lora_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl JobRunner {
    pub fn load(config: &ServerConfig, model: &Path, device: &Device) -> Result<Self, ServerError> {
        let wrap = |source| ServerError::Model {
            path: model.to_path_buf(),
            source,
        };
        let source = match ModelSource::from_path(model).map_err(wrap)? {
            ModelSource::SingleFile { path, .. } => ModelSource::SingleFile {
                path,
                config_dir: config.model_config.clone(),
            },
            folder => folder,
        };
        let components = SdxlComponents::load(&source, config.dtype.load_options(device), device)
            .map_err(wrap)?;
        let instruct = match &config.instruct_model {
            Some(path) => Some(load_instruct(config, path, device)?),
            None => None,
        };
        let controlnet = match &config.controlnet {
            Some(path) => Some(load_controlnet(path, components.dtype, device).map_err(
                |source| ServerError::Model {
                    path: path.clone(),
                    source,
                },
            )?),
            None => None,
        };
        let upscaler = match &config.sr_model {
            Some(path) => Some(Upscaler::load_on(path, device).map_err(|error| {
                ServerError::Config(format!(
                    "--sr-model {}: {}",
                    path.display(),
                    one_line_chain(&error)
                ))
            })?),
            None => None,
        };
        Ok(Self {
            components,
            instruct,
            controlnet,
            upscaler,
            lora_dir: config.data_dir.join("loras"),
            active_loras: Vec::new(),
            max_job: config.max_job,
            deadline: None,
        })
    }

    /// (width, height) the UNet was trained at: `sample_size` × 8.
    pub fn native_size(&self) -> (usize, usize) {
        let side = self.components.unet.config().sample_size.unwrap_or(128) * 8;
        (side, side)
    }

    /// The model's own scheduler, for requests that name none.
    pub fn default_scheduler(&self) -> SchedulerKind {
        self.components
            .default_scheduler
            .unwrap_or(SchedulerKind::Euler)
    }

    /// Starts the clock of a job: from now on its pipelines stop, and it fails, once it has
    /// run longer than `--max-job-secs`. The worker calls this before each job it runs.
    pub fn start_job(&mut self) {
        self.deadline = Instant::now().checked_add(self.max_job);
    }

    /// Why a job over its time ends `failed`.
    fn over_time(&self) -> GenerateError {
        let limit = if self.max_job.subsec_nanos() == 0 {
            self.max_job.as_secs().to_string()
        } else {
            format!("{:.1}", self.max_job.as_secs_f64())
        };
        GenerateError::Failed(format!(
            "the job ran longer than {limit} s (this server's --max-job-secs) and was stopped"
        ))
    }

    /// Fails at once when the job's time is up (between the images of a job).
    fn check_deadline(&self) -> Result<(), GenerateError> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(self.over_time()),
            _ => Ok(()),
        }
    }

    /// A pipeline's result with cancellation told apart from running out of time.
    fn finish<T>(
        &self,
        result: Result<T, huatu_diffusion::Error>,
        expired: bool,
    ) -> Result<T, GenerateError> {
        match result {
            Ok(value) => Ok(value),
            Err(huatu_diffusion::Error::Cancelled) if expired => Err(self.over_time()),
            Err(huatu_diffusion::Error::Cancelled) => Err(GenerateError::Cancelled),
            Err(error) => Err(GenerateError::Failed(one_line_chain(&error))),
        }
    }

    /// Merges exactly `loras` into the model (no-op when that set is merged already). On
    /// an error the model holds either the set it held before (a file that cannot be read
    /// changes nothing) or the base weights (`set_loras` restores them when a merge fails
    /// midway); either way the next job sets its own set from scratch.
    fn use_loras(&mut self, loras: &[LoraSpec]) -> Result<(), String> {
        if self.active_loras == loras {
            return Ok(());
        }
        let files = loras
            .iter()
            .map(|lora| {
                let path = lora_path(&self.lora_dir, &lora.name);
                LoraFile::read(&path)
                    .map_err(|error| format!("LoRA `{}`: {}", lora.name, one_line_chain(&error)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let set: Vec<(&LoraFile, f64)> = files
            .iter()
            .zip(loras)
            .map(|(file, lora)| (file, lora.scale))
            .collect();
        // A failed switch may leave a partial set merged: forget what is active so the
        // next job sets its own set again from scratch.
        self.active_loras = vec![LoraSpec {
            name: String::new(),
            scale: f64::NAN,
        }];
        self.components
            .set_loras(&set, UnmatchedModules::Error)
            .map_err(|error| one_line_chain(&error))?;
        self.active_loras = loras.to_vec();
        Ok(())
    }

    /// Image `index` of the spec (seed + index).
    pub fn generate(
        &mut self,
        spec: &GenerationSpec,
        index: usize,
        progress: &mut dyn ProgressSink,
    ) -> Result<RgbImage, GenerateError> {
        self.check_deadline()?;
        self.use_loras(&spec.sampling.loras)
            .map_err(GenerateError::Failed)?;
        let request = Text2ImageRequest {
            settings: spec.sampling.settings(index, self.default_scheduler()),
            width: spec.width,
            height: spec.height,
        };
        let mut sink = DeadlineSink::new(progress, self.deadline);
        let result = text_to_image(&self.components, &request, &mut sink);
        let expired = sink.expired;
        self.finish(result.map(|output| output.image), expired)
    }
}

impl JobRunner {
    /// Image `index` of an edit: inpainting inside the mask, or image-to-image without.
    pub fn edit(
        &mut self,
        spec: &EditSpec,
        index: usize,
        image: &RgbImage,
        mask: Option<&GrayImage>,
        progress: &mut dyn ProgressSink,
    ) -> Result<RgbImage, GenerateError> {
        self.check_deadline()?;
        self.use_loras(&spec.sampling.loras)
            .map_err(GenerateError::Failed)?;
        let request = EditRequest {
            settings: spec.sampling.settings(index, self.default_scheduler()),
            image: image.clone(),
            mode: spec.mode(mask.cloned()),
        };
        let models = EditModels {
            base: &self.components,
            instruct: self.instruct.as_ref(),
        };
        let mut sink = DeadlineSink::new(progress, self.deadline);
        let result = edit(models, &request, &mut sink).map(|output| output.image);
        let expired = sink.expired;
        self.finish(result, expired)
    }
}

impl JobRunner {
    /// Runs an agent plan (its LoRA switched like any job's) with the models held here.
    /// Inputs are files of the data directory; `mask` is a drawn region, white = change.
    pub fn run_plan(
        &mut self,
        spec: &AgentSpec,
        image: Option<PathBuf>,
        condition: Option<PathBuf>,
        mask: Option<GrayImage>,
        progress: &mut dyn ProgressSink,
    ) -> Result<Vec<RgbImage>, GenerateError> {
        self.check_deadline()?;
        self.use_loras(&spec.loras).map_err(GenerateError::Failed)?;
        let mut plan = spec.plan.clone();
        plan.image = image;
        plan.condition_image = condition;
        let models = Models {
            base: &self.components,
            instruct: self.instruct.as_ref(),
            controlnet: self.controlnet.as_ref(),
            upscaler: self.upscaler.as_ref(),
        };
        let options = RunOptions {
            seed: spec.seed,
            noise: None,
            mask,
        };
        let mut sink = DeadlineSink::new(progress, self.deadline);
        let result = execute(&plan, models, &options, &mut sink);
        match result {
            Ok(images) => Ok(images),
            Err(AgentError::Cancelled) if sink.expired => Err(self.over_time()),
            Err(AgentError::Cancelled) => Err(GenerateError::Cancelled),
            Err(error) => Err(GenerateError::Failed(one_line_chain(&error))),
        }
    }
}

fn load_instruct(
    config: &ServerConfig,
    path: &Path,
    device: &Device,
) -> Result<SdxlComponents, ServerError> {
    let wrap = |source| ServerError::Model {
        path: path.to_path_buf(),
        source,
    };
    let source = ModelSource::from_path(path).map_err(wrap)?;
    let options = config.dtype.load_options(device);
    let components = SdxlComponents::load(&source, options, device).map_err(wrap)?;
    let channels = components.unet.config().in_channels;
    if channels != 8 {
        return Err(ServerError::Config(format!(
            "--instruct-model {} has a {channels}-channel UNet; InstructPix2Pix needs 8",
            path.display()
        )));
    }
    Ok(components)
}

/// A progress sink that stops the pipeline (as a cancel does) once `deadline` has passed,
/// remembering that it did so the job can fail with the reason.
struct DeadlineSink<'a> {
    inner: &'a mut dyn ProgressSink,
    deadline: Option<Instant>,
    expired: bool,
}

impl<'a> DeadlineSink<'a> {
    fn new(inner: &'a mut dyn ProgressSink, deadline: Option<Instant>) -> Self {
        Self {
            inner,
            deadline,
            expired: false,
        }
    }
}

impl ProgressSink for DeadlineSink<'_> {
    fn report(&mut self, progress: Progress) -> huatu_diffusion::Result<()> {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            self.expired = true;
            return Err(huatu_diffusion::Error::Cancelled);
        }
        self.inner.report(progress)
    }
}

#[derive(Debug)]
pub enum GenerateError {
    Cancelled,
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_names_cannot_be_paths() {
        assert!(is_lora_name("poster_v2.1"));
        for bad in ["", "..", "../x", "a/b", "a\\b", ".hidden", "名字"] {
            assert!(!is_lora_name(bad), "{bad}");
        }
    }
}
