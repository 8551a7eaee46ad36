//! Running a [`TaskPlan`]: the planner decides, this runs the chain — LoRA switch
//! ([`switch_lora`]) → the pipeline the plan names (text-to-image, ControlNet + inpainting
//! into the named frame region or a drawn mask, InstructPix2Pix) → the enhancer → images
//! ([`execute`]). The CLI's `chat` and the server call these with models they loaded;
//! nothing here reads a model from disk.

use std::path::Path;

use candle_core::Tensor;
use huatu_diffusion::loading::SdxlComponents;
use huatu_diffusion::lora::{LoraFile, UnmatchedModules};
use huatu_diffusion::models::controlnet::ControlNetModel;
use huatu_diffusion::pipelines::{
    edit, text_to_image, ControlNetUnit, EditMode, EditModels, EditRequest, GenerationSettings,
    Inpainting, ProgressSink, Text2ImageRequest,
};
use huatu_imaging::edit::{
    control_canvas, feathered_mask, mask_bounds, paste_inside_mask, region_mask, CannyThresholds,
    Rect,
};
use huatu_imaging::{center_crop_to_multiple, enhancer_steps, GrayImage, RgbImage, Upscaler};

use crate::plan::planner::{PipelineKind, TaskPlan};
use crate::{AgentError, Result};

/// The models a plan may need (the base with the plan's LoRA merged, see [`switch_lora`]).
#[derive(Clone, Copy)]
pub struct Models<'a> {
    pub base: &'a SdxlComponents,
    /// An InstructPix2Pix SDXL (8-channel UNet), for text edits.
    pub instruct: Option<&'a SdxlComponents>,
    /// An SDXL ControlNet (canny), for region edits with a condition image.
    pub controlnet: Option<&'a ControlNetModel>,
    /// Real-ESRGAN weights, for presets that upscale.
    pub upscaler: Option<&'a Upscaler>,
}

/// What a run needs besides the plan.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub seed: u64,
    /// Fixed initial noise [1, 4, h/8, w/8] (one image), for comparable runs.
    pub noise: Option<Tensor>,
    /// A drawn mask the size of the original (white = change) instead of the plan's frame
    /// words: region edits put the condition image into its bounding box, text edits
    /// change only inside it. Cropped with the original when that is cropped to multiples
    /// of 8.
    pub mask: Option<GrayImage>,
}

/// An image operation of `step` that failed.
fn imaging_failed(step: &'static str) -> impl Fn(huatu_imaging::ImagingError) -> AgentError {
    move |source| AgentError::Imaging {
        step,
        source: Box::new(source),
    }
}

/// A step of the plan refused for the rule its input breaks.
fn refused(step: &'static str, rule: impl Into<String>) -> AgentError {
    AgentError::BadInput {
        step,
        rule: rule.into(),
    }
}

/// A step that lacks an input it needs.
fn missing(step: &'static str, what: &str) -> AgentError {
    AgentError::MissingInput {
        step,
        rule: format!("it needs {what}"),
    }
}

/// A pipeline's error; a stop asked for by the progress sink stays [`AgentError::Cancelled`].
fn pipeline_failed(step: &'static str) -> impl Fn(huatu_diffusion::Error) -> AgentError {
    move |error| match error {
        huatu_diffusion::Error::Cancelled => AgentError::Cancelled,
        source => AgentError::Diffusion {
            step,
            source: Box::new(source),
        },
    }
}

/// The frame position a user names (右下角, 正中间, 左边 …) as a box in fractions
/// (left, top, right, bottom) of the image; anything else is the central half.
pub fn region_fractions(region: Option<&str>) -> (f64, f64, f64, f64) {
    let text = region.unwrap_or("");
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    let left = has(&["左"]);
    let right = has(&["右"]);
    let top = has(&["上", "顶"]);
    let bottom = has(&["下", "底"]);
    let (x0, x1) = if left {
        (0.05, 0.45)
    } else if right {
        (0.55, 0.95)
    } else {
        (0.25, 0.75)
    };
    let (y0, y1) = if top {
        (0.05, 0.45)
    } else if bottom {
        (0.55, 0.95)
    } else {
        (0.25, 0.75)
    };
    // A side without a corner (左边, 底部) spans the other axis's middle.
    match (left || right, top || bottom) {
        (true, false) => (x0, 0.2, x1, 0.8),
        (false, true) => (0.2, y0, 0.8, y1),
        _ => (x0, y0, x1, y1),
    }
}

fn rect_in(width: usize, height: usize, region: Option<&str>) -> Rect {
    let (x0, y0, x1, y1) = region_fractions(region);
    let at = |f: f64, extent: usize| ((f * extent as f64).round() as u32).min(extent as u32);
    Rect {
        left: at(x0, width),
        top: at(y0, height),
        right: at(x1, width),
        bottom: at(y1, height),
    }
}

/// Reads an image and crops it to multiples of 8 (SDXL's VAE factor), keeping the center.
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let image = huatu_imaging::io::load_image(path)
        .map_err(imaging_failed("reading the image"))?
        .to_rgb8();
    let (width, height) = image.dimensions();
    if width < 8 || height < 8 {
        return Err(refused(
            "reading the image",
            format!(
                "{} is {width}×{height}; it needs at least 8×8",
                path.display()
            ),
        ));
    }
    Ok(center_crop_to_multiple(&image, 8).0)
}

fn enhance(
    image: RgbImage,
    enhancer: Option<&str>,
    upscaler: Option<&Upscaler>,
) -> Result<RgbImage> {
    let Some(name) = enhancer else {
        return Ok(image);
    };
    let steps = enhancer_steps(name).map_err(imaging_failed("enhancer"))?;
    if steps.is_empty() {
        return Ok(image);
    }
    Ok(
        huatu_imaging::enhance(&image::DynamicImage::ImageRgb8(image), &steps, upscaler)
            .map_err(imaging_failed("enhancer"))?
            .to_rgb8(),
    )
}

/// The plan's sampling settings for its image `index` (seed + index; the fixed noise, if
/// any, for the first image only).
fn settings(plan: &TaskPlan, options: &RunOptions, index: usize) -> GenerationSettings {
    let mut settings = GenerationSettings::new(plan.prompt.clone());
    settings.negative_prompt = Some(plan.negative_prompt.clone()).filter(|n| !n.is_empty());
    settings.num_inference_steps = plan.steps;
    settings.guidance_scale = plan.guidance;
    settings.scheduler = plan.scheduler;
    settings.seed = options.seed.wrapping_add(index as u64);
    settings.noise = if index == 0 {
        options.noise.clone()
    } else {
        None
    };
    settings
}

/// Merges the plan's LoRA into the base model, or restores the base when the plan has none.
pub fn switch_lora(plan: &TaskPlan, base: &mut SdxlComponents) -> Result<()> {
    let lora = match &plan.lora {
        Some(choice) => Some((
            LoraFile::read(&choice.path).map_err(pipeline_failed("LoRA"))?,
            choice.scale,
        )),
        None => None,
    };
    let set: Vec<(&LoraFile, f64)> = lora.iter().map(|(file, scale)| (file, *scale)).collect();
    base.set_loras(&set, UnmatchedModules::Error)
        .map_err(pipeline_failed("LoRA"))?;
    Ok(())
}

/// Runs the plan's pipeline and enhancer on `models` (LoRA already switched); returns the
/// finished images.
pub fn execute(
    plan: &TaskPlan,
    models: Models<'_>,
    options: &RunOptions,
    progress: &mut dyn ProgressSink,
) -> Result<Vec<RgbImage>> {
    let edit_models = EditModels {
        base: models.base,
        instruct: models.instruct,
    };
    let mut images = Vec::new();
    match plan.pipeline {
        PipelineKind::TextToImage => {
            for index in 0..plan.num_images.max(1) {
                let request = Text2ImageRequest {
                    settings: settings(plan, options, index),
                    width: plan.width,
                    height: plan.height,
                };
                let output = text_to_image(models.base, &request, progress)
                    .map_err(pipeline_failed("text-to-image"))?;
                images.push(output.image);
            }
        }
        PipelineKind::ControlNetInpaint => {
            let image_path = plan
                .image
                .as_deref()
                .ok_or_else(|| missing("region edit", "an original image"))?;
            let condition_path = plan
                .condition_image
                .as_deref()
                .ok_or_else(|| missing("region edit", "a condition image to put in"))?;
            let controlnet = models.controlnet.ok_or_else(|| {
                missing(
                    "region edit",
                    "an SDXL canny ControlNet, and none is loaded",
                )
            })?;
            let image = read_image(image_path)?;
            let (rect, mask) = match &options.mask {
                Some(drawn) => {
                    let drawn = fit_mask(drawn, &image)?;
                    let rect = mask_bounds(drawn.as_raw(), drawn.width() as usize)
                        .ok_or_else(|| refused("region edit", "the drawn mask is empty"))?;
                    (rect, drawn)
                }
                None => {
                    let (width, height) = image.dimensions();
                    let rect = rect_in(width as usize, height as usize, plan.region.as_deref());
                    (rect, region_mask(rect, width, height))
                }
            };
            let condition = huatu_imaging::io::load_image(condition_path)
                .map_err(imaging_failed("reading the condition image"))?
                .to_rgb8();
            let canvas = control_canvas(
                &condition,
                rect,
                image.width(),
                image.height(),
                Some(CannyThresholds::default()),
            )
            .map_err(imaging_failed("making the control image"))?;
            let request = EditRequest {
                settings: settings(plan, options, 0),
                image,
                mode: EditMode::Inpaint(Inpainting {
                    mask_image: mask,
                    strength: 1.0,
                    mask_blur: 2,
                    controlnets: vec![ControlNetUnit {
                        controlnet,
                        control_image: canvas,
                        controlnet_conditioning_scale: 0.8,
                        control_guidance_start: 0.0,
                        control_guidance_end: 1.0,
                    }],
                    guess_mode: plan.prompt.trim().is_empty(),
                }),
            };
            images.push(
                edit(edit_models, &request, progress)
                    .map_err(pipeline_failed("region edit"))?
                    .image,
            );
        }
        PipelineKind::InstructPix2Pix => {
            let image_path = plan
                .image
                .as_deref()
                .ok_or_else(|| missing("text edit", "an original image"))?;
            let original = read_image(image_path)?;
            let drawn = options
                .mask
                .as_ref()
                .map(|mask| fit_mask(mask, &original))
                .transpose()?;
            let request = EditRequest {
                settings: settings(plan, options, 0),
                image: original.clone(),
                mode: EditMode::InstructPix2Pix {
                    image_guidance_scale: 1.5,
                },
            };
            let edited = edit(edit_models, &request, progress)
                .map_err(pipeline_failed("text edit"))?
                .image;
            images.push(match &drawn {
                // Only the drawn region changes; a 2-pixel inward feather hides the seam.
                Some(drawn) => paste_inside_mask(&original, &edited, &feathered_mask(drawn, 2))
                    .map_err(imaging_failed("text edit"))?,
                None => edited,
            });
        }
    }
    images
        .into_iter()
        .map(|image| enhance(image, plan.enhancer.as_deref(), models.upscaler))
        .collect()
}

/// The drawn mask for `image`: as it is when the sizes agree, or cropped like
/// [`read_image`] crops the original when it was drawn on the uncropped original.
fn fit_mask(mask: &GrayImage, image: &RgbImage) -> Result<GrayImage> {
    if mask.dimensions() == image.dimensions() {
        return Ok(mask.clone());
    }
    let (cropped, _, _) = center_crop_to_multiple(mask, 8);
    if cropped.dimensions() != image.dimensions() {
        return Err(refused(
            "edit region",
            format!(
                "the mask is {}×{} but the image is {}×{}",
                mask.width(),
                mask.height(),
                image.width(),
                image.height()
            ),
        ));
    }
    Ok(cropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_words_name_the_expected_boxes() {
        assert_eq!(region_fractions(Some("右下角")), (0.55, 0.55, 0.95, 0.95));
        assert_eq!(region_fractions(Some("左上角")), (0.05, 0.05, 0.45, 0.45));
        assert_eq!(region_fractions(Some("正中间")), (0.25, 0.25, 0.75, 0.75));
        assert_eq!(region_fractions(Some("最左边")), (0.05, 0.2, 0.45, 0.8));
        assert_eq!(region_fractions(Some("底部")), (0.2, 0.55, 0.8, 0.95));
        assert_eq!(region_fractions(None), (0.25, 0.25, 0.75, 0.75));
    }

    #[test]
    fn a_mask_drawn_on_the_uncropped_original_is_cropped_with_it() {
        let image = RgbImage::new(8, 8);
        // 10×9 → 8×8: one column off the left, none off the top.
        let mask = GrayImage::from_fn(10, 9, |x, _| image::Luma([if x == 1 { 255 } else { 0 }]));
        let fitted = fit_mask(&mask, &image).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fitted.dimensions(), (8, 8));
        assert!((0..8).all(|y| fitted.get_pixel(0, y)[0] == 255 && fitted.get_pixel(1, y)[0] == 0));
        let wrong = GrayImage::new(16, 8);
        assert!(fit_mask(&wrong, &image).is_err());
    }

    #[test]
    fn boxes_land_inside_the_image() {
        let rect = rect_in(64, 48, Some("右下角"));
        assert_eq!(
            rect,
            Rect {
                left: 35,
                top: 26,
                right: 61,
                bottom: 46
            }
        );
    }
}
