//! Backward passes of the fused group norm (+ SiLU), a layer norm and GEGLU for adapter
//! training: the forward runs on fused kernels, the backward gives the input's gradient (the
//! norms' weight and bias are frozen) in one parallel pass per (sample, group) or row.
//! Layer norm is group norm with one group per row and the weight along the row.
//!
//! Group norm, with x̂ = (x − μ)·r, r = 1/√(σ² + ε), y = x̂·w + b, z = silu(y) or y:
//! dy = dz·(s + y·s·(1 − s)) with s = sigmoid(y) (or dz); g = dy·w;
//! dx = r·(g − mean(g) − x̂·mean(g·x̂)), means over the group.
//! GEGLU out = h·gelu(a): dh = dout·gelu(a), da = dout·h·(Φ(a) + a·φ(a)).
//! The group norm's and GEGLU's operations (`CustomOp1`) are implemented beside their
//! forward kernels and call the gradients here.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_slice::{input_tensor, tensor_from, with_f32};
use crate::elementwise::erf;

/// `group_norm(x)` (then SiLU) with frozen `weight` and `bias`.
pub(crate) struct FrozenGroupNorm {
    pub num_groups: usize,
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
    pub with_silu: bool,
}

impl FrozenGroupNorm {
    /// dL/dx from dL/d(output) (`arg` is x).
    pub(crate) fn input_gradient(&self, arg: &Tensor, grad_res: &Tensor) -> Result<Tensor> {
        let dims = arg.dims();
        let channels = dims[1];
        let group_len = arg.elem_count() / (dims[0] * self.num_groups);
        let spatial = group_len * self.num_groups / channels;
        let per_group = channels / self.num_groups;
        let (eps, with_silu) = (self.eps, self.with_silu);
        let grad = with_f32(arg, "group norm input", |input| {
            with_f32(grad_res, "group norm output gradient", |output_grad| {
                with_f32(&self.weight, "group norm weight", |weight| {
                    with_f32(&self.bias, "group norm bias", |bias| {
                        let mut grad = vec![0f32; input.len()];
                        grad.par_chunks_mut(group_len)
                            .zip(
                                input
                                    .par_chunks(group_len)
                                    .zip(output_grad.par_chunks(group_len)),
                            )
                            .enumerate()
                            .for_each(|(index, (grad, (input, output_grad)))| {
                                let first = (index % self.num_groups) * per_group;
                                let channels = first..first + per_group;
                                let job = GroupGrad {
                                    spatial,
                                    eps,
                                    with_silu,
                                };
                                job.run(
                                    input,
                                    output_grad,
                                    &weight[channels.clone()],
                                    &bias[channels],
                                    grad,
                                );
                            });
                        grad
                    })
                })
            })
        })????;
        tensor_from(grad, dims)
    }
}

struct GroupGrad {
    spatial: usize,
    eps: f64,
    with_silu: bool,
}

impl GroupGrad {
    fn run(
        &self,
        input: &[f32],
        output_grad: &[f32],
        weight: &[f32],
        bias: &[f32],
        grad: &mut [f32],
    ) {
        let count = input.len() as f64;
        let mean = input.iter().map(|&x| x as f64).sum::<f64>() / count;
        let variance = input
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / count;
        let inverse_std = 1.0 / (variance + self.eps).sqrt();
        // g = dy·w into `grad` first; the sums of g and g·x̂ in f64.
        let (mut sum_g, mut sum_g_normed) = (0f64, 0f64);
        for (channel, ((input, output_grad), grad)) in input
            .chunks(self.spatial)
            .zip(output_grad.chunks(self.spatial))
            .zip(grad.chunks_mut(self.spatial))
            .enumerate()
        {
            for ((&x, &dz), g) in input.iter().zip(output_grad).zip(grad.iter_mut()) {
                let normed = ((x as f64 - mean) * inverse_std) as f32;
                let dy = if self.with_silu {
                    let y = normed * weight[channel] + bias[channel];
                    let s = 1.0 / (1.0 + (-y).exp());
                    dz * (s + y * s * (1.0 - s))
                } else {
                    dz
                };
                *g = dy * weight[channel];
                sum_g += *g as f64;
                sum_g_normed += *g as f64 * normed as f64;
            }
        }
        let (mean_g, mean_g_normed) = (sum_g / count, sum_g_normed / count);
        for (&x, g) in input.iter().zip(grad.iter_mut()) {
            let normed = (x as f64 - mean) * inverse_std;
            *g = (inverse_std * (*g as f64 - mean_g - normed * mean_g_normed)) as f32;
        }
    }
}

/// `layer_norm(x)` over the last axis with frozen `weight` and `bias` [dim], inside an
/// autograd graph (candle's fused layer norm has no backward; its plain formulation keeps
/// half a dozen intermediates per call for the backward pass).
pub fn frozen_layer_norm(xs: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    xs.contiguous()?.apply_op1(FrozenLayerNorm {
        weight: weight.clone(),
        bias: bias.clone(),
        eps,
    })
}

struct FrozenLayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

/// (mean, 1/√(var + ε)) of one row, in f64.
fn row_statistics(row: &[f32], eps: f64) -> (f64, f64) {
    let count = row.len() as f64;
    let mean = row.iter().map(|&x| x as f64).sum::<f64>() / count;
    let variance = row.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / count;
    (mean, 1.0 / (variance + eps).sqrt())
}

impl CustomOp1 for FrozenLayerNorm {
    fn name(&self) -> &'static str {
        "frozen-layer-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let xs = input_tensor(storage, layout, "layer norm")?;
        let dim = xs.dim(candle_core::D::Minus1)?;
        let eps = self.eps;
        let out = with_f32(&xs, "layer norm input", |input| {
            with_f32(&self.weight, "layer norm weight", |weight| {
                with_f32(&self.bias, "layer norm bias", |bias| {
                    let mut out = vec![0f32; input.len()];
                    out.par_chunks_mut(dim)
                        .zip(input.par_chunks(dim))
                        .for_each(|(out, row)| {
                            let (mean, inverse_std) = row_statistics(row, eps);
                            for (((out, &x), &w), &b) in
                                out.iter_mut().zip(row).zip(weight).zip(bias)
                            {
                                *out = ((x as f64 - mean) * inverse_std) as f32 * w + b;
                            }
                        });
                    out
                })
            })
        })???;
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let dim = arg.dim(candle_core::D::Minus1)?;
        let eps = self.eps;
        let grad = with_f32(arg, "layer norm input", |input| {
            with_f32(grad_res, "layer norm output gradient", |output_grad| {
                with_f32(&self.weight, "layer norm weight", |weight| {
                    let mut grad = vec![0f32; input.len()];
                    grad.par_chunks_mut(dim)
                        .zip(input.par_chunks(dim).zip(output_grad.par_chunks(dim)))
                        .for_each(|(grad, (row, output_grad))| {
                            let (mean, inverse_std) = row_statistics(row, eps);
                            let (mut sum_g, mut sum_g_normed) = (0f64, 0f64);
                            for (((g, &dy), &w), &x) in
                                grad.iter_mut().zip(output_grad).zip(weight).zip(row)
                            {
                                *g = dy * w;
                                sum_g += *g as f64;
                                sum_g_normed += *g as f64 * (x as f64 - mean) * inverse_std;
                            }
                            let (mean_g, mean_g_normed) =
                                (sum_g / dim as f64, sum_g_normed / dim as f64);
                            for (g, &x) in grad.iter_mut().zip(row) {
                                let normed = (x as f64 - mean) * inverse_std;
                                *g = (inverse_std * (*g as f64 - mean_g - normed * mean_g_normed))
                                    as f32;
                            }
                        });
                    grad
                })
            })
        })???;
        Ok(Some(tensor_from(grad, arg.dims())?))
    }
}

/// GEGLU: [..., 2n] → [..., n].
pub(crate) struct Geglu;

impl Geglu {
    /// dL/dx from dL/d(output) (`arg` is x).
    pub(crate) fn input_gradient(&self, arg: &Tensor, grad_res: &Tensor) -> Result<Tensor> {
        let width = arg.dim(candle_core::D::Minus1)?;
        let half = width / 2;
        let grad = with_f32(arg, "geglu input", |input| {
            with_f32(grad_res, "geglu output gradient", |output_grad| {
                let mut grad = vec![0f32; input.len()];
                grad.par_chunks_mut(width)
                    .zip(input.par_chunks(width).zip(output_grad.par_chunks(half)))
                    .for_each(|(grad, (input, output_grad))| {
                        let (hidden, gate) = input.split_at(half);
                        let (d_hidden, d_gate) = grad.split_at_mut(half);
                        for i in 0..half {
                            let a = gate[i];
                            let cdf = 0.5 * (1.0 + erf(a * std::f32::consts::FRAC_1_SQRT_2));
                            let pdf = (-0.5 * a * a).exp() * 0.398_942_3;
                            d_hidden[i] = output_grad[i] * a * cdf;
                            d_gate[i] = output_grad[i] * hidden[i] * (cdf + a * pdf);
                        }
                    });
                grad
            })
        })??;
        tensor_from(grad, arg.dims())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geglu::reference_geglu;
    use crate::group_norm::reference_group_norm;
    use candle_core::{Device, Var};

    fn compare(ours: &Tensor, theirs: &Tensor, xs: &Var, what: &str) -> anyhow::Result<()> {
        let g = Tensor::randn(0f32, 1.0, ours.dims(), &Device::Cpu)?;
        let a = (ours * &g)?.sum_all()?.backward()?;
        let b = (theirs * &g)?.sum_all()?.backward()?;
        let (Some(a), Some(b)) = (a.get(xs.as_tensor()), b.get(xs.as_tensor())) else {
            anyhow::bail!("{what}: no gradient");
        };
        let difference = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(difference < 1e-4, "{what}: {difference}");
        Ok(())
    }

    #[test]
    fn group_norm_gradient_matches_autograd() -> anyhow::Result<()> {
        for (dims, groups, with_silu) in [
            (vec![2, 8, 5, 3], 4, true),
            (vec![1, 6, 7], 3, false),
            (vec![2, 4, 2, 2], 1, true),
        ] {
            let xs = Var::from_tensor(
                &(Tensor::randn(0f32, 2.0, dims.as_slice(), &Device::Cpu)? + 1.0)?,
            )?;
            let weight = Tensor::randn(1f32, 0.5, dims[1], &Device::Cpu)?;
            let bias = Tensor::randn(0f32, 0.5, dims[1], &Device::Cpu)?;
            let ours = crate::group_norm(xs.as_tensor(), groups, &weight, &bias, 1e-5, with_silu)?;
            let theirs =
                reference_group_norm(xs.as_tensor(), groups, &weight, &bias, 1e-5, with_silu)?;
            compare(
                &ours,
                &theirs,
                &xs,
                &format!("group norm {dims:?} silu {with_silu}"),
            )?;
        }
        Ok(())
    }

    #[test]
    fn layer_norm_matches_the_plain_formulation_and_its_gradient() -> anyhow::Result<()> {
        let xs = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (2, 7, 12), &Device::Cpu)? + 0.5)?)?;
        let weight = Tensor::randn(1f32, 0.5, 12, &Device::Cpu)?;
        let bias = Tensor::randn(0f32, 0.5, 12, &Device::Cpu)?;
        let ours = frozen_layer_norm(xs.as_tensor(), &weight, &bias, 1e-5)?;
        let x = xs.as_tensor();
        let centred = x.broadcast_sub(&x.mean_keepdim(candle_core::D::Minus1)?)?;
        let variance = centred.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
        let theirs = centred
            .broadcast_div(&(variance + 1e-5)?.sqrt()?)?
            .broadcast_mul(&weight)?
            .broadcast_add(&bias)?;
        assert!((&ours - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-5);
        compare(&ours, &theirs, &xs, "layer norm")
    }

    #[test]
    fn geglu_gradient_matches_autograd() -> anyhow::Result<()> {
        let xs = Var::randn(0f32, 1.5, (2, 5, 12), &Device::Cpu)?;
        let ours = crate::geglu(xs.as_tensor())?;
        let theirs = reference_geglu(xs.as_tensor())?;
        compare(&ours, &theirs, &xs, "geglu")
    }

    /// Central finite differences of Σ g·op(x) on a few entries.
    #[test]
    fn gradients_match_finite_differences() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let weight = Tensor::randn(1f32, 0.5, 4, &device)?;
        let bias = Tensor::randn(0f32, 0.5, 4, &device)?;
        type Op<'a> = Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>;
        let ops: [(&str, Vec<usize>, Op); 3] = [
            (
                "group norm",
                vec![1, 4, 3, 3],
                Box::new(|xs: &Tensor| crate::group_norm(xs, 2, &weight, &bias, 1e-5, true)),
            ),
            (
                "layer norm",
                vec![3, 4],
                Box::new(|xs: &Tensor| frozen_layer_norm(xs, &weight, &bias, 1e-5)),
            ),
            (
                "geglu",
                vec![3, 8],
                Box::new(|xs: &Tensor| crate::geglu(xs)),
            ),
        ];
        for (name, dims, op) in ops {
            let xs = Var::randn(0f32, 1.0, dims.as_slice(), &device)?;
            let out = op(xs.as_tensor())?;
            let g = Tensor::randn(0f32, 1.0, out.dims(), &device)?;
            let analytic = (out * &g)?.sum_all()?.backward()?;
            let analytic = analytic
                .get(xs.as_tensor())
                .map(|t| t.flatten_all()?.to_vec1::<f32>())
                .transpose()?
                .unwrap_or_default();
            let values = xs.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            for index in [0, 5, values.len() - 1] {
                let shifted = |delta: f32| -> anyhow::Result<f64> {
                    let mut changed = values.clone();
                    changed[index] += delta;
                    let moved = Tensor::from_vec(changed, dims.as_slice(), &device)?;
                    Ok((op(&moved)? * &g)?.sum_all()?.to_scalar::<f32>()? as f64)
                };
                let numeric = (shifted(1e-2)? - shifted(-1e-2)?) / 2e-2;
                let error = (numeric - analytic[index] as f64).abs();
                assert!(
                    error < 3e-3 * (1.0 + numeric.abs()),
                    "{name} at {index}: {numeric} vs {}",
                    analytic[index]
                );
            }
        }
        Ok(())
    }
}
