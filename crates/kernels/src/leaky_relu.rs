//! Leaky ReLU with a slope per channel of an NCHW tensor — PyTorch's `nn.PReLU` and, with
//! one slope, `nn.LeakyReLU` — in one pass over CPU f32 data outside autograd: candle's
//! `PReLU` takes four passes (zeros, maximum, minimum, multiply-add) and
//! `ops::leaky_relu` two, each into a fresh tensor, which in Real-ESRGAN's generators
//! cost more than some of their convolutions. Other devices, dtypes and tensors inside
//! an autograd graph use candle's operations (`reference_channel_leaky_relu`).

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use crate::cpu_slice::{is_cpu_f32, tensor_from, with_f32};

/// Least values per parallel task.
const TASK_VALUES: usize = 1 << 15;

/// `x` where `x ≥ 0`, else `slope[c] · x`, over `xs` [b, c, h, w] with `slopes` [c] or [1].
pub fn channel_leaky_relu(xs: &Tensor, slopes: &Tensor) -> Result<Tensor> {
    let channels = xs.dims4()?.1;
    let count = slopes.elem_count();
    if count != channels && count != 1 {
        candle_core::bail!(
            "leaky relu: {count} slopes for {channels} channels (want {channels} or 1)"
        );
    }
    if !is_cpu_f32(xs) || !is_cpu_f32(slopes) || xs.track_op() || slopes.track_op() {
        return reference_channel_leaky_relu(xs, slopes);
    }
    one_pass(xs, &slopes.flatten_all()?.to_vec1()?)
}

/// `channel_leaky_relu` with one slope for every channel (PyTorch's `nn.LeakyReLU`).
pub fn leaky_relu(xs: &Tensor, slope: f64) -> Result<Tensor> {
    if !is_cpu_f32(xs) || xs.track_op() {
        let slopes = Tensor::new(&[slope], xs.device())?.to_dtype(xs.dtype())?;
        return reference_channel_leaky_relu(xs, &slopes);
    }
    one_pass(xs, &[slope as f32])
}

/// The CPU f32 pass over `xs` [b, c, h, w] with `slopes` of length c or 1 (checked).
fn one_pass(xs: &Tensor, slopes: &[f32]) -> Result<Tensor> {
    let (_, channels, height, width) = xs.dims4()?;
    let count = slopes.len();
    let plane = (height * width).max(1);
    let planes_per_task = TASK_VALUES.div_ceil(plane).max(1);
    let output = with_f32(xs, "leaky relu input", |input| {
        let mut output = input.to_vec();
        output
            .par_chunks_mut(plane * planes_per_task)
            .enumerate()
            .for_each(|(task, values)| {
                for (index, plane_values) in values.chunks_mut(plane).enumerate() {
                    let channel = (task * planes_per_task + index) % channels;
                    let slope = slopes[if count == 1 { 0 } else { channel }];
                    for value in plane_values {
                        *value = if *value >= 0.0 {
                            *value
                        } else {
                            *value * slope
                        };
                    }
                }
            });
        output
    })?;
    tensor_from(output, xs.dims())
}

/// candle's formulation (`candle_nn::PReLU`): `max(x, 0) + slope · min(x, 0)`.
pub fn reference_channel_leaky_relu(xs: &Tensor, slopes: &Tensor) -> Result<Tensor> {
    let channels = xs.dim(1)?;
    let slopes = slopes
        .flatten_all()?
        .broadcast_as(channels)?
        .reshape((1, channels, 1, 1))?;
    let zeros = xs.zeros_like()?;
    xs.maximum(&zeros)? + xs.minimum(&zeros)?.broadcast_mul(&slopes)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_difference(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    #[test]
    fn matches_candle_per_channel_and_with_one_slope() -> anyhow::Result<()> {
        let device = Device::Cpu;
        // 300 planes of 13×11 values: several planes per task, and a partial last task.
        let xs = Tensor::randn(0f32, 1.0, (4, 75, 13, 11), &device)?;
        for slopes in [
            Tensor::randn(0f32, 0.5, 75, &device)?,
            Tensor::new(&[0.2f32], &device)?,
        ] {
            let fused = channel_leaky_relu(&xs, &slopes)?;
            let reference = reference_channel_leaky_relu(&xs, &slopes)?;
            assert_eq!(max_difference(&fused, &reference)?, 0.0);
        }
        Ok(())
    }

    #[test]
    fn autograd_inputs_keep_their_gradient() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Var::from_tensor(&Tensor::new(&[[[[-2f32, 3.0]]]], &device)?)?;
        let slopes = Tensor::new(&[0.25f32], &device)?;
        let grads = channel_leaky_relu(xs.as_tensor(), &slopes)?
            .sum_all()?
            .backward()?;
        let grad = grads.get(xs.as_tensor()).expect("a gradient for xs");
        assert_eq!(grad.flatten_all()?.to_vec1::<f32>()?, [0.25, 1.0]);
        Ok(())
    }

    #[test]
    fn a_wrong_slope_count_is_an_error() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Tensor::zeros((1, 3, 2, 2), candle_core::DType::F32, &device)?;
        let slopes = Tensor::zeros(2, candle_core::DType::F32, &device)?;
        assert!(channel_leaky_relu(&xs, &slopes).is_err());
        Ok(())
    }
}
