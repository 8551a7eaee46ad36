//! 2-D convolution (PyTorch's `nn.Conv2d`, square kernel, no dilation or groups) with a
//! bias, a per-sample bias and a residual fused in: on CPU f32 the GEMM kernel of
//! `conv2d_gemm`; inside an autograd graph with frozen weights its operation with an input
//! gradient (`conv2d_grad`); anything else candle's operations.

use candle_core::{Result, Tensor};

use crate::conv2d_gemm::{checked_shape, gemm_conv2d_checked};
pub use crate::conv2d_gemm::{Conv2dExtras, Conv2dParams};
use crate::conv2d_grad::FrozenConv2d;
use crate::cpu_slice::is_cpu_f32;

/// `conv2d(xs, weight) + bias`: xs [b, in, h, w], weight [out, in, k, k], bias [out].
pub fn conv2d(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: Conv2dParams,
) -> Result<Tensor> {
    conv2d_fused(xs, weight, bias, params, Conv2dExtras::default())
}

/// [`conv2d`] with the `extras` applied: → [b, out, h', w'].
pub fn conv2d_fused(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: Conv2dParams,
    extras: Conv2dExtras,
) -> Result<Tensor> {
    let shape = checked_shape(xs, weight, bias, params, extras)?;
    let all_cpu_f32 = is_cpu_f32(xs)
        && is_cpu_f32(weight)
        && bias.is_none_or(is_cpu_f32)
        && extras.sample_bias.is_none_or(is_cpu_f32)
        && extras.residual.is_none_or(is_cpu_f32);
    // Inside an autograd graph with frozen weights (adapter training), the convolution is
    // an operation whose backward gives the input's gradient on this same kernel; the
    // per-sample bias and the residual are added with candle's operations, which have a
    // backward. Trainable weights take candle's convolution.
    let frozen_weights = !weight.track_op() && !bias.is_some_and(Tensor::track_op);
    let tracked = xs.track_op()
        || !frozen_weights
        || extras.sample_bias.is_some_and(Tensor::track_op)
        || extras.residual.is_some_and(Tensor::track_op);
    if tracked && frozen_weights && all_cpu_f32 && 2 * params.padding < shape.kernel() {
        let op = FrozenConv2d {
            weight: weight.clone(),
            bias: bias.cloned(),
            params,
            upsample_nearest_2x: extras.upsample_nearest_2x,
        };
        let mut out = xs.contiguous()?.apply_op1(op)?;
        if let Some(sample_bias) = extras.sample_bias {
            out = out.broadcast_add(&sample_bias.unsqueeze(2)?.unsqueeze(3)?)?;
        }
        if let Some(residual) = extras.residual {
            out = (out + residual)?;
        }
        return Ok(out);
    }
    if tracked || !all_cpu_f32 {
        return reference_conv2d_fused(xs, weight, bias, params, extras);
    }
    gemm_conv2d_checked(&shape, xs, weight, bias, extras)
}

/// The same computation with candle's operations, used as the fallback and in tests.
pub fn reference_conv2d_fused(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: Conv2dParams,
    extras: Conv2dExtras,
) -> Result<Tensor> {
    let xs = if extras.upsample_nearest_2x {
        let (_, _, height, width) = xs.dims4()?;
        xs.upsample_nearest2d(2 * height, 2 * width)?
    } else {
        xs.clone()
    };
    let mut out = xs.conv2d(weight, params.padding, params.stride, 1, 1)?;
    if let Some(bias) = bias {
        out = out.broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
    }
    if let Some(sample_bias) = extras.sample_bias {
        out = out.broadcast_add(&sample_bias.unsqueeze(2)?.unsqueeze(3)?)?;
    }
    if let Some(residual) = extras.residual {
        out = (out + residual)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn max_difference(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        batch: usize,
        in_channels: usize,
        out_channels: usize,
        (height, width): (usize, usize),
        kernel: usize,
        stride: usize,
        padding: usize,
        upsample: bool,
        with_extras: bool,
    ) -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Tensor::randn(0f32, 1.0, (batch, in_channels, height, width), &device)?;
        let weight = Tensor::randn(
            0f32,
            0.1,
            (out_channels, in_channels, kernel, kernel),
            &device,
        )?;
        let bias = Tensor::randn(0f32, 1.0, out_channels, &device)?;
        let params = Conv2dParams { stride, padding };
        let factor = if upsample { 2 } else { 1 };
        let out_height = (height * factor + 2 * padding - kernel) / stride + 1;
        let out_width = (width * factor + 2 * padding - kernel) / stride + 1;
        let sample_bias = Tensor::randn(0f32, 1.0, (batch, out_channels), &device)?;
        let residual = Tensor::randn(
            0f32,
            1.0,
            (batch, out_channels, out_height, out_width),
            &device,
        )?;
        let extras = Conv2dExtras {
            upsample_nearest_2x: upsample,
            sample_bias: with_extras.then_some(&sample_bias),
            residual: with_extras.then_some(&residual),
        };
        let fast = conv2d_fused(&xs, &weight, Some(&bias), params, extras)?;
        let reference = reference_conv2d_fused(&xs, &weight, Some(&bias), params, extras)?;
        assert_eq!(fast.dims(), reference.dims());
        let difference = max_difference(&fast, &reference)?;
        // Outputs are O(1) sums of in·k² products in f32 in different orders.
        let tolerance = 1e-5 * ((in_channels * kernel * kernel) as f32).sqrt().max(1.0);
        assert!(
            difference < tolerance,
            "b{batch} {in_channels}->{out_channels} {height}x{width} k{kernel} s{stride} p{padding} \
             up {upsample} extras {with_extras}: max difference {difference}"
        );
        Ok(())
    }

    #[test]
    fn three_by_three_stride_one_matches_candle() -> anyhow::Result<()> {
        check(2, 5, 7, (9, 13), 3, 1, 1, false, false)?;
        check(1, 16, 33, (1, 1), 3, 1, 1, false, true)?;
        check(3, 32, 24, (17, 6), 3, 1, 1, false, true)?;
        check(2, 8, 340, (5, 5), 3, 1, 1, false, true)?; // more channels than one tile
        Ok(())
    }

    #[test]
    fn winograd_sizes_match_candle() -> anyhow::Result<()> {
        // Enough tiles and channels for F(4×4, 3×3): sizes that are and are not multiples of
        // the 4×4 tile, several tasks per sample, the fused upsampling and every addend.
        check(1, 16, 16, (32, 32), 3, 1, 1, false, false)?;
        check(2, 24, 40, (29, 35), 3, 1, 1, false, true)?;
        check(1, 64, 48, (70, 66), 3, 1, 1, false, true)?;
        check(1, 32, 20, (15, 17), 3, 1, 1, true, true)?;
        Ok(())
    }

    #[test]
    fn without_padding_and_other_kernels_matches_candle() -> anyhow::Result<()> {
        check(2, 4, 6, (8, 11), 3, 1, 0, false, false)?;
        check(1, 3, 5, (12, 9), 5, 1, 2, false, true)?;
        Ok(())
    }

    #[test]
    fn pointwise_matches_candle() -> anyhow::Result<()> {
        check(2, 12, 20, (7, 9), 1, 1, 0, false, true)?;
        check(1, 64, 4, (31, 3), 1, 1, 0, false, false)?;
        Ok(())
    }

    #[test]
    fn stride_two_matches_candle() -> anyhow::Result<()> {
        check(2, 6, 10, (9, 12), 3, 2, 1, false, true)?;
        check(1, 8, 8, (16, 16), 3, 2, 0, false, false)?; // the VAE encoder's downsampling
        check(3, 4, 5, (5, 7), 1, 2, 0, false, false)?;
        Ok(())
    }

    #[test]
    fn fused_upsampling_matches_candle() -> anyhow::Result<()> {
        check(2, 6, 9, (5, 7), 3, 1, 1, true, false)?;
        check(1, 16, 8, (8, 3), 3, 1, 1, true, true)?;
        Ok(())
    }

    #[test]
    fn rejects_mismatched_shapes() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Tensor::zeros((1, 3, 4, 4), DType::F32, &device)?;
        let weight = Tensor::zeros((2, 4, 3, 3), DType::F32, &device)?;
        assert!(conv2d(
            &xs,
            &weight,
            None,
            Conv2dParams {
                stride: 1,
                padding: 1
            }
        )
        .is_err());
        let weight = Tensor::zeros((2, 3, 3, 3), DType::F32, &device)?;
        let bias = Tensor::zeros(3, DType::F32, &device)?;
        assert!(conv2d(
            &xs,
            &weight,
            Some(&bias),
            Conv2dParams {
                stride: 1,
                padding: 1
            }
        )
        .is_err());
        Ok(())
    }

    #[test]
    fn falls_back_for_other_dtypes() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Tensor::randn(0f32, 1.0, (1, 3, 4, 4), &device)?.to_dtype(DType::F64)?;
        let weight = Tensor::randn(0f32, 1.0, (2, 3, 3, 3), &device)?.to_dtype(DType::F64)?;
        let out = conv2d(
            &xs,
            &weight,
            None,
            Conv2dParams {
                stride: 1,
                padding: 1,
            },
        )?;
        assert_eq!((out.dims(), out.dtype()), (&[1, 2, 4, 4][..], DType::F64));
        Ok(())
    }
}
