//! The convolution and group-norm layers the UNet and VAE blocks are made of. Semantics
//! follow PyTorch's `nn.Conv2d` and `nn.GroupNorm` (affine, as diffusers uses them); the
//! arithmetic is huatu-kernels' (parallel GEMM convolutions, one-pass group statistics
//! with SiLU fused) for f32 on the CPU and candle's everywhere else.
//!
//! The layers hold the very weight tensors the loader handed out and read them on every
//! call (no packed copies), so LoRA merges written into those tensors take effect at once.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use huatu_kernels::conv2d::{conv2d_fused, Conv2dExtras, Conv2dParams};
use huatu_kernels::conv2d_bf16;

/// `weight` in the dtype of the activations `xs` it meets: a widened copy for this call
/// when the weights are stored in half precision for an f32 model
/// (`LoadOptions::storage_dtype`), the tensor itself otherwise.
pub(crate) fn in_dtype_of(weight: &Tensor, xs: &Tensor) -> Result<Tensor> {
    if weight.dtype() == xs.dtype() {
        Ok(weight.clone())
    } else {
        weight.to_dtype(xs.dtype())
    }
}

/// `nn.Conv2d` with bias, square kernel; weights `weight` [out, in, k, k] and `bias` [out].
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    params: Conv2dParams,
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
        // Loaded through candle_nn so names, shapes and initialisation stay candle's.
        let inner = candle_nn::conv2d(in_channels, out_channels, kernel_size, config, vb)?;
        let bias = match inner.bias() {
            Some(bias) => bias.clone(),
            None => candle_core::bail!("conv2d: `bias` is missing"),
        };
        Ok(Self {
            weight: inner.weight().clone(),
            bias,
            params: Conv2dParams { stride, padding },
            span: tracing::trace_span!("conv2d", in_channels, out_channels, kernel_size),
        })
    }

    /// [b, in, h, w] -> [b, out, h', w']
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_with(xs, Conv2dExtras::default())
    }

    /// The convolution of `xs` upsampled ×2 by nearest neighbour, without materialising
    /// the upsampled tensor: [b, in, h, w] -> [b, out, 2h, 2w] (stride 1, padding 1 as
    /// `Upsample2D` uses it).
    pub fn forward_upsample_2x(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_with(
            xs,
            Conv2dExtras {
                upsample_nearest_2x: true,
                ..Default::default()
            },
        )
    }

    /// `conv(xs) + sample_bias[b, out, 1, 1] + residual` in one pass over the output:
    /// `sample_bias` [b, out] (a resnet's projected time embedding), `residual` shaped
    /// like the output.
    pub fn forward_add(
        &self,
        xs: &Tensor,
        sample_bias: Option<&Tensor>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.forward_with(
            xs,
            Conv2dExtras {
                upsample_nearest_2x: false,
                sample_bias,
                residual,
            },
        )
    }

    fn forward_with(&self, xs: &Tensor, extras: Conv2dExtras) -> Result<Tensor> {
        let _enter = self.span.enter();
        let bias = in_dtype_of(&self.bias, xs)?;
        if self.weight.dtype() == DType::BF16 && xs.dtype() == DType::F32 {
            // bf16 weights for an f32 model: multiplied in bf16 where the CPU can.
            return conv2d_bf16(xs, &self.weight, Some(&bias), self.params, extras);
        }
        conv2d_fused(
            xs,
            &in_dtype_of(&self.weight, xs)?,
            Some(&bias),
            self.params,
            extras,
        )
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.weight.dtype()
    }
}

/// `nn.GroupNorm(num_groups, num_channels, eps, affine=True)`; weights `weight`, `bias` [c].
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    num_groups: usize,
    eps: f64,
    span: tracing::Span,
}

impl GroupNorm {
    pub fn new(vb: VarBuilder, num_groups: usize, num_channels: usize, eps: f64) -> Result<Self> {
        if num_groups == 0 || !num_channels.is_multiple_of(num_groups) {
            candle_core::bail!(
                "group norm: {num_channels} channels do not split into {num_groups} groups"
            );
        }
        Ok(Self {
            weight: vb.get_with_hints(num_channels, "weight", candle_nn::Init::Const(1.))?,
            bias: vb.get_with_hints(num_channels, "bias", candle_nn::Init::Const(0.))?,
            num_groups,
            eps,
            span: tracing::trace_span!("group_norm", num_groups, num_channels),
        })
    }

    /// [b, c, ...] -> same shape, normalised per (sample, group).
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        huatu_kernels::group_norm(
            xs,
            self.num_groups,
            &in_dtype_of(&self.weight, xs)?,
            &in_dtype_of(&self.bias, xs)?,
            self.eps,
            false,
        )
    }

    /// `silu(group_norm(xs))`, the pair every resnet block and model output starts with,
    /// in one pass.
    pub fn forward_silu(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        huatu_kernels::group_norm(
            xs,
            self.num_groups,
            &in_dtype_of(&self.weight, xs)?,
            &in_dtype_of(&self.bias, xs)?,
            self.eps,
            true,
        )
    }
}

/// `nn.LayerNorm(dim, eps)` over the last axis, affine; weights `weight`, `bias` [dim].
/// candle's fused `layer_norm` has no backward, so a tensor inside an autograd graph takes
/// huatu-kernels' frozen-weight layer norm on the CPU in f32 and the plain formulation
/// elsewhere (biased variance, as PyTorch).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    inner: candle_nn::LayerNorm,
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let inner = candle_nn::layer_norm(dim, eps, vb)?;
        let weight = inner.weight().clone();
        let bias = match inner.bias() {
            Some(bias) => bias.clone(),
            None => candle_core::bail!("layer norm: `bias` is missing"),
        };
        Ok(Self {
            inner,
            weight,
            bias,
            eps,
        })
    }

    /// [..., dim] -> same shape.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        use candle_core::Module;
        if self.weight.dtype() != xs.dtype() {
            let (weight, bias) = (in_dtype_of(&self.weight, xs)?, in_dtype_of(&self.bias, xs)?);
            let widened = Self {
                inner: candle_nn::LayerNorm::new(weight.clone(), bias.clone(), self.eps),
                weight,
                bias,
                eps: self.eps,
            };
            return widened.forward(xs);
        }
        if !xs.track_op() {
            return self.inner.forward(xs);
        }
        let dtype = xs.dtype();
        let frozen = !self.weight.track_op() && !self.bias.track_op();
        if frozen && xs.device().is_cpu() && dtype == DType::F32 {
            return huatu_kernels::norm_gate_grad::frozen_layer_norm(
                xs,
                &self.weight,
                &self.bias,
                self.eps,
            );
        }
        let internal = match dtype {
            DType::F16 | DType::BF16 => DType::F32,
            other => other,
        };
        let xs = xs.to_dtype(internal)?;
        let centred = xs.broadcast_sub(&xs.mean_keepdim(candle_core::D::Minus1)?)?;
        let variance = centred.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
        let normed = centred
            .broadcast_div(&(variance + self.eps)?.sqrt()?)?
            .to_dtype(dtype)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}
