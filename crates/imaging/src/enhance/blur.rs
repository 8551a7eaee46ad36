//! Separable Gaussian blur of an interleaved f32 image, with OpenCV's default border
//! (BORDER_REFLECT_101: `gfedcb|abcdefgh|gfedcba`) and a kernel of radius ⌈3σ⌉,
//! normalised to sum 1 (the kernel `cv2.GaussianBlur(img, (0, 0), sigma)` builds).

use rayon::prelude::*;

/// Index into `0..size` with reflect-101 borders; `size` must be at least 1.
pub fn reflect_101(index: isize, size: usize) -> usize {
    if size == 1 {
        return 0;
    }
    let period = 2 * (size as isize - 1);
    let mut i = index.rem_euclid(period);
    if i >= size as isize {
        i = period - i;
    }
    i as usize
}

/// The normalised 1-D Gaussian kernel of radius ⌈3σ⌉ (at least 1).
pub fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil().max(1.0) as isize;
    let denominator = 2.0 * sigma * sigma;
    let mut kernel: Vec<f32> = (-radius..=radius)
        .map(|offset| (-((offset * offset) as f32) / denominator).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|weight| *weight /= sum);
    kernel
}

/// Blurs `data` (`width`×`height` pixels of `channels` interleaved values).
pub fn gaussian_blur(
    data: &[f32],
    width: usize,
    height: usize,
    channels: usize,
    sigma: f32,
) -> Vec<f32> {
    let _span = tracing::trace_span!("gaussian_blur", width, height, sigma).entered();
    let kernel = gaussian_kernel(sigma);
    let radius = (kernel.len() / 2) as isize;
    let row_len = width * channels;
    // horizontal pass, on a row padded by reflection so the inner loop has no branches
    let mut horizontal = vec![0f32; data.len()];
    horizontal
        .par_chunks_mut(row_len)
        .zip(data.par_chunks(row_len))
        .for_each_init(Vec::new, |padded, (out_row, in_row)| {
            padded.clear();
            for x in -radius..(width as isize + radius) {
                let source = reflect_101(x, width) * channels;
                padded.extend_from_slice(&in_row[source..source + channels]);
            }
            for (tap, &weight) in kernel.iter().enumerate() {
                let shifted = &padded[tap * channels..tap * channels + row_len];
                for (out, &value) in out_row.iter_mut().zip(shifted) {
                    *out += weight * value;
                }
            }
        });
    // vertical pass: each output row is a weighted sum of whole input rows
    let mut output = vec![0f32; data.len()];
    output
        .par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(y, out_row)| {
            for (tap, &weight) in kernel.iter().enumerate() {
                let source_y = reflect_101(y as isize + tap as isize - radius, height);
                let in_row = &horizontal[source_y * row_len..(source_y + 1) * row_len];
                for (out, &value) in out_row.iter_mut().zip(in_row) {
                    *out += weight * value;
                }
            }
        });
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_101_mirrors_without_repeating_the_edge() {
        let indices: Vec<usize> = (-3..8).map(|i| reflect_101(i, 5)).collect();
        assert_eq!(indices, [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(reflect_101(-4, 1), 0);
    }

    #[test]
    fn kernel_is_normalised_and_symmetric() {
        let kernel = gaussian_kernel(1.0);
        assert_eq!(kernel.len(), 7);
        assert!((kernel.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((kernel[0] - kernel[6]).abs() < 1e-9);
        assert!(kernel[3] > kernel[2]);
    }

    #[test]
    fn blur_keeps_constants_and_spreads_an_impulse() {
        let constant = vec![0.3f32; 9 * 7];
        let blurred = gaussian_blur(&constant, 9, 7, 1, 1.5);
        assert!(blurred.iter().all(|v| (v - 0.3).abs() < 1e-6));
        let mut impulse = vec![0f32; 11 * 11];
        impulse[5 * 11 + 5] = 1.0;
        let blurred = gaussian_blur(&impulse, 11, 11, 1, 1.0);
        let kernel = gaussian_kernel(1.0);
        // a separable blur of an impulse is the outer product of the kernel with itself
        assert!((blurred[5 * 11 + 5] - kernel[3] * kernel[3]).abs() < 1e-6);
        assert!((blurred[4 * 11 + 6] - kernel[2] * kernel[4]).abs() < 1e-6);
        assert!((blurred.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
