//! Contrast Limited Adaptive Histogram Equalization (Zuiderveld 1994), following
//! OpenCV's implementation (modules/imgproc/src/clahe.cpp) step by step: a grid of
//! tiles over the image padded by reflect-101 to a whole number of tiles, a 256-bin
//! histogram per tile clipped at `clip_limit·tile_area/256` (at least 1) with the excess
//! spread evenly and the remainder one count per bin at a stride, a lookup table
//! `round(cdf·255/tile_area)`, and bilinear interpolation between the four nearest
//! tiles' tables. Colour images are equalised on CIE L* only (as the usual
//! `cv2.cvtColor(..., COLOR_RGB2Lab)` recipe does), so hues are kept.

use rayon::prelude::*;

use super::blur::reflect_101;
use super::color_space::{lab_to_rgb, rgb_to_lab};

const BINS: usize = 256;

/// Parameters of CLAHE.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClaheParams {
    /// Contrast limit relative to a flat histogram; 0 disables clipping (plain AHE).
    pub clip_limit: f32,
    /// Tiles along each side.
    pub grid: usize,
}

/// The per-tile lookup tables of an 8-bit plane: `tables[ty * grid_x + tx][level]`.
pub fn tile_tables(
    plane: &[u8],
    width: usize,
    height: usize,
    grid_x: usize,
    grid_y: usize,
    clip_limit: f32,
) -> Vec<[u8; BINS]> {
    let tile_width = width.div_ceil(grid_x);
    let tile_height = height.div_ceil(grid_y);
    let tile_area = tile_width * tile_height;
    let clip = if clip_limit > 0.0 {
        Some(((clip_limit * tile_area as f32 / BINS as f32) as usize).max(1))
    } else {
        None
    };
    let lut_scale = (BINS - 1) as f32 / tile_area as f32;
    (0..grid_x * grid_y)
        .into_par_iter()
        .map(|tile| {
            let (tx, ty) = (tile % grid_x, tile / grid_x);
            let mut histogram = [0usize; BINS];
            for y in ty * tile_height..(ty + 1) * tile_height {
                let row = reflect_101(y as isize, height) * width;
                for x in tx * tile_width..(tx + 1) * tile_width {
                    histogram[plane[row + reflect_101(x as isize, width)] as usize] += 1;
                }
            }
            if let Some(clip) = clip {
                clip_histogram(&mut histogram, clip);
            }
            let mut table = [0u8; BINS];
            let mut sum = 0usize;
            for (level, count) in histogram.iter().enumerate() {
                sum += count;
                table[level] = (sum as f32 * lut_scale).round().clamp(0.0, 255.0) as u8;
            }
            table
        })
        .collect()
}

/// Clips every bin at `clip` and hands the excess back as OpenCV does.
fn clip_histogram(histogram: &mut [usize; BINS], clip: usize) {
    let mut clipped = 0;
    for count in histogram.iter_mut() {
        if *count > clip {
            clipped += *count - clip;
            *count = clip;
        }
    }
    let batch = clipped / BINS;
    let mut residual = clipped - batch * BINS;
    for count in histogram.iter_mut() {
        *count += batch;
    }
    if let Some(step) = BINS.checked_div(residual) {
        let step = step.max(1);
        let mut level = 0;
        while level < BINS && residual > 0 {
            histogram[level] += 1;
            level += step;
            residual -= 1;
        }
    }
}

/// Equalises an 8-bit plane; returns the new levels (0–255, fractional after the
/// interpolation between tiles).
pub fn clahe_plane(plane: &[u8], width: usize, height: usize, params: &ClaheParams) -> Vec<f32> {
    let _span = tracing::trace_span!("clahe", width, height, grid = params.grid).entered();
    let grid = params.grid.max(1);
    let (grid_x, grid_y) = (grid.min(width), grid.min(height));
    let tables = tile_tables(plane, width, height, grid_x, grid_y, params.clip_limit);
    let inverse_tile_width = 1.0 / width.div_ceil(grid_x) as f32;
    let inverse_tile_height = 1.0 / height.div_ceil(grid_y) as f32;
    // where each column sits between two tile centres
    let columns: Vec<(usize, usize, f32)> = (0..width)
        .map(|x| {
            let position = x as f32 * inverse_tile_width - 0.5;
            let left = position.floor() as isize;
            let weight = position - left as f32;
            (
                left.max(0) as usize,
                ((left + 1) as usize).min(grid_x - 1),
                weight,
            )
        })
        .collect();
    let mut output = vec![0f32; plane.len()];
    output
        .par_chunks_mut(width)
        .enumerate()
        .for_each(|(y, out_row)| {
            let position = y as f32 * inverse_tile_height - 0.5;
            let top = position.floor() as isize;
            let weight_y = position - top as f32;
            let (top, bottom) = (top.max(0) as usize, ((top + 1) as usize).min(grid_y - 1));
            for (x, out) in out_row.iter_mut().enumerate() {
                let level = plane[y * width + x] as usize;
                let (left, right, weight_x) = columns[x];
                let at = |ty: usize, tx: usize| f32::from(tables[ty * grid_x + tx][level]);
                let upper = at(top, left) * (1.0 - weight_x) + at(top, right) * weight_x;
                let lower = at(bottom, left) * (1.0 - weight_x) + at(bottom, right) * weight_x;
                *out = upper * (1.0 - weight_y) + lower * weight_y;
            }
        });
    output
}

/// CLAHE on the L* channel of an interleaved RGB f32 image.
pub fn clahe_rgb(data: &[f32], width: usize, height: usize, params: &ClaheParams) -> Vec<f32> {
    let lab: Vec<[f32; 3]> = data
        .par_chunks_exact(3)
        .map(|pixel| rgb_to_lab([pixel[0], pixel[1], pixel[2]]))
        .collect();
    let levels: Vec<u8> = lab
        .iter()
        .map(|[lightness, _, _]| (lightness * 2.55).round().clamp(0.0, 255.0) as u8)
        .collect();
    let equalised = clahe_plane(&levels, width, height, params);
    lab.par_iter()
        .zip(equalised.par_iter())
        .flat_map_iter(|(&[_, a, b], &level)| lab_to_rgb([level / 2.55, a, b]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1024 pixels: 256 at level 10, 768 at level 200.
    fn two_level_plane() -> Vec<u8> {
        (0..1024).map(|i| if i < 256 { 10 } else { 200 }).collect()
    }

    #[test]
    fn one_tile_without_clipping_is_histogram_equalisation() {
        let plane = two_level_plane();
        let params = ClaheParams {
            clip_limit: 0.0,
            grid: 1,
        };
        let output = clahe_plane(&plane, 32, 32, &params);
        // cdf(10) = 256 → round(256·255/1024) = 64; cdf(200) = 1024 → 255
        assert_eq!(output[0], 64.0);
        assert_eq!(output[1023], 255.0);
    }

    #[test]
    fn clipping_redistributes_as_opencv_does() {
        // clip = int(4·1024/256) = 16; excess 240 + 752 = 992 → 3 per bin and one more
        // for bins 0..223 (stride 256/224 = 1). cdf(10) = 10·4 + 20 = 60 → round(14.94) = 15;
        // cdf(200) = 199·4 + 20 + 20 = 836 → round(208.18) = 208.
        let plane = two_level_plane();
        let params = ClaheParams {
            clip_limit: 4.0,
            grid: 1,
        };
        let output = clahe_plane(&plane, 32, 32, &params);
        assert_eq!(output[0], 15.0);
        assert_eq!(output[1023], 208.0);
    }

    #[test]
    fn tiles_adapt_locally_and_blend_smoothly() {
        // a dark left half and a bright right half, each with gentle variation
        let (width, height) = (64, 16);
        let plane: Vec<u8> = (0..width * height)
            .map(|i| {
                let x = i % width;
                let base = if x < 32 { 40 } else { 180 };
                base + (x % 8) as u8
            })
            .collect();
        let params = ClaheParams {
            clip_limit: 40.0,
            grid: 4,
        };
        let output = clahe_plane(&plane, width, height, &params);
        // columns 0..8 and 56..64 see only the first and the last tile's table: each
        // half's 8 levels, a narrow band of the histogram, are stretched far apart,
        // in order
        for start in [0, 56] {
            let band = &output[start..start + 8];
            assert!(band.windows(2).all(|pair| pair[1] > pair[0]), "{band:?}");
            assert!(band[7] - band[0] > 50.0, "{band:?}");
        }
    }

    #[test]
    fn colour_clahe_keeps_grey_grey() {
        let data: Vec<f32> = (0..16 * 16)
            .flat_map(|i| [(i % 16) as f32 / 30.0 + 0.2; 3])
            .collect();
        let output = clahe_rgb(
            &data,
            16,
            16,
            &ClaheParams {
                clip_limit: 2.0,
                grid: 2,
            },
        );
        for pixel in output.chunks(3) {
            assert!(
                (pixel[0] - pixel[1]).abs() < 1e-3 && (pixel[1] - pixel[2]).abs() < 1e-3,
                "{pixel:?}"
            );
        }
        let range = |values: &[f32]| {
            let reds = values.iter().step_by(3);
            reds.clone().fold(f32::MIN, |a, &b| a.max(b)) - reds.fold(f32::MAX, |a, &b| a.min(b))
        };
        assert!(
            range(&output) > range(&data) + 0.1,
            "{} vs {}",
            range(&output),
            range(&data)
        );
    }
}
