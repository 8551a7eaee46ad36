//! Edge-preserving denoising with the bilateral filter (Tomasi & Manduchi 1998), as
//! OpenCV's `cv2.bilateralFilter` defines it for colour images: a circular window of
//! radius `round(1.5·sigma_space)` unless given, spatial weight
//! `exp(-r²/2σs²)` times colour weight `exp(-|Δrgb|²/2σc²)`, reflect-101 borders.
//! Colour distances here are Euclidean over RGB in [0, 1] (OpenCV sums the absolute
//! channel differences of 8-bit values), so `sigma_color` 0.1 ≈ OpenCV's 25.

use rayon::prelude::*;

use super::blur::reflect_101;

/// Parameters of the bilateral filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BilateralParams {
    /// Colour distance (RGB in [0, 1]) at which neighbours lose most of their weight.
    pub sigma_color: f32,
    /// Spatial spread in pixels.
    pub sigma_space: f32,
    /// Window radius in pixels; 0 picks `round(1.5·sigma_space)` as OpenCV does.
    pub radius: usize,
}

/// Colour weights are looked up in a table over squared distance up to where they
/// fall below e⁻¹⁴ ≈ 1e-6 (beyond that they are taken as 0).
const LUT_SIZE: usize = 4096;
const CUTOFF_EXPONENT: f32 = 14.0;

/// Filters an interleaved RGB f32 image.
pub fn bilateral_filter(
    data: &[f32],
    width: usize,
    height: usize,
    params: &BilateralParams,
) -> Vec<f32> {
    let _span = tracing::trace_span!("bilateral_filter", width, height).entered();
    let radius = if params.radius == 0 {
        (1.5 * params.sigma_space).round().max(1.0) as usize
    } else {
        params.radius
    };
    let r = radius as isize;
    // the circular window's offsets and spatial weights
    let mut window = Vec::new();
    for dy in -r..=r {
        for dx in -r..=r {
            let squared = (dy * dy + dx * dx) as f32;
            if squared <= (radius * radius) as f32 {
                let weight = (-squared / (2.0 * params.sigma_space * params.sigma_space)).exp();
                window.push((dy, dx, weight));
            }
        }
    }
    let two_sigma_squared = 2.0 * params.sigma_color * params.sigma_color;
    let max_distance = CUTOFF_EXPONENT * two_sigma_squared;
    let lut_scale = (LUT_SIZE - 1) as f32 / max_distance;
    // the last entry is 0 and every index past the cutoff is clamped to it
    let lut: Vec<f32> = (0..=LUT_SIZE)
        .map(|i| {
            if i == LUT_SIZE {
                0.0
            } else {
                (-(i as f32 / lut_scale) / two_sigma_squared).exp()
            }
        })
        .collect();

    // pad by the radius with reflect-101 so the window never needs a bounds check
    let padded_width = width + 2 * radius;
    let mut padded = Vec::with_capacity(padded_width * (height + 2 * radius) * 3);
    for y in -r..(height as isize + r) {
        let source_row = reflect_101(y, height) * width * 3;
        for x in -r..(width as isize + r) {
            let source = source_row + reflect_101(x, width) * 3;
            padded.extend_from_slice(&data[source..source + 3]);
        }
    }
    let offsets: Vec<(usize, f32)> = window
        .iter()
        .map(|&(dy, dx, weight)| {
            (
                ((dy + r) as usize * padded_width + (dx + r) as usize) * 3,
                weight,
            )
        })
        .collect();

    let mut output = vec![0f32; data.len()];
    output
        .par_chunks_mut(width * 3)
        .enumerate()
        .for_each(|(y, out_row)| {
            for x in 0..width {
                let corner = (y * padded_width + x) * 3;
                let center = corner + (r as usize * padded_width + r as usize) * 3;
                let (cr, cg, cb) = (padded[center], padded[center + 1], padded[center + 2]);
                let mut sum = [0f32; 3];
                let mut total = 0f32;
                for &(offset, spatial) in &offsets {
                    let at = corner + offset;
                    let (nr, ng, nb) = (padded[at], padded[at + 1], padded[at + 2]);
                    let distance =
                        (nr - cr) * (nr - cr) + (ng - cg) * (ng - cg) + (nb - cb) * (nb - cb);
                    let index = ((distance * lut_scale) as usize).min(LUT_SIZE);
                    let weight = spatial * lut[index];
                    sum[0] += weight * nr;
                    sum[1] += weight * ng;
                    sum[2] += weight * nb;
                    total += weight;
                }
                // the centre always has weight 1, so total > 0
                let out = &mut out_row[x * 3..x * 3 + 3];
                out[0] = sum[0] / total;
                out[1] = sum[1] / total;
                out[2] = sum[2] / total;
            }
        });
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BilateralParams {
        BilateralParams {
            sigma_color: 0.1,
            sigma_space: 2.0,
            radius: 0,
        }
    }

    #[test]
    fn keeps_a_hard_edge_and_smooths_small_noise() {
        // left half 0.2, right half 0.8, with ±0.02 checkerboard noise
        let (width, height) = (16, 8);
        let mut data = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let base = if x < width / 2 { 0.2 } else { 0.8 };
                let noise = if (x + y) % 2 == 0 { 0.02 } else { -0.02 };
                data.extend_from_slice(&[base + noise; 3]);
            }
        }
        let output = bilateral_filter(&data, width, height, &params());
        let at = |x: usize, y: usize| output[(y * width + x) * 3];
        // the edge survives: the neighbours across it differ by 0.6 ≫ sigma_color
        assert!((at(7, 4) - 0.2).abs() < 0.02, "{}", at(7, 4));
        assert!((at(8, 4) - 0.8).abs() < 0.02, "{}", at(8, 4));
        // the noise shrinks well below its ±0.02
        assert!((at(3, 4) - 0.2).abs() < 0.006, "{}", at(3, 4));
        assert!((at(12, 3) - 0.8).abs() < 0.006, "{}", at(12, 3));
    }

    #[test]
    fn constant_image_is_unchanged() {
        let data = vec![0.5f32; 5 * 4 * 3];
        let output = bilateral_filter(&data, 5, 4, &params());
        assert!(output.iter().all(|v| (v - 0.5).abs() < 1e-6));
    }
}
