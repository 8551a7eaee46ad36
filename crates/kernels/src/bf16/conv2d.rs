//! 2-D convolution with bf16 weights, multiplied in bf16 (see the module above), with the
//! same fused extras as [`conv2d_fused`]: nearest ×2 upsampling of the input, a
//! per-sample bias and a residual. The weight [out, in·k·k] is packed into panels of MR
//! output channels; each task unfolds a group of output pixels of one sample (im2col)
//! block by block of k-pairs straight into panels of NR pixels, so the unfolded input is
//! never whole in memory.

#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

#[cfg(target_arch = "x86_64")]
use std::cell::RefCell;

use candle_core::{DType, Result, Tensor};
use half::bf16;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::microkernel::{interleave_16_pairs, microkernel};
use super::{bf16_dot_available, with_packed_rows};
#[cfg(target_arch = "x86_64")]
use super::{KC, MR, NR};
use crate::conv2d::{conv2d_fused, Conv2dExtras, Conv2dParams};
use crate::conv2d_gemm::checked_shape;
use crate::cpu_slice::{
    is_cpu_f32, tensor_from, uninit_vec, with_bf16, with_f32, with_optional_f32,
};

/// Output pixels per task at most (four NR-pixel panels).
#[cfg(target_arch = "x86_64")]
const GROUP_PIXELS: usize = 128;

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// Each worker's unfolded rows (f32) and their packed pairs, kept between calls.
    static SCRATCH: RefCell<(Vec<f32>, Vec<u32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `conv2d(xs, weight) + bias` with `extras`: xs [b, in, h, w] f32, weight
/// [out, in, k, k] bf16, bias [out] f32 → [b, out, h', w'] f32 (see
/// [`conv2d_fused`]). Without AVX-512 BF16, inside an autograd graph or off the CPU the
/// weight is widened and [`conv2d_fused`] runs.
pub fn conv2d_bf16(
    xs: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: Conv2dParams,
    extras: Conv2dExtras,
) -> Result<Tensor> {
    let tensors = [
        Some(xs),
        Some(weight),
        bias,
        extras.sample_bias,
        extras.residual,
    ];
    let tracked = tensors.into_iter().flatten().any(Tensor::track_op);
    let activations_f32 = [Some(xs), bias, extras.sample_bias, extras.residual]
        .into_iter()
        .flatten()
        .all(is_cpu_f32);
    let weight_bf16 = weight.device().is_cpu() && weight.dtype() == DType::BF16;
    if tracked || !activations_f32 || !weight_bf16 || !bf16_dot_available() {
        let widened = weight.to_dtype(xs.dtype())?;
        return conv2d_fused(xs, &widened, bias, params, extras);
    }
    // Validates every shape (the dtype of the weight plays no part there).
    checked_shape(xs, weight, bias, params, extras)?;
    let geometry = Geometry::new(xs, weight, params, extras.upsample_nearest_2x)?;
    let out_dims = [
        geometry.batch,
        geometry.out_channels,
        geometry.out_height,
        geometry.out_width,
    ];
    let output = with_f32(xs, "bf16 conv2d input", |input| {
        with_bf16(weight, "bf16 conv2d weight", |weight| {
            with_optional_f32(bias, "bf16 conv2d bias", |bias| {
                with_optional_f32(
                    extras.sample_bias,
                    "bf16 conv2d per-sample bias",
                    |sample_bias| {
                        with_optional_f32(extras.residual, "bf16 conv2d residual", |residual| {
                            let mut output = geometry.addends(bias, sample_bias, residual);
                            #[cfg(target_arch = "x86_64")]
                            geometry.accumulate(&mut output, input, weight);
                            output
                        })
                    },
                )
            })
        })
    })?????;
    tensor_from(output, &out_dims)
}

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
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

impl Geometry {
    /// The sizes of a convolution whose shapes `checked_shape` accepted.
    fn new(xs: &Tensor, weight: &Tensor, params: Conv2dParams, upsample: bool) -> Result<Self> {
        let (batch, in_channels, source_height, source_width) = xs.dims4()?;
        let (out_channels, _, kernel, _) = weight.dims4()?;
        let factor = if upsample { 2 } else { 1 };
        let (in_height, in_width) = (source_height * factor, source_width * factor);
        let span = |size: usize| (size + 2 * params.padding - kernel) / params.stride + 1;
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
            out_height: span(in_height),
            out_width: span(in_width),
        })
    }

    fn pixels(&self) -> usize {
        self.out_height * self.out_width
    }

    /// in · k · k: the length of one output value's sum.
    fn depth(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    /// The output filled with what is added to the product: bias + per-sample bias +
    /// residual.
    fn addends(
        &self,
        bias: Option<&[f32]>,
        sample_bias: Option<&[f32]>,
        residual: Option<&[f32]>,
    ) -> Vec<f32> {
        let pixels = self.pixels();
        let mut output = uninit_vec(self.batch * self.out_channels * pixels);
        output
            .par_chunks_mut(pixels)
            .enumerate()
            .for_each(|(plane, values)| {
                let channel = plane % self.out_channels;
                let constant = bias.map_or(0.0, |bias| bias[channel])
                    + sample_bias.map_or(0.0, |bias| bias[plane]);
                match residual {
                    Some(residual) => {
                        let start = plane * pixels;
                        for (value, &added) in
                            values.iter_mut().zip(&residual[start..start + pixels])
                        {
                            *value = constant + added;
                        }
                    }
                    None => values.fill(constant),
                }
            });
        output
    }

    /// `output` += the convolution of `input` with `weight`, in parallel over groups of
    /// output pixels of each sample.
    #[cfg(target_arch = "x86_64")]
    fn accumulate(&self, output: &mut [f32], input: &[f32], weight: &[bf16]) {
        if self.pixels() == 0 || self.depth() == 0 {
            return;
        }
        with_packed_rows(
            weight,
            self.out_channels,
            self.depth(),
            MR,
            |packed_weight| {
                self.accumulate_packed(output, input, packed_weight);
            },
        );
    }

    /// [`Self::accumulate`] with the weight packed into panels of MR channels.
    #[cfg(target_arch = "x86_64")]
    fn accumulate_packed(&self, output: &mut [f32], input: &[f32], packed_weight: &[u32]) {
        let pixels = self.pixels();
        let plane_out = self.out_channels * pixels;
        // Smaller groups where the image is small, so every thread gets work.
        let threads = rayon::current_num_threads().max(1);
        let mut group = GROUP_PIXELS;
        while group > NR && self.batch * pixels.div_ceil(group) < 2 * threads {
            group /= 2;
        }
        let groups = pixels.div_ceil(group);
        let target = SharedOutput(output.as_mut_ptr());
        (0..self.batch * groups).into_par_iter().for_each(|task| {
            let (sample, first_pixel) = (task / groups, (task % groups) * group);
            let count = group.min(pixels - first_pixel);
            let plane_in = self.in_channels * self.source_height * self.source_width;
            let source = &input[sample * plane_in..(sample + 1) * plane_in];
            SCRATCH.with_borrow_mut(|(rows, packed)| {
                self.run_group(
                    source,
                    packed_weight,
                    first_pixel,
                    count,
                    target,
                    sample * plane_out,
                    rows,
                    packed,
                );
            });
        });
    }

    /// One task: output pixels `first_pixel..first_pixel + count` of the sample whose
    /// output plane starts at `offset` in `target`.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    fn run_group(
        &self,
        source: &[f32],
        packed_weight: &[u32],
        first_pixel: usize,
        count: usize,
        target: SharedOutput,
        offset: usize,
        rows: &mut Vec<f32>,
        packed: &mut Vec<u32>,
    ) {
        let depth = self.depth();
        let pairs = depth.div_ceil(2);
        let panels = count.div_ceil(NR);
        let width = panels * NR;
        let pixels = self.pixels();
        for first_pair in (0..pairs).step_by(KC) {
            let block_pairs = KC.min(pairs - first_pair);
            rows.clear();
            rows.resize(2 * block_pairs * width, 0.0);
            for (index, row) in rows.chunks_exact_mut(width).enumerate() {
                let k = 2 * first_pair + index;
                if k < depth {
                    self.unfold_row(source, k, first_pixel, &mut row[..count]);
                }
            }
            packed.clear();
            packed.resize(panels * block_pairs * NR, 0);
            for pair in 0..block_pairs {
                let (low, high) = rows[2 * pair * width..(2 * pair + 2) * width].split_at(width);
                for panel in 0..panels {
                    for half in 0..2 {
                        let column = panel * NR + half * 16;
                        // SAFETY: the CPU has AVX-512F and BF16 (checked by
                        // `bf16_dot_available`); both rows hold `width` = panels·NR floats and
                        // the packed block `panels · block_pairs · NR` u32s.
                        unsafe {
                            interleave_16_pairs(
                                low.as_ptr().add(column),
                                high.as_ptr().add(column),
                                packed
                                    .as_mut_ptr()
                                    .add((panel * block_pairs + pair) * NR + half * 16),
                            );
                        }
                    }
                }
            }
            for channel_panel in 0..self.out_channels.div_ceil(MR) {
                let channels = MR.min(self.out_channels - channel_panel * MR);
                let left = &packed_weight[(channel_panel * pairs + first_pair) * MR..];
                for panel in 0..panels {
                    let columns = NR.min(count - panel * NR);
                    let start = offset + channel_panel * MR * pixels + first_pixel + panel * NR;
                    // SAFETY: as above for the CPU; the weight panel holds `block_pairs` pairs
                    // of MR from `left`, the pixel panel `block_pairs` pairs of NR; the target
                    // block (`channels` rows of stride `pixels`, `columns` values each) lies in
                    // this task's pixels of this sample's plane, written by no other task.
                    unsafe {
                        microkernel(
                            left.as_ptr(),
                            packed.as_ptr().add(panel * block_pairs * NR),
                            block_pairs,
                            target.get().add(start),
                            pixels,
                            channels,
                            columns,
                        );
                    }
                }
            }
        }
    }

    /// Row `k` (input channel, kernel row, kernel column) of the unfolded input for output
    /// pixels `first_pixel..first_pixel + row.len()`: the input value each pixel's sum
    /// multiplies by that weight, 0 in the padding.
    fn unfold_row(&self, source: &[f32], k: usize, first_pixel: usize, row: &mut [f32]) {
        let taps = self.kernel * self.kernel;
        let (channel, tap) = (k / taps, k % taps);
        let (kernel_y, kernel_x) = (tap / self.kernel, tap % self.kernel);
        let plane = &source[channel * self.source_height * self.source_width..]
            [..self.source_height * self.source_width];
        let shift = if self.upsample { 1 } else { 0 };
        let mut pixel = first_pixel;
        let mut written = 0;
        while written < row.len() {
            let (out_y, out_x) = (pixel / self.out_width, pixel % self.out_width);
            let run = (self.out_width - out_x).min(row.len() - written);
            let segment = &mut row[written..written + run];
            let in_y = (out_y * self.stride + kernel_y) as isize - self.padding as isize;
            if in_y < 0 || in_y >= self.in_height as isize {
                segment.fill(0.0);
            } else {
                let line =
                    &plane[(in_y as usize >> shift) * self.source_width..][..self.source_width];
                let first_x = (out_x * self.stride + kernel_x) as isize - self.padding as isize;
                if self.stride == 1 && !self.upsample {
                    // A contiguous stretch of the input line, zeros where it runs off.
                    for (offset, value) in segment.iter_mut().enumerate() {
                        let x = first_x + offset as isize;
                        *value = if x >= 0 && x < self.in_width as isize {
                            line[x as usize]
                        } else {
                            0.0
                        };
                    }
                } else {
                    for (offset, value) in segment.iter_mut().enumerate() {
                        let x = first_x + (offset * self.stride) as isize;
                        *value = if x >= 0 && x < self.in_width as isize {
                            line[x as usize >> shift]
                        } else {
                            0.0
                        };
                    }
                }
            }
            written += run;
            pixel += run;
        }
    }
}

/// The output buffer, shared by tasks that write disjoint pixels of it.
#[derive(Clone, Copy)]
struct SharedOutput(*mut f32);
// SAFETY: only dereferenced by tasks that write disjoint (sample, pixel group) blocks, while
// the buffer outlives them.
unsafe impl Send for SharedOutput {}
// SAFETY: as above; no two tasks touch the same element.
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv2d::reference_conv2d_fused;
    use candle_core::Device;

    fn max_difference(a: &Tensor, b: &Tensor) -> anyhow::Result<f32> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    #[test]
    fn matches_the_rounded_f32_convolution_in_every_configuration() -> anyhow::Result<()> {
        if !bf16_dot_available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16");
            return Ok(());
        }
        let device = Device::Cpu;
        // (batch, in, out, size, kernel, stride, padding, upsample): channel counts not
        // multiples of 12, odd depths (in · 9), sums longer than one k-block, images
        // smaller and larger than a pixel group, the downsampler and the upsampler.
        let cases = [
            (2, 5, 7, 9, 3, 1, 1, false),
            (1, 48, 13, 17, 3, 1, 1, false),
            (2, 3, 30, 11, 3, 2, 1, false),
            (1, 7, 12, 6, 3, 1, 1, true),
            (2, 16, 25, 8, 1, 1, 0, false),
            (1, 4, 5, 5, 3, 1, 0, false),
        ];
        for (batch, inputs, outputs, size, kernel, stride, padding, upsample) in cases {
            let xs = Tensor::randn(0f32, 1.0, (batch, inputs, size, size), &device)?;
            let weight = Tensor::randn(0f32, 0.2, (outputs, inputs, kernel, kernel), &device)?
                .to_dtype(DType::BF16)?;
            let bias = Tensor::randn(0f32, 1.0, outputs, &device)?;
            let sample_bias = Tensor::randn(0f32, 1.0, (batch, outputs), &device)?;
            let params = Conv2dParams { stride, padding };
            let plain = Conv2dExtras {
                upsample_nearest_2x: upsample,
                ..Default::default()
            };
            let out_shape =
                reference_conv2d_fused(&xs, &weight.to_dtype(DType::F32)?, None, params, plain)?;
            let residual = Tensor::randn(0f32, 1.0, out_shape.dims(), &device)?;
            let with_addends = Conv2dExtras {
                upsample_nearest_2x: upsample,
                sample_bias: Some(&sample_bias),
                residual: Some(&residual),
            };
            for (bias, extras) in [(None, plain), (Some(&bias), with_addends)] {
                let fast = conv2d_bf16(&xs, &weight, bias, params, extras)?;
                let rounded = xs.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
                let expected = reference_conv2d_fused(
                    &rounded,
                    &weight.to_dtype(DType::F32)?,
                    bias,
                    params,
                    extras,
                )?;
                assert_eq!(fast.dims(), expected.dims());
                let difference = max_difference(&fast, &expected)?;
                // The same exact products summed in another order: f32 rounding only.
                let tolerance = 1e-5 * ((inputs * kernel * kernel) as f32).sqrt();
                assert!(
                    difference < tolerance,
                    "batch {batch}, {inputs}->{outputs}, {size}², k{kernel} s{stride} p{padding} up {upsample}: difference {difference}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn inside_autograd_the_widened_weight_keeps_the_input_gradient() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = candle_core::Var::randn(0f32, 1.0, (1, 2, 5, 5), &device)?;
        let weight = Tensor::randn(0f32, 1.0, (3, 2, 3, 3), &device)?.to_dtype(DType::BF16)?;
        let params = Conv2dParams {
            stride: 1,
            padding: 1,
        };
        let out = conv2d_bf16(
            xs.as_tensor(),
            &weight,
            None,
            params,
            Conv2dExtras::default(),
        )?;
        let grads = out.sum_all()?.backward()?;
        assert!(grads.get(xs.as_tensor()).is_some());
        Ok(())
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let xs = Tensor::zeros((1, 2, 5, 5), DType::F32, &device)?;
        let weight = Tensor::zeros((3, 4, 3, 3), DType::BF16, &device)?;
        let params = Conv2dParams {
            stride: 1,
            padding: 1,
        };
        assert!(conv2d_bf16(&xs, &weight, None, params, Conv2dExtras::default()).is_err());
        Ok(())
    }
}
