//! `activation(xs·Wᵀ + bias) + residual` with bf16 weights, multiplied in bf16 on CPUs with
//! AVX-512 BF16 (`vdpbf16ps`: two bf16 products summed into each f32 lane per instruction,
//! twice the f32 FMA rate). The input is rounded to bf16 (nearest-even) as it is packed and
//! every sum is kept in f32 — what PyTorch's CPU autocast to bf16 computes for a linear
//! layer. Used for f32 models whose weights are stored in bf16 (`--dtype bf16` on the
//! CPU); elsewhere the weight is widened and [`fused_linear`] runs in f32.
//!
//! Layout: the weight is packed into panels of [`NR`] output columns, each k-pair of a
//! column one u32 (two bf16); the input, per task, into panels of 12 rows likewise.
//! The microkernel keeps an MR×NR block of the output in 24 registers, broadcasting one
//! input pair per row against two weight vectors per k-pair.

#[cfg(target_arch = "x86_64")]
mod avx512;

use std::sync::OnceLock;

use candle_core::{DType, Result, Tensor};
use half::bf16;
use rayon::prelude::*;

use crate::activation::{activate_in_place, Activation};
use crate::cpu_slice::{
    is_cpu_f32, tensor_from, uninit_vec, with_bf16, with_f32, with_optional_f32,
};
use crate::fused_linear::{fill, fused_linear};

/// Columns of the output block one microkernel call computes: two 16-lane vectors.
const NR: usize = 32;

/// Whether this CPU multiplies bf16 pairs natively (AVX-512 BF16), detected once.
pub fn bf16_dot_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16");
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// `xs` [..., in] (f32) · `weight` [out, in] (bf16)ᵀ + `bias` [out], then `activation`,
/// then `+ residual` [..., out] → [..., out] in f32. Without AVX-512 BF16, for tensors in
/// an autograd graph or off the CPU, the weight is widened and [`fused_linear`] runs.
pub fn fused_linear_bf16(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    activation: Option<Activation>,
) -> Result<Tensor> {
    let tracked = [Some(xs), Some(weight), bias, residual]
        .into_iter()
        .flatten()
        .any(Tensor::track_op);
    let inputs_f32 = [Some(xs), bias, residual]
        .into_iter()
        .flatten()
        .all(is_cpu_f32);
    let weight_bf16 = weight.device().is_cpu() && weight.dtype() == DType::BF16;
    if tracked || !inputs_f32 || !weight_bf16 || !bf16_dot_available() {
        let widened = weight.to_dtype(xs.dtype())?;
        return fused_linear(xs, &widened, bias, residual, activation);
    }
    let dims = xs.dims().to_vec();
    let Some((&in_features, leading)) = dims.split_last() else {
        candle_core::bail!("bf16 linear: a scalar input")
    };
    let (out_features, weight_in) = weight.dims2()?;
    let mut out_dims = leading.to_vec();
    out_dims.push(out_features);
    if weight_in != in_features
        || bias.is_some_and(|bias| bias.dims() != [out_features])
        || residual.is_some_and(|residual| residual.dims() != out_dims.as_slice())
    {
        candle_core::bail!(
            "bf16 linear: input {:?}, weight {:?}, bias {:?} and residual {:?} do not fit",
            xs.dims(),
            weight.dims(),
            bias.map(Tensor::dims),
            residual.map(Tensor::dims)
        );
    }
    if activation.is_some() && residual.is_some() {
        candle_core::bail!("bf16 linear: an activation and a residual together are not supported");
    }
    let rows: usize = leading.iter().product();
    let output = with_f32(xs, "bf16 linear input", |input| {
        with_bf16(weight, "bf16 linear weight", |weight| {
            with_optional_f32(bias, "bf16 linear bias", |bias| {
                with_optional_f32(residual, "bf16 linear residual", |residual| {
                    let mut output = uninit_vec(rows * out_features);
                    fill(&mut output, bias, residual, out_features);
                    #[cfg(target_arch = "x86_64")]
                    if in_features > 0 {
                        let packed = pack_weight(weight, out_features, in_features);
                        avx512::accumulate(
                            &mut output,
                            input,
                            &packed,
                            rows,
                            in_features,
                            out_features,
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

/// The weight [out, in] as panels of NR columns: `panel[pair · NR + column]` holds
/// `w[column, 2·pair]` in its low half and `w[column, 2·pair + 1]` (or 0) in its high half;
/// columns past `out` are zero.
fn pack_weight(weight: &[bf16], out: usize, inner: usize) -> Vec<u32> {
    let pairs = inner.div_ceil(2);
    let panels = out.div_ceil(NR);
    let mut packed = vec![0u32; panels * pairs * NR];
    packed
        .par_chunks_mut(pairs * NR)
        .enumerate()
        .for_each(|(panel_index, panel)| {
            let first = panel_index * NR;
            for column in 0..NR.min(out - first) {
                let row = &weight[(first + column) * inner..(first + column + 1) * inner];
                for (pair, values) in row.chunks(2).enumerate() {
                    let high = values.get(1).map_or(0, |value| u32::from(value.to_bits()));
                    panel[pair * NR + column] = u32::from(values[0].to_bits()) | (high << 16);
                }
            }
        });
    packed
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn max_difference(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    /// What the kernel computes, in candle: the input rounded to bf16, then an f32 product
    /// with the widened weight.
    fn reference(
        xs: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: Option<&Tensor>,
        activation: Option<Activation>,
    ) -> anyhow::Result<Tensor> {
        let rounded = xs.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
        Ok(crate::fused_linear::reference_fused_linear(
            &rounded,
            &weight.to_dtype(DType::F32)?,
            bias,
            residual,
            activation,
        )?)
    }

    #[test]
    fn matches_the_rounded_f32_product_at_every_edge() -> anyhow::Result<()> {
        if !bf16_dot_available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return Ok(());
        }
        let device = Device::Cpu;
        // Rows not a multiple of 12, columns not of 32 (and under 16), odd and tiny inner
        // sizes, inner sizes past one k-block (2·192), leading batch dimensions.
        for (leading, in_features, out_features) in [
            (vec![2, 37], 41, 29),
            (vec![130], 64, 96),
            (vec![1, 1], 3, 5),
            (vec![25], 1, 7),
            (vec![3, 50], 777, 70),
            (vec![300], 160, 33),
        ] {
            let mut in_dims = leading.clone();
            in_dims.push(in_features);
            let mut out_dims = leading.clone();
            out_dims.push(out_features);
            let xs = Tensor::randn(0f32, 1.0, in_dims.as_slice(), &device)?;
            let weight = Tensor::randn(0f32, 0.2, (out_features, in_features), &device)?
                .to_dtype(DType::BF16)?;
            let bias = Tensor::randn(0f32, 1.0, out_features, &device)?;
            let residual = Tensor::randn(0f32, 1.0, out_dims.as_slice(), &device)?;
            let cases: [(Option<&Tensor>, Option<&Tensor>, Option<Activation>); 4] = [
                (None, None, None),
                (Some(&bias), None, Some(Activation::GeluErf)),
                (None, Some(&residual), None),
                (Some(&bias), Some(&residual), None),
            ];
            for (bias, residual, activation) in cases {
                let fast = fused_linear_bf16(&xs, &weight, bias, residual, activation)?;
                let expected = reference(&xs, &weight, bias, residual, activation)?;
                assert_eq!(fast.dims(), out_dims.as_slice());
                let difference = max_difference(&fast, &expected)?;
                // The same exact products summed in another order: f32 rounding only,
                // growing with the sums' size (√in · 0.2 for these inputs).
                let tolerance = 1e-5 * (in_features as f32).sqrt().max(1.0);
                assert!(
                    difference < tolerance,
                    "{leading:?} {in_features}->{out_features}: difference {difference}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn stays_within_bf16_rounding_of_the_f32_product() -> anyhow::Result<()> {
        if !bf16_dot_available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return Ok(());
        }
        let device = Device::Cpu;
        let xs = Tensor::randn(0f32, 1.0, (64, 640), &device)?;
        let weight = Tensor::randn(0f32, 0.05, (320, 640), &device)?.to_dtype(DType::BF16)?;
        let fast = fused_linear_bf16(&xs, &weight, None, None, None)?;
        let exact = xs.matmul(&weight.to_dtype(DType::F32)?.t()?)?;
        let relative = (max_difference(&fast, &exact)?
            / exact.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
            as f64;
        // Each input is off by at most 2⁻⁹ of itself; over 640 terms the errors mostly cancel.
        assert!(relative < 5e-3, "relative difference {relative}");
        Ok(())
    }

    #[test]
    fn inside_autograd_or_with_f32_weights_it_falls_back() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Var::randn(0f32, 1.0, (3, 5), &device)?;
        let weight = Tensor::randn(0f32, 1.0, (4, 5), &device)?.to_dtype(DType::BF16)?;
        let out = fused_linear_bf16(xs.as_tensor(), &weight, None, None, None)?;
        let grads = out.sum_all()?.backward()?;
        assert!(grads.get(xs.as_tensor()).is_some());
        let plain = Tensor::randn(0f32, 1.0, (3, 5), &device)?;
        let weight_f32 = weight.to_dtype(DType::F32)?;
        let widened = fused_linear_bf16(&plain, &weight_f32, None, None, None)?;
        let expected = plain.matmul(&weight_f32.t()?)?;
        assert!(max_difference(&widened, &expected)? < 1e-5);
        Ok(())
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() -> anyhow::Result<()> {
        if !bf16_dot_available() {
            return Ok(());
        }
        let device = Device::Cpu;
        let xs = Tensor::zeros((2, 5), DType::F32, &device)?;
        let weight = Tensor::zeros((3, 6), DType::BF16, &device)?;
        assert!(fused_linear_bf16(&xs, &weight, None, None, None).is_err());
        Ok(())
    }
}
