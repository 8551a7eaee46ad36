//! The backward pass of the fused attention (for adapter training), blockwise as flash
//! attention's backward: per (batch, head) and block of queries the scores are recomputed
//! in a cache-sized buffer, never the whole [n, m] matrix, with O the forward output and
//! D = rowsum(dO ⊙ O):
//!
//! ```text
//! P = softmax(scale · Q Kᵀ)     dV += Pᵀ dO     dP = dO Vᵀ     dS = P ⊙ (dP − D)
//! dQ = scale · dS K             dK += scale · dSᵀ Q
//! ```

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use crate::cpu_slice::{tensor_from, with_f32};
use crate::softmax_exp::softmax_numerators;

/// Queries per block of the backward pass.
const QUERY_BLOCK: usize = 64;

/// `out (+)= scale · op(a) · op(b)` for row-major matrices: `a` is [m, k] (or [k, m] stored
/// when `a_transposed`), `b` is [k, n] (or [n, k] stored when `b_transposed`), out [m, n].
#[allow(clippy::too_many_arguments)]
fn matmul(
    out: &mut [f32],
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    scale: f32,
) {
    assert!(
        out.len() >= m * n && a.len() >= m * k && b.len() >= k * n,
        "matmul extents"
    );
    let (a_column, a_row) = if a_transposed {
        (m as isize, 1)
    } else {
        (1, k as isize)
    };
    let (b_column, b_row) = if b_transposed {
        (k as isize, 1)
    } else {
        (1, n as isize)
    };
    // SAFETY: the assertion above guarantees every pointer covers the extent gemm reads or
    // writes with these strides, and `out` is a distinct mutable slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_column,
            a_row,
            b.as_ptr(),
            b_column,
            b_row,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// (dQ, dK, dV) for query [b, h, n, d], key/value [b, h, m, d], the forward output and its
/// gradient [b, h, n, d].
pub(crate) fn attention_backward(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    output: &Tensor,
    output_grad: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (batch, heads, queries, head_dim) = query.dims4()?;
    let keys = key.dim(2)?;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let pairs = batch * heads;
    let per_pair = with_f32(query, "query", |query| {
        with_f32(key, "key", |key| {
            with_f32(value, "value", |value| {
                with_f32(output, "attention output", |output| {
                    with_f32(output_grad, "attention output gradient", |output_grad| {
                        (0..pairs)
                            .into_par_iter()
                            .map(|pair| {
                                let rows =
                                    pair * queries * head_dim..(pair + 1) * queries * head_dim;
                                let columns = pair * keys * head_dim..(pair + 1) * keys * head_dim;
                                pair_backward(
                                    &query[rows.clone()],
                                    &key[columns.clone()],
                                    &value[columns],
                                    &output[rows.clone()],
                                    &output_grad[rows],
                                    (queries, keys, head_dim),
                                    scale,
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
            })
        })
    })?????;
    let mut grads = [Vec::new(), Vec::new(), Vec::new()];
    for (dq, dk, dv) in per_pair {
        grads[0].extend(dq);
        grads[1].extend(dk);
        grads[2].extend(dv);
    }
    let [dq, dk, dv] = grads;
    Ok((
        tensor_from(dq, query.dims())?,
        tensor_from(dk, key.dims())?,
        tensor_from(dv, value.dims())?,
    ))
}

type PairGrads = (Vec<f32>, Vec<f32>, Vec<f32>);

fn pair_backward(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    output: &[f32],
    output_grad: &[f32],
    (queries, keys, head_dim): (usize, usize, usize),
    scale: f32,
) -> PairGrads {
    let mut dq = vec![0f32; queries * head_dim];
    let mut dk = vec![0f32; keys * head_dim];
    let mut dv = vec![0f32; keys * head_dim];
    let mut probabilities = vec![0f32; QUERY_BLOCK * keys];
    let mut d_scores = vec![0f32; QUERY_BLOCK * keys];
    for first in (0..queries).step_by(QUERY_BLOCK) {
        let rows = QUERY_BLOCK.min(queries - first);
        let block = first * head_dim..(first + rows) * head_dim;
        let (query_block, grad_block) = (&query[block.clone()], &output_grad[block.clone()]);
        let p = &mut probabilities[..rows * keys];
        matmul(
            p,
            query_block,
            false,
            key,
            true,
            (rows, head_dim, keys),
            false,
            scale,
        );
        for row in p.chunks_exact_mut(keys) {
            let inverse = 1.0 / softmax_numerators(row);
            row.iter_mut().for_each(|value| *value *= inverse);
        }
        matmul(
            &mut dv,
            p,
            true,
            grad_block,
            false,
            (keys, rows, head_dim),
            true,
            1.0,
        );
        let ds = &mut d_scores[..rows * keys];
        matmul(
            ds,
            grad_block,
            false,
            value,
            true,
            (rows, head_dim, keys),
            false,
            1.0,
        );
        for ((ds_row, p_row), (o_row, g_row)) in
            ds.chunks_exact_mut(keys).zip(p.chunks_exact(keys)).zip(
                output[block.clone()]
                    .chunks_exact(head_dim)
                    .zip(grad_block.chunks_exact(head_dim)),
            )
        {
            let delta: f32 = o_row.iter().zip(g_row).map(|(o, g)| o * g).sum();
            for (ds, p) in ds_row.iter_mut().zip(p_row) {
                *ds = p * (*ds - delta);
            }
        }
        matmul(
            &mut dq[block],
            ds,
            false,
            key,
            false,
            (rows, keys, head_dim),
            false,
            scale,
        );
        matmul(
            &mut dk,
            ds,
            true,
            query_block,
            false,
            (keys, rows, head_dim),
            true,
            scale,
        );
    }
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::{fused_attention, reference_attention};
    use candle_core::{Device, Var};

    /// The fused op's gradients equal those of the plain formulation under autograd.
    #[test]
    fn gradients_match_autograd() -> anyhow::Result<()> {
        for (queries, keys, head_dim) in [(70, 70, 8), (130, 77, 16), (5, 3, 4)] {
            let device = Device::Cpu;
            let q = Var::randn(0f32, 1.0, (2, 3, queries, head_dim), &device)?;
            let k = Var::randn(0f32, 1.0, (2, 3, keys, head_dim), &device)?;
            let v = Var::randn(0f32, 1.0, (2, 3, keys, head_dim), &device)?;
            let g = Tensor::randn(0f32, 1.0, (2, 3, queries, head_dim), &device)?;
            let fused = fused_attention(q.as_tensor(), k.as_tensor(), v.as_tensor())?;
            let reference = reference_attention(q.as_tensor(), k.as_tensor(), v.as_tensor())?;
            let ours = (fused * &g)?.sum_all()?.backward()?;
            let theirs = (reference * &g)?.sum_all()?.backward()?;
            for (name, var) in [("q", &q), ("k", &k), ("v", &v)] {
                let (Some(a), Some(b)) = (ours.get(var.as_tensor()), theirs.get(var.as_tensor()))
                else {
                    anyhow::bail!("no gradient for {name}");
                };
                let difference = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(
                    difference < 1e-4,
                    "{name} ({queries}, {keys}, {head_dim}): {difference}"
                );
            }
        }
        Ok(())
    }

    /// Central finite differences of Σ g·attention(q, k, v) on a few entries of each input.
    #[test]
    fn gradients_match_finite_differences() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let dims = (1, 2, 9, 4);
        let inputs: Vec<Tensor> = (0..3)
            .map(|_| Tensor::randn(0f32, 1.0, dims, &device))
            .collect::<Result<_>>()?;
        let g = Tensor::randn(0f32, 1.0, dims, &device)?;
        let objective = |inputs: &[Tensor]| -> anyhow::Result<f64> {
            let out = fused_attention(&inputs[0], &inputs[1], &inputs[2])?;
            Ok((out * &g)?.sum_all()?.to_scalar::<f32>()? as f64)
        };
        let output = fused_attention(&inputs[0], &inputs[1], &inputs[2])?;
        let (dq, dk, dv) = attention_backward(&inputs[0], &inputs[1], &inputs[2], &output, &g)?;
        for (which, analytic) in [dq, dk, dv].iter().enumerate() {
            let analytic = analytic.flatten_all()?.to_vec1::<f32>()?;
            let values = inputs[which].flatten_all()?.to_vec1::<f32>()?;
            for index in [0, 17, 40, values.len() - 1] {
                let shifted = |delta: f32| -> anyhow::Result<f64> {
                    let mut changed = values.clone();
                    changed[index] += delta;
                    let mut moved = inputs.clone();
                    moved[which] = Tensor::from_vec(changed, dims, &device)?;
                    objective(&moved)
                };
                let numeric = (shifted(1e-2)? - shifted(-1e-2)?) / 2e-2;
                let error = (numeric - analytic[index] as f64).abs();
                assert!(
                    error < 2e-3 * (1.0 + numeric.abs()),
                    "input {which} at {index}: {numeric} vs {}",
                    analytic[index]
                );
            }
        }
        Ok(())
    }
}
