//! The model a worker owns: loaded SDXL components plus the LoRA set merged into them now.
//! Translates job specs into the pipelines' requests (text-to-image, inpainting,
//! image-to-image); no HTTP here.

use std::path::{Path, PathBuf};

use candle_core::Device;
use huatu_diffusion::loading::{LoadOptions, ModelSource, SdxlComponents};
use huatu_diffusion::lora::{LoraFile, UnmatchedModules};
use huatu_diffusion::pipelines::{
    image_to_image, inpaint, text_to_image, EditSettings, GrayImage, Image2ImageRequest,
    InpaintRequest, ProgressSink, RgbImage, Text2ImageRequest,
};
use huatu_diffusion::schedulers::SchedulerKind;

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::jobs::{EditSpec, GenerationSpec, LoraSpec};

pub struct Engine {
    components: SdxlComponents,
    lora_dir: PathBuf,
    active_loras: Vec<LoraSpec>,
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

impl Engine {
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
        let components = SdxlComponents::load(
            &source,
            LoadOptions {
                dtype: config.dtype,
                vae_dtype: None,
            },
            device,
        )
        .map_err(wrap)?;
        Ok(Self {
            components,
            lora_dir: config.data_dir.join("loras"),
            active_loras: Vec::new(),
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

    /// Merges exactly `loras` into the model (no-op when that set is merged already).
    fn use_loras(&mut self, loras: &[LoraSpec]) -> Result<(), String> {
        if self.active_loras == loras {
            return Ok(());
        }
        let files = loras
            .iter()
            .map(|lora| {
                let path = lora_path(&self.lora_dir, &lora.name);
                LoraFile::read(&path)
                    .map_err(|error| format!("LoRA `{}`: {}", lora.name, chain(&error)))
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
            .map_err(|error| chain(&error))?;
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
        self.use_loras(&spec.loras).map_err(GenerateError::Failed)?;
        let mut request = Text2ImageRequest::new(spec.prompt.clone());
        request.negative_prompt = spec.negative_prompt.clone();
        request.width = spec.width;
        request.height = spec.height;
        request.num_inference_steps = spec.steps;
        request.guidance_scale = spec.guidance;
        request.scheduler = spec.scheduler.unwrap_or_else(|| self.default_scheduler());
        request.seed = spec.seed.wrapping_add(index as u64);
        match text_to_image(&self.components, &request, progress) {
            Ok(output) => Ok(output.image),
            Err(huatu_diffusion::Error::Cancelled) => Err(GenerateError::Cancelled),
            Err(error) => Err(GenerateError::Failed(chain(&error))),
        }
    }
}

impl Engine {
    /// Image `index` of an edit: inpainting inside the mask, or image-to-image without.
    pub fn edit(
        &mut self,
        spec: &EditSpec,
        index: usize,
        image: &RgbImage,
        mask: Option<&GrayImage>,
        progress: &mut dyn ProgressSink,
    ) -> Result<RgbImage, GenerateError> {
        self.use_loras(&spec.loras).map_err(GenerateError::Failed)?;
        let mut settings = EditSettings::new(spec.prompt.clone());
        settings.negative_prompt = spec.negative_prompt.clone();
        settings.num_inference_steps = spec.steps;
        settings.guidance_scale = spec.guidance;
        settings.scheduler = spec.scheduler.unwrap_or_else(|| self.default_scheduler());
        settings.seed = spec.seed.wrapping_add(index as u64);
        let result = match mask {
            Some(mask) => {
                let request = InpaintRequest {
                    settings,
                    image: image.clone(),
                    mask_image: mask.clone(),
                    strength: spec.strength,
                    mask_blur: 0,
                    controlnets: Vec::new(),
                    guess_mode: false,
                };
                inpaint(&self.components, &request, progress).map(|output| output.image)
            }
            None => {
                let request = Image2ImageRequest {
                    settings,
                    image: image.clone(),
                    strength: spec.strength,
                };
                image_to_image(&self.components, &request, progress).map(|output| output.image)
            }
        };
        match result {
            Ok(image) => Ok(image),
            Err(huatu_diffusion::Error::Cancelled) => Err(GenerateError::Cancelled),
            Err(error) => Err(GenerateError::Failed(chain(&error))),
        }
    }
}

#[derive(Debug)]
pub enum GenerateError {
    Cancelled,
    Failed(String),
}

/// An error and its causes on one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
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
