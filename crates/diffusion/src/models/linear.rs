//! `nn.Linear` with an optional unmerged LoRA adapter, as peft's `lora.Linear` computes it
//! while training: `y = W·x + b + scale · B·(A·x)` with A [r, in] ("down") and B [out, r]
//! ("up"). Inference merges adapters into `W` (see `lora::apply`) and never sets one here;
//! a trainer attaches its parameters with [`Linear::set_adapter`], found by diffusers name
//! through each model's `collect_linears`.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;
use huatu_kernels::activation::{reference_bias_activation, Activation};
use huatu_kernels::fused_linear::fused_linear;
use huatu_kernels::fused_linear_bf16;

use super::layers::in_dtype_of;

/// A low-rank adapter on one linear layer.
#[derive(Debug, Clone)]
pub struct LinearAdapter {
    /// A: [rank, in_features].
    pub down: Tensor,
    /// B: [out_features, rank].
    pub up: Tensor,
    /// alpha / rank (times the user's adapter scale).
    pub scale: f64,
}

/// `nn.Linear` (weight [out, in], optional bias [out]) with an optional adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
    adapter: Option<LinearAdapter>,
}

impl Linear {
    /// Loads `weight` and `bias` under `vb`.
    pub fn new(in_features: usize, out_features: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self::from(candle_nn::linear(
            in_features,
            out_features,
            vb,
        )?))
    }

    /// Loads `weight` under `vb`; the layer has no bias.
    pub fn new_no_bias(in_features: usize, out_features: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self::from(candle_nn::linear_no_bias(
            in_features,
            out_features,
            vb,
        )?))
    }

    /// [out, in]
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }

    pub fn adapter(&self) -> Option<&LinearAdapter> {
        self.adapter.as_ref()
    }

    /// Attaches (or with `None` removes) the adapter, checking its shapes against the layer.
    pub fn set_adapter(&mut self, adapter: Option<LinearAdapter>) -> Result<()> {
        if let Some(adapter) = &adapter {
            let (out_features, in_features) = self.inner.weight().dims2()?;
            let (rank, down_in) = adapter.down.dims2()?;
            let (up_out, up_rank) = adapter.up.dims2()?;
            if down_in != in_features || up_out != out_features || up_rank != rank {
                candle_core::bail!(
                    "lora adapter shapes down {:?} / up {:?} do not fit a linear layer [{out_features}, {in_features}]",
                    adapter.down.dims(),
                    adapter.up.dims()
                );
            }
        }
        self.adapter = adapter;
        Ok(())
    }
}

impl Linear {
    /// `activation(self.forward(xs))`; see [`Self::forward_fused`].
    pub fn forward_activation(&self, xs: &Tensor, activation: Activation) -> Result<Tensor> {
        self.forward_fused(xs, None, Some(activation))
    }

    /// `activation(self.forward(xs)) + residual`. Outside an autograd graph on the CPU in
    /// f32 and without an adapter, huatu-kernels' `fused_linear`: one GEMM accumulating
    /// into a buffer that holds the bias and the residual, the activation in place —
    /// instead of separate passes (and tensors) for the bias, the activation and the sum.
    pub fn forward_fused(
        &self,
        xs: &Tensor,
        residual: Option<&Tensor>,
        activation: Option<Activation>,
    ) -> Result<Tensor> {
        let fast = !xs.track_op()
            && !residual.is_some_and(Tensor::track_op)
            && self.adapter.is_none()
            && xs.device().is_cpu()
            && xs.dtype() == DType::F32;
        if fast {
            if self.stores_bf16() {
                let bias = self.bias_for(xs)?;
                return fused_linear_bf16(xs, self.weight(), bias.as_ref(), residual, activation);
            }
            let (weight, bias) = self.weights_for(xs)?;
            return fused_linear(xs, &weight, bias.as_ref(), residual, activation);
        }
        let mut out = self.forward(xs)?;
        if let Some(activation) = activation {
            out = reference_bias_activation(&out, None, activation)?;
        }
        match residual {
            Some(residual) => out + residual,
            None => Ok(out),
        }
    }
}

impl Linear {
    /// The weight and bias in the dtype of `xs` (see [`in_dtype_of`]).
    fn weights_for(&self, xs: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        Ok((in_dtype_of(self.inner.weight(), xs)?, self.bias_for(xs)?))
    }

    /// The bias in the dtype of `xs`.
    fn bias_for(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        self.inner
            .bias()
            .map(|bias| in_dtype_of(bias, xs))
            .transpose()
    }

    /// Whether the weight is held in bf16 for an f32 model (`LoadOptions::storage_dtype`):
    /// huatu-kernels then multiplies in bf16 where the CPU can (`fused_linear_bf16`).
    fn stores_bf16(&self) -> bool {
        self.inner.weight().dtype() == DType::BF16
    }
}

impl From<candle_nn::Linear> for Linear {
    fn from(inner: candle_nn::Linear) -> Self {
        Self {
            inner,
            adapter: None,
        }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let plain_cpu_f32 = !xs.track_op() && xs.device().is_cpu() && xs.dtype() == DType::F32;
        let base = if self.stores_bf16() && plain_cpu_f32 {
            fused_linear_bf16(xs, self.weight(), self.bias_for(xs)?.as_ref(), None, None)?
        } else if self.inner.weight().dtype() != xs.dtype() {
            // Weights stored in half precision for an f32 model: widened for this call.
            let (weight, bias) = self.weights_for(xs)?;
            huatu_kernels::frozen_linear::linear(xs, &weight, bias.as_ref())?
        } else if xs.track_op() {
            // Inside an autograd graph the frozen base layer grads only its input.
            huatu_kernels::frozen_linear::linear(xs, self.inner.weight(), self.inner.bias())?
        } else {
            self.inner.forward(xs)?
        };
        match &self.adapter {
            None => Ok(base),
            Some(adapter) => {
                // Two thin matmuls, never the [out, in] product (peft's order of operations).
                let low = candle_nn::Linear::new(adapter.down.clone(), None).forward(xs)?; // [.., r]
                let delta = candle_nn::Linear::new(adapter.up.clone(), None).forward(&low)?; // [.., out]
                base + (delta * adapter.scale)?
            }
        }
    }
}

/// Layers by diffusers module name (`down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`),
/// collected from a model for a trainer to attach adapters to.
pub type NamedLinears<'a> = Vec<(String, &'a mut Linear)>;

/// `prefix.name`, or `name` at the root.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn adapter_adds_scaled_low_rank_product_and_has_gradients() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let weight = Tensor::randn(0f32, 1.0, (3, 5), &device)?;
        let bias = Tensor::randn(0f32, 1.0, 3, &device)?;
        let mut layer = Linear::from(candle_nn::Linear::new(weight.clone(), Some(bias.clone())));
        let down = Var::randn(0f32, 1.0, (2, 5), &device)?;
        let up = Var::randn(0f32, 1.0, (3, 2), &device)?;
        layer.set_adapter(Some(LinearAdapter {
            down: down.as_tensor().clone(),
            up: up.as_tensor().clone(),
            scale: 0.5,
        }))?;
        let xs = Tensor::randn(0f32, 1.0, (2, 4, 5), &device)?;
        let out = layer.forward(&xs)?;
        let merged = (weight + (up.as_tensor().matmul(down.as_tensor())? * 0.5)?)?;
        let expected = candle_nn::Linear::new(merged, Some(bias)).forward(&xs)?;
        let difference = (out.clone() - expected)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(difference < 1e-5, "difference {difference}");
        let grads = out.sum_all()?.backward()?;
        assert!(grads.get(down.as_tensor()).is_some() && grads.get(up.as_tensor()).is_some());
        assert_eq!(out.dtype(), DType::F32);
        Ok(())
    }

    #[test]
    fn fused_forms_match_forward_then_activation_or_residual() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let weight = Tensor::randn(0f32, 1.0, (7, 5), &device)?;
        let bias = Tensor::randn(0f32, 1.0, 7, &device)?;
        let layer = Linear::from(candle_nn::Linear::new(weight, Some(bias)));
        let xs = Tensor::randn(0f32, 1.0, (2, 3, 5), &device)?;
        for activation in [Activation::QuickGelu, Activation::GeluErf] {
            let fused = layer.forward_activation(&xs, activation)?;
            let plain = reference_bias_activation(&layer.forward(&xs)?, None, activation)?;
            assert_eq!(fused.dims(), &[2, 3, 7]);
            let difference = (fused - plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(difference < 1e-5, "{activation:?}: difference {difference}");
        }
        let residual = Tensor::randn(0f32, 1.0, (2, 3, 7), &device)?;
        let fused = layer.forward_fused(&xs, Some(&residual), None)?;
        let plain = (layer.forward(&xs)? + &residual)?;
        let difference = (fused - plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(difference < 1e-5, "residual: difference {difference}");
        Ok(())
    }

    #[test]
    fn mismatched_adapter_is_refused() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let mut layer = Linear::from(candle_nn::Linear::new(
            Tensor::zeros((3, 5), DType::F32, &device)?,
            None,
        ));
        let adapter = LinearAdapter {
            down: Tensor::zeros((2, 4), DType::F32, &device)?,
            up: Tensor::zeros((3, 2), DType::F32, &device)?,
            scale: 1.0,
        };
        assert!(layer.set_adapter(Some(adapter)).is_err());
        Ok(())
    }
}
