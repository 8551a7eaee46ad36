//! Tests of step names, the step-list syntax and the chain.

use super::*;
use image::{Rgba, RgbaImage};

#[test]
fn step_names_round_trip() {
    for kind in StepKind::ALL {
        assert_eq!(kind.as_str().parse::<StepKind>().ok(), Some(kind));
        assert_eq!(Step::with_defaults(kind).kind(), kind);
    }
    let message = "blur"
        .parse::<StepKind>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("denoise, sharpen, contrast, white-balance"),
        "{message}"
    );
}

#[test]
fn every_step_round_trips_through_its_spelling() {
    let mut steps: Vec<Step> = StepKind::ALL.into_iter().map(Step::with_defaults).collect();
    steps.extend(
        Step::parse_list(
            "white-balance:white-patch:percentile=97.5,upscale:x2:tile=128,sharpen:0.6",
        )
        .unwrap_or_default(),
    );
    for step in &steps {
        let text = step.to_string();
        assert_eq!(Step::parse_list(&text).ok(), Some(vec![*step]), "{text}");
    }
    assert_eq!(
        Step::parse_list("sharpen:amount=0.6")
            .ok()
            .map(|s| format_steps(&s)),
        Some("sharpen:amount=0.6:sigma=1:threshold=0".to_string())
    );
    assert_eq!(
        Step::parse_list("sharpen:amount=0.6")
            .ok()
            .map(|s| format_steps(&s)),
        Some("sharpen:amount=0.6:sigma=1:threshold=0".to_string())
    );
    let list = format_steps(&steps);
    assert_eq!(Step::parse_list(&list).ok(), Some(steps));
}

#[test]
fn the_issue_example_parses() {
    let steps = Step::parse_list("denoise,sharpen:amount=0.6,upscale:x2").unwrap_or_default();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0], Step::with_defaults(StepKind::Denoise));
    let Step::Sharpen(sharpen) = steps[1] else {
        panic!("{:?}", steps[1])
    };
    assert_eq!((sharpen.amount, sharpen.sigma), (0.6, 1.0));
    let Step::Upscale(upscale) = steps[2] else {
        panic!("{:?}", steps[2])
    };
    assert_eq!(upscale.scale, Some(2.0));
    assert_eq!(
        upscale.tiles,
        TileOptions {
            tile_size: 256,
            tile_pad: 10
        }
    );
}

#[test]
fn bad_step_lists_are_clear_errors() {
    let cases = [
        ("blur", "unknown enhancer step \"blur\""),
        ("sharpen:amount=9", "step sharpen: parameter amount must be between 0 and 5, got 9"),
        ("sharpen:strength=1", "step sharpen: unknown parameter \"strength\"; known: amount, sigma, threshold"),
        ("gamma:abc", "step gamma: parameter gamma must be a number, got \"abc\""),
        ("white-balance:purple", "unknown parameter value \"white-balance:method=purple\"; known: gray-world, white-patch"),
        ("denoise,,gamma", "empty step"),
        ("contrast:grid=2.5", "step contrast: parameter grid must be between 1 and 64, got 2.5"),
    ];
    for (text, expected) in cases {
        let message = Step::parse_list(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains(expected), "{text}: {message}");
    }
}

#[test]
fn upscale_without_weights_fails_before_any_work() {
    let image = DynamicImage::ImageRgb8(image::RgbImage::new(4, 4));
    let steps = Step::parse_list("denoise,upscale").unwrap_or_default();
    assert!(matches!(
        enhance(&image, &steps, None),
        Err(ImagingError::UpscalerMissing)
    ));
}

#[test]
fn chain_runs_every_classical_step_and_keeps_alpha() {
    let rgba = RgbaImage::from_fn(24, 16, |x, y| {
        Rgba([(x * 10) as u8, (y * 15) as u8, 90, (x * 10 + 5) as u8])
    });
    let image = DynamicImage::ImageRgba8(rgba.clone());
    let steps: Vec<Step> = StepKind::ALL
        .into_iter()
        .filter(|kind| *kind != StepKind::Upscale)
        .map(Step::with_defaults)
        .collect();
    let output = enhance(&image, &steps, None)
        .ok()
        .unwrap_or_else(|| panic!("enhance failed"));
    let output = output.to_rgba8();
    assert_eq!(output.dimensions(), (24, 16));
    assert!(output
        .pixels()
        .zip(rgba.pixels())
        .all(|(a, b)| a.0[3] == b.0[3]));
    assert_ne!(output, rgba, "the chain changed the colours");
    // an empty chain is the identity
    let same = enhance(&image, &[], None).ok().map(|i| i.to_rgba8());
    assert_eq!(same, Some(rgba));
}
