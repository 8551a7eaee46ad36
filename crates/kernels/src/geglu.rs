//! The GEGLU gate of diffusers' feed-forward (`hidden · gelu(gate)` with the exact, erf
//! GELU) for CPU f32 in one parallel pass: candle makes the two halves contiguous, runs
//! `gelu_erf` through scalar libm `erff`, then multiplies, each a separate pass.
//! The erf is Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7, 6e-7 in f32) on a vectorisable exp.
//! Other devices/dtypes use candle's operations.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

use crate::cpu_slice::{
    input_tensor, is_cpu_f32, output_storage, tensor_from, uninit_vec, with_f32,
};
use crate::elementwise::{erf, has_avx2_fma, has_avx512f};
use crate::norm_gate_grad::Geglu;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 16;

/// [..., 2n] → [..., n]: `xs[..., :n] · gelu_erf(xs[..., n:])`, as diffusers' `GEGLU`.
pub fn geglu(xs: &Tensor) -> Result<Tensor> {
    let width = xs.dim(D::Minus1)?;
    if width % 2 != 0 {
        candle_core::bail!("geglu: the last dimension must be even, got {width}");
    }
    if !is_cpu_f32(xs) {
        return reference_geglu(xs);
    }
    if xs.track_op() {
        // Inside an autograd graph: this kernel with its backward (`norm_gate_grad`).
        return xs.contiguous()?.apply_op1(Geglu);
    }
    let half = width / 2;
    let mut dims = xs.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = half;
    }
    let output = with_f32(xs, "geglu input", |input| {
        let mut output = uninit_vec(input.len() / 2);
        output
            .par_chunks_mut(ROWS_PER_TASK * half.max(1))
            .zip(input.par_chunks(ROWS_PER_TASK * width.max(1)))
            .for_each(|(output, input)| gate_rows(input, output, half));
        output
    })?;
    tensor_from(output, &dims)
}

/// candle's formulation, used as the fallback and in tests.
pub fn reference_geglu(xs: &Tensor) -> Result<Tensor> {
    let half = xs.dim(D::Minus1)? / 2;
    let hidden = xs.narrow(D::Minus1, 0, half)?;
    let gate = xs.narrow(D::Minus1, half, half)?;
    hidden * gate.gelu_erf()?
}

fn gate_rows(input: &[f32], output: &mut [f32], half: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512f() {
            // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (checked just above).
            return unsafe { gate_rows_avx512(input, output, half) };
        }
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { gate_rows_avx2(input, output, half) };
        }
    }
    gate_rows_generic(input, output, half);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gate_rows_avx512(input: &[f32], output: &mut [f32], half: usize) {
    gate_rows_generic(input, output, half);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gate_rows_avx2(input: &[f32], output: &mut [f32], half: usize) {
    gate_rows_generic(input, output, half);
}

#[inline(always)]
fn gate_rows_generic(input: &[f32], output: &mut [f32], half: usize) {
    for (input, output) in input
        .chunks_exact(2 * half)
        .zip(output.chunks_exact_mut(half))
    {
        let (hidden, gate) = input.split_at(half);
        for ((out, hidden), gate) in output.iter_mut().zip(hidden).zip(gate) {
            *out = *hidden * gelu_erf(*gate);
        }
    }
}

/// `0.5 · x · (1 + erf(x / √2))`.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The kernel inside an autograd graph; the gradient is `norm_gate_grad`'s.
impl CustomOp1 for Geglu {
    fn name(&self) -> &'static str {
        "geglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        output_storage(&geglu(&input_tensor(storage, layout, "geglu")?)?)
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        self.input_gradient(arg, grad_res).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn erf_is_accurate() {
        let mut worst = 0f64;
        for step in -3000..3000 {
            let x = step as f64 * 0.001;
            worst = worst.max((erf(x as f32) as f64 - taylor_erf(x)).abs());
        }
        // 1.5e-7 for the formula in exact arithmetic, plus f32 rounding of 1 - t·P(t)·e^{-x²}.
        assert!(worst < 6e-7, "worst absolute error {worst}");
        // erf(3) = 1 - 2.2e-5; beyond, the result must stay within that of ±1.
        for step in 3000..8000 {
            let x = step as f32 * 0.001;
            assert!(1.0 - erf(x) < 2.3e-5 && erf(-x) == -erf(x));
        }
    }

    /// erf in f64 by its Taylor series (accurate to ~1e-13 for |x| ≤ 3).
    fn taylor_erf(x: f64) -> f64 {
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn matches_candle_on_odd_shapes() -> anyhow::Result<()> {
        let device = Device::Cpu;
        for dims in [&[2, 37, 2 * 41][..], &[1, 4096, 2 * 16], &[3, 2 * 5]] {
            let xs = Tensor::randn(0f32, 2.0, dims, &device)?;
            let fast = geglu(&xs)?;
            let reference = reference_geglu(&xs)?;
            assert_eq!(fast.dims(), reference.dims());
            let difference = (fast - reference)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            // ≤ |hidden| · ½|gate| · 6e-7 (erf) plus f32 rounding of outputs up to ~40
            // (inputs have standard deviation 2).
            assert!(difference < 1e-5, "{dims:?}: max difference {difference}");
        }
        Ok(())
    }

    #[test]
    fn rejects_odd_widths() -> anyhow::Result<()> {
        let xs = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu)?;
        assert!(geglu(&xs).is_err());
        Ok(())
    }
}
