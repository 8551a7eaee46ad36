//! Classifier-free guidance, as diffusers' SDXL pipelines combine it, with the optional
//! rescale of "Common Diffusion Noise Schedules and Sample Steps are Flawed" (§3.4,
//! diffusers `rescale_noise_cfg`).

use candle_core::{Tensor, D};

use crate::Result;

/// `uncond + guidance_scale · (text − uncond)` over a batch laid out [uncond; text].
pub fn combine(noise_pred: &Tensor, guidance_scale: f64, guidance_rescale: f64) -> Result<Tensor> {
    let batch = noise_pred.dim(0)? / 2;
    let uncond = noise_pred.narrow(0, 0, batch)?;
    let text = noise_pred.narrow(0, batch, batch)?;
    let guided = (&uncond + ((&text - &uncond)? * guidance_scale)?)?;
    if guidance_rescale > 0.0 {
        rescale_noise_cfg(&guided, &text, guidance_rescale)
    } else {
        Ok(guided)
    }
}

/// diffusers `rescale_noise_cfg`: match the guided prediction's standard deviation to the
/// text prediction's, then mix by `guidance_rescale`.
pub fn rescale_noise_cfg(
    noise_cfg: &Tensor,
    noise_pred_text: &Tensor,
    guidance_rescale: f64,
) -> Result<Tensor> {
    let std_text = per_sample_std(noise_pred_text)?;
    let std_cfg = per_sample_std(noise_cfg)?;
    let rescaled = noise_cfg.broadcast_mul(&(std_text / std_cfg)?)?;
    Ok(((rescaled * guidance_rescale)? + (noise_cfg * (1.0 - guidance_rescale))?)?)
}

/// Unbiased standard deviation over all but the batch axis (torch `std`), shape [b, 1, 1, 1].
fn per_sample_std(xs: &Tensor) -> Result<Tensor> {
    let batch = xs.dim(0)?;
    let flat = xs.reshape((batch, ()))?;
    let count = flat.dim(1)?;
    let mean = flat.mean_keepdim(D::Minus1)?;
    let centered = flat.broadcast_sub(&mean)?;
    let variance = (centered.sqr()?.sum_keepdim(D::Minus1)? / (count as f64 - 1.0))?;
    Ok(variance.sqrt()?.reshape((batch, 1, 1, 1))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn combine_without_rescale_is_linear() -> anyhow::Result<()> {
        let uncond = Tensor::new(&[[[[1f32, 2.0]]]], &Device::Cpu)?;
        let text = Tensor::new(&[[[[3f32, 6.0]]]], &Device::Cpu)?;
        let both = Tensor::cat(&[&uncond, &text], 0)?;
        let guided = combine(&both, 2.0, 0.0)?;
        assert_eq!(guided.flatten_all()?.to_vec1::<f32>()?, vec![5.0, 10.0]);
        Ok(())
    }

    #[test]
    fn full_rescale_matches_text_std() -> anyhow::Result<()> {
        let text = Tensor::new(&[[[[1f32, 3.0, 5.0]]]], &Device::Cpu)?;
        let guided = Tensor::new(&[[[[0f32, 6.0, 12.0]]]], &Device::Cpu)?;
        let out = rescale_noise_cfg(&guided, &text, 1.0)?;
        // std(text) = 2, std(guided) = 6: guided is scaled by 1/3.
        let values = out.flatten_all()?.to_vec1::<f32>()?;
        for (value, expected) in values.iter().zip([0.0, 2.0, 4.0]) {
            assert!((value - expected).abs() < 1e-6);
        }
        Ok(())
    }
}
