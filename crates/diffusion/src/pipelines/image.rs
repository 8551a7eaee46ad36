//! Images in and out of pipelines: 8-bit RGB pixels and the conversions diffusers'
//! `VaeImageProcessor` does (`postprocess`: denormalise, clamp, ×255, round).

use candle_core::{DType, Tensor};

use crate::Result;

/// An 8-bit RGB image, rows top to bottom, pixels interleaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// An 8-bit single-channel image (masks), rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrayImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

/// The centered `width`×`height` window of a `channels`-per-pixel buffer `from_width` wide.
fn centered_window(
    pixels: &[u8],
    from: (usize, usize),
    to: (usize, usize),
    channels: usize,
) -> (Vec<u8>, usize, usize) {
    let (left, top) = ((from.0 - to.0) / 2, (from.1 - to.1) / 2);
    let mut out = Vec::with_capacity(to.0 * to.1 * channels);
    for y in top..top + to.1 {
        let start = (y * from.0 + left) * channels;
        out.extend_from_slice(&pixels[start..start + to.0 * channels]);
    }
    (out, left, top)
}

impl RgbImage {
    /// The centered crop whose sides are multiples of `factor` (SDXL's VAE: 8), and the
    /// crop's top-left corner in this image.
    pub fn center_crop_to_multiple(&self, factor: usize) -> (RgbImage, usize, usize) {
        let (width, height) = (self.width / factor * factor, self.height / factor * factor);
        let (pixels, left, top) =
            centered_window(&self.pixels, (self.width, self.height), (width, height), 3);
        (
            RgbImage {
                width,
                height,
                pixels,
            },
            left,
            top,
        )
    }
}

impl GrayImage {
    /// As [`RgbImage::center_crop_to_multiple`], so a mask drawn on an image is cropped with it.
    pub fn center_crop_to_multiple(&self, factor: usize) -> (GrayImage, usize, usize) {
        let (width, height) = (self.width / factor * factor, self.height / factor * factor);
        let (pixels, left, top) =
            centered_window(&self.pixels, (self.width, self.height), (width, height), 1);
        (
            GrayImage {
                width,
                height,
                pixels,
            },
            left,
            top,
        )
    }
}

/// diffusers `VaeImageProcessor.postprocess(output_type="pil")`: decoded samples in [-1, 1],
/// [b, 3, h, w] → one RGB image each: `round(clamp(x / 2 + 0.5, 0, 1) · 255)`.
pub fn tensor_to_images(samples: &Tensor) -> Result<Vec<RgbImage>> {
    let (batch, channels, height, width) = samples.dims4()?;
    if channels != 3 {
        return Err(crate::Error::InvalidRequest(format!(
            "expected 3 image channels, got {channels}"
        )));
    }
    let scaled = ((samples.to_dtype(DType::F32)? / 2.0)? + 0.5)?.clamp(0f32, 1f32)?;
    // [b, 3, h, w] -> [b, h, w, 3]
    let interleaved = (scaled * 255.0)?.permute((0, 2, 3, 1))?;
    (0..batch)
        .map(|index| {
            let values = interleaved.get(index)?.flatten_all()?.to_vec1::<f32>()?;
            // numpy's round() rounds half to even.
            let pixels = values
                .iter()
                .map(|value| value.round_ties_even() as u8)
                .collect();
            Ok(RgbImage {
                width,
                height,
                pixels,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn postprocess_rounds_and_clamps() -> anyhow::Result<()> {
        // One pixel per channel: -2 clamps to 0, 0 -> 127.5 -> 128 (half to even), 1 -> 255.
        let samples = Tensor::new(&[-2f32, 0.0, 1.0], &Device::Cpu)?.reshape((1, 3, 1, 1))?;
        let images = tensor_to_images(&samples)?;
        assert_eq!(images[0].pixels, vec![0, 128, 255]);
        Ok(())
    }
}
