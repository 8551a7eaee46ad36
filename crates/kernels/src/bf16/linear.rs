//! `activation(xs·Wᵀ + bias) + residual` with bf16 weights, multiplied in bf16 (see the
//! module above). The weight is packed into panels of NR output columns, each k-pair of a
//! column one u32 (two bf16); the input, per task, into panels of MR rows likewise.

#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

#[cfg(target_arch = "x86_64")]
use std::cell::RefCell;

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::microkernel::{bf16_bits, microkernel, round_32_to_pairs};
use super::NR;
use super::{bf16_dot_available, with_packed_rows};
#[cfg(target_arch = "x86_64")]
use super::{KC, MR};
use crate::activation::{activate_in_place, Activation};
use crate::cpu_slice::{
    is_cpu_f32, tensor_from, uninit_vec, with_bf16, with_f32, with_optional_f32,
};
use crate::fused_linear::{fill, fused_linear};

/// Row panels per task at most (96 rows: the packed input block stays in L2).
#[cfg(target_arch = "x86_64")]
const TASK_PANELS: usize = 8;

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// Each worker's packed input block, kept between calls (no fresh pages per call).
    static INPUT_BLOCK: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
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
                        with_packed_rows(weight, out_features, in_features, NR, |packed| {
                            accumulate(&mut output, input, packed, rows, in_features, out_features)
                        });
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

/// `output` [rows, out] += input [rows, inner] (rounded to bf16) · weightᵀ, in parallel
/// over blocks of rows.
#[cfg(target_arch = "x86_64")]
fn accumulate(
    output: &mut [f32],
    input: &[f32],
    packed_weight: &[u32],
    rows: usize,
    inner: usize,
    out: usize,
) {
    let pairs = inner.div_ceil(2);
    let row_panels = rows.div_ceil(MR);
    let column_panels = out.div_ceil(NR);
    // At least two tasks per thread where the rows allow, for balance.
    let threads = rayon::current_num_threads().max(1);
    let task_rows = (row_panels / (2 * threads)).clamp(1, TASK_PANELS) * MR;
    output
        .par_chunks_mut(task_rows * out)
        .enumerate()
        .for_each(|(task, block)| {
            let first_row = task * task_rows;
            let block_rows = block.len() / out;
            INPUT_BLOCK.with_borrow_mut(|packed_input| {
                pack_input(input, inner, first_row, block_rows, packed_input);
                for first_pair in (0..pairs).step_by(KC) {
                    let depth = KC.min(pairs - first_pair);
                    for column_panel in 0..column_panels {
                        let columns = NR.min(out - column_panel * NR);
                        let weight_panel =
                            &packed_weight[(column_panel * pairs + first_pair) * NR..];
                        for row_panel in 0..block_rows.div_ceil(MR) {
                            let panel_rows = MR.min(block_rows - row_panel * MR);
                            let input_panel =
                                &packed_input[(row_panel * pairs + first_pair) * MR..];
                            let target = &mut block[row_panel * MR * out + column_panel * NR..];
                            // SAFETY: the CPU has AVX-512F and BF16 (checked by `bf16_dot_available`);
                            // the input panel holds `depth` pairs of MR values and the weight
                            // panel `depth` pairs of NR values from their starts; the target
                            // holds `panel_rows` rows of stride `out` with `columns` values
                            // each from its start.
                            unsafe {
                                microkernel(
                                    input_panel.as_ptr(),
                                    weight_panel.as_ptr(),
                                    depth,
                                    target.as_mut_ptr(),
                                    out,
                                    panel_rows,
                                    columns,
                                );
                            }
                        }
                    }
                }
            });
        });
}

/// Rows `first_row..first_row + rows` of the input [.., inner] as panels of MR rows:
/// `panel[pair · MR + row]` holds the bf16 pair of that row (see [`pack_weight`]); rows
/// past the end of the block are zero.
#[cfg(target_arch = "x86_64")]
fn pack_input(input: &[f32], inner: usize, first_row: usize, rows: usize, packed: &mut Vec<u32>) {
    let pairs = inner.div_ceil(2);
    let panels = rows.div_ceil(MR);
    packed.clear();
    packed.resize(panels * pairs * MR, 0);
    for (panel_index, panel) in packed.chunks_exact_mut(pairs * MR).enumerate() {
        for row_in_panel in 0..MR.min(rows - panel_index * MR) {
            let start = (first_row + panel_index * MR + row_in_panel) * inner;
            let row = &input[start..start + inner];
            let mut chunks = row.chunks_exact(32);
            let mut pair = 0;
            for chunk in &mut chunks {
                // SAFETY: the CPU has AVX-512F and BF16 (checked by `bf16_dot_available`); the
                // chunk holds 32 floats.
                let converted = unsafe { round_32_to_pairs(chunk.as_ptr()) };
                for (offset, &value) in converted.iter().enumerate() {
                    panel[(pair + offset) * MR + row_in_panel] = value;
                }
                pair += 16;
            }
            for (offset, values) in chunks.remainder().chunks(2).enumerate() {
                let high = values.get(1).map_or(0, |&value| bf16_bits(value));
                panel[(pair + offset) * MR + row_in_panel] = bf16_bits(values[0]) | (high << 16);
            }
        }
    }
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
