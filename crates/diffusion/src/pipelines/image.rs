//! Decoded samples out of pipelines as 8-bit RGB images (`huatu_imaging::RgbImage`): the
//! conversion diffusers' `VaeImageProcessor.postprocess` does (denormalise, clamp, ×255,
//! round).

use candle_core::{DType, Tensor};
use huatu_imaging::RgbImage;

use crate::Result;

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
            RgbImage::from_raw(width as u32, height as u32, pixels).ok_or_else(|| {
                crate::Error::InvalidRequest(format!(
                    "decoded samples do not fill a {width}×{height} image"
                ))
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
        assert_eq!(images[0].as_raw(), &vec![0, 128, 255]);
        Ok(())
    }
}
