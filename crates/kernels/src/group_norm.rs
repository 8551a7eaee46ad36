//! Group normalisation (PyTorch's `nn.GroupNorm`, affine) for CPU f32, optionally followed
//! by SiLU in the same pass, as every diffusers resnet block starts with `silu(norm(x))`.
//! Per (sample, group), in parallel: one pass for the mean and variance (f32 lanes over
//! short blocks, f64 totals, shifted by the group's first value), one pass writing
//! `(x - mean) · scale[c] + bias[c]` (then SiLU). candle's formulation makes seven full passes,
//! each a separate single-threaded tensor op.
//! Other devices/dtypes use the plain candle formulation.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_slice::{
    input_tensor, is_cpu_f32, output_storage, tensor_from, uninit_vec, with_f32,
};
use crate::elementwise::{has_avx2_fma, has_avx512f, normalise, shifted_sums};
use crate::norm_gate_grad::FrozenGroupNorm;

/// `group_norm(xs)` over [b, c, ...] with `weight`, `bias` [c]; `silu(group_norm(xs))`
/// when `with_silu`.
pub fn group_norm(
    xs: &Tensor,
    num_groups: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    with_silu: bool,
) -> Result<Tensor> {
    let dims = xs.dims();
    if dims.len() < 3 {
        candle_core::bail!("group norm: input must have at least 3 dimensions, got {dims:?}");
    }
    let channels = dims[1];
    if num_groups == 0 || !channels.is_multiple_of(num_groups) {
        candle_core::bail!("group norm: {channels} channels do not split into {num_groups} groups");
    }
    if weight.dims() != [channels] || bias.dims() != [channels] {
        candle_core::bail!(
            "group norm: weight and bias must be [{channels}], got {:?} and {:?}",
            weight.dims(),
            bias.dims()
        );
    }
    let all_cpu_f32 = is_cpu_f32(xs) && is_cpu_f32(weight) && is_cpu_f32(bias);
    // Inside an autograd graph with a frozen weight and bias: this kernel, with a backward
    // for the input (`norm_gate_grad`); trainable ones take the plain formulation.
    if xs.track_op() && !weight.track_op() && !bias.track_op() && all_cpu_f32 {
        let op = FrozenGroupNorm {
            num_groups,
            weight: weight.clone(),
            bias: bias.clone(),
            eps,
            with_silu,
        };
        return xs.contiguous()?.apply_op1(op);
    }
    if xs.track_op() || weight.track_op() || bias.track_op() || !all_cpu_f32 {
        return reference_group_norm(xs, num_groups, weight, bias, eps, with_silu);
    }
    let group_len = xs.elem_count() / (dims[0] * num_groups);
    let spatial = group_len * num_groups / channels;
    let output = with_f32(xs, "group norm input", |input| {
        with_f32(weight, "group norm weight", |weight| {
            with_f32(bias, "group norm bias", |bias| {
                let mut output = uninit_vec(input.len());
                let job = GroupJob {
                    spatial,
                    channels_per_group: channels / num_groups,
                    eps,
                    with_silu,
                };
                output
                    .par_chunks_mut(group_len)
                    .zip(input.par_chunks(group_len))
                    .enumerate()
                    .for_each(|(index, (output, input))| {
                        let first_channel = (index % num_groups) * job.channels_per_group;
                        let channels = first_channel..first_channel + job.channels_per_group;
                        job.run(input, output, &weight[channels.clone()], &bias[channels]);
                    });
                output
            })
        })
    })???;
    tensor_from(output, dims)
}

/// candle_nn's `GroupNorm::forward` formulation (statistics in f32 or wider), then SiLU.
pub fn reference_group_norm(
    xs: &Tensor,
    num_groups: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    with_silu: bool,
) -> Result<Tensor> {
    let dims = xs.dims().to_vec();
    let dtype = xs.dtype();
    let internal = match dtype {
        DType::F16 | DType::BF16 => DType::F32,
        other => other,
    };
    let group_len = xs.elem_count() / (dims[0] * num_groups);
    let grouped = xs
        .reshape((dims[0], num_groups, group_len))?
        .to_dtype(internal)?;
    let mean = (grouped.sum_keepdim(2)? / group_len as f64)?;
    let centred = grouped.broadcast_sub(&mean)?;
    let variance = (centred.sqr()?.sum_keepdim(2)? / group_len as f64)?;
    let normed = centred.broadcast_div(&(variance + eps)?.sqrt()?)?;
    let mut channel_shape = vec![1; dims.len()];
    channel_shape[1] = dims[1];
    let out = normed
        .to_dtype(dtype)?
        .reshape(dims)?
        .broadcast_mul(&weight.reshape(channel_shape.clone())?)?
        .broadcast_add(&bias.reshape(channel_shape)?)?;
    if with_silu {
        out.silu()
    } else {
        Ok(out)
    }
}

#[derive(Clone, Copy)]
struct GroupJob {
    spatial: usize,
    channels_per_group: usize,
    eps: f64,
    with_silu: bool,
}

impl GroupJob {
    fn run(&self, input: &[f32], output: &mut [f32], weight: &[f32], bias: &[f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx512f() {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked just above).
            unsafe { self.run_avx512(input, output, weight, bias) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            unsafe { self.run_avx2(input, output, weight, bias) };
            return;
        }
        self.run_generic(input, output, weight, bias);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn run_avx512(&self, input: &[f32], output: &mut [f32], weight: &[f32], bias: &[f32]) {
        self.run_generic(input, output, weight, bias);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, input: &[f32], output: &mut [f32], weight: &[f32], bias: &[f32]) {
        self.run_generic(input, output, weight, bias);
    }

    #[inline(always)]
    fn run_generic(&self, input: &[f32], output: &mut [f32], weight: &[f32], bias: &[f32]) {
        let count = input.len() as f64;
        let reference = input[0];
        let (sum, squares) = shifted_sums(input, reference);
        let shifted_mean = sum / count;
        let mean = reference as f64 + shifted_mean;
        let variance = (squares / count - shifted_mean * shifted_mean).max(0.0);
        let inverse_std = 1.0 / (variance + self.eps).sqrt();
        for (channel, (input, output)) in input
            .chunks(self.spatial)
            .zip(output.chunks_mut(self.spatial))
            .enumerate()
        {
            let scale = (weight[channel] as f64 * inverse_std) as f32;
            normalise(
                input,
                output,
                mean as f32,
                scale,
                bias[channel],
                self.with_silu,
            );
        }
    }
}

/// The kernel inside an autograd graph; the gradient is `norm_gate_grad`'s.
impl CustomOp1 for FrozenGroupNorm {
    fn name(&self) -> &'static str {
        "frozen-group-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let xs = input_tensor(storage, layout, "group norm")?;
        output_storage(&group_norm(
            &xs,
            self.num_groups,
            &self.weight,
            &self.bias,
            self.eps,
            self.with_silu,
        )?)
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        self.input_gradient(arg, grad_res).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_difference(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    fn check(dims: &[usize], groups: usize, with_silu: bool) -> anyhow::Result<()> {
        let device = Device::Cpu;
        let channels = dims[1];
        // An offset mean, as activations have, so a naive E[x²] - E[x]² would lose digits.
        let xs = (Tensor::randn(0f32, 2.0, dims, &device)? + 3.0)?;
        let weight = Tensor::randn(1f32, 0.5, channels, &device)?;
        let bias = Tensor::randn(0f32, 0.5, channels, &device)?;
        let fast = group_norm(&xs, groups, &weight, &bias, 1e-6, with_silu)?;
        let reference = reference_group_norm(&xs, groups, &weight, &bias, 1e-6, with_silu)?;
        assert_eq!(fast.dims(), dims);
        let difference = max_difference(&fast, &reference)?;
        // Both are f32 computations of O(1) outputs; 1e-5 allows for the different
        // summation orders (candle's sums are sequential f32 over up to 10⁵ values).
        assert!(
            difference < 1e-5,
            "{dims:?} groups {groups} silu {with_silu}: max difference {difference}"
        );
        Ok(())
    }

    #[test]
    fn matches_candle_on_odd_shapes_and_batches() -> anyhow::Result<()> {
        check(&[2, 64, 13, 17], 32, false)?;
        check(&[3, 12, 7, 5], 4, true)?;
        check(&[1, 32, 1, 1], 32, true)?;
        check(&[2, 96, 40, 33], 32, true)?;
        check(&[2, 320, 77], 32, false)?; // rank 3, as Transformer2DModel's norm sees it
        Ok(())
    }

    #[test]
    fn falls_back_for_other_dtypes() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Tensor::randn(0f32, 1.0, (1, 8, 4, 4), &device)?.to_dtype(DType::F64)?;
        let weight = Tensor::ones(8, DType::F64, &device)?;
        let bias = Tensor::zeros(8, DType::F64, &device)?;
        let out = group_norm(&xs, 4, &weight, &bias, 1e-5, true)?;
        assert_eq!(out.dtype(), DType::F64);
        Ok(())
    }

    #[test]
    fn rejects_channels_that_do_not_split() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Tensor::zeros((1, 6, 2, 2), DType::F32, &device)?;
        let weight = Tensor::ones(6, DType::F32, &device)?;
        assert!(group_norm(&xs, 4, &weight, &weight, 1e-5, false).is_err());
        Ok(())
    }
}
