//! Tensor arithmetic the schedulers share: multiplying and dividing by float32 scalars as
//! torch does with the 0-dim schedule tensors diffusers indexes (`sigma * model_output`,
//! `x / alpha_t`: one rounding each, true division), and diffusers' `_threshold_sample`
//! (dynamic thresholding, https://huggingface.co/papers/2205.11487).

use candle_core::{DType, Tensor};

use crate::Result;

/// `tensor * factor`.
pub(crate) fn scale(tensor: &Tensor, factor: f32) -> Result<Tensor> {
    Ok(tensor.affine(factor as f64, 0.0)?)
}

/// `tensor / divisor`, a true division (not a multiplication by the reciprocal).
pub(crate) fn divide(tensor: &Tensor, divisor: f32) -> Result<Tensor> {
    let divisor = Tensor::new(divisor, tensor.device())?.to_dtype(tensor.dtype())?;
    Ok(tensor.broadcast_div(&divisor)?)
}

/// Dynamic thresholding of a predicted x0 [b, ...]: per sample, `s` is the `ratio` quantile
/// of |x0| clamped to [1, max_value]; x0 is clamped to [-s, s] and divided by s.
pub(crate) fn threshold_sample(sample: &Tensor, ratio: f64, max_value: f64) -> Result<Tensor> {
    let dtype = sample.dtype();
    let shape = sample.shape().clone();
    let batch = shape.dims().first().copied().unwrap_or(1);
    let rows = sample
        .to_dtype(DType::F32)?
        .reshape((batch, ()))?
        .to_vec2::<f32>()?;
    let mut thresholded = Vec::with_capacity(shape.elem_count());
    for row in rows {
        let mut magnitudes: Vec<f32> = row.iter().map(|value| value.abs()).collect();
        magnitudes.sort_by(f32::total_cmp);
        let limit = torch_quantile_sorted(&magnitudes, ratio as f32).clamp(1.0, max_value as f32);
        thresholded.extend(row.iter().map(|value| value.clamp(-limit, limit) / limit));
    }
    Ok(Tensor::from_vec(thresholded, shape, sample.device())?.to_dtype(dtype)?)
}

/// `torch.quantile(values, q)` (linear interpolation) of ascending float32 values.
fn torch_quantile_sorted(sorted: &[f32], q: f32) -> f32 {
    let rank = q * (sorted.len() - 1) as f32;
    let below = rank as usize;
    let above = (rank.ceil() as usize).min(sorted.len() - 1);
    let weight = rank - below as f32;
    let (start, end) = (sorted[below], sorted[above]);
    // torch's lerp formula
    if weight.abs() < 0.5 {
        start + weight * (end - start)
    } else {
        end - (end - start) * (1.0 - weight)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn quantile_interpolates() {
        assert_eq!(torch_quantile_sorted(&[0.0, 1.0, 2.0, 3.0, 4.0], 0.5), 2.0);
        assert_eq!(torch_quantile_sorted(&[0.0, 10.0], 0.25), 2.5);
        assert_eq!(torch_quantile_sorted(&[3.0], 0.995), 3.0);
    }

    #[test]
    fn thresholding_clamps_and_rescales() {
        let sample = Tensor::new(
            &[[0.5f32, -3.0, 2.0, 1.0], [0.1, 0.2, -0.3, 0.4]],
            &Device::Cpu,
        )
        .unwrap();
        let out = threshold_sample(&sample, 1.0, 2.0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // Row 0: s = clamp(3, 1, 2) = 2; row 1: s = clamp(0.4, 1, 2) = 1 (plain clipping).
        assert_eq!(out[0], vec![0.25, -1.0, 1.0, 0.5]);
        assert_eq!(out[1], vec![0.1, 0.2, -0.3, 0.4]);
        let divided = divide(&sample, 2.0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(divided[0][1], -1.5);
        assert_eq!(
            scale(&sample, 2.0).unwrap().to_vec2::<f32>().unwrap()[0][2],
            4.0
        );
    }
}
