//! The AVX-512 BF16 half of [`super::fused_linear_bf16`]: packing the input and the
//! microkernel.

use std::arch::x86_64::{
    __m512, __m512bh, __m512i, __mmask16, _mm512_cvtne2ps_pbh, _mm512_dpbf16_ps, _mm512_loadu_ps,
    _mm512_loadu_si512, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_set1_epi32,
    _mm512_setzero_ps,
};
use std::cell::RefCell;

use half::bf16;
use rayon::prelude::*;

use super::NR;

/// Rows of the output block one microkernel call computes.
const MR: usize = 12;
/// k-pairs per pass over the output block: an NR-column weight panel of 24 KiB stays in
/// the L1 cache while every row panel of the task passes it.
const KC: usize = 192;
/// Row panels per task at most (96 rows: the packed input block stays in L2).
const TASK_PANELS: usize = 8;

thread_local! {
    /// Each worker's packed input block, kept between calls (no fresh pages per call).
    static INPUT_BLOCK: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// `output` [rows, out] += input [rows, inner] (rounded to bf16) · weightᵀ, in parallel
/// over blocks of rows.
pub(super) fn accumulate(
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
                let converted = unsafe { round_32_to_bf16_pairs(chunk.as_ptr()) };
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

/// `value` rounded to the nearest bf16, as the vector conversion rounds.
fn bf16_bits(value: f32) -> u32 {
    u32::from(bf16::from_f32(value).to_bits())
}

/// 32 floats from `source` as 16 bf16 pairs, rounded to nearest-even.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_32_to_bf16_pairs(source: *const f32) -> [u32; 16] {
    let low = _mm512_loadu_ps(source);
    let high = _mm512_loadu_ps(source.add(16));
    let pairs: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(high, low));
    std::mem::transmute(pairs)
}

/// The first `rows` × `columns` of an MR × NR output block at `target` (row stride
/// `stride`) += the input panel's `depth` pairs · the weight panel's.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn microkernel(
    input: *const u32,
    weight: *const u32,
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
    let (mut input, mut weight) = (input, weight);
    for _ in 0..depth {
        let weights: [__m512bh; 2] = [
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(weight.cast())),
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(weight.add(16).cast())),
        ];
        for (row, row_sums) in sums.iter_mut().enumerate() {
            let pair: __m512bh = std::mem::transmute(_mm512_set1_epi32(*input.add(row) as i32));
            row_sums[0] = _mm512_dpbf16_ps(row_sums[0], pair, weights[0]);
            row_sums[1] = _mm512_dpbf16_ps(row_sums[1], pair, weights[1]);
        }
        input = input.add(MR);
        weight = weight.add(NR);
    }
    for (row, row_sums) in sums.iter().enumerate().take(rows) {
        for (half, sum) in row_sums.iter().enumerate() {
            _mm512_mask_storeu_ps(target.add(row * stride + half * 16), masks[half], *sum);
        }
    }
}
