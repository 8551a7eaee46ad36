//! The convolution as an autograd operation for training adapters on a frozen model: the
//! weights (and bias) are constants, so the backward pass needs only the input's gradient,
//! which is itself a convolution — of the output gradient with the kernel transposed
//! (in ↔ out) and flipped, zero-padded by k − 1 − p, after inserting stride − 1 zeros
//! between its rows and columns for a strided convolution — and runs on the same fused
//! GEMM kernel as the forward pass. For the fused nearest ×2 upsampling, the gradient of the
//! upsampled input is summed over each 2×2 block. candle's own convolution backward would
//! also compute the weights' gradient (a second, discarded convolution) and its transposed
//! convolution on the CPU is a plain loop.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Storage, Tensor};

use crate::conv2d_gemm::{gemm_conv2d, Conv2dExtras, Conv2dParams};
use crate::cpu_slice::{tensor_from, with_f32};

/// `conv2d(upsample?(x), weight) + bias` with `weight` and `bias` constant.
pub(crate) struct FrozenConv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub params: Conv2dParams,
    pub upsample_nearest_2x: bool,
}

fn storage_of(tensor: &Tensor) -> Result<CpuStorage> {
    let tensor = tensor.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => {
            Ok(CpuStorage::F32(data[start..end].to_vec()))
        }
        _ => candle_core::bail!("frozen conv2d: expected a contiguous f32 CPU tensor"),
    }
}

impl CustomOp1 for FrozenConv2d {
    fn name(&self) -> &'static str {
        "frozen-conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let data = match storage {
            CpuStorage::F32(data) => data.as_slice(),
            _ => candle_core::bail!("frozen conv2d: the input must be f32"),
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen conv2d: the input must be contiguous")
        };
        let xs = Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)?;
        let extras = Conv2dExtras {
            upsample_nearest_2x: self.upsample_nearest_2x,
            ..Default::default()
        };
        let out = gemm_conv2d(&xs, &self.weight, self.bias.as_ref(), self.params, extras)?;
        Ok((storage_of(&out)?, out.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        input_gradient(
            grad_res,
            &self.weight,
            self.params,
            self.upsample_nearest_2x,
            arg.dims4()?,
        )
        .map(Some)
    }
}

/// The weight transposed on its first two axes and flipped in space: [in, out, k, k].
fn transposed_flipped(weight: &Tensor) -> Result<Tensor> {
    let (out_channels, in_channels, kernel, _) = weight.dims4()?;
    let flipped = with_f32(weight, "conv2d weight", |data| {
        let mut flipped = vec![0f32; data.len()];
        let taps = kernel * kernel;
        for o in 0..out_channels {
            for i in 0..in_channels {
                let source = &data[(o * in_channels + i) * taps..][..taps];
                let target = &mut flipped[(i * out_channels + o) * taps..][..taps];
                for (tap, value) in source.iter().enumerate() {
                    target[taps - 1 - tap] = *value;
                }
            }
        }
        flipped
    })?;
    tensor_from(flipped, &[in_channels, out_channels, kernel, kernel])
}

/// dL/dx of `conv2d(upsample?(x), weight)` from dL/d(output); `input_dims` is x's shape.
pub(crate) fn input_gradient(
    grad: &Tensor,
    weight: &Tensor,
    params: Conv2dParams,
    upsample_nearest_2x: bool,
    input_dims: (usize, usize, usize, usize),
) -> Result<Tensor> {
    let grad = grad.to_dtype(DType::F32)?.contiguous()?;
    let (batch, _, source_height, source_width) = input_dims;
    let (in_height, in_width) = if upsample_nearest_2x {
        (2 * source_height, 2 * source_width)
    } else {
        (source_height, source_width)
    };
    let kernel = weight.dim(2)?;
    let Conv2dParams { stride, padding } = params;
    if 2 * padding > kernel - 1 {
        candle_core::bail!(
            "frozen conv2d backward: padding {padding} is over half the kernel {kernel}"
        );
    }
    let spread = (kernel - 1 - 2 * padding, kernel - 1 - padding);
    let dilated = if stride == 1 {
        grad
    } else {
        // The output gradient with stride − 1 zeros between entries, sized so the stride-1
        // convolution below gives exactly the input's size.
        let (rows, columns) = (in_height - spread.0, in_width - spread.0);
        let (_, channels, out_height, out_width) = grad.dims4()?;
        let spread_out = with_f32(&grad, "conv2d output gradient", |data| {
            let mut spread_out = vec![0f32; batch * channels * rows * columns];
            for plane in 0..batch * channels {
                let source = &data[plane * out_height * out_width..][..out_height * out_width];
                let target = &mut spread_out[plane * rows * columns..][..rows * columns];
                for y in (0..out_height).filter(|y| y * stride < rows) {
                    for x in (0..out_width).filter(|x| x * stride < columns) {
                        target[y * stride * columns + x * stride] = source[y * out_width + x];
                    }
                }
            }
            spread_out
        })?;
        tensor_from(spread_out, &[batch, channels, rows, columns])?
    };
    let flipped = transposed_flipped(weight)?;
    let upsampled_gradient = gemm_conv2d(
        &dilated,
        &flipped,
        None,
        Conv2dParams {
            stride: 1,
            padding: spread.1,
        },
        Conv2dExtras::default(),
    )?;
    if !upsample_nearest_2x {
        return Ok(upsampled_gradient);
    }
    // Nearest ×2: each source pixel fed a 2×2 block; its gradient is the block's sum.
    let channels = upsampled_gradient.dim(1)?;
    let summed = with_f32(&upsampled_gradient, "upsampled gradient", |data| {
        let mut summed = vec![0f32; batch * channels * source_height * source_width];
        for plane in 0..batch * channels {
            let source = &data[plane * in_height * in_width..][..in_height * in_width];
            let target =
                &mut summed[plane * source_height * source_width..][..source_height * source_width];
            for y in 0..source_height {
                for x in 0..source_width {
                    let top = 2 * y * in_width + 2 * x;
                    target[y * source_width + x] = source[top]
                        + source[top + 1]
                        + source[top + in_width]
                        + source[top + in_width + 1];
                }
            }
        }
        summed
    })?;
    tensor_from(summed, &[batch, channels, source_height, source_width])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv2d::{conv2d_fused, reference_conv2d_fused};
    use candle_core::Var;

    /// (kernel, stride, padding, upsample, input height, width)
    const CASES: [(usize, usize, usize, bool, usize, usize); 6] = [
        (3, 1, 1, false, 6, 5),
        (1, 1, 0, false, 4, 7),
        (3, 2, 1, false, 8, 6),
        (3, 2, 1, false, 7, 5),
        (3, 1, 1, true, 3, 4),
        (3, 1, 0, false, 6, 6),
    ];

    fn objective_weights(dims: &[usize]) -> Result<Tensor> {
        Tensor::randn(0f32, 1.0, dims, &Device::Cpu)
    }

    /// The op's input gradient equals the gradient candle's own (autograd) convolution gives.
    #[test]
    fn input_gradient_matches_autograd() -> anyhow::Result<()> {
        for (kernel, stride, padding, upsample, height, width) in CASES {
            let xs = Var::randn(0f32, 1.0, (2, 3, height, width), &Device::Cpu)?;
            let weight = Tensor::randn(0f32, 0.5, (4, 3, kernel, kernel), &Device::Cpu)?;
            let bias = Tensor::randn(0f32, 0.5, 4, &Device::Cpu)?;
            let params = Conv2dParams { stride, padding };
            let op = FrozenConv2d {
                weight: weight.clone(),
                bias: Some(bias.clone()),
                params,
                upsample_nearest_2x: upsample,
            };
            let ours = xs.as_tensor().apply_op1(op)?;
            let extras = Conv2dExtras {
                upsample_nearest_2x: upsample,
                ..Default::default()
            };
            let reference =
                reference_conv2d_fused(xs.as_tensor(), &weight, Some(&bias), params, extras)?;
            assert_eq!(ours.dims(), reference.dims());
            let g = objective_weights(ours.dims())?;
            let ours_grad = (ours * &g)?.sum_all()?.backward()?;
            let reference_grad = (reference * &g)?.sum_all()?.backward()?;
            let (Some(a), Some(b)) = (
                ours_grad.get(xs.as_tensor()),
                reference_grad.get(xs.as_tensor()),
            ) else {
                anyhow::bail!("no input gradient for case {kernel} {stride} {padding} {upsample}");
            };
            let difference = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                difference < 1e-4,
                "k{kernel} s{stride} p{padding} up{upsample}: {difference}"
            );
        }
        Ok(())
    }

    /// Central finite differences of Σ g·conv(x) on a few input entries.
    #[test]
    fn input_gradient_matches_finite_differences() -> anyhow::Result<()> {
        for (kernel, stride, padding, upsample, height, width) in CASES {
            let dims = (1, 2, height, width);
            let xs = Tensor::randn(0f32, 1.0, dims, &Device::Cpu)?;
            let weight = Tensor::randn(0f32, 0.5, (3, 2, kernel, kernel), &Device::Cpu)?;
            let params = Conv2dParams { stride, padding };
            let extras = Conv2dExtras {
                upsample_nearest_2x: upsample,
                ..Default::default()
            };
            let g = objective_weights(conv2d_fused(&xs, &weight, None, params, extras)?.dims())?;
            let objective = |xs: &Tensor| -> anyhow::Result<f64> {
                Ok((conv2d_fused(xs, &weight, None, params, extras)? * &g)?
                    .sum_all()?
                    .to_scalar::<f32>()? as f64)
            };
            let analytic = input_gradient(&g, &weight, params, upsample, dims)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let values = xs.flatten_all()?.to_vec1::<f32>()?;
            let step = 1e-2f32;
            for index in [0, values.len() / 3, values.len() / 2, values.len() - 1] {
                let shifted = |delta: f32| -> anyhow::Result<f64> {
                    let mut changed = values.clone();
                    changed[index] += delta;
                    objective(&Tensor::from_vec(changed, dims, &Device::Cpu)?)
                };
                let numeric = (shifted(step)? - shifted(-step)?) / (2.0 * step as f64);
                let error = (numeric - analytic[index] as f64).abs();
                assert!(
                    error < 2e-3 * (1.0 + numeric.abs()),
                    "k{kernel} s{stride} at {index}: {numeric} vs {}",
                    analytic[index]
                );
            }
        }
        Ok(())
    }
}
