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

/// Explicit AVX-512 and AVX2 forms of `softmax_numerators_generic` (same range
/// reduction and polynomial): the compiler does not vectorise the generic loop's
/// float-to-int conversion, which left attention spending half its time here.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{EXP_MIN_INPUT, LN2_HI, LN2_LO, LOG2E};

    /// `exp(x)` for `x <= 0`, 16 lanes: floor(x·log2e + ½) = n, the polynomial in
    /// r = x − n·ln2, scaled by 2ⁿ (vscalefps).
    #[inline(always)]
    unsafe fn exp16(x: __m512) -> __m512 {
        let x = _mm512_max_ps(x, _mm512_set1_ps(EXP_MIN_INPUT));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(
            _mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), _mm512_set1_ps(0.5)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let r2 = _mm512_mul_ps(r, r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let y = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0));
        _mm512_scalef_ps(y, n)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn softmax_numerators_avx512(row: &mut [f32]) -> f32 {
        let len = row.len();
        let ptr = row.as_mut_ptr();
        let full = len - len % 16;
        let tail: __mmask16 = ((1u32 << (len % 16)) - 1) as __mmask16;
        let mut maxima = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..full).step_by(16) {
            maxima = _mm512_max_ps(maxima, _mm512_loadu_ps(ptr.add(i)));
        }
        let rest = _mm512_mask_loadu_ps(_mm512_set1_ps(f32::NEG_INFINITY), tail, ptr.add(full));
        let max = _mm512_set1_ps(_mm512_reduce_max_ps(_mm512_max_ps(maxima, rest)));
        let mut sums = _mm512_setzero_ps();
        for i in (0..full).step_by(16) {
            let e = exp16(_mm512_sub_ps(_mm512_loadu_ps(ptr.add(i)), max));
            _mm512_storeu_ps(ptr.add(i), e);
            sums = _mm512_add_ps(sums, e);
        }
        if tail != 0 {
            let e = exp16(_mm512_sub_ps(
                _mm512_maskz_loadu_ps(tail, ptr.add(full)),
                max,
            ));
            _mm512_mask_storeu_ps(ptr.add(full), tail, e);
            sums = _mm512_mask_add_ps(sums, tail, sums, e);
        }
        _mm512_reduce_add_ps(sums)
    }

    /// `exp(x)` for `x <= 0`, 8 lanes; 2ⁿ built in the exponent bits.
    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_max_ps(x, _mm256_set1_ps(EXP_MIN_INPUT));
        let n = _mm256_floor_ps(_mm256_fmadd_ps(
            x,
            _mm256_set1_ps(LOG2E),
            _mm256_set1_ps(0.5),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let r2 = _mm256_mul_ps(r, r);
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let y = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0));
        let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(y, _mm256_castsi256_ps(scale))
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_numerators_avx2(row: &mut [f32]) -> f32 {
        let len = row.len();
        let ptr = row.as_mut_ptr();
        let full = len - len % 8;
        let mut maxima = _mm256_set1_ps(f32::NEG_INFINITY);
        for i in (0..full).step_by(8) {
            maxima = _mm256_max_ps(maxima, _mm256_loadu_ps(ptr.add(i)));
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), maxima);
        let max = lanes
            .iter()
            .chain(&row[full..])
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let shift = _mm256_set1_ps(max);
        let mut sums = _mm256_setzero_ps();
        for i in (0..full).step_by(8) {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(ptr.add(i)), shift));
            _mm256_storeu_ps(ptr.add(i), e);
            sums = _mm256_add_ps(sums, e);
        }
        _mm256_storeu_ps(lanes.as_mut_ptr(), sums);
        let mut total: f32 = lanes.iter().sum();
        for value in &mut row[full..] {
            *value = super::exp_nonpositive(*value - max);
            total += *value;
        }
        total
    }
}

/// `row[i] = exp(row[i] - max(row))`; returns the sum of the new values.
pub fn softmax_numerators(row: &mut [f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { x86::softmax_numerators_avx512(row) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { x86::softmax_numerators_avx2(row) };
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

    type Form = (&'static str, fn(&mut [f32]) -> f32);

    /// Every SIMD form this CPU runs, at lengths around the vector widths (tails included).
    #[test]
    fn simd_forms_match_scalar_at_every_tail() {
        let mut forms: Vec<Form> = vec![("dispatch", softmax_numerators)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: AVX2 and FMA are present (checked just above).
                forms.push(("avx2", |row| unsafe { x86::softmax_numerators_avx2(row) }));
            }
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F is present (checked just above).
                forms.push(("avx512", |row| unsafe {
                    x86::softmax_numerators_avx512(row)
                }));
            }
        }
        for (name, form) in forms {
            for len in 1..50 {
                let mut row: Vec<f32> = (0..len).map(|i| (i as f32 * 0.71).cos() * 40.0).collect();
                let max = row.iter().cloned().fold(f32::MIN, f32::max);
                let expected: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
                let sum = form(&mut row);
                for (got, want) in row.iter().zip(&expected) {
                    assert!(
                        (got - want).abs() <= 1e-6 * want.max(1e-30) + 1e-37,
                        "{name} at {len}"
                    );
                }
                let total: f32 = expected.iter().sum();
                assert!((sum - total).abs() < 1e-5 * total, "{name} sum at {len}");
            }
        }
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
