//! PNG bytes in and out: results are encoded with their settings in an iTXt chunk (as
//! `huatu generate` writes them); uploads are decoded with size limits checked from the
//! header before any pixel is decoded.

use huatu_imaging::{GrayImage, ImagingError, RgbImage};

pub use huatu_imaging::io::encode_gray_png;

/// A result or an input as stored: its settings as JSON in a `huatu` iTXt chunk.
pub fn encode_png(image: &RgbImage, settings_json: &str) -> Result<Vec<u8>, ImagingError> {
    huatu_imaging::io::encode_png(image, &[("huatu", settings_json)])
}

/// A stored PNG back to pixels (RGB).
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    let limits = huatu_imaging::io::DecodeLimits::DEFAULT;
    let decoded = huatu_imaging::io::decode_image(bytes, None, "stored image", &limits)
        .map_err(|error| format!("stored image is unreadable: {error}"))?
        .to_rgb8();
    Ok(decoded)
}

/// A stored PNG back to pixels (grayscale).
pub fn decode_gray(bytes: &[u8]) -> Result<GrayImage, String> {
    let limits = huatu_imaging::io::DecodeLimits::DEFAULT;
    let decoded = huatu_imaging::io::decode_image(bytes, None, "stored mask", &limits)
        .map_err(|error| format!("stored mask is unreadable: {error}"))?
        .to_luma8();
    Ok(decoded)
}

/// An uploaded image, checked and decoded to RGB.
#[derive(Debug)]
pub struct Upload {
    pub image: RgbImage,
    /// White where to repaint, read as OpenAI does for masks with transparency (fully
    /// transparent = edit) and as diffusers does otherwise (white = edit).
    pub mask: GrayImage,
    pub format: &'static str,
}

/// Decodes an uploaded PNG, JPEG or WebP. `max_dimension` bounds width and height (read
/// from the header first, so a decompression bomb is refused before it is decoded).
pub fn decode_upload(field: &str, bytes: &[u8], max_dimension: usize) -> Result<Upload, String> {
    let format = image::guess_format(bytes).map_err(|_| {
        format!("`{field}` is not an image huatu can read (PNG, JPEG or WebP expected)")
    })?;
    let name = match format {
        image::ImageFormat::Png => "png",
        image::ImageFormat::Jpeg => "jpeg",
        image::ImageFormat::WebP => "webp",
        other => {
            return Err(format!(
                "`{field}` is {other:?}; PNG, JPEG or WebP expected"
            ))
        }
    };
    let reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let (width, height) = reader
        .into_dimensions()
        .map_err(|error| format!("`{field}` is a broken {name} file: {error}"))?;
    if width == 0
        || height == 0
        || width as usize > max_dimension
        || height as usize > max_dimension
    {
        return Err(format!(
            "`{field}` is {width}×{height} pixels; width and height must be between 1 and {max_dimension}"
        ));
    }
    // the same capped decoder as the CLI's inputs (`image::Limits` from the same bounds)
    let limits = huatu_imaging::io::DecodeLimits::with_max_side(max_dimension);
    let decoded = huatu_imaging::io::decode_image(bytes, Some(format), field, &limits)
        .map_err(|error| format!("`{field}` is a broken {name} file: {error}"))?;
    let mask = if decoded.color().has_alpha() {
        let rgba = decoded.to_rgba8();
        GrayImage::from_fn(width, height, |x, y| {
            image::Luma([if rgba.get_pixel(x, y)[3] < 128 {
                255
            } else {
                0
            }])
        })
    } else {
        decoded.to_luma8()
    };
    Ok(Upload {
        image: decoded.to_rgb8(),
        mask,
        format: name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_limits() {
        let image = RgbImage::from_fn(2, 1, |x, _| {
            image::Rgb(if x == 0 { [255, 0, 0] } else { [0, 255, 0] })
        });
        let bytes = encode_png(&image, "{}").unwrap_or_default();
        let upload = decode_upload("image", &bytes, 16);
        assert!(
            matches!(&upload, Ok(upload) if upload.image == image),
            "{upload:?}"
        );
        let too_big = decode_upload("image", &bytes, 1);
        assert!(
            matches!(&too_big, Err(message) if message.contains("2×1")),
            "{too_big:?}"
        );
        assert!(decode_upload("mask", b"not an image", 16).is_err());
    }

    #[test]
    fn transparent_pixels_of_an_rgba_mask_are_the_edit_region() {
        // OpenAI's convention: fully transparent = edit. Pixel 0 opaque, pixel 1 clear.
        let mut bytes = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut bytes, 2, 1);
            encoder.set_color(png::ColorType::Rgba);
            encoder.set_depth(png::BitDepth::Eight);
            let written = encoder
                .write_header()
                .and_then(|mut writer| writer.write_image_data(&[0, 0, 0, 255, 0, 0, 0, 0]));
            assert!(written.is_ok());
        }
        let upload = decode_upload("mask", &bytes, 16);
        assert!(
            matches!(&upload, Ok(upload) if upload.mask.as_raw() == &vec![0, 255]),
            "{upload:?}"
        );
    }
}
