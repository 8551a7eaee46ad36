//! Reading and writing image files with errors that name the file, and the conversions
//! between 8-bit images and the f32 RGB working format the enhancers use
//! (values in [0, 1], interleaved, as `image::Rgb32FImage`), and PNGs with the settings
//! an image was made with in text chunks.

use std::path::Path;

use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, Rgb32FImage, RgbImage, RgbaImage};

use crate::error::{ImagingError, Result};

/// Bounds on untrusted image files, checked from the header before any pixel is decoded
/// and passed to the decoder as `image::Limits` (so a file whose header lies is still
/// stopped before it allocates more than `max_pixels` worth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest width or height.
    pub max_side: u32,
    /// Largest width × height.
    pub max_pixels: u64,
}

impl DecodeLimits {
    /// 16384 a side and 64 megapixels (8192²): past every size huatu generates, edits or
    /// upscales, and a decoded 16-bit RGBA image of that size is 512 MiB, the image
    /// crate's own default allocation cap.
    pub const DEFAULT: Self = Self {
        max_side: 16384,
        max_pixels: 64 << 20,
    };

    /// The default pixel budget with a smaller side (the server's `--max-dimension`).
    pub fn with_max_side(max_side: usize) -> Self {
        let max_side = u32::try_from(max_side).unwrap_or(u32::MAX);
        Self {
            max_side: max_side.min(Self::DEFAULT.max_side),
            ..Self::DEFAULT
        }
    }

    /// Errors unless `width`×`height` is within the limits.
    pub fn check(&self, what: &str, width: u32, height: u32) -> Result<()> {
        ensure_not_empty(what, width, height)?;
        if width > self.max_side
            || height > self.max_side
            || u64::from(width) * u64::from(height) > self.max_pixels
        {
            return Err(ImagingError::ImageTooLarge {
                what: what.to_string(),
                width,
                height,
                max_side: self.max_side,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }

    /// The same bounds for the decoder: at most 8 bytes (16-bit RGBA) per allowed pixel.
    fn decoder_limits(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_pixels.saturating_mul(8));
        limits
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Opens and decodes an image within [`DecodeLimits::DEFAULT`], guessing the format from
/// its bytes. Unreadable, truncated, zero-sized and oversized files are errors that name
/// the file.
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    load_image_with(path, &DecodeLimits::DEFAULT)
}

/// As [`load_image`], within `limits`.
pub fn load_image_with(path: &Path, limits: &DecodeLimits) -> Result<DynamicImage> {
    let io_error = |source| ImagingError::Io {
        path: path.to_path_buf(),
        source,
    };
    let read_error = |source| ImagingError::Read {
        path: path.to_path_buf(),
        source,
    };
    let open = || -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
        ImageReader::open(path)
            .map_err(io_error)?
            .with_guessed_format()
            .map_err(io_error)
    };
    let (width, height) = open()?.into_dimensions().map_err(read_error)?;
    limits.check(&path.display().to_string(), width, height)?;
    let mut reader = open()?;
    reader.limits(limits.decoder_limits());
    let image = reader.decode().map_err(read_error)?;
    ensure_not_empty(&path.display().to_string(), image.width(), image.height())?;
    Ok(image)
}

/// Decodes an image held in memory (an upload) within `limits`; `format` is guessed from
/// the bytes when `None`. `what` names the image in errors.
pub fn decode_image(
    bytes: &[u8],
    format: Option<ImageFormat>,
    what: &str,
    limits: &DecodeLimits,
) -> Result<DynamicImage> {
    let decode_error = |source: image::ImageError| ImagingError::Decode {
        what: what.to_string(),
        reason: source.to_string(),
    };
    let format = match format {
        Some(format) => format,
        None => image::guess_format(bytes).map_err(decode_error)?,
    };
    let reader = || ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let (width, height) = reader().into_dimensions().map_err(decode_error)?;
    limits.check(what, width, height)?;
    let mut reader = reader();
    reader.limits(limits.decoder_limits());
    let image = reader.decode().map_err(decode_error)?;
    ensure_not_empty(what, image.width(), image.height())?;
    Ok(image)
}

/// Writes an image in the format its extension names (png, jpg/jpeg, webp). Formats
/// without alpha (JPEG) get the RGB channels only.
pub fn save_image(image: &DynamicImage, path: &Path) -> Result<()> {
    let is_jpeg = path
        .extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            extension.eq_ignore_ascii_case("jpg") || extension.eq_ignore_ascii_case("jpeg")
        });
    let result = if is_jpeg && image.color().has_alpha() {
        DynamicImage::ImageRgb8(image.to_rgb8()).save(path)
    } else {
        image.save(path)
    };
    result.map_err(|source| ImagingError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// An 8-bit RGB PNG with UTF-8 (iTXt) text chunks, `(keyword, text)` in order: how huatu
/// stores the settings an image was made with (`huatu generate`'s files, the server's
/// results), so any image can be reproduced.
pub fn encode_png<T: AsRef<str>>(image: &RgbImage, text_chunks: &[(&str, T)]) -> Result<Vec<u8>> {
    encode_png_pixels(
        image.as_raw(),
        image.dimensions(),
        png::ColorType::Rgb,
        text_chunks,
    )
}

/// An 8-bit grayscale PNG (masks), no text chunks.
pub fn encode_gray_png(image: &GrayImage) -> Result<Vec<u8>> {
    encode_png_pixels::<&str>(
        image.as_raw(),
        image.dimensions(),
        png::ColorType::Grayscale,
        &[],
    )
}

/// [`encode_png`] written to `path`.
pub fn write_png<T: AsRef<str>>(
    path: &Path,
    image: &RgbImage,
    text_chunks: &[(&str, T)],
) -> Result<()> {
    let bytes = encode_png(image, text_chunks)?;
    std::fs::write(path, bytes).map_err(|source| ImagingError::WriteFile {
        path: path.to_path_buf(),
        source,
    })
}

fn encode_png_pixels<T: AsRef<str>>(
    pixels: &[u8],
    (width, height): (u32, u32),
    color: png::ColorType,
    text_chunks: &[(&str, T)],
) -> Result<Vec<u8>> {
    let encoding = |source| ImagingError::PngEncode {
        width,
        height,
        source,
    };
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    for (keyword, text) in text_chunks {
        encoder
            .add_itxt_chunk(keyword.to_string(), text.as_ref().to_string())
            .map_err(encoding)?;
    }
    let mut writer = encoder.write_header().map_err(encoding)?;
    writer.write_image_data(pixels).map_err(encoding)?;
    writer.finish().map_err(encoding)?;
    Ok(bytes)
}

/// Errors unless the image has at least one pixel.
pub fn ensure_not_empty(what: &str, width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(ImagingError::EmptyImage {
            what: what.to_string(),
            width,
            height,
        });
    }
    Ok(())
}

/// 8-bit RGB to the f32 working format (value / 255).
pub fn rgb8_to_f32(image: &RgbImage) -> Rgb32FImage {
    let data = image
        .as_raw()
        .iter()
        .map(|&v| f32::from(v) / 255.0)
        .collect();
    Rgb32FImage::from_raw(image.width(), image.height(), data)
        .unwrap_or_else(|| Rgb32FImage::new(image.width(), image.height()))
}

/// The f32 working format back to 8-bit RGB, clamped to [0, 1] and rounded.
pub fn f32_to_rgb8(image: &Rgb32FImage) -> RgbImage {
    let data = image.as_raw().iter().map(|&v| unit_to_u8(v)).collect();
    RgbImage::from_raw(image.width(), image.height(), data)
        .unwrap_or_else(|| RgbImage::new(image.width(), image.height()))
}

/// Rounds a value in [0, 1] to the nearest 8-bit level (NaN becomes 0).
pub fn unit_to_u8(value: f32) -> u8 {
    if value.is_nan() {
        return 0;
    }
    (value.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// An image split into its colour, in the working format, and its alpha plane (if it
/// had one), so enhancers only ever see RGB.
pub struct SplitImage {
    pub rgb: Rgb32FImage,
    pub alpha: Option<GrayImage>,
}

impl SplitImage {
    pub fn from_dynamic(image: &DynamicImage) -> Self {
        let rgb = rgb8_to_f32(&image.to_rgb8());
        let alpha = image.color().has_alpha().then(|| {
            let rgba = image.to_rgba8();
            let data = rgba.pixels().map(|pixel| pixel.0[3]).collect();
            GrayImage::from_raw(image.width(), image.height(), data)
                .unwrap_or_else(|| GrayImage::new(image.width(), image.height()))
        });
        Self { rgb, alpha }
    }

    /// Joins colour and alpha again. The alpha plane must already have the colour's
    /// size (the enhancer chain resizes it alongside any upscale).
    pub fn into_dynamic(self) -> DynamicImage {
        let rgb = f32_to_rgb8(&self.rgb);
        match self.alpha {
            Some(alpha) if alpha.dimensions() == rgb.dimensions() => {
                let mut rgba = RgbaImage::new(rgb.width(), rgb.height());
                for ((out, colour), a) in rgba.pixels_mut().zip(rgb.pixels()).zip(alpha.pixels()) {
                    out.0 = [colour.0[0], colour.0[1], colour.0[2], a.0[0]];
                }
                DynamicImage::ImageRgba8(rgba)
            }
            _ => DynamicImage::ImageRgb8(rgb),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_u8_clamps_and_rounds() {
        assert_eq!(unit_to_u8(-0.5), 0);
        assert_eq!(unit_to_u8(2.0), 255);
        assert_eq!(unit_to_u8(0.5), 128);
        assert_eq!(unit_to_u8(f32::NAN), 0);
        assert_eq!(unit_to_u8(100.0 / 255.0), 100);
    }

    #[test]
    fn u8_f32_round_trip_is_exact() {
        let image = RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 16, y as u8 * 16, 7]));
        assert_eq!(f32_to_rgb8(&rgb8_to_f32(&image)), image);
    }

    #[test]
    fn truncated_and_missing_files_are_errors_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("huatu-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let path = dir.join("truncated.png");
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(RgbImage::new(32, 32))
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .ok();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).ok();
        let message = load_image(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("truncated.png"), "{message}");
        let missing = dir.join("missing.png");
        let message = load_image(&missing)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("missing.png"), "{message}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn png_text_chunks_are_written_and_pixels_round_trip() -> Result<()> {
        let image = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8 * 80, y as u8 * 90, 5]));
        let bytes = encode_png(
            &image,
            &[("huatu", "{\"seed\":1}"), ("parameters", "a cat")],
        )?;
        let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
        let reader = decoder.read_info().map_err(|error| ImagingError::Decode {
            what: "test PNG".into(),
            reason: error.to_string(),
        })?;
        let chunks: Vec<(String, String)> = reader
            .info()
            .utf8_text
            .iter()
            .map(|chunk| (chunk.keyword.clone(), chunk.get_text().unwrap_or_default()))
            .collect();
        assert_eq!(
            chunks,
            vec![
                ("huatu".to_string(), "{\"seed\":1}".to_string()),
                ("parameters".to_string(), "a cat".to_string())
            ]
        );
        let decoded = decode_image(&bytes, None, "test PNG", &DecodeLimits::DEFAULT)?;
        assert_eq!(decoded.to_rgb8(), image);
        let mask = GrayImage::from_fn(2, 2, |x, _| image::Luma([x as u8 * 255]));
        let decoded = decode_image(
            &encode_gray_png(&mask)?,
            None,
            "mask",
            &DecodeLimits::DEFAULT,
        )?;
        assert_eq!(decoded.to_luma8(), mask);
        Ok(())
    }

    #[test]
    fn alpha_survives_split_and_join() {
        let rgba = RgbaImage::from_fn(4, 3, |x, y| image::Rgba([10, 20, 30, (x * 60 + y) as u8]));
        let split = SplitImage::from_dynamic(&DynamicImage::ImageRgba8(rgba.clone()));
        assert!(split.alpha.is_some());
        assert_eq!(split.into_dynamic().to_rgba8(), rgba);
    }
}
