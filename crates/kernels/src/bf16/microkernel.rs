//! The AVX-512 BF16 pieces both bf16 products share: the MR×NR microkernel and the
//! conversions from f32 to packed bf16 pairs.

use std::arch::x86_64::{
    __m256i, __m512, __m512bh, __m512i, __mmask16, _mm512_cvtepu16_epi32, _mm512_cvtne2ps_pbh,
    _mm512_cvtneps_pbh, _mm512_dpbf16_ps, _mm512_loadu_ps, _mm512_loadu_si512,
    _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_or_si512, _mm512_set1_epi32,
    _mm512_setzero_ps, _mm512_slli_epi32, _mm512_storeu_si512,
};

use half::bf16;

use super::{MR, NR};

/// `value` rounded to the nearest bf16 (ties to even), as the vector conversions round.
pub(super) fn bf16_bits(value: f32) -> u32 {
    u32::from(bf16::from_f32(value).to_bits())
}

/// 32 consecutive floats from `source` as 16 bf16 pairs (element 2i low, 2i + 1 high).
///
/// # Safety
/// The CPU has AVX-512F and BF16; `source` holds 32 floats.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn round_32_to_pairs(source: *const f32) -> [u32; 16] {
    let low = _mm512_loadu_ps(source);
    let high = _mm512_loadu_ps(source.add(16));
    let pairs: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
    std::mem::transmute(pairs)
}

/// 16 pairs from two rows: `target[i]` = (`low[i]`, `high[i]`) as bf16 in one u32.
///
/// # Safety
/// The CPU has AVX-512F and BF16; `low` and `high` hold 16 floats, `target` 16 u32s.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn interleave_16_pairs(low: *const f32, high: *const f32, target: *mut u32) {
    let low: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(low)));
    let high: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_loadu_ps(high)));
    let pairs = _mm512_or_si512(
        _mm512_cvtepu16_epi32(low),
        _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(high)),
    );
    _mm512_storeu_si512(target.cast(), pairs);
}

/// The first `rows` × `columns` of an MR × NR f32 block at `target` (row stride `stride`)
/// += `left` · `right` over `depth` k-pairs: `left` holds MR u32 pairs per k-pair (one
/// per row), `right` NR (one per column).
///
/// # Safety
/// The CPU has AVX-512F and BF16; `left` holds `depth · MR` and `right` `depth · NR` u32s;
/// `target` holds `rows` rows of stride `stride` with `columns` floats each.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn microkernel(
    left: *const u32,
    right: *const u32,
    depth: usize,
    target: *mut f32,
    stride: usize,
    rows: usize,
    columns: usize,
) {
    let lanes = |count: usize| -> __mmask16 {
        if count >= 16 {
            u16::MAX
        } else {
            ((1u32 << count) - 1) as u16
        }
    };
    let masks = [lanes(columns), lanes(columns.saturating_sub(16))];
    let mut sums: [[__m512; 2]; MR] = [[_mm512_setzero_ps(); 2]; MR];
    for (row, row_sums) in sums.iter_mut().enumerate().take(rows) {
        for (half, sum) in row_sums.iter_mut().enumerate() {
            *sum = _mm512_maskz_loadu_ps(masks[half], target.add(row * stride + half * 16));
        }
    }
    let (mut left, mut right) = (left, right);
    for _ in 0..depth {
        let columns: [__m512bh; 2] = [
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(right.cast())),
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(right.add(16).cast())),
        ];
        for (row, row_sums) in sums.iter_mut().enumerate() {
            let pair: __m512bh = std::mem::transmute(_mm512_set1_epi32(*left.add(row) as i32));
            row_sums[0] = _mm512_dpbf16_ps(row_sums[0], pair, columns[0]);
            row_sums[1] = _mm512_dpbf16_ps(row_sums[1], pair, columns[1]);
        }
        left = left.add(MR);
        right = right.add(NR);
    }
    for (row, row_sums) in sums.iter().enumerate().take(rows) {
        for (half, sum) in row_sums.iter().enumerate() {
            _mm512_mask_storeu_ps(target.add(row * stride + half * 16), masks[half], *sum);
        }
    }
}
