//! High-quality resampling through `fast_image_resize` (SIMD convolution, Lanczos3 by
//! default, as Pillow's `Image.resize(LANCZOS)` does), for 8-bit RGB, f32 RGB and 8-bit
//! single-channel (alpha) images, with an optional source crop box so that
//! "resize then crop" is one pass.

use std::fmt;
use std::str::FromStr;

use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType, IntoImageView, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{GrayImage, Rgb32FImage, RgbImage};

use crate::error::{ImagingError, Result};

/// The resampling filter, one spelling shared by the CLI and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResizeFilter {
    /// Windowed sinc with 3 lobes (Pillow's LANCZOS).
    #[default]
    Lanczos3,
    /// Catmull-Rom cubic (Pillow's BICUBIC).
    CatmullRom,
    /// Triangle filter (Pillow's BILINEAR).
    Bilinear,
    /// Nearest neighbour: no new colours, for masks and pixel art.
    Nearest,
}

impl ResizeFilter {
    pub const ALL: [ResizeFilter; 4] = [
        ResizeFilter::Lanczos3,
        ResizeFilter::CatmullRom,
        ResizeFilter::Bilinear,
        ResizeFilter::Nearest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResizeFilter::Lanczos3 => "lanczos3",
            ResizeFilter::CatmullRom => "catmull-rom",
            ResizeFilter::Bilinear => "bilinear",
            ResizeFilter::Nearest => "nearest",
        }
    }

    fn algorithm(self) -> ResizeAlg {
        match self {
            ResizeFilter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
            ResizeFilter::CatmullRom => ResizeAlg::Convolution(FilterType::CatmullRom),
            ResizeFilter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            ResizeFilter::Nearest => ResizeAlg::Nearest,
        }
    }
}

impl fmt::Display for ResizeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResizeFilter {
    type Err = ImagingError;
    fn from_str(text: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|filter| filter.as_str() == text)
            .ok_or_else(|| ImagingError::UnknownName {
                what: "resize filter",
                given: text.to_string(),
                known: Self::ALL.map(|filter| filter.as_str()).join(", "),
            })
    }
}

/// A region of the source image in source pixels (may be fractional).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceBox {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

fn resize_into(
    source: &impl IntoImageView,
    (width, height): (u32, u32),
    pixel_type: PixelType,
    filter: ResizeFilter,
    source_box: Option<SourceBox>,
) -> Result<Vec<u8>> {
    let error = |reason: String| ImagingError::Resize {
        from_width: source.width(),
        from_height: source.height(),
        to_width: width,
        to_height: height,
        reason,
    };
    if width == 0 || height == 0 || source.width() == 0 || source.height() == 0 {
        return Err(error("both sizes must be at least 1×1".to_string()));
    }
    let mut destination = FirImage::new(width, height, pixel_type);
    let mut options = ResizeOptions::new().resize_alg(filter.algorithm());
    if let Some(region) = source_box {
        options = options.crop(region.left, region.top, region.width, region.height);
    }
    let _span = tracing::trace_span!("resize", width, height, filter = filter.as_str()).entered();
    Resizer::new()
        .resize(source, &mut destination, &options)
        .map_err(|e| error(e.to_string()))?;
    Ok(destination.into_vec())
}

/// Resizes 8-bit RGB to `width`×`height`, optionally reading only `source_box`.
pub fn resize_rgb8(
    image: &RgbImage,
    size: (u32, u32),
    filter: ResizeFilter,
    source_box: Option<SourceBox>,
) -> Result<RgbImage> {
    let bytes = resize_into(image, size, PixelType::U8x3, filter, source_box)?;
    RgbImage::from_raw(size.0, size.1, bytes).ok_or_else(|| buffer_error(size))
}

/// Resizes an 8-bit single-channel image (an alpha plane or a mask).
pub fn resize_gray8(
    image: &GrayImage,
    size: (u32, u32),
    filter: ResizeFilter,
) -> Result<GrayImage> {
    let bytes = resize_into(image, size, PixelType::U8, filter, None)?;
    GrayImage::from_raw(size.0, size.1, bytes).ok_or_else(|| buffer_error(size))
}

/// Resizes the f32 working format.
pub fn resize_rgb_f32(
    image: &Rgb32FImage,
    size: (u32, u32),
    filter: ResizeFilter,
) -> Result<Rgb32FImage> {
    let bytes = resize_into(image, size, PixelType::F32x3, filter, None)?;
    let data: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Rgb32FImage::from_raw(size.0, size.1, data).ok_or_else(|| buffer_error(size))
}

fn buffer_error((width, height): (u32, u32)) -> ImagingError {
    ImagingError::Invalid {
        what: "resize",
        reason: format!("output buffer does not hold {width}×{height} pixels"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_names_round_trip() {
        for filter in ResizeFilter::ALL {
            assert_eq!(filter.as_str().parse::<ResizeFilter>().ok(), Some(filter));
            assert_eq!(filter.to_string(), filter.as_str());
        }
        assert!("cubic".parse::<ResizeFilter>().is_err());
    }

    #[test]
    fn constant_image_stays_constant_after_lanczos() {
        let image = RgbImage::from_pixel(37, 23, image::Rgb([200, 100, 50]));
        for size in [(10, 7), (80, 51)] {
            let resized = resize_rgb8(&image, size, ResizeFilter::Lanczos3, None).ok();
            let resized = resized.unwrap_or_default();
            assert_eq!(resized.dimensions(), size);
            assert!(resized.pixels().all(|p| p.0 == [200, 100, 50]));
        }
    }

    #[test]
    fn f32_resize_preserves_mean_of_a_gradient() {
        let image = Rgb32FImage::from_fn(64, 64, |x, _| image::Rgb([x as f32 / 63.0, 0.5, 0.25]));
        let resized = resize_rgb_f32(&image, (32, 32), ResizeFilter::Lanczos3).unwrap_or_default();
        let mean: f32 = resized.pixels().map(|p| p.0[0]).sum::<f32>() / 1024.0;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert!(resized.pixels().all(|p| (p.0[1] - 0.5).abs() < 1e-4));
    }

    #[test]
    fn zero_target_is_an_error() {
        let image = RgbImage::new(4, 4);
        assert!(resize_rgb8(&image, (0, 4), ResizeFilter::Lanczos3, None).is_err());
    }
}
