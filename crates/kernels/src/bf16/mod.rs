//! Products with bf16 weights for f32 models (`--dtype bf16` on the CPU), multiplied in
//! bf16 on CPUs with AVX-512 BF16: `vdpbf16ps` sums two bf16 products into each f32 lane
//! per instruction, twice the f32 FMA rate. The activations are rounded to bf16
//! (nearest-even) as they are packed and every sum is kept in f32 — what PyTorch's CPU
//! autocast to bf16 computes for a linear layer or a convolution. Without AVX-512 BF16,
//! inside an autograd graph or off the CPU, the weights are widened and the f32 kernels
//! run.
//!
//! Both products share one microkernel ([`microkernel::microkernel`]): an MR × NR block
//! of the output in 24 registers, one broadcast bf16 pair per row against two vectors of
//! NR column pairs per k-pair.

mod conv2d;
mod linear;
#[cfg(target_arch = "x86_64")]
mod microkernel;

use std::cell::RefCell;
use std::sync::OnceLock;

use half::bf16;
use rayon::prelude::*;

pub use conv2d::conv2d_bf16;
pub use linear::fused_linear_bf16;

/// Rows of the output block one microkernel call computes.
#[cfg(target_arch = "x86_64")]
const MR: usize = 12;
/// Columns of that block: two 16-lane vectors.
const NR: usize = 32;
/// k-pairs per pass over an output block: an NR-column panel of 24 KiB stays in the L1
/// cache while the MR-row panels pass it.
#[cfg(target_arch = "x86_64")]
const KC: usize = 192;

/// Whether this CPU multiplies bf16 pairs natively (AVX-512 BF16), detected once.
pub fn bf16_dot_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        return std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16");
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

thread_local! {
    /// This thread's packed weights of the last call, kept so each call reuses the pages.
    static PACKED_WEIGHTS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `matrix` [rows, len] (row-major bf16) packed into panels of `width` rows:
/// panel p holds `panel[pair · width + r]` = the bf16 pair (2·pair, 2·pair + 1) of row
/// p·width + r in one u32 (low half first; 0 past the end of a row or of the matrix).
/// The buffer is this thread's, reused between calls (a fresh one if it is in use).
fn with_packed_rows<R>(
    matrix: &[bf16],
    rows: usize,
    len: usize,
    width: usize,
    f: impl FnOnce(&[u32]) -> R,
) -> R {
    PACKED_WEIGHTS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            pack_rows(matrix, rows, len, width, &mut buffer);
            f(&buffer)
        }
        Err(_) => {
            let mut buffer = Vec::new();
            pack_rows(matrix, rows, len, width, &mut buffer);
            f(&buffer)
        }
    })
}

/// See [`with_packed_rows`]; every element of `packed` is written.
fn pack_rows(matrix: &[bf16], rows: usize, len: usize, width: usize, packed: &mut Vec<u32>) {
    let pairs = len.div_ceil(2);
    packed.resize(rows.div_ceil(width) * pairs * width, 0);
    packed
        .par_chunks_mut(pairs * width)
        .enumerate()
        .for_each(|(panel_index, panel)| {
            for r in 0..width {
                let row_index = panel_index * width + r;
                if row_index >= rows {
                    for pair in 0..pairs {
                        panel[pair * width + r] = 0;
                    }
                    continue;
                }
                let row = &matrix[row_index * len..(row_index + 1) * len];
                let mut whole = row.chunks_exact(2);
                for (pair, values) in (&mut whole).enumerate() {
                    panel[pair * width + r] =
                        u32::from(values[0].to_bits()) | (u32::from(values[1].to_bits()) << 16);
                }
                if let [last] = whole.remainder() {
                    panel[(pairs - 1) * width + r] = u32::from(last.to_bits());
                }
            }
        });
}
