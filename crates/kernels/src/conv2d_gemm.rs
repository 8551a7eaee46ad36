//! 2-D convolution (PyTorch's `nn.Conv2d`, square kernel, no dilation or groups) for CPU
//! f32 in NCHW, as GEMMs on the NCHW data itself: `out[b] = W[out, in·k·k] · col[in·k·k, h·w]`.
//! candle converts to NHWC on one thread and builds the whole im2col matrix; here
//!
//! - a 1×1 convolution multiplies the input planes directly (no copy);
//! - a stride-1 convolution copies the input once into zero-padded planes (fusing a
//!   nearest ×2 upsampling into that copy when asked), after which the input window of
//!   kernel tap (ky, kx) is the padded planes shifted by `ky·padded_width + kx`: the
//!   convolution is k² accumulating GEMMs on shifted views, computed over the padded
//!   width (the k−1 extra columns per row are discarded);
//! - a 3×3 stride-1 convolution with padding 1 over enough pixels and channels takes
//!   Winograd's F(4×4, 3×3) (`winograd`), 36 GEMMs with 4× fewer products;
//! - other strides build im2col per tile of output rows.
//!
//! Work is split into (sample, output rows, output channels) tiles run in parallel, each
//! calling the single-threaded `gemm`. Bias, a per-sample bias (a resnet's time embedding)
//! and a residual are written into the output before the GEMMs accumulate onto it.
//! `conv2d` chooses between this kernel, its autograd operation (`conv2d_grad`) and
//! candle's operations for other devices and dtypes.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use crate::cpu_slice::{tensor_from, uninit_vec, with_f32, with_optional_f32};

mod winograd;

/// Output columns (pixels) one tile aims for: enough to amortise packing the weights.
const TILE_COLUMNS: usize = 768;
/// Output channels per tile at most, so small images still split into enough tiles.
const TILE_CHANNELS: usize = 320;
/// Output pixels per im2col block of the stride-1 path.
const UNFOLD_COLUMNS: usize = 1024;

/// Stride and zero padding, the same on both axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: usize,
    pub padding: usize,
}

/// What is fused around the convolution.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conv2dExtras<'a> {
    /// Upsample the input ×2 (nearest neighbour) before convolving, as `Upsample2D` does.
    pub upsample_nearest_2x: bool,
    /// [b, out] added to every pixel of each sample's channels (a resnet's time embedding).
    pub sample_bias: Option<&'a Tensor>,
    /// [b, out, h', w'] added to the output (a residual connection).
    pub residual: Option<&'a Tensor>,
}

/// The input's shape checked against the weight and every addend: → the convolution's shape.
pub(crate) fn checked_shape(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: Conv2dParams,
    extras: Conv2dExtras,
) -> Result<ConvShape> {
    let shape = ConvShape::new(xs, weight, params, extras.upsample_nearest_2x)?;
    let out_dims = [
        shape.batch,
        shape.out_channels,
        shape.out_height,
        shape.out_width,
    ];
    if let Some(bias) = bias {
        if bias.dims() != [shape.out_channels] {
            candle_core::bail!(
                "conv2d: bias must be [{}], got {:?}",
                shape.out_channels,
                bias.dims()
            );
        }
    }
    if let Some(sample_bias) = extras.sample_bias {
        if sample_bias.dims() != [shape.batch, shape.out_channels] {
            candle_core::bail!(
                "conv2d: per-sample bias must be [{}, {}], got {:?}",
                shape.batch,
                shape.out_channels,
                sample_bias.dims()
            );
        }
    }
    if let Some(residual) = extras.residual {
        if residual.dims() != out_dims {
            candle_core::bail!(
                "conv2d: residual must be {out_dims:?}, got {:?}",
                residual.dims()
            );
        }
    }
    Ok(shape)
}

/// The fused convolution on CPU f32 tensors, outside any autograd graph.
pub(crate) fn gemm_conv2d(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: Conv2dParams,
    extras: Conv2dExtras,
) -> Result<Tensor> {
    let shape = checked_shape(xs, weight, bias, params, extras)?;
    gemm_conv2d_checked(&shape, xs, weight, bias, extras)
}

/// [`gemm_conv2d`] once `checked_shape` has passed.
pub(crate) fn gemm_conv2d_checked(
    shape: &ConvShape,
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    extras: Conv2dExtras,
) -> Result<Tensor> {
    let out_dims = [
        shape.batch,
        shape.out_channels,
        shape.out_height,
        shape.out_width,
    ];
    let output = with_f32(xs, "conv2d input", |input| {
        with_f32(weight, "conv2d weight", |weight| {
            with_optional_f32(bias, "conv2d bias", |bias| {
                with_optional_f32(
                    extras.sample_bias,
                    "conv2d per-sample bias",
                    |sample_bias| {
                        with_optional_f32(extras.residual, "conv2d residual", |residual| {
                            let addends = Addends {
                                bias,
                                sample_bias,
                                residual,
                            };
                            shape.run(input, weight, &addends)
                        })
                    },
                )
            })
        })
    })??????;
    tensor_from(output, &out_dims)
}

/// Everything added to the GEMM result, as slices.
struct Addends<'a> {
    bias: Option<&'a [f32]>,
    sample_bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
}

impl Addends<'_> {
    /// The constant part for (sample, channel).
    fn constant(&self, sample: usize, channel: usize, out_channels: usize) -> f32 {
        self.bias.map_or(0.0, |bias| bias[channel])
            + self
                .sample_bias
                .map_or(0.0, |bias| bias[sample * out_channels + channel])
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    batch: usize,
    in_channels: usize,
    /// The stored input's size (before any upsampling).
    source_height: usize,
    source_width: usize,
    upsample: bool,
    /// The convolved input's size (after upsampling).
    in_height: usize,
    in_width: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    out_height: usize,
    out_width: usize,
}

/// A pointer shared by tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: the pointer is only dereferenced by tasks that write disjoint regions (each
// task owns one (sample, rows, channels) tile of the output), and the buffer outlives them.
unsafe impl Send for SharedMut {}
// SAFETY: as above; no two tasks touch the same element.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// One (sample, output rows, output channels) piece of work.
#[derive(Debug, Clone, Copy)]
struct Tile {
    sample: usize,
    first_row: usize,
    rows: usize,
    first_channel: usize,
    channels: usize,
}

impl ConvShape {
    /// The kernel's side.
    pub(crate) fn kernel(&self) -> usize {
        self.kernel
    }

    fn new(xs: &Tensor, weight: &Tensor, params: Conv2dParams, upsample: bool) -> Result<Self> {
        let (batch, in_channels, source_height, source_width) = xs.dims4()?;
        let (out_channels, weight_in, kernel, kernel_width) = weight.dims4()?;
        if weight_in != in_channels || kernel != kernel_width {
            candle_core::bail!(
                "conv2d: weight {:?} does not fit input {:?} (expected [out, {in_channels}, k, k])",
                weight.dims(),
                xs.dims()
            );
        }
        if params.stride == 0 {
            candle_core::bail!("conv2d: stride must be at least 1");
        }
        let factor = if upsample { 2 } else { 1 };
        let (in_height, in_width) = (source_height * factor, source_width * factor);
        let (padded_height, padded_width) = (
            in_height + 2 * params.padding,
            in_width + 2 * params.padding,
        );
        if padded_height < kernel || padded_width < kernel {
            candle_core::bail!("conv2d: kernel {kernel} is larger than the padded input {padded_height}×{padded_width}");
        }
        Ok(Self {
            batch,
            in_channels,
            source_height,
            source_width,
            upsample,
            in_height,
            in_width,
            out_channels,
            kernel,
            stride: params.stride,
            padding: params.padding,
            out_height: (padded_height - kernel) / params.stride + 1,
            out_width: (padded_width - kernel) / params.stride + 1,
        })
    }

    fn run(&self, input: &[f32], weight: &[f32], addends: &Addends) -> Result<Vec<f32>> {
        let plane = self.out_height * self.out_width;
        let mut output = uninit_vec(self.batch * self.out_channels * plane);
        let pointwise = self.kernel == 1 && self.stride == 1 && self.padding == 0 && !self.upsample;
        if pointwise {
            self.run_pointwise(input, weight, addends, &mut output);
        } else if self.suits_winograd() {
            self.run_winograd(input, weight, addends, &mut output);
        } else if self.stride == 1 && self.prefers_shifted_views() {
            self.run_shifted(input, weight, addends, &mut output);
        } else if self.stride == 1 {
            self.run_unfolded(input, weight, addends, &mut output);
        } else if self.upsample {
            candle_core::bail!("conv2d: upsampling is fused only into stride-1 convolutions");
        } else {
            self.run_im2col(input, weight, addends, &mut output);
        }
        Ok(output)
    }

    /// Shifted views win on large images (many independent tiles, no im2col traffic) and
    /// for few output channels; im2col with one all-thread GEMM wins where the weights
    /// are large next to the image (measured with examples/bench_ops.rs at SDXL shapes).
    fn prefers_shifted_views(&self) -> bool {
        self.out_height * self.out_width >= 384 * 384 || self.out_channels < 64
    }

    /// Tiles of whole output rows (`row_width` columns computed per row) and channels.
    fn tiles(&self, row_width: usize) -> Vec<Tile> {
        let threads = rayon::current_num_threads().max(1);
        let mut rows = TILE_COLUMNS.div_ceil(row_width).clamp(1, self.out_height);
        let channel_blocks = self.out_channels.div_ceil(TILE_CHANNELS);
        let channels = self.out_channels.div_ceil(channel_blocks);
        // At least two tiles per thread, so uneven tiles still balance.
        while rows > 1 && self.batch * self.out_height.div_ceil(rows) * channel_blocks < 2 * threads
        {
            rows = rows.div_ceil(2);
        }
        let mut tiles = Vec::new();
        for sample in 0..self.batch {
            for first_row in (0..self.out_height).step_by(rows) {
                for first_channel in (0..self.out_channels).step_by(channels) {
                    tiles.push(Tile {
                        sample,
                        first_row,
                        rows: rows.min(self.out_height - first_row),
                        first_channel,
                        channels: channels.min(self.out_channels - first_channel),
                    });
                }
            }
        }
        tiles
    }

    /// Writes bias + per-sample bias + residual into the tile's part of `output`.
    fn initialise(&self, tile: &Tile, addends: &Addends, output: SharedMut) {
        let plane = self.out_height * self.out_width;
        let columns =
            tile.first_row * self.out_width..(tile.first_row + tile.rows) * self.out_width;
        for channel in tile.first_channel..tile.first_channel + tile.channels {
            let start = (tile.sample * self.out_channels + channel) * plane;
            let constant = addends.constant(tile.sample, channel, self.out_channels);
            // SAFETY: this row segment lies inside `output` (sample < batch, channel <
            // out_channels, columns within one plane) and belongs to this tile only.
            let row = unsafe {
                std::slice::from_raw_parts_mut(
                    output.get().add(start + columns.start),
                    columns.len(),
                )
            };
            match addends.residual {
                Some(residual) => {
                    for (out, residual) in row
                        .iter_mut()
                        .zip(&residual[start + columns.start..start + columns.end])
                    {
                        *out = constant + residual;
                    }
                }
                None => row.fill(constant),
            }
        }
    }

    fn run_pointwise(&self, input: &[f32], weight: &[f32], addends: &Addends, output: &mut [f32]) {
        let plane = self.out_height * self.out_width;
        let output = SharedMut(output.as_mut_ptr());
        self.tiles(self.out_width).par_iter().for_each(|tile| {
            self.initialise(tile, addends, output);
            let first_column = tile.first_row * self.out_width;
            let input =
                &input[tile.sample * self.in_channels * plane..][..self.in_channels * plane];
            // SAFETY: dst is this tile's [channels, rows·w] block of output (row stride
            // `plane`), lhs the tile's rows of the contiguous [out, in] weight, rhs the
            // [in, rows·w] block of this sample's input planes (row stride `plane`); all
            // in bounds, and only this task writes the dst block.
            unsafe {
                gemm::gemm(
                    tile.channels,
                    tile.rows * self.out_width,
                    self.in_channels,
                    output.get().add(
                        (tile.sample * self.out_channels + tile.first_channel) * plane
                            + first_column,
                    ),
                    1,
                    plane as isize,
                    true,
                    weight.as_ptr().add(tile.first_channel * self.in_channels),
                    1,
                    self.in_channels as isize,
                    input.as_ptr().add(first_column),
                    1,
                    plane as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
    }

    fn padded_size(&self) -> (usize, usize) {
        (
            self.in_height + 2 * self.padding,
            self.in_width + 2 * self.padding,
        )
    }

    /// The input as zero-padded (and upsampled) planes: [b·in, hp·wp] plus `kernel` slack
    /// values at the end, which the shifted views of the last plane's last row touch.
    fn padded_input(&self, input: &[f32]) -> Vec<f32> {
        let (padded_height, padded_width) = self.padded_size();
        let padded_plane = padded_height * padded_width;
        let source_plane = self.source_height * self.source_width;
        let planes = self.batch * self.in_channels;
        let mut padded = vec![0f32; planes * padded_plane + self.kernel];
        padded[..planes * padded_plane]
            .par_chunks_mut(padded_plane)
            .zip(input.par_chunks(source_plane))
            .for_each(|(padded, source)| {
                for y in 0..self.in_height {
                    let row = &mut padded[(y + self.padding) * padded_width + self.padding..]
                        [..self.in_width];
                    if self.upsample {
                        let source_row =
                            &source[(y / 2) * self.source_width..][..self.source_width];
                        for (pair, value) in row.chunks_exact_mut(2).zip(source_row) {
                            pair[0] = *value;
                            pair[1] = *value;
                        }
                    } else {
                        row.copy_from_slice(&source[y * self.source_width..][..self.source_width]);
                    }
                }
            });
        padded
    }

    /// Stride 1: im2col of a block of output rows from the padded planes (row copies),
    /// then one GEMM over all output channels that uses every thread.
    fn run_unfolded(&self, input: &[f32], weight: &[f32], addends: &Addends, output: &mut [f32]) {
        let padded = self.padded_input(input);
        let (padded_height, padded_width) = self.padded_size();
        let padded_plane = padded_height * padded_width;
        let plane = self.out_height * self.out_width;
        let taps = self.kernel * self.kernel;
        let depth = self.in_channels * taps;
        let rows = UNFOLD_COLUMNS
            .div_ceil(self.out_width)
            .clamp(1, self.out_height);
        let mut col = uninit_vec(depth * rows * self.out_width);
        let output_ptr = SharedMut(output.as_mut_ptr());
        for sample in 0..self.batch {
            for first_row in (0..self.out_height).step_by(rows) {
                let tile_rows = rows.min(self.out_height - first_row);
                let columns = tile_rows * self.out_width;
                let col = &mut col[..depth * columns];
                // [in·k·k, rows·w']: row (c, ky, kx) holds the input value each output pixel sees.
                col.par_chunks_mut(taps * columns)
                    .enumerate()
                    .for_each(|(channel, chunk)| {
                        let source = &padded
                            [(sample * self.in_channels + channel) * padded_plane..]
                            [..padded_plane];
                        for (tap, col_row) in chunk.chunks_exact_mut(columns).enumerate() {
                            let (ky, kx) = (tap / self.kernel, tap % self.kernel);
                            for (row, segment) in
                                col_row.chunks_exact_mut(self.out_width).enumerate()
                            {
                                segment.copy_from_slice(
                                    &source[(first_row + row + ky) * padded_width + kx..]
                                        [..self.out_width],
                                );
                            }
                        }
                    });
                let channel_tiles: Vec<Tile> = (0..self.out_channels)
                    .step_by(TILE_CHANNELS)
                    .map(|first_channel| Tile {
                        sample,
                        first_row,
                        rows: tile_rows,
                        first_channel,
                        channels: TILE_CHANNELS.min(self.out_channels - first_channel),
                    })
                    .collect();
                channel_tiles
                    .par_iter()
                    .for_each(|tile| self.initialise(tile, addends, output_ptr));
                let start = sample * self.out_channels * plane + first_row * self.out_width;
                // SAFETY: dst is the [out, rows·w'] block of this sample's output planes (row
                // stride `plane`), lhs the contiguous [out, in·k·k] weight, rhs the
                // [in·k·k, columns] im2col buffer; no other code touches them meanwhile.
                unsafe {
                    gemm::gemm(
                        self.out_channels,
                        columns,
                        depth,
                        output_ptr.get().add(start),
                        1,
                        plane as isize,
                        true,
                        weight.as_ptr(),
                        1,
                        depth as isize,
                        col.as_ptr(),
                        1,
                        columns as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(0),
                    );
                }
            }
        }
    }

    fn run_shifted(&self, input: &[f32], weight: &[f32], addends: &Addends, output: &mut [f32]) {
        let padded = self.padded_input(input);
        let (padded_height, padded_width) = self.padded_size();
        let padded_plane = padded_height * padded_width;
        let plane = self.out_height * self.out_width;
        let taps = self.kernel * self.kernel;
        let output_ptr = SharedMut(output.as_mut_ptr());
        self.tiles(padded_width).par_iter().for_each(|tile| {
            let columns = tile.rows * padded_width;
            let mut accumulator = uninit_vec(tile.channels * columns);
            let sample_input = &padded[tile.sample * self.in_channels * padded_plane..];
            for tap in 0..taps {
                let (ky, kx) = (tap / self.kernel, tap % self.kernel);
                let shift = (tile.first_row + ky) * padded_width + kx;
                // SAFETY: dst is the task's own [channels, columns] buffer; lhs is weight
                // tap (ky, kx) of the tile's channels, [channels, in] with strides
                // (in·k², k²) inside the [out, in, k, k] weight; rhs is [in, columns] with
                // strides (padded plane, 1) starting at the shifted window: its last read,
                // (in−1)·plane + shift + columns − 1, is at most the end of this sample's
                // planes plus k−2, inside the buffer thanks to the `kernel` slack values.
                unsafe {
                    gemm::gemm(
                        tile.channels,
                        columns,
                        self.in_channels,
                        accumulator.as_mut_ptr(),
                        1,
                        columns as isize,
                        tap > 0,
                        weight
                            .as_ptr()
                            .add(tile.first_channel * self.in_channels * taps + tap),
                        taps as isize,
                        (self.in_channels * taps) as isize,
                        sample_input.as_ptr().add(shift),
                        1,
                        padded_plane as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
            for (index, accumulated) in accumulator.chunks_exact(columns).enumerate() {
                let channel = tile.first_channel + index;
                let start = (tile.sample * self.out_channels + channel) * plane
                    + tile.first_row * self.out_width;
                let constant = addends.constant(tile.sample, channel, self.out_channels);
                // SAFETY: rows [first_row, first_row + rows) of this (sample, channel)
                // plane lie inside `output` and belong to this tile only.
                let out = unsafe {
                    std::slice::from_raw_parts_mut(
                        output_ptr.get().add(start),
                        tile.rows * self.out_width,
                    )
                };
                let residual = addends
                    .residual
                    .map(|residual| &residual[start..start + tile.rows * self.out_width]);
                for (row, (out, accumulated)) in out
                    .chunks_exact_mut(self.out_width)
                    .zip(accumulated.chunks_exact(padded_width))
                    .enumerate()
                {
                    let accumulated = &accumulated[..self.out_width];
                    match residual {
                        Some(residual) => {
                            let residual = &residual[row * self.out_width..][..self.out_width];
                            for ((out, value), residual) in
                                out.iter_mut().zip(accumulated).zip(residual)
                            {
                                *out = *value + constant + *residual;
                            }
                        }
                        None => {
                            for (out, value) in out.iter_mut().zip(accumulated) {
                                *out = *value + constant;
                            }
                        }
                    }
                }
            }
        });
    }

    fn run_im2col(&self, input: &[f32], weight: &[f32], addends: &Addends, output: &mut [f32]) {
        let plane = self.out_height * self.out_width;
        let source_plane = self.in_height * self.in_width;
        let taps = self.kernel * self.kernel;
        let depth = self.in_channels * taps;
        let output_ptr = SharedMut(output.as_mut_ptr());
        self.tiles(self.out_width).par_iter().for_each(|tile| {
            self.initialise(tile, addends, output_ptr);
            let columns = tile.rows * self.out_width;
            // [in·k·k, rows·w']: row (c, ky, kx) holds the input value each output pixel sees.
            let mut col = vec![0f32; depth * columns];
            let sample_input = &input[tile.sample * self.in_channels * source_plane..]
                [..self.in_channels * source_plane];
            for (row_index, col_row) in col.chunks_exact_mut(columns).enumerate() {
                let (channel, tap) = (row_index / taps, row_index % taps);
                let (ky, kx) = (tap / self.kernel, tap % self.kernel);
                let source = &sample_input[channel * source_plane..][..source_plane];
                for (out_row, col_segment) in col_row.chunks_exact_mut(self.out_width).enumerate() {
                    let y = ((tile.first_row + out_row) * self.stride + ky) as isize
                        - self.padding as isize;
                    if y < 0 || y >= self.in_height as isize {
                        continue;
                    }
                    let source_row = &source[y as usize * self.in_width..][..self.in_width];
                    for (x_out, value) in col_segment.iter_mut().enumerate() {
                        let x = (x_out * self.stride + kx) as isize - self.padding as isize;
                        if x >= 0 && x < self.in_width as isize {
                            *value = source_row[x as usize];
                        }
                    }
                }
            }
            let start = (tile.sample * self.out_channels + tile.first_channel) * plane
                + tile.first_row * self.out_width;
            // SAFETY: dst is this tile's [channels, rows·w'] block of output (row stride
            // `plane`), lhs the tile's channels of the contiguous [out, in·k·k] weight, rhs
            // the task's own [in·k·k, columns] im2col buffer.
            unsafe {
                gemm::gemm(
                    tile.channels,
                    columns,
                    depth,
                    output_ptr.get().add(start),
                    1,
                    plane as isize,
                    true,
                    weight.as_ptr().add(tile.first_channel * depth),
                    1,
                    depth as isize,
                    col.as_ptr(),
                    1,
                    columns as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
    }
}
