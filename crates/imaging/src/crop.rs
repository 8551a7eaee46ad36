//! The centered crop whose sides are multiples of a factor (SDXL's VAE: 8), so an image
//! of any size can go through the VAE, and a mask drawn on it is cropped the same way.

use image::{ImageBuffer, Pixel};

/// The centered crop of `image` whose sides are multiples of `factor`, and the crop's
/// top-left corner in `image` (left, top).
pub fn center_crop_to_multiple<P: Pixel + 'static>(
    image: &ImageBuffer<P, Vec<P::Subpixel>>,
    factor: u32,
) -> (ImageBuffer<P, Vec<P::Subpixel>>, u32, u32) {
    let (width, height) = image.dimensions();
    let factor = factor.max(1);
    let (to_width, to_height) = (width / factor * factor, height / factor * factor);
    let (left, top) = ((width - to_width) / 2, (height - to_height) / 2);
    let cropped = image::imageops::crop_imm(image, left, top, to_width, to_height).to_image();
    (cropped, left, top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    #[test]
    fn keeps_the_center_and_reports_the_corner() {
        // 11×9 → 8×8: one column and a half off each side rounds to 1 left, 0 top (9-8=1 → 0)
        let image = RgbImage::from_fn(11, 9, |x, y| Rgb([x as u8, y as u8, 0]));
        let (cropped, left, top) = center_crop_to_multiple(&image, 8);
        assert_eq!((cropped.width(), cropped.height(), left, top), (8, 8, 1, 0));
        assert_eq!(cropped.get_pixel(0, 0), &Rgb([1, 0, 0]));
        let mask = GrayImage::from_fn(16, 16, |x, _| Luma([x as u8]));
        let (same, left, top) = center_crop_to_multiple(&mask, 8);
        assert_eq!((same == mask, left, top), (true, 0, 0));
    }
}
