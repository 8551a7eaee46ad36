//! The 3×3, padding 1 convolution both Real-ESRGAN generators are made of, on
//! huatu-kernels' convolution (candle's generic one ran the generators at a fifth of
//! PyTorch's speed), with the ×2 nearest upsampling of RRDBNet's `conv_up*` and the
//! residual of `conv_body` fused in. Weights as PyTorch's `nn.Conv2d`: `weight`
//! [out, in, 3, 3] and `bias` [out].

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use huatu_kernels::{conv2d_fused, Conv2dExtras, Conv2dParams};

const PARAMS: Conv2dParams = Conv2dParams {
    stride: 1,
    padding: 1,
};

#[derive(Debug, Clone)]
pub struct Conv3x3 {
    weight: Tensor,
    bias: Tensor,
}

impl Conv3x3 {
    pub fn new(in_channels: usize, out_channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out_channels, in_channels, 3, 3), "weight")?,
            bias: vb.get(out_channels, "bias")?,
        })
    }

    /// The convolution of `xs` upsampled ×2 (nearest neighbour).
    pub fn forward_upsampled(&self, xs: &Tensor) -> Result<Tensor> {
        let extras = Conv2dExtras {
            upsample_nearest_2x: true,
            ..Default::default()
        };
        conv2d_fused(xs, &self.weight, Some(&self.bias), PARAMS, extras)
    }

    /// The convolution of `xs` plus `residual` (same shape as the output).
    pub fn forward_plus(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let extras = Conv2dExtras {
            residual: Some(residual),
            ..Default::default()
        };
        conv2d_fused(xs, &self.weight, Some(&self.bias), PARAMS, extras)
    }
}

impl Module for Conv3x3 {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        conv2d_fused(
            xs,
            &self.weight,
            Some(&self.bias),
            PARAMS,
            Conv2dExtras::default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn equals_candles_convolution_with_the_fused_parts() -> Result<()> {
        let device = Device::Cpu;
        let xs = Tensor::randn(0f32, 1.0, (1, 5, 7, 6), &device)?;
        let weight = Tensor::randn(0f32, 0.3, (4, 5, 3, 3), &device)?;
        let bias = Tensor::randn(0f32, 0.3, 4, &device)?;
        let conv = Conv3x3 {
            weight: weight.clone(),
            bias: bias.clone(),
        };
        let reference = |xs: &Tensor| -> Result<Tensor> {
            xs.conv2d(&weight, 1, 1, 1, 1)?
                .broadcast_add(&bias.reshape((1, 4, 1, 1))?)
        };
        let max_diff = |a: &Tensor, b: &Tensor| -> Result<f32> {
            (a - b)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_dtype(DType::F32)?
                .to_scalar::<f32>()
        };
        assert!(max_diff(&conv.forward(&xs)?, &reference(&xs)?)? < 1e-4);
        let upsampled = xs.upsample_nearest2d(14, 12)?;
        assert!(max_diff(&conv.forward_upsampled(&xs)?, &reference(&upsampled)?)? < 1e-4);
        let residual = Tensor::randn(0f32, 1.0, (1, 4, 7, 6), &device)?;
        assert!(
            max_diff(
                &conv.forward_plus(&xs, &residual)?,
                &(reference(&xs)? + &residual)?
            )? < 1e-4
        );
        Ok(())
    }
}
