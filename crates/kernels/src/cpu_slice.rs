//! Borrowing the f32 data of a contiguous CPU tensor, and wrapping a result vector back
//! into a tensor: the glue between candle tensors and the plain-slice kernels.

use candle_core::{CpuStorage, DType, Device, Layout, Result, Shape, Storage, Tensor};

/// Whether the fast kernels apply: f32 data on the CPU.
pub(crate) fn is_cpu_f32(xs: &Tensor) -> bool {
    xs.device().is_cpu() && xs.dtype() == DType::F32
}

/// Runs `f` on the data of `xs` (made contiguous first) as one `&[f32]` in row-major order.
pub(crate) fn with_f32<R>(xs: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let xs = xs.contiguous()?;
    let (storage, layout) = xs.storage_and_layout();
    let data = match &*storage {
        Storage::Cpu(CpuStorage::F32(data)) => data.as_slice(),
        _ => candle_core::bail!("{what} must be an f32 CPU tensor"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(f(&data[start..end])),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// Like [`with_f32`] for a bf16 tensor.
pub(crate) fn with_bf16<R>(
    xs: &Tensor,
    what: &str,
    f: impl FnOnce(&[half::bf16]) -> R,
) -> Result<R> {
    let xs = xs.contiguous()?;
    let (storage, layout) = xs.storage_and_layout();
    let data = match &*storage {
        Storage::Cpu(CpuStorage::BF16(data)) => data.as_slice(),
        _ => candle_core::bail!("{what} must be a bf16 CPU tensor"),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(f(&data[start..end])),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// Like [`with_f32`] for an optional tensor.
pub(crate) fn with_optional_f32<R>(
    xs: Option<&Tensor>,
    what: &str,
    f: impl FnOnce(Option<&[f32]>) -> R,
) -> Result<R> {
    match xs {
        Some(xs) => with_f32(xs, what, |data| f(Some(data))),
        None => Ok(f(None)),
    }
}

/// A new CPU tensor from `data` of the given shape.
pub(crate) fn tensor_from(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}

/// A vector of `len` floats the caller overwrites completely before reading.
pub(crate) fn uninit_vec(len: usize) -> Vec<f32> {
    // Zero-filled: `vec![0.0; n]` maps fresh zero pages for large sizes, which costs no
    // more than leaving memory uninitialised and needs no unsafe code.
    vec![0f32; len]
}

/// The input of a `CustomOp1` forward as a tensor (copied), for the fused kernels.
pub(crate) fn input_tensor(storage: &CpuStorage, layout: &Layout, what: &str) -> Result<Tensor> {
    let data = match storage {
        CpuStorage::F32(data) => data.as_slice(),
        _ => candle_core::bail!("{what}: the input must be f32"),
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{what}: the input must be contiguous")
    };
    Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)
}

/// A tensor's values as the storage a `CustomOp1` forward returns.
pub(crate) fn output_storage(tensor: &Tensor) -> Result<(CpuStorage, Shape)> {
    let values = with_f32(tensor, "output", <[f32]>::to_vec)?;
    Ok((CpuStorage::F32(values), tensor.shape().clone()))
}
