//! `activation(xs·Wᵀ + bias) + residual` as one GEMM into a buffer that already holds the
//! bias and the residual, for CPU f32 outside autograd: candle's linear layer writes the
//! product, adds the bias in a second pass and the model adds the residual in a third,
//! each into a freshly allocated (and page-faulted) tensor. Here the output buffer is
//! filled once with `bias + residual`, the GEMM accumulates into it (gemm's `read_dst`)
//! and the activation, if any, runs in place. Other devices, dtypes and tensors inside an
//! autograd graph use candle's operations (`reference_fused_linear`).

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use crate::activation::{activate_in_place, reference_bias_activation, Activation};
use crate::cpu_slice::{is_cpu_f32, tensor_from, uninit_vec, with_f32, with_optional_f32};

/// Rows per parallel task of the fill.
const FILL_ROWS: usize = 64;

/// `xs` [..., in] · `weight` [out, in]ᵀ + `bias` [out], then `activation`, then
/// `+ residual` [..., out] → [..., out].
pub fn fused_linear(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    activation: Option<Activation>,
) -> Result<Tensor> {
    let dims = xs.dims().to_vec();
    let Some((&in_features, leading)) = dims.split_last() else {
        candle_core::bail!("fused linear: a scalar input")
    };
    let (out_features, weight_in) = weight.dims2()?;
    let mut out_dims = leading.to_vec();
    out_dims.push(out_features);
    if weight_in != in_features
        || bias.is_some_and(|bias| bias.dims() != [out_features])
        || residual.is_some_and(|residual| residual.dims() != out_dims.as_slice())
    {
        candle_core::bail!(
            "fused linear: input {:?}, weight {:?}, bias {:?} and residual {:?} do not fit",
            xs.dims(),
            weight.dims(),
            bias.map(Tensor::dims),
            residual.map(Tensor::dims)
        );
    }
    let tracked = [Some(xs), Some(weight), bias, residual]
        .into_iter()
        .flatten()
        .any(Tensor::track_op);
    let all_cpu_f32 = [Some(xs), Some(weight), bias, residual]
        .into_iter()
        .flatten()
        .all(is_cpu_f32);
    // Activation then residual is not an order any caller needs; refuse it rather than guess.
    if activation.is_some() && residual.is_some() {
        candle_core::bail!("fused linear: an activation and a residual together are not supported");
    }
    if tracked || !all_cpu_f32 || in_features == 0 || out_features == 0 {
        return reference_fused_linear(xs, weight, bias, residual, activation);
    }
    let rows: usize = leading.iter().product();
    let output = with_f32(xs, "fused linear input", |input| {
        with_f32(weight, "fused linear weight", |weight| {
            with_optional_f32(bias, "fused linear bias", |bias| {
                with_optional_f32(residual, "fused linear residual", |residual| {
                    let mut output = uninit_vec(rows * out_features);
                    fill(&mut output, bias, residual, out_features);
                    // SAFETY: input is rows×in row-major, weight out×in row-major read as
                    // its transpose (in×out: row stride 1, column stride in), output
                    // rows×out row-major, fully initialised (read_dst) and distinct from
                    // both inputs.
                    unsafe {
                        gemm::gemm(
                            rows,
                            out_features,
                            in_features,
                            output.as_mut_ptr(),
                            1,
                            out_features as isize,
                            true,
                            input.as_ptr(),
                            1,
                            in_features as isize,
                            weight.as_ptr(),
                            in_features as isize,
                            1,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            parallelism(),
                        );
                    }
                    if let Some(activation) = activation {
                        activate_in_place(&mut output, activation);
                    }
                    output
                })
            })
        })
    })????;
    tensor_from(output, &out_dims)
}

/// candle's formulation, used as the fallback and in tests.
pub fn reference_fused_linear(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    activation: Option<Activation>,
) -> Result<Tensor> {
    let dims = xs.dims().to_vec();
    let Some((&in_features, leading)) = dims.split_last() else {
        candle_core::bail!("fused linear: a scalar input")
    };
    let rows: usize = leading.iter().product();
    let mut out = xs
        .contiguous()?
        .reshape((rows, in_features))?
        .matmul(&weight.t()?)?;
    if let Some(bias) = bias {
        out = out.broadcast_add(bias)?;
    }
    if let Some(activation) = activation {
        out = reference_bias_activation(&out, None, activation)?;
    }
    let mut out_dims = leading.to_vec();
    out_dims.push(weight.dim(0)?);
    let out = out.reshape(out_dims)?;
    match residual {
        Some(residual) => out + residual,
        None => Ok(out),
    }
}

/// Each output row = bias + residual row (either may be absent: zeros).
pub(crate) fn fill(
    output: &mut [f32],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    width: usize,
) {
    output
        .par_chunks_mut(FILL_ROWS * width)
        .enumerate()
        .for_each(|(task, block)| {
            let first = task * FILL_ROWS * width;
            for (row_index, row) in block.chunks_exact_mut(width).enumerate() {
                let start = first + row_index * width;
                match (bias, residual) {
                    (Some(bias), Some(residual)) => {
                        for ((y, &b), &r) in row
                            .iter_mut()
                            .zip(bias)
                            .zip(&residual[start..start + width])
                        {
                            *y = b + r;
                        }
                    }
                    (Some(bias), None) => row.copy_from_slice(bias),
                    (None, Some(residual)) => row.copy_from_slice(&residual[start..start + width]),
                    (None, None) => row.fill(0.0),
                }
            }
        });
}

/// All of rayon's threads, as candle's matmul uses them.
fn parallelism() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        threads => gemm::Parallelism::Rayon(threads),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_difference(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    #[test]
    fn matches_candle_with_every_combination() -> anyhow::Result<()> {
        let device = Device::Cpu;
        for (leading, in_features, out_features) in [
            (vec![2, 37], 41, 29),
            (vec![130], 64, 96),
            (vec![1, 1], 3, 5),
        ] {
            let mut in_dims = leading.clone();
            in_dims.push(in_features);
            let mut out_dims = leading.clone();
            out_dims.push(out_features);
            let xs = Tensor::randn(0f32, 1.0, in_dims.as_slice(), &device)?;
            let weight = Tensor::randn(0f32, 0.2, (out_features, in_features), &device)?;
            let bias = Tensor::randn(0f32, 1.0, out_features, &device)?;
            let residual = Tensor::randn(0f32, 1.0, out_dims.as_slice(), &device)?;
            let cases: [(Option<&Tensor>, Option<&Tensor>, Option<Activation>); 6] = [
                (None, None, None),
                (Some(&bias), None, None),
                (None, Some(&residual), None),
                (Some(&bias), Some(&residual), None),
                (Some(&bias), None, Some(Activation::QuickGelu)),
                (Some(&bias), None, Some(Activation::GeluErf)),
            ];
            for (bias, residual, activation) in cases {
                let fast = fused_linear(&xs, &weight, bias, residual, activation)?;
                let reference = reference_fused_linear(&xs, &weight, bias, residual, activation)?;
                assert_eq!(fast.dims(), out_dims.as_slice());
                let difference = max_difference(&fast, &reference)?;
                // Sums of ≤ 64 products of size ~0.2 in another order, plus the activations'
                // 1e-6-level approximations.
                assert!(
                    difference < 1e-5,
                    "{leading:?} {in_features}->{out_features}: difference {difference}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn non_contiguous_input_is_accepted() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Tensor::randn(0f32, 1.0, (6, 4, 5), &device)?.transpose(0, 1)?; // [4, 6, 5]
        let weight = Tensor::randn(0f32, 1.0, (3, 5), &device)?;
        let fast = fused_linear(&xs, &weight, None, None, None)?;
        let reference = reference_fused_linear(&xs, &weight, None, None, None)?;
        assert!(max_difference(&fast, &reference)? < 1e-5);
        Ok(())
    }

    #[test]
    fn inside_autograd_the_reference_keeps_gradients() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Var::randn(0f32, 1.0, (3, 5), &device)?;
        let weight = Tensor::randn(0f32, 1.0, (4, 5), &device)?;
        let residual = Tensor::randn(0f32, 1.0, (3, 4), &device)?;
        let out = fused_linear(xs.as_tensor(), &weight, None, Some(&residual), None)?;
        let grads = out.sum_all()?.backward()?;
        assert!(grads.get(xs.as_tensor()).is_some());
        Ok(())
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Tensor::zeros((2, 5), candle_core::DType::F32, &device)?;
        let weight = Tensor::zeros((3, 5), candle_core::DType::F32, &device)?;
        let wrong = Tensor::zeros((2, 4), candle_core::DType::F32, &device)?;
        assert!(fused_linear(&xs, &weight, None, Some(&wrong), None).is_err());
        assert!(fused_linear(&wrong, &weight, None, None, None).is_err());
        Ok(())
    }
}
