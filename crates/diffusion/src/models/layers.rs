//! The convolution and group-norm layers the UNet and VAE blocks are made of, as thin
//! wrappers over candle's so that faster kernels can replace them in this one place.
//! Semantics follow PyTorch's `nn.Conv2d` and `nn.GroupNorm` (affine, as diffusers uses them).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// `nn.Conv2d` with bias, square kernel; weights `weight` [out, in, k, k] and `bias` [out].
#[derive(Debug, Clone)]
pub struct Conv2d {
    inner: candle_nn::Conv2d,
    span: tracing::Span,
}

impl Conv2d {
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let config = candle_nn::Conv2dConfig {
            padding,
            stride,
            ..Default::default()
        };
        Ok(Self {
            inner: candle_nn::conv2d(in_channels, out_channels, kernel_size, config, vb)?,
            span: tracing::trace_span!("conv2d", in_channels, out_channels, kernel_size),
        })
    }

    /// [b, in, h, w] -> [b, out, h', w']
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        self.inner.forward(xs)
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> candle_core::DType {
        self.inner.weight().dtype()
    }
}

/// `nn.GroupNorm(num_groups, num_channels, eps, affine=True)`; weights `weight`, `bias` [c].
#[derive(Debug, Clone)]
pub struct GroupNorm {
    inner: candle_nn::GroupNorm,
    span: tracing::Span,
}

impl GroupNorm {
    pub fn new(vb: VarBuilder, num_groups: usize, num_channels: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            inner: candle_nn::group_norm(num_groups, num_channels, eps, vb)?,
            span: tracing::trace_span!("group_norm", num_groups, num_channels),
        })
    }

    /// [b, c, ...] -> same shape, normalised per (sample, group).
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        self.inner.forward(xs)
    }

    /// `silu(group_norm(xs))`, the pair every resnet block and model output starts with.
    pub fn forward_silu(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward(xs)?.silu()
    }
}
