//! The edit region as a person draws it on the original (the web page's box, the HTTP
//! API's `region`): a center point plus width and height, in pixels of the original, as
//! JSON `{"x", "y", "width", "height"}`. It must lie inside the image (half a pixel of
//! slack for a box drawn to the very edge); its mask is 255 inside and 0 outside
//! (DESIGN.md part 5). [`super::Region`] is the command line's spelling of a region.

use image::GrayImage;
use serde::Deserialize;

use crate::{ImagingError, Result};

/// A drawn region: center (`x`, `y`) and size, in pixels of the original image.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrawnRegion {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl DrawnRegion {
    fn left(&self) -> f64 {
        self.x - self.width / 2.0
    }

    fn top(&self) -> f64 {
        self.y - self.height / 2.0
    }

    fn right(&self) -> f64 {
        self.x + self.width / 2.0
    }

    fn bottom(&self) -> f64 {
        self.y + self.height / 2.0
    }

    /// Checks that every value is finite, the size positive and the region inside an
    /// `image_width`×`image_height` image.
    pub fn check_inside(&self, image_width: u32, image_height: u32) -> Result<()> {
        let finite = [self.x, self.y, self.width, self.height]
            .iter()
            .all(|value| value.is_finite());
        let inside = self.width > 0.0
            && self.height > 0.0
            && self.left() >= -0.5
            && self.top() >= -0.5
            && self.right() <= f64::from(image_width) + 0.5
            && self.bottom() <= f64::from(image_height) + 0.5;
        if finite && inside {
            Ok(())
        } else {
            Err(ImagingError::RegionOutside {
                x: self.x,
                y: self.y,
                width: self.width,
                height: self.height,
                image_width,
                image_height,
            })
        }
    }

    /// The region in a crop of the original whose top-left corner was at (`left`, `top`),
    /// clamped to the `crop_width`×`crop_height` crop (it may come out empty).
    pub fn in_crop(&self, left: u32, top: u32, crop_width: u32, crop_height: u32) -> Self {
        let clamp = |value: f64, extent: u32| value.clamp(0.0, f64::from(extent));
        let x0 = clamp(self.left() - f64::from(left), crop_width);
        let x1 = clamp(self.right() - f64::from(left), crop_width);
        let y0 = clamp(self.top() - f64::from(top), crop_height);
        let y1 = clamp(self.bottom() - f64::from(top), crop_height);
        Self {
            x: (x0 + x1) / 2.0,
            y: (y0 + y1) / 2.0,
            width: x1 - x0,
            height: y1 - y0,
        }
    }

    /// The `image_width`×`image_height` mask: 255 inside the region (edges rounded to
    /// whole pixels, clamped to the image), 0 outside.
    pub fn mask(&self, image_width: u32, image_height: u32) -> GrayImage {
        let left = self.left().round().max(0.0) as u32;
        let top = self.top().round().max(0.0) as u32;
        let right = (self.right().round().max(0.0) as u32).min(image_width);
        let bottom = (self.bottom().round().max(0.0) as u32).min(image_height);
        GrayImage::from_fn(image_width, image_height, |x, y| {
            let inside = (left..right).contains(&x) && (top..bottom).contains(&y);
            image::Luma([if inside { 255 } else { 0 }])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(x: f64, y: f64, width: f64, height: f64) -> DrawnRegion {
        DrawnRegion {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn a_region_must_lie_inside_with_half_a_pixel_of_slack() {
        assert!(region(32.0, 16.0, 64.0, 32.0).check_inside(64, 32).is_ok());
        assert!(region(32.25, 16.0, 64.5, 32.0).check_inside(64, 32).is_ok());
        let message = region(40.0, 16.0, 64.0, 32.0)
            .check_inside(64, 32)
            .map_err(|error| error.to_string());
        assert_eq!(
            message,
            Err(
                "region (center 40, 16, size 64×32) must lie inside the 64×32 original image"
                    .into()
            )
        );
        assert!(region(8.0, 8.0, 0.0, 4.0).check_inside(64, 32).is_err());
        assert!(region(f64::NAN, 8.0, 4.0, 4.0)
            .check_inside(64, 32)
            .is_err());
    }

    #[test]
    fn the_mask_is_255_inside_and_0_outside() {
        let mask = region(2.0, 3.0, 2.0, 2.0).mask(4, 5);
        let inside: Vec<(u32, u32)> = mask
            .enumerate_pixels()
            .filter(|(_, _, pixel)| pixel.0[0] == 255)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert_eq!(inside, vec![(1, 2), (2, 2), (1, 3), (2, 3)]);
        assert!(mask
            .pixels()
            .all(|pixel| pixel.0[0] == 0 || pixel.0[0] == 255));
    }

    #[test]
    fn a_region_moves_into_a_crop_and_is_clamped_to_it() {
        // A 70×70 original cropped to its centered 64×64 at (3, 3).
        let moved = region(60.0, 60.0, 40.0, 40.0).in_crop(3, 3, 64, 64);
        assert_eq!(moved, region(50.5, 50.5, 27.0, 27.0));
        let gone = region(1.0, 1.0, 2.0, 2.0).in_crop(3, 3, 64, 64);
        assert_eq!((gone.width, gone.height), (0.0, 0.0));
    }
}
