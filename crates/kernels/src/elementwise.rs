//! Vectorisable element loops shared by the kernels: the per-channel affine map of a
//! normalisation with an optional SiLU, and shifted sums for mean/variance. Written as
//! plain 16-lane loops the compiler vectorises; the callers compile them once more with
//! AVX-512F or AVX2+FMA enabled and pick that copy at run time.

use crate::softmax_exp::exp_nonpositive;

/// Whether the CPU has AVX2 and FMA (checked once by std, cached).
#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has AVX-512F (16-lane f32 loops; full width on cores with 512-bit units).
#[inline]
pub(crate) fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && has_avx2_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x · sigmoid(x)`, with the exponential of a non-positive argument only (no overflow).
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let r = 1.0 / (1.0 + e);
    // sigmoid(x) = 1 / (1 + e^-x) for x ≥ 0 and e^x / (1 + e^x) below.
    let sigmoid = if x >= 0.0 { r } else { e * r };
    x * sigmoid
}

/// `output[i] = (input[i] - mean) · scale + shift`, then SiLU when `with_silu`. (Folding
/// the mean into the shift would cancel digits when `scale` is large.)
#[inline(always)]
pub(crate) fn normalise(
    input: &[f32],
    output: &mut [f32],
    mean: f32,
    scale: f32,
    shift: f32,
    with_silu: bool,
) {
    if with_silu {
        for (y, x) in output.iter_mut().zip(input) {
            *y = silu((*x - mean) * scale + shift);
        }
    } else {
        for (y, x) in output.iter_mut().zip(input) {
            *y = (*x - mean) * scale + shift;
        }
    }
}

/// Blocks this long are summed in f32 lanes, then added into f64 totals.
const SUM_BLOCK: usize = 1024;

/// `(Σ (x - shift), Σ (x - shift)²)` in f64; subtracting a value near the mean keeps the
/// variance formula `E[d²] - E[d]²` free of cancellation.
#[inline(always)]
pub(crate) fn shifted_sums(values: &[f32], shift: f32) -> (f64, f64) {
    let mut total = 0f64;
    let mut total_squares = 0f64;
    for block in values.chunks(SUM_BLOCK) {
        let mut sums = [0f32; 16];
        let mut squares = [0f32; 16];
        let mut lanes = block.chunks_exact(16);
        for chunk in &mut lanes {
            for ((value, sum), square) in chunk.iter().zip(sums.iter_mut()).zip(squares.iter_mut())
            {
                let d = *value - shift;
                *sum += d;
                *square += d * d;
            }
        }
        for value in lanes.remainder() {
            let d = *value - shift;
            sums[0] += d;
            squares[0] += d * d;
        }
        total += sums.iter().map(|s| *s as f64).sum::<f64>();
        total_squares += squares.iter().map(|s| *s as f64).sum::<f64>();
    }
    (total, total_squares)
}

/// Abramowitz & Stegun 7.1.26: erf(|x|) ≈ 1 - t·P(t)·e^{-x²}, t = 1 / (1 + p|x|).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let polynomial = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let magnitude = 1.0 - polynomial * exp_nonpositive(-a * a);
    if x < 0.0 {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silu_matches_the_definition() {
        let mut worst = 0f32;
        for step in -4000..4000 {
            let x = step as f32 * 0.01;
            let expected = x / (1.0 + (-x).exp());
            worst = worst.max((silu(x) - expected).abs() / expected.abs().max(1e-3));
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert!(silu(-100.0).abs() < 1e-30);
        assert!((silu(100.0) - 100.0).abs() < 1e-5);
    }

    #[test]
    fn shifted_sums_are_exact_enough() {
        let values: Vec<f32> = (0..5000).map(|i| 10.0 + (i as f32 * 0.1).sin()).collect();
        let (sum, squares) = shifted_sums(&values, values[0]);
        let mean: f64 = values.iter().map(|v| *v as f64).sum::<f64>() / 5000.0;
        let variance: f64 = values
            .iter()
            .map(|v| (*v as f64 - mean).powi(2))
            .sum::<f64>()
            / 5000.0;
        let got_mean = values[0] as f64 + sum / 5000.0;
        let got_variance = squares / 5000.0 - (sum / 5000.0).powi(2);
        assert!((got_mean - mean).abs() < 1e-6);
        assert!((got_variance - variance).abs() < 1e-6);
    }
}
