//! The control image of a region edit: the condition image (a logo, a product, a sketch) is
//! scaled to fit the region keeping its aspect ratio, centered in it, optionally turned into
//! Canny edges, and pasted into a black canvas the size of the original. The scaling comes
//! before the edge extraction: edge maps resampled afterwards lose the thin binary lines
//! canny ControlNets are trained on.

use image::RgbImage;

use super::canny::{canny, CannyThresholds};
use super::region::Rect;
use crate::resize::{resize_rgb8, ResizeFilter};
use crate::Result;

/// A `canvas_width`×`canvas_height` black image with `condition` fitted into `rect`.
pub fn control_canvas(
    condition: &RgbImage,
    rect: Rect,
    canvas_width: u32,
    canvas_height: u32,
    edges: Option<CannyThresholds>,
) -> Result<RgbImage> {
    crate::io::ensure_not_empty("the condition image", condition.width(), condition.height())?;
    let scale = (f64::from(rect.width()) / f64::from(condition.width()))
        .min(f64::from(rect.height()) / f64::from(condition.height()));
    let fitted_width =
        ((f64::from(condition.width()) * scale).round() as u32).clamp(1, rect.width());
    let fitted_height =
        ((f64::from(condition.height()) * scale).round() as u32).clamp(1, rect.height());
    let mut fitted = resize_rgb8(
        condition,
        (fitted_width, fitted_height),
        ResizeFilter::Lanczos3,
        None,
    )?;
    if let Some(thresholds) = edges {
        fitted = canny(&fitted, thresholds)?;
    }
    let left = rect.left + (rect.width() - fitted_width) / 2;
    let top = rect.top + (rect.height() - fitted_height) / 2;
    let mut canvas = RgbImage::new(canvas_width, canvas_height);
    image::imageops::replace(&mut canvas, &fitted, i64::from(left), i64::from(top));
    Ok(canvas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn the_condition_is_fitted_centered_in_the_region_on_black() {
        // a 20×10 white condition into a 16×16 region at (8, 4): scaled to 16×8, centered
        // vertically at rows 8..16
        let condition = RgbImage::from_pixel(20, 10, Rgb([255, 255, 255]));
        let rect = Rect {
            left: 8,
            top: 4,
            right: 24,
            bottom: 20,
        };
        let canvas = control_canvas(&condition, rect, 32, 24, None).unwrap();
        for (x, y, pixel) in canvas.enumerate_pixels() {
            let inside = (8..24).contains(&x) && (8..16).contains(&y);
            let expected = if inside { 255 } else { 0 };
            assert_eq!(pixel.0, [expected; 3], "pixel ({x}, {y})");
        }
    }

    #[test]
    fn with_edges_the_canvas_holds_only_the_outline() {
        let condition = RgbImage::from_fn(16, 16, |x, y| {
            let inside = (4..12).contains(&x) && (4..12).contains(&y);
            Rgb([if inside { 255 } else { 0 }; 3])
        });
        let rect = Rect {
            left: 0,
            top: 0,
            right: 16,
            bottom: 16,
        };
        let canvas =
            control_canvas(&condition, rect, 16, 16, Some(CannyThresholds::default())).unwrap();
        assert_eq!(
            canvas.get_pixel(8, 8).0,
            [0; 3],
            "the inside of the square is not an edge"
        );
        assert!(
            canvas.pixels().any(|p| p.0 == [255; 3]),
            "the square's outline is found"
        );
    }
}
