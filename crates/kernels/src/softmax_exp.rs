//! Row softmax numerators: `row[i] = exp(row[i] - max(row))`, returning the row sum, with a
//! polynomial exp (Cephes `expf` coefficients, relative error ≈ 1e-7) that the compiler
//! vectorises; AVX2+FMA code is chosen at run time when the CPU has it.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const EXP_MIN_INPUT: f32 = -87.0;

/// `exp(x)` for `x <= 0` (inputs below -87 give ≈ 0).
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    let x = x.max(EXP_MIN_INPUT);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = 1.987_569_1e-4f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r2 + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline(always)]
fn row_max_generic(row: &[f32]) -> f32 {
    // Eight running maxima written as compare-and-select, which vectorises (f32::max does not).
    let mut maxima = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (value, max) in chunk.iter().zip(maxima.iter_mut()) {
            *max = if *value > *max { *value } else { *max };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for value in maxima.iter().chain(chunks.remainder()) {
        max = if *value > max { *value } else { max };
    }
    max
}

#[inline(always)]
fn softmax_numerators_generic(row: &mut [f32]) -> f32 {
    let max = row_max_generic(row);
    exp_shifted_sum_generic(row, max)
}

#[inline(always)]
fn exp_shifted_sum_generic(row: &mut [f32], max: f32) -> f32 {
    let mut sums = [0f32; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for chunk in &mut chunks {
        for (value, sum) in chunk.iter_mut().zip(sums.iter_mut()) {
            *value = exp_nonpositive(*value - max);
            *sum += *value;
        }
    }
    let mut total: f32 = sums.iter().sum();
    for value in chunks.into_remainder() {
        *value = exp_nonpositive(*value - max);
        total += *value;
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_numerators_avx2(row: &mut [f32]) -> f32 {
    softmax_numerators_generic(row)
}

/// `row[i] = exp(row[i] - max(row))`; returns the sum of the new values.
pub fn softmax_numerators(row: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { softmax_numerators_avx2(row) };
        }
    }
    softmax_numerators_generic(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomial_exp_is_accurate() {
        let mut worst = 0f32;
        for step in 0..20000 {
            let x = -(step as f32) * 0.004;
            let relative = (exp_nonpositive(x) - x.exp()).abs() / x.exp();
            worst = worst.max(relative);
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
    }

    #[test]
    fn shifted_sum_matches_scalar() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        let max = row.iter().cloned().fold(f32::MIN, f32::max);
        let expected: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
        let sum = softmax_numerators(&mut row);
        for (got, want) in row.iter().zip(&expected) {
            assert!((got - want).abs() < 1e-6);
        }
        assert!((sum - expected.iter().sum::<f32>()).abs() < 1e-5);
    }
}
