//! Canny edge extraction as ControlNet's canny annotator runs it (OpenCV `cv2.Canny(image,
//! low, high)` on the RGB image): 3×3 Sobel gradients per channel, the channel with the
//! largest L1 magnitude per pixel, non-maximum suppression along the gradient direction
//! (four sectors), then hysteresis — above `high` is an edge, above `low` is one when
//! 8-connected to an edge. Output: 255 on edges, 0 elsewhere, as an RGB image (ControlNets
//! take three channels).

use image::{Rgb, RgbImage};

use crate::{ImagingError, Result};

/// Hysteresis thresholds on the L1 gradient magnitude (0–2040 for 8-bit input).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CannyThresholds {
    pub low: f32,
    pub high: f32,
}

impl Default for CannyThresholds {
    /// The values ControlNet's canny examples use.
    fn default() -> Self {
        Self {
            low: 100.0,
            high: 200.0,
        }
    }
}

impl CannyThresholds {
    pub fn validate(&self) -> Result<()> {
        if !(self.low >= 0.0 && self.high >= self.low && self.high.is_finite()) {
            return Err(ImagingError::Invalid {
                what: "canny thresholds",
                reason: format!(
                    "need 0 ≤ low ≤ high, got low {}, high {}",
                    self.low, self.high
                ),
            });
        }
        Ok(())
    }
}

/// Reflect-101 border (OpenCV's default): -1 → 1, n → n-2.
fn reflect(index: i64, size: usize) -> usize {
    let size = size as i64;
    if size == 1 {
        return 0;
    }
    let mut i = index;
    if i < 0 {
        i = -i;
    }
    if i >= size {
        i = 2 * size - 2 - i;
    }
    i.clamp(0, size - 1) as usize
}

pub fn canny(image: &RgbImage, thresholds: CannyThresholds) -> Result<RgbImage> {
    thresholds.validate()?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    let pixel = |x: i64, y: i64, channel: usize| -> f32 {
        f32::from(
            image
                .get_pixel(reflect(x, width) as u32, reflect(y, height) as u32)
                .0[channel],
        )
    };
    // Gradients of the strongest channel.
    let mut gx = vec![0f32; width * height];
    let mut gy = vec![0f32; width * height];
    let mut magnitude = vec![0f32; width * height];
    for y in 0..height as i64 {
        for x in 0..width as i64 {
            let index = y as usize * width + x as usize;
            for channel in 0..3 {
                let p = |dx: i64, dy: i64| pixel(x + dx, y + dy, channel);
                let dx =
                    (p(1, -1) + 2.0 * p(1, 0) + p(1, 1)) - (p(-1, -1) + 2.0 * p(-1, 0) + p(-1, 1));
                let dy =
                    (p(-1, 1) + 2.0 * p(0, 1) + p(1, 1)) - (p(-1, -1) + 2.0 * p(0, -1) + p(1, -1));
                let m = dx.abs() + dy.abs();
                if m > magnitude[index] {
                    magnitude[index] = m;
                    gx[index] = dx;
                    gy[index] = dy;
                }
            }
        }
    }
    // Non-maximum suppression; 0 = none, 1 = weak, 2 = strong.
    let at = |x: i64, y: i64| -> f32 {
        if x < 0 || y < 0 || x >= width as i64 || y >= height as i64 {
            0.0
        } else {
            magnitude[y as usize * width + x as usize]
        }
    };
    let tan22 = 0.414_213_56f32; // tan(22.5°)
    let mut class = vec![0u8; width * height];
    for y in 0..height as i64 {
        for x in 0..width as i64 {
            let index = y as usize * width + x as usize;
            let m = magnitude[index];
            if m <= thresholds.low {
                continue;
            }
            let (ax, ay) = (gx[index].abs(), gy[index].abs());
            let (n1, n2) = if ay <= tan22 * ax {
                (at(x - 1, y), at(x + 1, y)) // horizontal gradient: compare left/right
            } else if ay * tan22 >= ax {
                (at(x, y - 1), at(x, y + 1)) // vertical gradient
            } else if (gx[index] > 0.0) == (gy[index] > 0.0) {
                (at(x - 1, y - 1), at(x + 1, y + 1))
            } else {
                (at(x + 1, y - 1), at(x - 1, y + 1))
            };
            // OpenCV keeps a pixel that beats the previous neighbour and ties the next one.
            if m > n1 && m >= n2 {
                class[index] = if m > thresholds.high { 2 } else { 1 };
            }
        }
    }
    // Hysteresis: grow strong edges through weak ones.
    let mut stack: Vec<usize> = (0..class.len()).filter(|&i| class[i] == 2).collect();
    while let Some(index) = stack.pop() {
        let (x, y) = ((index % width) as i64, (index / width) as i64);
        for dy in -1..=1 {
            for dx in -1..=1 {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= width as i64 || ny >= height as i64 {
                    continue;
                }
                let neighbour = ny as usize * width + nx as usize;
                if class[neighbour] == 1 {
                    class[neighbour] = 2;
                    stack.push(neighbour);
                }
            }
        }
    }
    Ok(RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let edge = class[y as usize * width + x as usize] == 2;
        Rgb([if edge { 255 } else { 0 }; 3])
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_image() -> RgbImage {
        // dark left half, bright right half: one vertical edge between x = 7 and x = 8
        RgbImage::from_fn(16, 12, |x, _| Rgb([if x < 8 { 20 } else { 220 }; 3]))
    }

    #[test]
    fn a_step_gives_one_thin_edge_and_flat_areas_none() {
        let edges = canny(&step_image(), CannyThresholds::default()).unwrap();
        for y in 0..12 {
            let row: Vec<u32> = (0..16)
                .filter(|&x| edges.get_pixel(x, y).0[0] == 255)
                .collect();
            assert_eq!(row.len(), 1, "row {y}: edge pixels at {row:?}");
            assert!(row[0] == 7 || row[0] == 8, "row {y}: edge at {row:?}");
        }
    }

    #[test]
    fn thresholds_above_the_contrast_find_nothing() {
        // the step's L1 magnitude is 4·200 = 800
        let edges = canny(
            &step_image(),
            CannyThresholds {
                low: 900.0,
                high: 1000.0,
            },
        )
        .unwrap();
        assert!(edges.pixels().all(|p| p.0[0] == 0));
        assert!(canny(
            &step_image(),
            CannyThresholds {
                low: 10.0,
                high: 5.0
            }
        )
        .is_err());
    }
}
