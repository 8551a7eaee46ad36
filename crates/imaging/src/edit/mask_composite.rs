//! Putting an inpainted picture back into the original: per-pixel weights from the mask,
//! feathered inward only (so every pixel outside the mask keeps its exact original value),
//! and the weighted paste.

use image::{GrayImage, RgbImage};

use crate::error::{ImagingError, Result};

/// 1 inside the mask (pixel ≥ 128), 0 outside; with `blur` > 0, pixels inside within `blur`
/// pixels (chessboard distance) of the outside ramp down as distance / (blur + 1).
pub fn feathered_mask(mask: &GrayImage, blur: usize) -> Vec<f32> {
    let inside: Vec<bool> = mask.as_raw().iter().map(|&p| p >= 128).collect();
    if blur == 0 {
        return inside.iter().map(|&i| if i { 1.0 } else { 0.0 }).collect();
    }
    let (width, height) = (mask.width() as usize, mask.height() as usize);
    // Two-pass chamfer distance to the nearest outside pixel; the border counts as inside
    // (a mask touching the frame is not feathered there).
    let far = u32::MAX / 2;
    let mut distance: Vec<u32> = inside.iter().map(|&i| if i { far } else { 0 }).collect();
    let at = |x: usize, y: usize| y * width + x;
    for y in 0..height {
        for x in 0..width {
            let mut best = distance[at(x, y)];
            for (dx, dy) in [(-1i64, -1i64), (0, -1), (1, -1), (-1, 0)] {
                let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                if nx >= 0 && ny >= 0 && (nx as usize) < width {
                    best = best.min(distance[at(nx as usize, ny as usize)] + 1);
                }
            }
            distance[at(x, y)] = best;
        }
    }
    for y in (0..height).rev() {
        for x in (0..width).rev() {
            let mut best = distance[at(x, y)];
            for (dx, dy) in [(1i64, 1i64), (0, 1), (-1, 1), (1, 0)] {
                let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                if nx >= 0 && (nx as usize) < width && (ny as usize) < height {
                    best = best.min(distance[at(nx as usize, ny as usize)] + 1);
                }
            }
            distance[at(x, y)] = best;
        }
    }
    distance
        .iter()
        .map(|&d| (d as f32 / (blur as f32 + 1.0)).min(1.0))
        .collect()
}

/// `original · (1 − w) + generated · w` per pixel, rounded; w = 0 keeps the original exactly.
pub fn paste_inside_mask(
    original: &RgbImage,
    generated: &RgbImage,
    weights: &[f32],
) -> Result<RgbImage> {
    let pixels = original.width() as usize * original.height() as usize;
    if generated.dimensions() != original.dimensions() || weights.len() != pixels {
        return Err(ImagingError::Invalid {
            what: "mask composite",
            reason: format!(
                "cannot paste a {}×{} result into a {}×{} original",
                generated.width(),
                generated.height(),
                original.width(),
                original.height()
            ),
        });
    }
    let (original_pixels, generated_pixels) = (original.as_raw(), generated.as_raw());
    let mut out = original.clone();
    let out_pixels: &mut [u8] = &mut out;
    for (index, &weight) in weights.iter().enumerate() {
        if weight <= 0.0 {
            continue;
        }
        for channel in 0..3 {
            let i = index * 3 + channel;
            let mixed = f32::from(original_pixels[i]) * (1.0 - weight)
                + f32::from(generated_pixels[i]) * weight;
            out_pixels[i] = mixed.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square_mask() -> GrayImage {
        // 8×8 with a 4×4 white square at (2, 2)
        GrayImage::from_fn(8, 8, |x, y| {
            image::Luma([if (2..6).contains(&x) && (2..6).contains(&y) {
                255
            } else {
                0
            }])
        })
    }

    #[test]
    fn feathering_stays_inside_the_mask() {
        let mask = square_mask();
        let weights = feathered_mask(&mask, 1);
        for (index, (&weight, &pixel)) in weights.iter().zip(mask.as_raw()).enumerate() {
            if pixel < 128 {
                assert_eq!(
                    weight, 0.0,
                    "pixel {index} outside the mask got weight {weight}"
                );
            }
        }
        assert_eq!(weights[2 * 8 + 2], 0.5); // on the edge: distance 1 of 2
        assert_eq!(weights[3 * 8 + 3], 1.0); // one further in
    }

    #[test]
    fn pixels_outside_the_mask_are_the_original_exactly() -> Result<()> {
        let mask = square_mask();
        let original =
            RgbImage::from_raw(8, 8, (0..192).map(|v| v as u8).collect()).ok_or_else(|| {
                ImagingError::Invalid {
                    what: "test image",
                    reason: "buffer size".into(),
                }
            })?;
        let generated = RgbImage::from_pixel(8, 8, image::Rgb([7, 7, 7]));
        let out = paste_inside_mask(&original, &generated, &feathered_mask(&mask, 2))?;
        for (x, y, pixel) in mask.enumerate_pixels() {
            if pixel[0] < 128 {
                assert_eq!(out.get_pixel(x, y), original.get_pixel(x, y));
            }
        }
        let sharp = paste_inside_mask(&original, &generated, &feathered_mask(&mask, 0))?;
        assert_eq!(sharp.get_pixel(3, 3), &image::Rgb([7, 7, 7]));
        assert!(paste_inside_mask(&original, &RgbImage::new(4, 4), &[]).is_err());
        Ok(())
    }
}
