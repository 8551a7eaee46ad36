//! transformers' `CLIPImageProcessor` as its PIL backend runs it
//! (models/clip/image_processing_pil_clip.py, image_processing_backends.py `PilBackend`,
//! image_transforms.py): convert to RGB (transparency composited onto white), resize the
//! shortest side with Pillow's filter (bicubic for CLIP), center crop (zero-padding an
//! image smaller than the crop), rescale by 1/255, normalise with the mean and std.
//! Settings come from `preprocessor_config.json` (or the `image_processor` object of
//! transformers 5's `processor_config.json`); missing keys take CLIP's defaults.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};
use serde_json::Value;

use crate::error::{DataError, Result};
use crate::pil_resample::{self, PilFilter};

/// OpenAI CLIP's normalisation (`OPENAI_CLIP_MEAN`, `OPENAI_CLIP_STD`).
const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// How `resize` picks the output size (transformers' `size` dict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTarget {
    /// `{"shortest_edge": n}`: the short side becomes n, the long side keeps the ratio
    /// (truncated, as `get_resize_output_image_size`).
    ShortestEdge(u32),
    /// `{"height": h, "width": w}`.
    Exact { height: u32, width: u32 },
}

/// The settings of `CLIPImageProcessor`, with its class defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipImageProcessorConfig {
    pub do_convert_rgb: bool,
    pub do_resize: bool,
    pub size: ResizeTarget,
    pub resample: PilFilter,
    pub do_center_crop: bool,
    /// (height, width)
    pub crop_size: (u32, u32),
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

impl Default for ClipImageProcessorConfig {
    fn default() -> Self {
        Self {
            do_convert_rgb: true,
            do_resize: true,
            size: ResizeTarget::ShortestEdge(224),
            resample: PilFilter::Bicubic,
            do_center_crop: true,
            crop_size: (224, 224),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
        }
    }
}

impl ClipImageProcessorConfig {
    /// Reads `preprocessor_config.json`, else `processor_config.json`'s `image_processor`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let preprocessor = dir.join("preprocessor_config.json");
        let processor = dir.join("processor_config.json");
        let (path, value) = if preprocessor.is_file() {
            let value = read_json(&preprocessor)?;
            (preprocessor, value)
        } else if processor.is_file() {
            let value = read_json(&processor)?;
            let nested =
                value
                    .get("image_processor")
                    .cloned()
                    .ok_or_else(|| DataError::BadModelFile {
                        path: processor.clone(),
                        message: "no `image_processor` object".into(),
                    })?;
            (processor, nested)
        } else {
            return Err(DataError::MissingModelPart {
                what: "the CLIP image processor settings (preprocessor_config.json or processor_config.json)".into(),
                path: preprocessor,
            });
        };
        Self::from_json(&value).map_err(|message| DataError::BadModelFile { path, message })
    }

    /// Parses the image-processor JSON object; the error says which key is bad.
    pub fn from_json(value: &Value) -> std::result::Result<Self, String> {
        let mut config = Self::default();
        let flag = |key: &str, default: bool| match value.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(other) => Err(format!("`{key}` must be true or false, got {other}")),
        };
        config.do_convert_rgb = flag("do_convert_rgb", config.do_convert_rgb)?;
        config.do_resize = flag("do_resize", config.do_resize)?;
        config.do_center_crop = flag("do_center_crop", config.do_center_crop)?;
        config.do_rescale = flag("do_rescale", config.do_rescale)?;
        config.do_normalize = flag("do_normalize", config.do_normalize)?;
        if let Some(size) = value.get("size").filter(|size| !size.is_null()) {
            config.size = parse_size(size)?;
        }
        if let Some(crop) = value.get("crop_size").filter(|crop| !crop.is_null()) {
            config.crop_size = match parse_size(crop)? {
                ResizeTarget::Exact { height, width } => (height, width),
                ResizeTarget::ShortestEdge(side) => (side, side),
            };
        }
        if let Some(resample) = value.get("resample").filter(|id| !id.is_null()) {
            config.resample = resample
                .as_u64()
                .and_then(PilFilter::from_pil_id)
                .ok_or_else(|| {
                    format!("`resample` must be a PIL filter id 1..=5 (nearest is not supported), got {resample}")
                })?;
        }
        if let Some(factor) = value
            .get("rescale_factor")
            .filter(|factor| !factor.is_null())
        {
            config.rescale_factor = factor
                .as_f64()
                .ok_or_else(|| format!("`rescale_factor` must be a number, got {factor}"))?;
        }
        config.image_mean = parse_triple(value, "image_mean", config.image_mean)?;
        config.image_std = parse_triple(value, "image_std", config.image_std)?;
        Ok(config)
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        what: "an image processor configuration",
        source,
    })
}

/// `size` / `crop_size`: an int (one side), `{"shortest_edge"}` or `{"height", "width"}`.
fn parse_size(value: &Value) -> std::result::Result<ResizeTarget, String> {
    let side = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|side| u32::try_from(side).ok())
            .filter(|&side| side > 0)
    };
    if let Some(side) = value.as_u64().and_then(|side| u32::try_from(side).ok()) {
        if side > 0 {
            return Ok(ResizeTarget::ShortestEdge(side));
        }
    }
    if value
        .get("longest_edge")
        .is_some_and(|edge| !edge.is_null())
    {
        return Err(format!(
            "size {value}: `longest_edge` is not supported (CLIP uses `shortest_edge`)"
        ));
    }
    if let Some(side) = side("shortest_edge") {
        return Ok(ResizeTarget::ShortestEdge(side));
    }
    match (side("height"), side("width")) {
        (Some(height), Some(width)) => Ok(ResizeTarget::Exact { height, width }),
        _ => Err(format!(
            "size {value} must be a positive integer, {{\"shortest_edge\": n}} or {{\"height\": h, \"width\": w}}"
        )),
    }
}

fn parse_triple(
    value: &Value,
    key: &str,
    default: [f32; 3],
) -> std::result::Result<[f32; 3], String> {
    match value.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(number)) => {
            let single = number.as_f64().unwrap_or_default() as f32;
            Ok([single; 3])
        }
        Some(Value::Array(items)) if items.len() == 3 => {
            let mut triple = [0.0f32; 3];
            for (slot, item) in triple.iter_mut().zip(items) {
                *slot = item
                    .as_f64()
                    .ok_or_else(|| format!("`{key}` must hold numbers, got {item}"))?
                    as f32;
            }
            Ok(triple)
        }
        Some(other) => Err(format!("`{key}` must be 3 numbers (RGB), got {other}")),
    }
}

/// The image processor: one image in, `pixel_values` [3, h, w] out.
#[derive(Debug, Clone)]
pub struct ClipImageProcessor {
    config: ClipImageProcessorConfig,
}

impl ClipImageProcessor {
    pub fn new(config: ClipImageProcessorConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &ClipImageProcessorConfig {
        &self.config
    }

    /// The (height, width) of every `pixel_values` this processor makes, when fixed.
    pub fn output_size(&self) -> Option<(u32, u32)> {
        if self.config.do_center_crop {
            Some(self.config.crop_size)
        } else {
            match (self.config.do_resize, self.config.size) {
                (true, ResizeTarget::Exact { height, width }) => Some((height, width)),
                _ => None,
            }
        }
    }

    /// The 8-bit RGB image after conversion, resize and crop (before rescale/normalise).
    pub fn prepare(&self, image: &DynamicImage) -> RgbImage {
        let config = &self.config;
        let rgb = to_rgb(image);
        let rgb = if config.do_resize {
            let (height, width) = resized_size(rgb.height(), rgb.width(), config.size);
            pil_resample::resize(&rgb, width, height, config.resample)
        } else {
            rgb
        };
        if config.do_center_crop {
            center_crop(&rgb, config.crop_size.0, config.crop_size.1)
        } else {
            rgb
        }
    }

    /// `pixel_values` of one image: [3, h, w] f32 on `device`.
    pub fn preprocess(&self, image: &DynamicImage, device: &Device) -> Result<Tensor> {
        let prepared = self.prepare(image);
        let (width, height) = prepared.dimensions();
        let plane = (width * height) as usize;
        let mut values = vec![0f32; 3 * plane];
        for (index, pixel) in prepared.pixels().enumerate() {
            for channel in 0..3 {
                values[channel * plane + index] = self.pixel_value(pixel.0[channel], channel);
            }
        }
        Ok(Tensor::from_vec(
            values,
            (3, height as usize, width as usize),
            device,
        )?)
    }

    /// `rescale` (f64 product, cast to f32) then `normalize` (in f32), as numpy does.
    fn pixel_value(&self, byte: u8, channel: usize) -> f32 {
        let config = &self.config;
        let value = if config.do_rescale {
            (f64::from(byte) * config.rescale_factor) as f32
        } else {
            f32::from(byte)
        };
        if config.do_normalize {
            (value - config.image_mean[channel]) / config.image_std[channel]
        } else {
            value
        }
    }
}

/// transformers' `convert_to_rgb`: images with an alpha channel are composited onto white.
fn to_rgb(image: &DynamicImage) -> RgbImage {
    if image.color().has_alpha() {
        pil_resample::composite_onto(&image.to_rgba8(), [255, 255, 255])
    } else {
        image.to_rgb8()
    }
}

/// `get_resize_output_image_size(..., default_to_square=False)`: (height, width).
pub fn resized_size(height: u32, width: u32, target: ResizeTarget) -> (u32, u32) {
    match target {
        ResizeTarget::Exact { height, width } => (height, width),
        ResizeTarget::ShortestEdge(short_target) => {
            let (short, long) = if width <= height {
                (width, height)
            } else {
                (height, width)
            };
            let new_long = (f64::from(short_target) * f64::from(long) / f64::from(short)) as u32;
            if width <= height {
                (new_long, short_target)
            } else {
                (short_target, new_long)
            }
        }
    }
}

/// transformers' numpy `center_crop`: top/left = (size - crop) // 2; an image smaller than
/// the crop is first zero-padded (ceil of half the shortfall on the top/left).
fn center_crop(image: &RgbImage, crop_height: u32, crop_width: u32) -> RgbImage {
    let (width, height) = image.dimensions();
    let padded_height = height.max(crop_height);
    let padded_width = width.max(crop_width);
    let top_pad = (padded_height - height).div_ceil(2);
    let left_pad = (padded_width - width).div_ceil(2);
    // floor division of a possibly negative difference, as Python's //
    let top = (i64::from(height) - i64::from(crop_height)).div_euclid(2) + i64::from(top_pad);
    let left = (i64::from(width) - i64::from(crop_width)).div_euclid(2) + i64::from(left_pad);
    RgbImage::from_fn(crop_width, crop_height, |x, y| {
        let source_x = left + i64::from(x) - i64::from(left_pad);
        let source_y = top + i64::from(y) - i64::from(top_pad);
        if (0..i64::from(width)).contains(&source_x) && (0..i64::from(height)).contains(&source_y) {
            *image.get_pixel(source_x as u32, source_y as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_sizes_truncate_like_transformers() {
        let target = ResizeTarget::ShortestEdge(32);
        assert_eq!(resized_size(50, 75, target), (32, 48));
        assert_eq!(resized_size(97, 41, target), (75, 32)); // 32 * 97 / 41 = 75.7
        assert_eq!(resized_size(32, 32, target), (32, 32));
    }

    #[test]
    fn crop_of_a_small_image_pads_with_zeros() {
        let image = RgbImage::from_pixel(3, 2, image::Rgb([9, 9, 9]));
        let cropped = center_crop(&image, 4, 4);
        // padded to 4×4 with the image at top 1, left 1 (ceil of half the shortfall)
        assert_eq!(cropped.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(cropped.get_pixel(1, 1).0, [9, 9, 9]);
        assert_eq!(cropped.get_pixel(3, 2).0, [9, 9, 9]);
        assert_eq!(cropped.get_pixel(3, 3).0, [0, 0, 0]);
    }

    #[test]
    fn config_forms_parse() {
        let config = ClipImageProcessorConfig::from_json(&serde_json::json!({
            "size": 224, "crop_size": {"height": 10, "width": 12}, "resample": 2
        }))
        .unwrap();
        assert_eq!(config.size, ResizeTarget::ShortestEdge(224));
        assert_eq!(config.crop_size, (10, 12));
        assert_eq!(config.resample, PilFilter::Bilinear);
        let error =
            ClipImageProcessorConfig::from_json(&serde_json::json!({"resample": 0})).unwrap_err();
        assert!(error.contains("resample"), "{error}");
    }
}
