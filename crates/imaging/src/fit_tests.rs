//! Unit tests for `fit`: known crop offsets, padding colour and placement, seeded crops.

use super::*;
use image::{Rgba, RgbaImage};

fn options(target: Size, mode: FitMode) -> FitOptions {
    FitOptions {
        target: TargetSize::Exact(target),
        mode,
        filter: ResizeFilter::Lanczos3,
        seed: 7,
    }
}

fn halves(width: u32, height: u32) -> DynamicImage {
    // left half pure red, right half pure blue: mean colour (127.5, 0, 127.5) → (128, 0, 128)
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    }))
}

#[test]
fn names_round_trip() {
    for &mode in FitMode::ALL {
        assert_eq!(mode.as_str().parse::<FitMode>().ok(), Some(mode));
    }
    let error = "crop"
        .parse::<FitMode>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("pad, center-crop, random-crop"), "{error}");
}

#[test]
fn center_crop_of_a_wide_image_reports_the_offsets() {
    // 400x200 → 100x100: scaled to 200x100, 100 columns cut, 50 on each side
    let fitted = fit(
        &halves(400, 200),
        &options(Size::new(100, 100), FitMode::CenterCrop),
    )
    .ok();
    let fitted = fitted.unwrap_or_else(|| panic!("fit failed"));
    assert_eq!(fitted.image.dimensions(), (100, 100));
    let report = fitted.report;
    assert_eq!(report.original_size, Size::new(400, 200));
    assert_eq!(report.resized_size, Size::new(200, 100));
    assert_eq!(report.crop_top_left, (0, 50));
    assert_eq!(
        report.sdxl_micro_conditioning(),
        [200, 400, 0, 50, 100, 100]
    );
    // the crop straddles the red/blue border in its middle
    assert_eq!(fitted.image.get_pixel(10, 50).0, [255, 0, 0]);
    assert_eq!(fitted.image.get_pixel(90, 50).0, [0, 0, 255]);
}

#[test]
fn center_crop_of_a_tall_image_crops_rows() {
    let image = DynamicImage::ImageRgb8(RgbImage::new(300, 900));
    let fitted = fit(&image, &options(Size::new(200, 400), FitMode::CenterCrop)).ok();
    let report = fitted
        .map(|f| f.report)
        .unwrap_or_else(|| panic!("fit failed"));
    assert_eq!(report.resized_size, Size::new(200, 600));
    assert_eq!(report.crop_top_left, (100, 0));
}

#[test]
fn random_crop_is_seeded_and_within_bounds() {
    let image = halves(400, 200);
    let first = fit(&image, &options(Size::new(100, 100), FitMode::RandomCrop)).ok();
    let second = fit(&image, &options(Size::new(100, 100), FitMode::RandomCrop)).ok();
    let (first, second) = (first.map(|f| f.report), second.map(|f| f.report));
    assert_eq!(first, second);
    let mut seen = std::collections::HashSet::new();
    for seed in 0..20 {
        let mut opts = options(Size::new(100, 100), FitMode::RandomCrop);
        opts.seed = seed;
        let report = fit(&image, &opts)
            .ok()
            .map(|f| f.report)
            .unwrap_or_else(|| panic!());
        assert_eq!(report.crop_top_left.0, 0);
        assert!(report.crop_top_left.1 <= 100);
        seen.insert(report.crop_top_left.1);
    }
    assert!(
        seen.len() > 5,
        "offsets should vary with the seed: {seen:?}"
    );
}

#[test]
fn pad_fills_with_the_mean_colour_and_centers_the_image() {
    // 200x100 → 100x100: scaled to 100x50, placed at top 25, rows above and below filled
    let fitted = fit(
        &halves(200, 100),
        &options(Size::new(100, 100), FitMode::Pad),
    )
    .ok();
    let fitted = fitted.unwrap_or_else(|| panic!("fit failed"));
    assert_eq!(fitted.report.fill, Some([128, 0, 128]));
    assert_eq!(fitted.report.resized_size, Size::new(100, 50));
    assert_eq!(fitted.report.pad_top_left, (25, 0));
    assert_eq!(fitted.report.crop_top_left, (0, 0));
    assert_eq!(fitted.image.get_pixel(0, 0).0, [128, 0, 128]);
    assert_eq!(fitted.image.get_pixel(99, 99).0, [128, 0, 128]);
    assert_eq!(fitted.image.get_pixel(50, 24).0, [128, 0, 128]);
    assert_eq!(fitted.image.get_pixel(10, 25).0, [255, 0, 0]);
    assert_eq!(fitted.image.get_pixel(90, 74).0, [0, 0, 255]);
    assert!(
        fitted.image.pixels().all(|p| p.0 != [0, 0, 0]),
        "no black bars"
    );
}

#[test]
fn pad_mean_ignores_transparent_pixels() {
    // a green square on a fully transparent (black) background
    let rgba = RgbaImage::from_fn(20, 20, |x, y| {
        if (5..15).contains(&x) && (5..15).contains(&y) {
            Rgba([0, 200, 0, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    });
    let image = DynamicImage::ImageRgba8(rgba);
    assert_eq!(mean_colour(&image), [0, 200, 0]);
    let fitted = fit(&image, &options(Size::new(40, 20), FitMode::Pad)).ok();
    let fitted = fitted.unwrap_or_else(|| panic!("fit failed"));
    assert_eq!(fitted.image.get_pixel(0, 0).0, [0, 200, 0]);
    assert_eq!(fitted.image.get_pixel(20, 0).0, [0, 200, 0]);
}

#[test]
fn same_ratio_is_a_plain_resize() {
    let fitted = fit(
        &halves(64, 32),
        &options(Size::new(32, 16), FitMode::CenterCrop),
    )
    .ok();
    let report = fitted.map(|f| f.report).unwrap_or_else(|| panic!());
    assert_eq!(report.crop_top_left, (0, 0));
    assert_eq!(report.resized_size, Size::new(32, 16));
}

#[test]
fn bucket_target_follows_the_image_ratio() {
    let image = DynamicImage::ImageRgb8(RgbImage::new(192, 108));
    let opts = FitOptions {
        target: TargetSize::SdxlBucket,
        ..options(Size::new(1, 1), FitMode::CenterCrop)
    };
    let fitted = fit(&image, &opts).ok().unwrap_or_else(|| panic!());
    assert_eq!(fitted.image.dimensions(), (1344, 768));
    // 192x108 scaled by 7 → 1344x756 is short of 768; the height aligns instead: 1365.33x768
    assert_eq!(fitted.report.resized_size, Size::new(1365, 768));
    assert_eq!(fitted.report.crop_top_left, (0, 10));
}

#[test]
fn zero_sized_input_is_an_error() {
    let image = DynamicImage::ImageRgb8(RgbImage::new(0, 5));
    let error = fit(&image, &options(Size::new(8, 8), FitMode::Pad)).err();
    assert!(matches!(error, Some(ImagingError::EmptyImage { .. })));
}
