//! Pillow's `Image.resize` for 8-bit RGB (src/libImaging/Resample.c) and
//! `Image.alpha_composite` onto an opaque background (src/libImaging/AlphaComposite.c),
//! integer for integer, because transformers' `CLIPImageProcessorPil` preprocesses images
//! with them and CLIP's embeddings should not depend on who resized the picture.
//!
//! Resampling is separable convolution: coefficients are computed in f64 with the filter
//! stretched by the downscale factor (antialiasing), normalised to sum 1, turned into
//! 22-bit fixed point, then a horizontal and a vertical pass (in Pillow 13's order) through
//! an 8-bit intermediate image, each rounding and clamping to 0..=255 as Pillow does.

use image::RgbImage;

/// Pillow's fixed-point precision for 8-bit images: `32 - 8 - 2`.
const PRECISION_BITS: u32 = 22;

/// Pillow's convolution filters, by the ids of `PIL.Image.Resampling` (NEAREST, 0, is a
/// different algorithm in Pillow and is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PilFilter {
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl PilFilter {
    /// The filter for a `resample` id of a transformers image-processor config.
    pub fn from_pil_id(id: u64) -> Option<Self> {
        match id {
            1 => Some(Self::Lanczos),
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            4 => Some(Self::Box),
            5 => Some(Self::Hamming),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
            Self::Bicubic => {
                // Keys' cubic with a = -0.5, as Pillow.
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// One output pixel's source window and fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the whole input range.
fn coefficients(input_size: usize, output_size: usize, filter: PilFilter) -> Vec<Taps> {
    let scale = input_size as f64 / output_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let inverse_scale = 1.0 / filter_scale;
    (0..output_size)
        .map(|output| {
            let center = (output as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero, as `as` does.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(input_size as i64) as usize;
            let raw: Vec<f64> = (first..end.max(first))
                .map(|input| filter.weight((input as f64 - center + 0.5) * inverse_scale))
                .collect();
            let total: f64 = raw.iter().sum();
            let one = f64::from(1u32 << PRECISION_BITS);
            let weights = raw
                .iter()
                .map(|&weight| {
                    let weight = if total != 0.0 { weight / total } else { weight };
                    if weight < 0.0 {
                        (-0.5 + weight * one) as i32
                    } else {
                        (0.5 + weight * one) as i32
                    }
                })
                .collect();
            Taps { first, weights }
        })
        .collect()
}

/// Pillow's `clip8`: drop the fraction, clamp to a byte.
fn clip8(sum: i64) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `image.resize((width, height), resample=filter)` for an RGB image. Same size returns a
/// copy, as Pillow does.
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: PilFilter) -> RgbImage {
    let (input_width, input_height) = (i64::from(image.width()), i64::from(image.height()));
    let height_reduction = input_height - i64::from(height);
    // Pillow 13 (`ImagingResampleInner`) runs the vertical pass first when the height
    // shrinks by more than twice as many pixels as the width; each pass rounds to 8 bits,
    // so the order shows in the result. (Pillow 12 and older always went horizontal first.)
    let horizontal_first =
        !(height_reduction > 0 && height_reduction > (input_width - i64::from(width)) * 2);
    let mut current = image.clone();
    if horizontal_first {
        if width != current.width() {
            current = horizontal_pass(&current, width, filter);
        }
        if height != current.height() {
            current = vertical_pass(&current, height, filter);
        }
    } else {
        current = vertical_pass(&current, height, filter);
        if width != current.width() {
            current = horizontal_pass(&current, width, filter);
        }
    }
    current
}

fn horizontal_pass(image: &RgbImage, width: u32, filter: PilFilter) -> RgbImage {
    let taps = coefficients(image.width() as usize, width as usize, filter);
    let source = image.as_raw();
    let source_width = image.width() as usize;
    let mut output = Vec::with_capacity(width as usize * image.height() as usize * 3);
    for row in 0..image.height() as usize {
        let row_start = row * source_width * 3;
        for tap in &taps {
            let mut sums = [1i64 << (PRECISION_BITS - 1); 3];
            for (offset, &weight) in tap.weights.iter().enumerate() {
                let pixel = row_start + (tap.first + offset) * 3;
                for (channel, sum) in sums.iter_mut().enumerate() {
                    *sum += i64::from(source[pixel + channel]) * i64::from(weight);
                }
            }
            output.extend(sums.map(clip8));
        }
    }
    from_raw(width, image.height(), output)
}

fn vertical_pass(image: &RgbImage, height: u32, filter: PilFilter) -> RgbImage {
    let taps = coefficients(image.height() as usize, height as usize, filter);
    let source = image.as_raw();
    let stride = image.width() as usize * 3;
    let mut output = Vec::with_capacity(height as usize * stride);
    for tap in &taps {
        for column in 0..stride {
            let mut sum = 1i64 << (PRECISION_BITS - 1);
            for (offset, &weight) in tap.weights.iter().enumerate() {
                sum +=
                    i64::from(source[(tap.first + offset) * stride + column]) * i64::from(weight);
            }
            output.push(clip8(sum));
        }
    }
    from_raw(image.width(), height, output)
}

fn from_raw(width: u32, height: u32, pixels: Vec<u8>) -> RgbImage {
    // The buffer is built to exactly width × height × 3 above.
    RgbImage::from_raw(width, height, pixels).unwrap_or_else(|| RgbImage::new(width, height))
}

/// `Image.alpha_composite(Image.new("RGBA", size, background), image).convert("RGB")`:
/// transformers' `convert_to_rgb` for images with transparency (white background), with
/// Pillow's 7-bit-precision integer blend.
pub fn composite_onto(image: &image::RgbaImage, background: [u8; 3]) -> RgbImage {
    const BITS: u32 = 7;
    let shift_div_255 = |value: u32| ((value >> 8) + value) >> 8;
    let pixels = image
        .pixels()
        .flat_map(|pixel| {
            let [red, green, blue, alpha] = pixel.0;
            if alpha == 0 {
                return background;
            }
            let alpha = u32::from(alpha);
            // background alpha is 255
            let blend = 255 * (255 - alpha);
            let output_alpha_255 = alpha * 255 + blend;
            let source_coefficient = alpha * 255 * 255 * (1 << BITS) / output_alpha_255;
            let background_coefficient = 255 * (1 << BITS) - source_coefficient;
            let mix = |source: u8, under: u8| {
                let value = u32::from(source) * source_coefficient
                    + u32::from(under) * background_coefficient;
                (shift_div_255(value + (0x80 << BITS)) >> BITS) as u8
            };
            [
                mix(red, background[0]),
                mix(green, background[1]),
                mix(blue, background[2]),
            ]
        })
        .collect();
    from_raw(image.width(), image.height(), pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (input, output) in [(75, 32), (32, 75), (97, 32), (10, 10)] {
            for tap in coefficients(input, output, PilFilter::Bicubic) {
                let sum: i32 = tap.weights.iter().sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= tap.weights.len() as i32);
                assert!(tap.first + tap.weights.len() <= input);
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let image = RgbImage::from_pixel(75, 50, image::Rgb([10, 128, 250]));
        let resized = resize(&image, 32, 21, PilFilter::Bicubic);
        assert_eq!(resized.dimensions(), (32, 21));
        assert!(resized.pixels().all(|pixel| pixel.0 == [10, 128, 250]));
    }

    #[test]
    fn compositing_keeps_opaque_and_whitens_transparent_pixels() {
        let mut image = image::RgbaImage::new(3, 1);
        image.put_pixel(0, 0, image::Rgba([10, 20, 30, 255]));
        image.put_pixel(1, 0, image::Rgba([10, 20, 30, 0]));
        image.put_pixel(2, 0, image::Rgba([0, 0, 0, 128]));
        let rgb = composite_onto(&image, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(0, 0).0, [10, 20, 30]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(2, 0).0, [127, 127, 127]);
    }
}
