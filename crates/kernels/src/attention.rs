//! Fused scaled dot-product attention for CPU f32, the way PyTorch's CPU flash attention
//! works: per (batch, head, block of queries) the scores stay in a cache-sized buffer —
//! one gemm for Q·Kᵀ, an in-place softmax, one gemm for P·V — and blocks run in parallel.
//! The [n, m] score matrix of the unfused form is never materialised.
//! Other devices/dtypes fall back to the plain candle formulation.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use crate::softmax_exp::softmax_numerators;

/// Queries per work item: 64 rows × 4096 keys × 4 bytes = 1 MiB of scores.
const QUERY_BLOCK: usize = 64;

/// softmax(q·kᵀ / √d)·v over [b, heads, n, d] × [b, heads, m, d] → [b, heads, n, d].
/// Inside an autograd graph its backward is `attention_grad`'s blockwise one.
pub fn fused_attention(query: &Tensor, key: &Tensor, value: &Tensor) -> Result<Tensor> {
    let tracked = query.track_op() || key.track_op() || value.track_op();
    if query.device().is_cpu() && query.dtype() == DType::F32 && tracked {
        // Inside an autograd graph: the same kernel, with its blockwise backward.
        query
            .contiguous()?
            .apply_op3(&key.contiguous()?, &value.contiguous()?, FusedAttention)
    } else if query.device().is_cpu() && query.dtype() == DType::F32 {
        query.contiguous()?.apply_op3_no_bwd(
            &key.contiguous()?,
            &value.contiguous()?,
            &FusedAttention,
        )
    } else {
        reference_attention(query, key, value)
    }
}

/// The unfused formulation (softmax in f32), used as the fallback and in tests.
pub fn reference_attention(query: &Tensor, key: &Tensor, value: &Tensor) -> Result<Tensor> {
    let scale = 1.0 / (query.dim(D::Minus1)? as f64).sqrt();
    let dtype = query.dtype();
    let scores = (query.contiguous()?.matmul(&key.t()?.contiguous()?)? * scale)?;
    let probs =
        candle_core::Tensor::to_dtype(&softmax_last_dim(&scores.to_dtype(DType::F32)?)?, dtype)?;
    probs.matmul(&value.contiguous()?)
}

fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    let max = xs.max_keepdim(D::Minus1)?;
    let exp = xs.broadcast_sub(&max)?.exp()?;
    exp.broadcast_div(&exp.sum_keepdim(D::Minus1)?)
}

struct FusedAttention;

fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data.as_slice(),
        _ => candle_core::bail!("fused attention: {what} must be f32"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("fused attention: {what} must be contiguous"),
    }
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        query_storage: &CpuStorage,
        query_layout: &Layout,
        key_storage: &CpuStorage,
        key_layout: &Layout,
        value_storage: &CpuStorage,
        value_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, heads, queries, head_dim) = query_layout.shape().dims4()?;
        let (key_batch, key_heads, keys, key_dim) = key_layout.shape().dims4()?;
        if (key_batch, key_heads, key_dim) != (batch, heads, head_dim)
            || value_layout.shape() != key_layout.shape()
        {
            candle_core::bail!(
                "fused attention: shapes do not match: q {:?}, k {:?}, v {:?}",
                query_layout.shape(),
                key_layout.shape(),
                value_layout.shape()
            );
        }
        let query = f32_slice(query_storage, query_layout, "query")?;
        let key = f32_slice(key_storage, key_layout, "key")?;
        let value = f32_slice(value_storage, value_layout, "value")?;
        let scale = 1.0 / (head_dim as f32).sqrt();

        let mut output = vec![0f32; batch * heads * queries * head_dim];
        output
            .par_chunks_mut(queries * head_dim)
            .enumerate()
            .for_each(|(pair, output_pair)| {
                let query_pair = &query[pair * queries * head_dim..(pair + 1) * queries * head_dim];
                let key_pair = &key[pair * keys * head_dim..(pair + 1) * keys * head_dim];
                let value_pair = &value[pair * keys * head_dim..(pair + 1) * keys * head_dim];
                output_pair
                    .par_chunks_mut(QUERY_BLOCK * head_dim)
                    .enumerate()
                    .for_each(|(block, output_block)| {
                        let rows = output_block.len() / head_dim;
                        let query_block =
                            &query_pair[block * QUERY_BLOCK * head_dim..][..rows * head_dim];
                        attend_block(
                            query_block,
                            key_pair,
                            value_pair,
                            output_block,
                            rows,
                            keys,
                            head_dim,
                            scale,
                        );
                    });
            });
        Ok((CpuStorage::F32(output), query_layout.shape().clone()))
    }

    fn bwd(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        output: &Tensor,
        output_grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dq, dk, dv) =
            crate::attention_grad::attention_backward(query, key, value, output, output_grad)?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// One block of `rows` queries against all keys of one (batch, head).
#[allow(clippy::too_many_arguments)]
fn attend_block(
    query: &[f32],
    key: &[f32],
    value: &[f32],
    output: &mut [f32],
    rows: usize,
    keys: usize,
    head_dim: usize,
    scale: f32,
) {
    let mut scores = vec![0f32; rows * keys];
    // scores = scale · query · keyᵀ: [rows, d] × [d, keys]
    // SAFETY: every pointer covers the extent gemm reads or writes: query is rows×d
    // row-major, key is keys×d row-major read as its transpose (column stride d, row
    // stride 1), scores is rows×keys row-major and does not alias the inputs.
    unsafe {
        gemm::gemm(
            rows,
            keys,
            head_dim,
            scores.as_mut_ptr(),
            1,
            keys as isize,
            false,
            query.as_ptr(),
            1,
            head_dim as isize,
            key.as_ptr(),
            head_dim as isize,
            1,
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    let mut inverse_sums = Vec::with_capacity(rows);
    for row in scores.chunks_exact_mut(keys) {
        inverse_sums.push(1.0 / softmax_numerators(row));
    }
    // output = probabilities · value: [rows, keys] × [keys, d]
    // SAFETY: scores is rows×keys row-major, value keys×d row-major, output rows×d
    // row-major and distinct from both.
    unsafe {
        gemm::gemm(
            rows,
            head_dim,
            keys,
            output.as_mut_ptr(),
            1,
            head_dim as isize,
            false,
            scores.as_ptr(),
            1,
            keys as isize,
            value.as_ptr(),
            1,
            head_dim as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    for (row, inverse_sum) in output.chunks_exact_mut(head_dim).zip(inverse_sums) {
        for value in row {
            *value *= inverse_sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn check(
        batch: usize,
        heads: usize,
        queries: usize,
        keys: usize,
        head_dim: usize,
    ) -> anyhow::Result<()> {
        let device = Device::Cpu;
        let query = Tensor::randn(0f32, 1.0, (batch, heads, queries, head_dim), &device)?;
        let key = Tensor::randn(0f32, 1.0, (batch, heads, keys, head_dim), &device)?;
        let value = Tensor::randn(0f32, 1.0, (batch, heads, keys, head_dim), &device)?;
        let fused = fused_attention(&query, &key, &value)?;
        let reference = reference_attention(&query, &key, &value)?;
        let difference = (fused - reference)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(difference < 1e-5, "max difference {difference}");
        Ok(())
    }

    #[test]
    fn matches_reference_self_attention() -> anyhow::Result<()> {
        check(2, 3, 200, 200, 16)
    }

    #[test]
    fn matches_reference_cross_attention_with_odd_sizes() -> anyhow::Result<()> {
        check(1, 2, 65, 77, 40)
    }

    #[test]
    fn non_contiguous_inputs_are_accepted() -> anyhow::Result<()> {
        let device = Device::Cpu;
        // [b, n, heads, d] transposed to [b, heads, n, d], as the Attention layer does.
        let query = Tensor::randn(0f32, 1.0, (1, 10, 2, 8), &device)?.transpose(1, 2)?;
        let fused = fused_attention(&query, &query, &query)?;
        let reference = reference_attention(&query, &query, &query)?;
        let difference = (fused - reference)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(difference < 1e-5);
        Ok(())
    }
}
