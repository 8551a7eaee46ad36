//! The edit region: a center point plus width and height, or a box by its corners; each
//! in pixels or as fractions of the image (a value written with a decimal point, like
//! `0.5`, is a fraction; a whole number, like `512`, is pixels). A region must lie inside
//! the image; a mask built from it is 255 inside and 0 outside.

use image::GrayImage;

use crate::{ImagingError, Result};

/// One coordinate as the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Coordinate {
    Pixels(u32),
    Fraction(f64),
}

impl Coordinate {
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let bad = || ImagingError::Invalid {
            what: "region",
            reason: format!(
                "`{text}` is neither a whole number of pixels nor a fraction like 0.25"
            ),
        };
        if text.contains('.') {
            let value: f64 = text.parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&value) {
                return Err(ImagingError::Invalid {
                    what: "region",
                    reason: format!("fraction {value} is outside [0, 1]"),
                });
            }
            Ok(Self::Fraction(value))
        } else {
            Ok(Self::Pixels(text.parse().map_err(|_| bad())?))
        }
    }

    fn resolve(self, extent: u32) -> f64 {
        match self {
            Self::Pixels(pixels) => f64::from(pixels),
            Self::Fraction(fraction) => fraction * f64::from(extent),
        }
    }
}

/// Where to edit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Region {
    /// Center x, center y, width, height.
    Center {
        cx: Coordinate,
        cy: Coordinate,
        width: Coordinate,
        height: Coordinate,
    },
    /// Left, top, right, bottom (right and bottom exclusive).
    Box {
        x0: Coordinate,
        y0: Coordinate,
        x1: Coordinate,
        y1: Coordinate,
    },
}

/// A pixel rectangle: columns left..right, rows top..bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
}

impl Rect {
    pub fn width(&self) -> u32 {
        self.right - self.left
    }
    pub fn height(&self) -> u32 {
        self.bottom - self.top
    }
}

fn four(text: &str, form: &str) -> Result<[Coordinate; 4]> {
    let parts: Vec<&str> = text.split(',').collect();
    let [a, b, c, d] = parts.as_slice() else {
        return Err(ImagingError::Invalid {
            what: "region",
            reason: format!("expected {form}, got `{text}`"),
        });
    };
    Ok([
        Coordinate::parse(a)?,
        Coordinate::parse(b)?,
        Coordinate::parse(c)?,
        Coordinate::parse(d)?,
    ])
}

impl Region {
    /// `CX,CY,W,H`
    pub fn parse_center(text: &str) -> Result<Self> {
        let [cx, cy, width, height] = four(text, "CX,CY,W,H")?;
        Ok(Self::Center {
            cx,
            cy,
            width,
            height,
        })
    }

    /// `X0,Y0,X1,Y1`
    pub fn parse_box(text: &str) -> Result<Self> {
        let [x0, y0, x1, y1] = four(text, "X0,Y0,X1,Y1")?;
        Ok(Self::Box { x0, y0, x1, y1 })
    }

    /// The pixel rectangle in a `width`×`height` image; a region reaching outside the image
    /// or with no area is an error naming both.
    pub fn to_rect(&self, width: u32, height: u32) -> Result<Rect> {
        let (left, top, right, bottom) = match *self {
            Self::Center {
                cx,
                cy,
                width: w,
                height: h,
            } => {
                let (cx, cy) = (cx.resolve(width), cy.resolve(height));
                let (w, h) = (w.resolve(width), h.resolve(height));
                (cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
            }
            Self::Box { x0, y0, x1, y1 } => (
                x0.resolve(width),
                y0.resolve(height),
                x1.resolve(width),
                y1.resolve(height),
            ),
        };
        let rect = Rect {
            left: left.round().max(0.0) as u32,
            top: top.round().max(0.0) as u32,
            right: right.round().max(0.0) as u32,
            bottom: bottom.round().max(0.0) as u32,
        };
        let outside =
            left.round() < 0.0 || top.round() < 0.0 || rect.right > width || rect.bottom > height;
        if outside {
            return Err(ImagingError::Invalid {
                what: "region",
                reason: format!(
                    "the region ({:.0}, {:.0})–({:.0}, {:.0}) reaches outside the {width}×{height} image",
                    left, top, right, bottom
                ),
            });
        }
        if rect.right <= rect.left || rect.bottom <= rect.top {
            return Err(ImagingError::Invalid {
                what: "region",
                reason: format!("the region {rect:?} has no area"),
            });
        }
        Ok(rect)
    }
}

/// 255 inside `rect`, 0 elsewhere.
pub fn region_mask(rect: Rect, width: u32, height: u32) -> GrayImage {
    GrayImage::from_fn(width, height, |x, y| {
        let inside = x >= rect.left && x < rect.right && y >= rect.top && y < rect.bottom;
        image::Luma([if inside { 255 } else { 0 }])
    })
}

/// The smallest rectangle holding every mask pixel ≥ 128 (`pixels` row by row, `width`
/// per row); `None` for a mask that marks nothing.
pub fn mask_bounds(pixels: &[u8], width: usize) -> Option<Rect> {
    let mut bounds: Option<Rect> = None;
    for (index, &value) in pixels.iter().enumerate() {
        if value < 128 {
            continue;
        }
        let (x, y) = ((index % width) as u32, (index / width) as u32);
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
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_bounds_hold_every_marked_pixel() {
        let mut pixels = vec![0u8; 16 * 8];
        pixels[2 * 16 + 3] = 255;
        pixels[5 * 16 + 9] = 200;
        pixels[7 * 16 + 15] = 100; // below half: not marked
        assert_eq!(
            mask_bounds(&pixels, 16),
            Some(Rect {
                left: 3,
                top: 2,
                right: 10,
                bottom: 6
            })
        );
        assert_eq!(mask_bounds(&[0; 16], 4), None);
    }

    #[test]
    fn center_and_box_in_pixels_and_fractions_give_the_same_rectangle() {
        let expected = Rect {
            left: 48,
            top: 16,
            right: 112,
            bottom: 48,
        };
        assert_eq!(
            Region::parse_center("80,32,64,32")
                .unwrap()
                .to_rect(128, 64)
                .unwrap(),
            expected
        );
        assert_eq!(
            Region::parse_box("48,16,112,48")
                .unwrap()
                .to_rect(128, 64)
                .unwrap(),
            expected
        );
        assert_eq!(
            Region::parse_center("0.625,0.5,0.5,0.5")
                .unwrap()
                .to_rect(128, 64)
                .unwrap(),
            expected
        );
    }

    #[test]
    fn the_mask_is_one_inside_and_zero_outside() {
        let mask = region_mask(
            Rect {
                left: 1,
                top: 2,
                right: 3,
                bottom: 4,
            },
            4,
            5,
        );
        let inside: Vec<(u32, u32)> = mask
            .enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] == 255)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert_eq!(inside, vec![(1, 2), (2, 2), (1, 3), (2, 3)]);
        assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    }

    #[test]
    fn regions_outside_the_image_or_malformed_are_refused() {
        let message = Region::parse_center("120,32,64,32")
            .unwrap()
            .to_rect(128, 64)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("reaches outside the 128×64 image"),
            "{message}"
        );
        assert!(Region::parse_box("10,10,10,20")
            .unwrap()
            .to_rect(64, 64)
            .is_err());
        assert!(Region::parse_box("1,2,3").is_err());
        assert!(Region::parse_center("0.5,0.5,1.5,0.2").is_err());
    }
}
