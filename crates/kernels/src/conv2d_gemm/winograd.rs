//! Winograd's minimal filtering F(4×4, 3×3) for stride-1 3×3 convolutions with padding 1
//! (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
//!
//! Each 4×4 output tile is `Aᵀ [Σ_in (G g Gᵀ) ⊙ (Bᵀ d B)] A` of its 6×6 input window d:
//! 36 products per (input, output) channel pair and tile instead of 144. Summed over the
//! input channels, the elementwise products become 36 GEMMs — one per transform position
//! ξ — `M[ξ] [out, tiles] = U[ξ] [out, in] · V[ξ] [in, tiles]`, which is where the time
//! goes. Work is split into (sample, block of tiles) tasks: each transforms its windows
//! into V, runs the 36 GEMMs single-threaded into M and transforms M back into output
//! tiles, adding the bias, per-sample bias and residual on the way out.
//!
//! The transforms' constants (up to 8 and 1/24) cost some f32 precision next to direct
//! summation: a few units in the sixth digit of O(1) outputs, far inside what the parity
//! tests against diffusers allow (the tests below bound it).

use std::cell::RefCell;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::{Addends, ConvShape, SharedMut};
use crate::elementwise::{has_avx2_fma, has_avx512f};

/// Output tile side (m of F(m, r)).
const TILE: usize = 4;
/// Input window side (m + r − 1).
const WINDOW: usize = 6;
/// Transform positions ξ per tile.
const POSITIONS: usize = WINDOW * WINDOW;
/// Tiles per task at most: V and M ([36, channels, tiles]) stay a few MB.
const MAX_TILES_PER_TASK: usize = 128;
/// Fewer tiles than this per sample and the weight transform (as costly as 9 tiles'
/// worth of GEMM) stops paying for itself; direct convolution wins (bench_ops).
const MIN_TILES: usize = 64;

thread_local! {
    /// This thread's V and M buffers of the last task, reused so each task does not map
    /// fresh pages.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Tiles transformed together, one per SIMD lane.
const LANES: usize = 16;

/// The padded input with every row split by column phase (column mod 4), so that window
/// column j of 16 neighbouring tiles is 16 contiguous values: phase j mod 4 from tile
/// index k + j div 4 on. Each row holds 4 phases of `phase_len` values.
struct PhasedInput {
    values: Vec<f32>,
    rows: usize,
    phase_len: usize,
}

impl PhasedInput {
    fn plane_len(&self) -> usize {
        self.rows * TILE * self.phase_len
    }
}

/// False when `HUATU_NO_WINOGRAD` is set (read once): direct convolution everywhere, for
/// comparisons.
fn winograd_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("HUATU_NO_WINOGRAD").is_none())
}

impl ConvShape {
    /// Whether the Winograd path applies and is expected to win.
    pub(super) fn suits_winograd(&self) -> bool {
        let tiles = self.out_height.div_ceil(TILE) * self.out_width.div_ceil(TILE);
        winograd_enabled()
            && self.kernel == 3
            && self.stride == 1
            && self.padding == 1
            && self.in_channels >= 16
            && self.out_channels >= 16
            && self.batch * tiles >= MIN_TILES
    }

    pub(super) fn run_winograd(
        &self,
        input: &[f32],
        weight: &[f32],
        addends: &Addends,
        output: &mut [f32],
    ) {
        let (inputs, outputs) = (self.in_channels, self.out_channels);
        let transformed = transformed_weights(weight, outputs, inputs);
        let (tile_rows, tile_columns) = (
            self.out_height.div_ceil(TILE),
            self.out_width.div_ceil(TILE),
        );
        let phased = self.phased_input(input, tile_rows, tile_columns);
        let threads = rayon::current_num_threads().max(1);
        let rows_per_task = (MAX_TILES_PER_TASK / tile_columns)
            .min((self.batch * tile_rows).div_ceil(2 * threads))
            .max(1);
        let tasks: Vec<(usize, usize)> = (0..self.batch)
            .flat_map(|sample| {
                (0..tile_rows)
                    .step_by(rows_per_task)
                    .map(move |first| (sample, first))
            })
            .collect();
        let output = SharedMut(output.as_mut_ptr());
        tasks.par_iter().for_each(|&(sample, first_row)| {
            let rows = rows_per_task.min(tile_rows - first_row);
            let task = Task {
                shape: self,
                sample,
                first_row,
                rows,
                tile_columns,
                count: rows * tile_columns,
            };
            with_scratch(POSITIONS * task.count * (inputs + outputs), |scratch| {
                let (transformed_input, products) =
                    scratch.split_at_mut(POSITIONS * inputs * task.count);
                let planes = &phased.values[sample * inputs * phased.plane_len()..]
                    [..inputs * phased.plane_len()];
                task.transform_input(planes, &phased, transformed_input);
                task.multiply(&transformed, transformed_input, products);
                task.transform_output(products, addends, output);
            });
        });
    }

    /// The zero-padded (and upsampled) input in phase-split rows covering whole tiles:
    /// the last row and column of tiles read zeros past the image.
    fn phased_input(&self, input: &[f32], tile_rows: usize, tile_columns: usize) -> PhasedInput {
        let rows = TILE * tile_rows + 2;
        // Whole lane groups of tiles, plus the one more tile that window columns 4 and 5 reach.
        let phase_len = tile_columns.next_multiple_of(LANES) + 1;
        let plane_len = rows * TILE * phase_len;
        let source_plane = self.source_height * self.source_width;
        let mut values = vec![0f32; self.batch * self.in_channels * plane_len];
        values
            .par_chunks_mut(plane_len)
            .zip(input.par_chunks(source_plane))
            .for_each(|(plane, source)| {
                for y in 0..self.in_height {
                    let source_row = if self.upsample { y / 2 } else { y };
                    let source_row = &source[source_row * self.source_width..][..self.source_width];
                    let row = &mut plane[(y + 1) * TILE * phase_len..][..TILE * phase_len];
                    // Padded column 4q + p holds input column 4q + p − 1, which is source
                    // column 4q + p − 1, or 2q + (p − 1) div 2 when upsampled.
                    for (phase, row) in row.chunks_exact_mut(phase_len).enumerate() {
                        let (step, offset) = if self.upsample {
                            (2, [-1, 0, 0, 1][phase])
                        } else {
                            (4, phase as isize - 1)
                        };
                        let first = usize::from(phase == 0);
                        let end = (self.in_width + 1).saturating_sub(phase).div_ceil(TILE);
                        for (q, value) in row.iter_mut().enumerate().take(end).skip(first) {
                            *value = source_row[(step * q as isize + offset) as usize];
                        }
                    }
                }
            });
        PhasedInput {
            values,
            rows,
            phase_len,
        }
    }
}

/// Runs `f` on this thread's scratch buffer of at least `len` floats.
fn with_scratch(len: usize, f: impl FnOnce(&mut [f32])) {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
            f(&mut buffer[..len]);
        }
        Err(_) => f(&mut vec![0f32; len]),
    });
}

/// One (sample, block of tile rows) piece of work: `count` tiles in raster order.
struct Task<'a> {
    shape: &'a ConvShape,
    sample: usize,
    first_row: usize,
    rows: usize,
    tile_columns: usize,
    count: usize,
}

type Lanes = [f32; LANES];

/// The 16 values of `values` from `start` on.
#[inline(always)]
fn lanes_at(values: &[f32], start: usize) -> Lanes {
    let mut lanes = [0f32; LANES];
    lanes.copy_from_slice(&values[start..start + LANES]);
    lanes
}

impl Task<'_> {
    /// V [36, in, count]: `Bᵀ d B` of every window of the block, per input channel.
    fn transform_input(&self, planes: &[f32], phased: &PhasedInput, transformed: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx512f() {
                // SAFETY: the CPU has AVX-512F, AVX2 and FMA.
                return unsafe { transform_input_avx512(self, planes, phased, transformed) };
            }
            if has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { transform_input_avx2(self, planes, phased, transformed) };
            }
        }
        transform_input_generic(self, planes, phased, transformed);
    }

    /// M[ξ] = U[ξ] · V[ξ] for the 36 positions: [36, out, count].
    fn multiply(&self, weights: &[f32], transformed: &[f32], products: &mut [f32]) {
        let (inputs, outputs, count) =
            (self.shape.in_channels, self.shape.out_channels, self.count);
        for position in 0..POSITIONS {
            // SAFETY: dst is position ξ's [out, count] block of `products` (row stride
            // count), lhs ξ's contiguous [out, in] block of the transformed weights, rhs ξ's
            // [in, count] block of V; all three lie inside their buffers.
            unsafe {
                gemm::gemm(
                    outputs,
                    count,
                    inputs,
                    products.as_mut_ptr().add(position * outputs * count),
                    1,
                    count as isize,
                    false,
                    weights.as_ptr().add(position * outputs * inputs),
                    1,
                    inputs as isize,
                    transformed.as_ptr().add(position * inputs * count),
                    1,
                    count as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    }

    /// `Aᵀ M A` of every tile and channel, plus the addends, into the output planes.
    fn transform_output(&self, products: &[f32], addends: &Addends, output: SharedMut) {
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx512f() {
                // SAFETY: the CPU has AVX-512F, AVX2 and FMA.
                return unsafe { transform_output_avx512(self, products, addends, output) };
            }
            if has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { transform_output_avx2(self, products, addends, output) };
            }
        }
        transform_output_generic(self, products, addends, output);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn transform_input_avx512(
    task: &Task,
    planes: &[f32],
    phased: &PhasedInput,
    out: &mut [f32],
) {
    transform_input_generic(task, planes, phased, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_input_avx2(task: &Task, planes: &[f32], phased: &PhasedInput, out: &mut [f32]) {
    transform_input_generic(task, planes, phased, out);
}

#[inline(always)]
fn transform_input_generic(
    task: &Task,
    planes: &[f32],
    phased: &PhasedInput,
    transformed: &mut [f32],
) {
    let inputs = task.shape.in_channels;
    let (phase_len, row_len) = (phased.phase_len, TILE * phased.phase_len);
    for channel in 0..inputs {
        let plane = &planes[channel * phased.plane_len()..][..phased.plane_len()];
        for row in 0..task.rows {
            let top = TILE * (task.first_row + row);
            for first in (0..task.tile_columns).step_by(LANES) {
                let window: [[Lanes; WINDOW]; WINDOW] = std::array::from_fn(|y| {
                    let padded_row = &plane[(top + y) * row_len..][..row_len];
                    std::array::from_fn(|x| {
                        let start = (x % TILE) * phase_len + first + x / TILE;
                        lanes_at(padded_row, start)
                    })
                });
                let values = input_transform(&window);
                let lanes = LANES.min(task.tile_columns - first);
                let tile = row * task.tile_columns + first;
                for (position, value) in values.iter().flatten().enumerate() {
                    let start = (position * inputs + channel) * task.count + tile;
                    if lanes == LANES {
                        transformed[start..start + LANES].copy_from_slice(value);
                    } else {
                        transformed[start..start + lanes].copy_from_slice(&value[..lanes]);
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn transform_output_avx512(
    task: &Task,
    products: &[f32],
    addends: &Addends,
    output: SharedMut,
) {
    transform_output_generic(task, products, addends, output);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_output_avx2(
    task: &Task,
    products: &[f32],
    addends: &Addends,
    output: SharedMut,
) {
    transform_output_generic(task, products, addends, output);
}

#[inline(always)]
fn transform_output_generic(task: &Task, products: &[f32], addends: &Addends, output: SharedMut) {
    let shape = task.shape;
    let (outputs, count) = (shape.out_channels, task.count);
    let (height, width) = (shape.out_height, shape.out_width);
    let plane = height * width;
    for channel in 0..outputs {
        let constant = addends.constant(task.sample, channel, outputs);
        let plane_start = (task.sample * outputs + channel) * plane;
        for row in 0..task.rows {
            let top = TILE * (task.first_row + row);
            let out_rows = TILE.min(height - top);
            for first in (0..task.tile_columns).step_by(LANES) {
                let lanes = LANES.min(task.tile_columns - first);
                let tile = row * task.tile_columns + first;
                let window: [[Lanes; WINDOW]; WINDOW] = std::array::from_fn(|y| {
                    std::array::from_fn(|x| {
                        let start = ((y * WINDOW + x) * outputs + channel) * count + tile;
                        if lanes == LANES {
                            lanes_at(products, start)
                        } else {
                            let mut value = [0f32; LANES];
                            value[..lanes].copy_from_slice(&products[start..start + lanes]);
                            value
                        }
                    })
                });
                let values = output_transform(&window);
                let left = TILE * first;
                let columns = (TILE * lanes).min(width - left);
                for (y, tile_row) in values.iter().enumerate().take(out_rows) {
                    let start = plane_start + (top + y) * width + left;
                    // SAFETY: row top + y < out_height and columns left..left + columns <=
                    // out_width of this (sample, channel) plane lie inside `output`; the
                    // task's tile rows belong to it only.
                    let out =
                        unsafe { std::slice::from_raw_parts_mut(output.get().add(start), columns) };
                    for (column, out) in out.iter_mut().enumerate() {
                        *out = tile_row[column % TILE][column / TILE] + constant;
                    }
                    if let Some(residual) = addends.residual {
                        for (out, residual) in out.iter_mut().zip(&residual[start..start + columns])
                        {
                            *out += residual;
                        }
                    }
                }
            }
        }
    }
}

/// `Bᵀ x` for one column or row of a window, lane by lane.
#[inline(always)]
fn b_transpose(x: &[Lanes; WINDOW]) -> [Lanes; WINDOW] {
    let mut y = [[0f32; LANES]; WINDOW];
    for l in 0..LANES {
        y[0][l] = 4.0 * x[0][l] - 5.0 * x[2][l] + x[4][l];
        y[1][l] = -4.0 * (x[1][l] + x[2][l]) + x[3][l] + x[4][l];
        y[2][l] = 4.0 * (x[1][l] - x[2][l]) - x[3][l] + x[4][l];
        y[3][l] = 2.0 * (x[3][l] - x[1][l]) - x[2][l] + x[4][l];
        y[4][l] = 2.0 * (x[1][l] - x[3][l]) - x[2][l] + x[4][l];
        y[5][l] = 4.0 * x[1][l] - 5.0 * x[3][l] + x[5][l];
    }
    y
}

/// `Aᵀ x` for one column or row of a transformed tile, lane by lane.
#[inline(always)]
fn a_transpose(x: &[Lanes; WINDOW]) -> [Lanes; TILE] {
    let mut y = [[0f32; LANES]; TILE];
    for l in 0..LANES {
        let (sum_12, difference_12) = (x[1][l] + x[2][l], x[1][l] - x[2][l]);
        let (sum_34, difference_34) = (x[3][l] + x[4][l], x[3][l] - x[4][l]);
        y[0][l] = x[0][l] + sum_12 + sum_34;
        y[1][l] = difference_12 + 2.0 * difference_34;
        y[2][l] = sum_12 + 4.0 * sum_34;
        y[3][l] = difference_12 + 8.0 * difference_34 + x[5][l];
    }
    y
}

/// `Bᵀ d B`: Bᵀ down every column, then along every row.
#[inline(always)]
fn input_transform(window: &[[Lanes; WINDOW]; WINDOW]) -> [[Lanes; WINDOW]; WINDOW] {
    let mut columns = [[[0f32; LANES]; WINDOW]; WINDOW];
    for column in 0..WINDOW {
        let transformed = b_transpose(&std::array::from_fn(|row| window[row][column]));
        for (row, value) in transformed.into_iter().enumerate() {
            columns[row][column] = value;
        }
    }
    std::array::from_fn(|row| b_transpose(&columns[row]))
}

/// `Aᵀ m A`: Aᵀ down every column, then along every row.
#[inline(always)]
fn output_transform(window: &[[Lanes; WINDOW]; WINDOW]) -> [[Lanes; TILE]; TILE] {
    let mut columns = [[[0f32; LANES]; WINDOW]; TILE];
    for column in 0..WINDOW {
        let transformed = a_transpose(&std::array::from_fn(|row| window[row][column]));
        for (row, value) in transformed.into_iter().enumerate() {
            columns[row][column] = value;
        }
    }
    std::array::from_fn(|row| a_transpose(&columns[row]))
}

/// G (6×3), the kernel transform.
const G: [[f32; 3]; WINDOW] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Kernel pairs (output, input channel) per task of the weight transform.
const PAIRS_PER_TASK: usize = 64 * LANES;

/// U [36, out, in]: `G g Gᵀ` of every 3×3 kernel of the [out, in, 3, 3] weight, 16
/// kernels at a time.
fn transformed_weights(weight: &[f32], outputs: usize, inputs: usize) -> Vec<f32> {
    let pairs = outputs * inputs;
    let mut transformed = vec![0f32; POSITIONS * pairs];
    let destination = SharedMut(transformed.as_mut_ptr());
    let tasks: Vec<usize> = (0..pairs).step_by(PAIRS_PER_TASK).collect();
    tasks.par_iter().for_each(|&first| {
        let count = PAIRS_PER_TASK.min(pairs - first);
        let kernels = &weight[first * 9..(first + count) * 9];
        // SAFETY: (position, pair) for pairs first..first + count indexes inside the
        // [36, pairs] buffer, and only this task writes those pairs.
        let write = |position: usize, pair: usize, values: &[f32]| unsafe {
            std::ptr::copy_nonoverlapping(
                values.as_ptr(),
                destination.get().add(position * pairs + first + pair),
                values.len(),
            );
        };
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx512f() {
                // SAFETY: the CPU has AVX-512F, AVX2 and FMA.
                return unsafe { transform_kernels_avx512(kernels, count, write) };
            }
            if has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { transform_kernels_avx2(kernels, count, write) };
            }
        }
        transform_kernels_generic(kernels, count, write);
    });
    transformed
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn transform_kernels_avx512(
    kernels: &[f32],
    count: usize,
    write: impl Fn(usize, usize, &[f32]),
) {
    transform_kernels_generic(kernels, count, write);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_kernels_avx2(
    kernels: &[f32],
    count: usize,
    write: impl Fn(usize, usize, &[f32]),
) {
    transform_kernels_generic(kernels, count, write);
}

/// `G g Gᵀ` of `count` consecutive 3×3 kernels, handed to `write(position, kernel, values)`.
#[inline(always)]
fn transform_kernels_generic(kernels: &[f32], count: usize, write: impl Fn(usize, usize, &[f32])) {
    for first in (0..count).step_by(LANES) {
        let lanes = LANES.min(count - first);
        let mut taps = [[0f32; LANES]; 9];
        for lane in 0..lanes {
            for (tap, value) in kernels[(first + lane) * 9..][..9].iter().enumerate() {
                taps[tap][lane] = *value;
            }
        }
        // Gg (6×3), then (Gg)Gᵀ (6×6), lane by lane.
        let mut left = [[[0f32; LANES]; 3]; WINDOW];
        for (row, left_row) in left.iter_mut().enumerate() {
            for (column, value) in left_row.iter_mut().enumerate() {
                for lane in 0..LANES {
                    value[lane] = G[row][0] * taps[column][lane]
                        + G[row][1] * taps[3 + column][lane]
                        + G[row][2] * taps[6 + column][lane];
                }
            }
        }
        for (row, left_row) in left.iter().enumerate() {
            for (column, g) in G.iter().enumerate() {
                let mut value = [0f32; LANES];
                for lane in 0..LANES {
                    value[lane] = left_row[0][lane] * g[0]
                        + left_row[1][lane] * g[1]
                        + left_row[2][lane] * g[2];
                }
                write(row * WINDOW + column, first, &value[..lanes]);
            }
        }
    }
}
