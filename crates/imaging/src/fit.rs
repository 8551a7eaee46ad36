//! Preprocessing to a target size, always keeping the aspect ratio: cover-and-crop
//! (centered or at a seeded random offset) or fit-and-pad with the image's own mean
//! colour. The report carries what SDXL's micro-conditioning wants: the original size,
//! the crop's top-left corner and the target size, measured as in diffusers'
//! `train_text_to_image_sdxl.py` (resize so the image covers the target, then crop;
//! offsets are in the resized image's pixels).

use std::str::FromStr;

use image::{DynamicImage, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use strum::{IntoStaticStr, VariantArray};

use crate::buckets::nearest_sdxl_bucket;
use crate::error::{ImagingError, Result};
use crate::io::ensure_not_empty;
use crate::names::parse_name;
use crate::resize::{resize_rgb8, ResizeFilter, SourceBox};
use crate::size::Size;

/// How an image is brought to the target's aspect ratio.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, strum::Display, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "kebab-case")]
pub enum FitMode {
    /// Scale to fit inside, fill the rest with the image's mean colour, centered.
    Pad,
    /// Scale to cover (short side aligned), crop the excess equally on both sides.
    #[default]
    CenterCrop,
    /// Scale to cover, crop at a seeded random offset.
    RandomCrop,
}

impl FitMode {
    pub const ALL: &'static [FitMode] = FitMode::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl FromStr for FitMode {
    type Err = ImagingError;
    fn from_str(text: &str) -> Result<Self> {
        parse_name("fit mode", text)
    }
}

/// The size to prepare for: fixed, or the SDXL bucket nearest each image's ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSize {
    Exact(Size),
    SdxlBucket,
}

impl TargetSize {
    pub fn resolve(self, original: Size) -> Size {
        match self {
            TargetSize::Exact(size) => size,
            TargetSize::SdxlBucket => nearest_sdxl_bucket(original.width, original.height),
        }
    }
}

/// Everything `fit` needs besides the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitOptions {
    pub target: TargetSize,
    pub mode: FitMode,
    pub filter: ResizeFilter,
    /// Seeds the offset of `random-crop`; the same seed gives the same crop.
    pub seed: u64,
}

impl FitOptions {
    /// These options with the seed mixed with `key` (FNV-1a over its bytes), so each image
    /// gets its own random crop and the same one on every run, whatever else is in the set.
    pub fn keyed(&self, key: &str) -> FitOptions {
        FitOptions {
            seed: keyed_seed(self.seed, key),
            ..*self
        }
    }
}

/// `seed` mixed with `key` by FNV-1a.
pub fn keyed_seed(seed: u64, key: &str) -> u64 {
    key.bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64 ^ seed, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        })
}

/// What was done to the image, for SDXL micro-conditioning and for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitReport {
    pub original_size: Size,
    /// The size after scaling, before cropping or padding.
    pub resized_size: Size,
    pub target_size: Size,
    /// (top, left) of the crop in the resized image; (0, 0) when padding.
    pub crop_top_left: (u32, u32),
    /// (top, left) of the resized image inside the padded canvas; (0, 0) when cropping.
    pub pad_top_left: (u32, u32),
    /// The fill colour when padding.
    pub fill: Option<[u8; 3]>,
}

impl FitReport {
    /// SDXL's `add_time_ids` inputs in diffusers' order and units:
    /// `original_size` (height, width), `crops_coords_top_left` (top, left),
    /// `target_size` (height, width).
    pub fn sdxl_micro_conditioning(&self) -> [u32; 6] {
        [
            self.original_size.height,
            self.original_size.width,
            self.crop_top_left.0,
            self.crop_top_left.1,
            self.target_size.height,
            self.target_size.width,
        ]
    }
}

/// The prepared image and its report.
pub struct Fitted {
    pub image: RgbImage,
    pub report: FitReport,
}

/// Brings `image` to the target size with its aspect ratio kept. Transparent pixels
/// are first laid over the image's mean colour, so no black shows through.
pub fn fit(image: &DynamicImage, options: &FitOptions) -> Result<Fitted> {
    ensure_not_empty("input image", image.width(), image.height())?;
    let (rgb, mean) = flatten_over_mean(image);
    let original = Size::new(rgb.width(), rgb.height());
    let target = options.target.resolve(original);
    let _span =
        tracing::debug_span!("fit", %original, %target, mode = options.mode.as_str()).entered();
    match options.mode {
        FitMode::Pad => pad(&rgb, original, target, mean, options.filter),
        FitMode::CenterCrop | FitMode::RandomCrop => crop(&rgb, original, target, options),
    }
}

/// The mean colour, rounded to 8 bits; for images with alpha, weighted by alpha.
pub fn mean_colour(image: &DynamicImage) -> [u8; 3] {
    flatten_over_mean(image).1
}

fn flatten_over_mean(image: &DynamicImage) -> (RgbImage, [u8; 3]) {
    if !image.color().has_alpha() {
        let rgb = image.to_rgb8();
        let mut sums = [0u64; 3];
        for pixel in rgb.pixels() {
            for (sum, &value) in sums.iter_mut().zip(pixel.0.iter()) {
                *sum += u64::from(value);
            }
        }
        let count = u64::from(rgb.width()) * u64::from(rgb.height());
        let mean = sums.map(|sum| ((sum as f64 / count.max(1) as f64).round()) as u8);
        return (rgb, mean);
    }
    let rgba = image.to_rgba8();
    let mut sums = [0f64; 3];
    let mut weight = 0f64;
    for pixel in rgba.pixels() {
        let alpha = f64::from(pixel.0[3]) / 255.0;
        for (sum, &value) in sums.iter_mut().zip(pixel.0.iter()) {
            *sum += alpha * f64::from(value);
        }
        weight += alpha;
    }
    // A fully transparent image has no colour of its own; mid-grey is the neutral choice.
    let mean = if weight > 0.0 {
        sums.map(|sum| (sum / weight).round() as u8)
    } else {
        [128, 128, 128]
    };
    let rgb = RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let alpha = f32::from(a) / 255.0;
        let blend = |value: u8, background: u8| {
            (alpha * f32::from(value) + (1.0 - alpha) * f32::from(background)).round() as u8
        };
        Rgb([blend(r, mean[0]), blend(g, mean[1]), blend(b, mean[2])])
    });
    (rgb, mean)
}

/// Scales one side exactly to the target and the other in proportion, rounded.
fn scaled_size(original: Size, scale: f64, target: Size, width_aligned: bool) -> Size {
    if width_aligned {
        let height = (f64::from(original.height) * scale).round().max(1.0) as u32;
        Size::new(target.width, height)
    } else {
        let width = (f64::from(original.width) * scale).round().max(1.0) as u32;
        Size::new(width, target.height)
    }
}

fn crop(rgb: &RgbImage, original: Size, target: Size, options: &FitOptions) -> Result<Fitted> {
    let scale_x = f64::from(target.width) / f64::from(original.width);
    let scale_y = f64::from(target.height) / f64::from(original.height);
    let width_aligned = scale_x >= scale_y;
    let mut resized = scaled_size(original, scale_x.max(scale_y), target, width_aligned);
    // Rounding must never leave the covering side short of the target.
    resized.width = resized.width.max(target.width);
    resized.height = resized.height.max(target.height);
    let (extra_x, extra_y) = (resized.width - target.width, resized.height - target.height);
    let (top, left) = match options.mode {
        FitMode::RandomCrop => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
            (rng.gen_range(0..=extra_y), rng.gen_range(0..=extra_x))
        }
        _ => (extra_y / 2, extra_x / 2),
    };
    // Resizing the whole image and then cropping equals resizing only the crop's source
    // region, which is what one fast_image_resize pass with a source box does.
    let factor_x = f64::from(original.width) / f64::from(resized.width);
    let factor_y = f64::from(original.height) / f64::from(resized.height);
    let source_box = SourceBox {
        left: f64::from(left) * factor_x,
        top: f64::from(top) * factor_y,
        width: f64::from(target.width) * factor_x,
        height: f64::from(target.height) * factor_y,
    };
    let image = resize_rgb8(
        rgb,
        (target.width, target.height),
        options.filter,
        Some(source_box),
    )?;
    Ok(Fitted {
        image,
        report: FitReport {
            original_size: original,
            resized_size: resized,
            target_size: target,
            crop_top_left: (top, left),
            pad_top_left: (0, 0),
            fill: None,
        },
    })
}

fn pad(
    rgb: &RgbImage,
    original: Size,
    target: Size,
    mean: [u8; 3],
    filter: ResizeFilter,
) -> Result<Fitted> {
    let scale_x = f64::from(target.width) / f64::from(original.width);
    let scale_y = f64::from(target.height) / f64::from(original.height);
    let width_aligned = scale_x <= scale_y;
    let mut resized = scaled_size(original, scale_x.min(scale_y), target, width_aligned);
    resized.width = resized.width.min(target.width);
    resized.height = resized.height.min(target.height);
    let scaled = if resized == original {
        rgb.clone()
    } else {
        resize_rgb8(rgb, (resized.width, resized.height), filter, None)?
    };
    let top = (target.height - resized.height) / 2;
    let left = (target.width - resized.width) / 2;
    let mut canvas = RgbImage::from_pixel(target.width, target.height, Rgb(mean));
    image::imageops::replace(&mut canvas, &scaled, i64::from(left), i64::from(top));
    Ok(Fitted {
        image: canvas,
        report: FitReport {
            original_size: original,
            resized_size: resized,
            target_size: target,
            crop_top_left: (0, 0),
            pad_top_left: (top, left),
            fill: Some(mean),
        },
    })
}

#[cfg(test)]
#[path = "fit_tests.rs"]
mod tests;
