//! "Only the masked area" inpainting for large images (diffusers `padding_mask_crop`,
//! `VaeImageProcessor.get_crop_region`): the mask's bounding box grown by a padding and
//! then to the working aspect ratio, clamped to the image; the pipeline runs on that crop
//! scaled to the model's resolution, and the result is scaled back and pasted in.

use image::{GrayImage, RgbImage};

use super::region::Rect;
use crate::resize::{resize_gray8, resize_rgb8, ResizeFilter, SourceBox};
use crate::{ImagingError, Result};

/// The crop to work on: the box of mask pixels ≥ 128, grown by `padding` on each side and
/// then along one axis to the aspect ratio `aspect` (width / height), inside the image.
pub fn crop_region(mask: &GrayImage, padding: u32, aspect: f64) -> Result<Rect> {
    let (width, height) = mask.dimensions();
    let mut bounds: Option<Rect> = None;
    for (x, y, pixel) in mask.enumerate_pixels() {
        if pixel.0[0] >= 128 {
            let rect = bounds.get_or_insert(Rect {
                left: x,
                top: y,
                right: x + 1,
                bottom: y + 1,
            });
            rect.left = rect.left.min(x);
            rect.top = rect.top.min(y);
            rect.right = rect.right.max(x + 1);
            rect.bottom = rect.bottom.max(y + 1);
        }
    }
    let bounds = bounds.ok_or(ImagingError::Invalid {
        what: "mask",
        reason: "the mask is empty (no pixel ≥ 128)".into(),
    })?;
    let mut left = bounds.left.saturating_sub(padding) as f64;
    let mut top = bounds.top.saturating_sub(padding) as f64;
    let mut right = (bounds.right + padding).min(width) as f64;
    let mut bottom = (bounds.bottom + padding).min(height) as f64;
    // Grow the short side to the aspect ratio, centered, shifted back inside the image.
    let (crop_width, crop_height) = (right - left, bottom - top);
    if crop_width / crop_height < aspect {
        let wanted = (crop_height * aspect).min(f64::from(width));
        let grow = wanted - crop_width;
        left -= grow / 2.0;
        right += grow / 2.0;
        let shift = (-left).max(0.0) - (right - f64::from(width)).max(0.0);
        left += shift;
        right += shift;
    } else {
        let wanted = (crop_width / aspect).min(f64::from(height));
        let grow = wanted - crop_height;
        top -= grow / 2.0;
        bottom += grow / 2.0;
        let shift = (-top).max(0.0) - (bottom - f64::from(height)).max(0.0);
        top += shift;
        bottom += shift;
    }
    Ok(Rect {
        left: left.round().max(0.0) as u32,
        top: top.round().max(0.0) as u32,
        right: (right.round() as u32).min(width),
        bottom: (bottom.round() as u32).min(height),
    })
}

fn source_box(rect: Rect) -> SourceBox {
    SourceBox {
        left: f64::from(rect.left),
        top: f64::from(rect.top),
        width: f64::from(rect.width()),
        height: f64::from(rect.height()),
    }
}

/// The crop of the image and of the mask, each scaled to `size` (the mask re-binarised).
pub fn crop_and_scale(
    image: &RgbImage,
    mask: &GrayImage,
    rect: Rect,
    size: (u32, u32),
) -> Result<(RgbImage, GrayImage)> {
    let image = resize_rgb8(image, size, ResizeFilter::Lanczos3, Some(source_box(rect)))?;
    let cropped = image::imageops::crop_imm(mask, rect.left, rect.top, rect.width(), rect.height())
        .to_image();
    let mut mask = resize_gray8(&cropped, size, ResizeFilter::Lanczos3)?;
    mask.pixels_mut()
        .for_each(|p| p.0[0] = if p.0[0] >= 128 { 255 } else { 0 });
    Ok((image, mask))
}

/// Scales `result` back to the crop and pastes it into `original` where `mask` is ≥ 128;
/// every other pixel stays the original's.
pub fn paste_back(
    original: &RgbImage,
    mask: &GrayImage,
    rect: Rect,
    result: &RgbImage,
) -> Result<RgbImage> {
    let scaled = resize_rgb8(
        result,
        (rect.width(), rect.height()),
        ResizeFilter::Lanczos3,
        None,
    )?;
    let mut out = original.clone();
    for (x, y, pixel) in scaled.enumerate_pixels() {
        let (ox, oy) = (rect.left + x, rect.top + y);
        if mask.get_pixel(ox, oy).0[0] >= 128 {
            out.put_pixel(ox, oy, *pixel);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_with_box(width: u32, height: u32, rect: Rect) -> GrayImage {
        super::super::region::region_mask(rect, width, height)
    }

    #[test]
    fn the_crop_holds_the_padded_mask_at_the_working_aspect() {
        let mask = mask_with_box(
            400,
            300,
            Rect {
                left: 100,
                top: 100,
                right: 140,
                bottom: 120,
            },
        );
        let crop = crop_region(&mask, 10, 1.0).unwrap();
        // box 90..150 × 90..130 (60×40) grown to 60×60 around its center
        assert_eq!(
            crop,
            Rect {
                left: 90,
                top: 80,
                right: 150,
                bottom: 140
            }
        );
        let corner = mask_with_box(
            400,
            300,
            Rect {
                left: 380,
                top: 0,
                right: 400,
                bottom: 10,
            },
        );
        let crop = crop_region(&corner, 8, 1.0).unwrap();
        assert!(
            crop.right <= 400 && crop.width() == crop.height(),
            "{crop:?}"
        );
    }

    #[test]
    fn pasting_back_changes_only_masked_pixels() {
        let original = RgbImage::from_pixel(64, 48, image::Rgb([10, 20, 30]));
        let mask = mask_with_box(
            64,
            48,
            Rect {
                left: 20,
                top: 10,
                right: 30,
                bottom: 20,
            },
        );
        let rect = crop_region(&mask, 4, 1.0).unwrap();
        let (crop, crop_mask) = crop_and_scale(&original, &mask, rect, (64, 64)).unwrap();
        assert_eq!(crop.dimensions(), (64, 64));
        assert!(crop_mask.pixels().any(|p| p.0[0] == 255));
        let result = RgbImage::from_pixel(64, 64, image::Rgb([200, 200, 200]));
        let out = paste_back(&original, &mask, rect, &result).unwrap();
        for (x, y, pixel) in out.enumerate_pixels() {
            let inside = (20..30).contains(&x) && (10..20).contains(&y);
            assert_eq!(
                pixel.0,
                if inside { [200; 3] } else { [10, 20, 30] },
                "({x}, {y})"
            );
        }
    }
}
