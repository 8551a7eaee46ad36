//! `x·Wᵀ + b` with a frozen weight as one autograd operation, for adapter training. candle's
//! backward of a matmul computes the gradient of both operands, so a plain linear layer in
//! a graph also gets a weight-sized gradient for its frozen weight — a second matmul per
//! layer and, kept in the gradient store, as much memory as the layer's weights. Here the
//! backward gives the input's gradient only (`dy·W`).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use crate::cpu_slice::with_f32;

/// `xs·weightᵀ + bias` over the last axis: [..., in] → [..., out]. Inside an autograd
/// graph with a frozen weight and bias, only the input's gradient is computed.
pub fn linear(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let frozen = !weight.track_op() && !bias.is_some_and(Tensor::track_op);
    if xs.track_op() && frozen && xs.device().is_cpu() {
        return xs.contiguous()?.apply_op1(FrozenLinear {
            weight: weight.clone(),
            bias: bias.cloned(),
        });
    }
    plain_linear(xs, weight, bias)
}

/// candle's formulation (as `candle_nn::Linear`): a 2-D matmul on the flattened rows.
fn plain_linear(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let dims = xs.dims().to_vec();
    let Some((&features, leading)) = dims.split_last() else {
        candle_core::bail!("linear: a scalar input")
    };
    let rows: usize = leading.iter().product();
    let mut out = xs
        .contiguous()?
        .reshape((rows, features))?
        .matmul(&weight.t()?)?;
    if let Some(bias) = bias {
        out = out.broadcast_add(bias)?;
    }
    let mut out_dims = leading.to_vec();
    out_dims.push(weight.dim(0)?);
    out.reshape(out_dims)
}

struct FrozenLinear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let data = match storage {
            CpuStorage::F32(data) => data.as_slice(),
            _ => candle_core::bail!("frozen linear: the input must be f32"),
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("frozen linear: the input must be contiguous")
        };
        let xs = Tensor::from_slice(&data[start..end], layout.shape(), &candle_core::Device::Cpu)?;
        let out = plain_linear(&xs, &self.weight, self.bias.as_ref())?;
        let values = with_f32(&out, "linear output", <[f32]>::to_vec)?;
        Ok((CpuStorage::F32(values), out.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let out_features = self.weight.dim(0)?;
        let rows = grad_res.elem_count() / out_features;
        let grad = grad_res
            .contiguous()?
            .reshape((rows, out_features))?
            .matmul(&self.weight)?;
        Ok(Some(grad.reshape(arg.dims())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn input_gradient_matches_autograd_and_no_weight_gradient_is_made() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Var::randn(0f32, 1.0, (2, 5, 6), &device)?;
        let weight = Tensor::randn(0f32, 1.0, (4, 6), &device)?;
        let bias = Tensor::randn(0f32, 1.0, 4, &device)?;
        let ours = linear(xs.as_tensor(), &weight, Some(&bias))?;
        let theirs = plain_linear(xs.as_tensor(), &weight, Some(&bias))?;
        assert!((&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-6);
        let g = Tensor::randn(0f32, 1.0, (2, 5, 4), &device)?;
        let ours = (ours * &g)?.sum_all()?.backward()?;
        let theirs = (theirs * &g)?.sum_all()?.backward()?;
        let (Some(a), Some(b)) = (ours.get(xs.as_tensor()), theirs.get(xs.as_tensor())) else {
            anyhow::bail!("no input gradient");
        };
        assert!((a - b)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-5);
        // candle's matmul also stores a gradient for the (transposed) weight and the bias.
        let held = |store: &candle_core::backprop::GradStore| {
            store
                .get_ids()
                .filter_map(|id| store.get_id(*id))
                .map(Tensor::elem_count)
                .sum::<usize>()
        };
        assert!(held(&theirs) >= held(&ours) + weight.elem_count());
        Ok(())
    }
}
