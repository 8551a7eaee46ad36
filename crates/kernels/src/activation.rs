//! A linear layer's bias and the activation after it (transformers' `quick_gelu` of CLIP,
//! the exact erf `gelu` of BLIP and BERT) in one parallel pass over a matmul's output, for
//! CPU f32 outside autograd. candle adds the bias in one pass, then runs `quick_gelu` as
//! three (`x · 1.702`, sigmoid, product) and `gelu_erf` through scalar libm `erff`.
//! The loops are plain code the compiler vectorises, built once more with AVX-512F or
//! AVX2+FMA enabled and picked at run time. Other devices, dtypes and tensors inside an
//! autograd graph use candle's operations.

use candle_core::{Result, Tensor, D};
use rayon::prelude::*;

use crate::cpu_slice::{is_cpu_f32, tensor_from, uninit_vec, with_f32, with_optional_f32};
use crate::elementwise::{erf, has_avx2_fma, has_avx512f};
use crate::softmax_exp::exp_nonpositive;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// The activations this kernel computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x · sigmoid(1.702 x)`.
    QuickGelu,
    /// `0.5 · x · (1 + erf(x / √2))`.
    GeluErf,
}

/// `activation(xs + bias)` with `bias` [n] broadcast over the last axis of `xs` [..., n].
pub fn bias_activation(
    xs: &Tensor,
    bias: Option<&Tensor>,
    activation: Activation,
) -> Result<Tensor> {
    let width = xs.dim(D::Minus1)?;
    if let Some(bias) = bias {
        if bias.dims() != [width] {
            candle_core::bail!(
                "bias activation: bias {:?} does not fit an input {:?}",
                bias.dims(),
                xs.dims()
            );
        }
    }
    let tracked = xs.track_op() || bias.is_some_and(Tensor::track_op);
    if tracked || !is_cpu_f32(xs) || !bias.is_none_or(is_cpu_f32) || width == 0 {
        return reference_bias_activation(xs, bias, activation);
    }
    // Chunks of whole rows, so each task knows where its rows start in the bias.
    let rows_per_task = (CHUNK / width).max(1);
    let output = with_f32(xs, "activation input", |input| {
        with_optional_f32(bias, "activation bias", |bias| {
            let mut output = uninit_vec(input.len());
            output
                .par_chunks_mut(rows_per_task * width)
                .zip(input.par_chunks(rows_per_task * width))
                .for_each(|(output, input)| apply_rows(input, output, bias, width, activation));
            output
        })
    })??;
    tensor_from(output, xs.dims())
}

/// `activation` over `values` in place, in parallel (fused_linear's last step).
pub(crate) fn activate_in_place(values: &mut [f32], activation: Activation) {
    values
        .par_chunks_mut(CHUNK)
        .for_each(|chunk| activate_chunk(chunk, activation));
}

fn activate_chunk(values: &mut [f32], activation: Activation) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512f() {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked just above).
            return unsafe { activate_chunk_avx512(values, activation) };
        }
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { activate_chunk_avx2(values, activation) };
        }
    }
    activate_chunk_generic(values, activation);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn activate_chunk_avx512(values: &mut [f32], activation: Activation) {
    activate_chunk_generic(values, activation);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn activate_chunk_avx2(values: &mut [f32], activation: Activation) {
    activate_chunk_generic(values, activation);
}

#[inline(always)]
fn activate_chunk_generic(values: &mut [f32], activation: Activation) {
    match activation {
        Activation::QuickGelu => values.iter_mut().for_each(|x| *x = quick_gelu(*x)),
        Activation::GeluErf => values.iter_mut().for_each(|x| *x = gelu_erf(*x)),
    }
}

/// candle's formulation, used as the fallback and in tests.
pub fn reference_bias_activation(
    xs: &Tensor,
    bias: Option<&Tensor>,
    activation: Activation,
) -> Result<Tensor> {
    let xs = match bias {
        Some(bias) => xs.broadcast_add(bias)?,
        None => xs.clone(),
    };
    match activation {
        // sigmoid(y) = (1 + tanh(y/2)) / 2: candle-core has no sigmoid, and this form
        // neither overflows nor gives NaN gradients for large |y|.
        Activation::QuickGelu => &xs * ((((&xs * (1.702 / 2.0))?.tanh()? + 1.0)? * 0.5)?),
        Activation::GeluErf => xs.gelu_erf(),
    }
}

fn apply_rows(
    input: &[f32],
    output: &mut [f32],
    bias: Option<&[f32]>,
    width: usize,
    activation: Activation,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512f() {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked just above).
            return unsafe { apply_rows_avx512(input, output, bias, width, activation) };
        }
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { apply_rows_avx2(input, output, bias, width, activation) };
        }
    }
    apply_rows_generic(input, output, bias, width, activation);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn apply_rows_avx512(
    input: &[f32],
    output: &mut [f32],
    bias: Option<&[f32]>,
    width: usize,
    activation: Activation,
) {
    apply_rows_generic(input, output, bias, width, activation);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_rows_avx2(
    input: &[f32],
    output: &mut [f32],
    bias: Option<&[f32]>,
    width: usize,
    activation: Activation,
) {
    apply_rows_generic(input, output, bias, width, activation);
}

#[inline(always)]
fn apply_rows_generic(
    input: &[f32],
    output: &mut [f32],
    bias: Option<&[f32]>,
    width: usize,
    activation: Activation,
) {
    for (input, output) in input
        .chunks_exact(width)
        .zip(output.chunks_exact_mut(width))
    {
        match (bias, activation) {
            (Some(bias), Activation::QuickGelu) => {
                for ((y, &x), &b) in output.iter_mut().zip(input).zip(bias) {
                    *y = quick_gelu(x + b);
                }
            }
            (Some(bias), Activation::GeluErf) => {
                for ((y, &x), &b) in output.iter_mut().zip(input).zip(bias) {
                    *y = gelu_erf(x + b);
                }
            }
            (None, Activation::QuickGelu) => {
                for (y, &x) in output.iter_mut().zip(input) {
                    *y = quick_gelu(x);
                }
            }
            (None, Activation::GeluErf) => {
                for (y, &x) in output.iter_mut().zip(input) {
                    *y = gelu_erf(x);
                }
            }
        }
    }
}

/// `x · sigmoid(1.702 x)`, with the exponential of a non-positive argument only.
#[inline(always)]
fn quick_gelu(x: f32) -> f32 {
    let scaled = 1.702 * x;
    let e = exp_nonpositive(-scaled.abs());
    let r = 1.0 / (1.0 + e);
    // sigmoid(y) = 1 / (1 + e^-y) for y ≥ 0 and e^y / (1 + e^y) below.
    let sigmoid = if scaled >= 0.0 { r } else { e * r };
    x * sigmoid
}

/// `0.5 · x · (1 + erf(x / √2))`.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_difference(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    #[test]
    fn matches_candle_with_and_without_bias() -> anyhow::Result<()> {
        let device = Device::Cpu;
        for dims in [&[2, 37, 41][..], &[3, 4096], &[5]] {
            let width = *dims.last().unwrap_or(&1);
            let xs = Tensor::randn(0f32, 3.0, dims, &device)?;
            let bias = Tensor::randn(0f32, 1.0, width, &device)?;
            for activation in [Activation::QuickGelu, Activation::GeluErf] {
                for bias in [None, Some(&bias)] {
                    let fast = bias_activation(&xs, bias, activation)?;
                    let reference = reference_bias_activation(&xs, bias, activation)?;
                    assert_eq!(fast.dims(), reference.dims());
                    // erf within 6e-7 (scaled by |x|/2 ≤ ~8), exp within 1e-7 relative.
                    let difference = max_difference(&fast, &reference)?;
                    assert!(
                        difference < 1e-5,
                        "{dims:?} {activation:?}: max difference {difference}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn tails_are_exact_enough() -> anyhow::Result<()> {
        let xs = Tensor::new(
            &[-100f32, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0],
            &Device::Cpu,
        )?;
        for activation in [Activation::QuickGelu, Activation::GeluErf] {
            let fast = bias_activation(&xs, None, activation)?;
            let reference = reference_bias_activation(&xs, None, activation)?;
            assert!(max_difference(&fast, &reference)? < 1e-5, "{activation:?}");
        }
        Ok(())
    }

    #[test]
    fn inside_autograd_the_reference_keeps_gradients() -> anyhow::Result<()> {
        let xs = Var::randn(0f32, 1.0, (3, 8), &Device::Cpu)?;
        let out = bias_activation(xs.as_tensor(), None, Activation::GeluErf)?;
        let grads = out.sum_all()?.backward()?;
        assert!(grads.get(xs.as_tensor()).is_some());
        Ok(())
    }

    #[test]
    fn mismatched_bias_is_refused() -> anyhow::Result<()> {
        let xs = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu)?;
        let bias = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu)?;
        assert!(bias_activation(&xs, Some(&bias), Activation::QuickGelu).is_err());
        Ok(())
    }
}
