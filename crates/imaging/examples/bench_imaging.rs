//! Times huatu-imaging's resizing, fitting and classical enhancer steps on one image,
//! and Real-ESRGAN throughput at the published model sizes with random weights.
//! Prints one JSON object per line (`{"op", "seconds", ...}`, the median of `--repeat`
//! runs) for scripts/bench/imaging.py, which times OpenCV and Pillow on the same image
//! in the same run and prints the ratios.
//!
//! cargo run --release -p huatu-imaging --example bench_imaging -- IMAGE [--repeat N] [--sr]

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use huatu_imaging::enhance::Step;
use huatu_imaging::io::{f32_to_rgb8, load_image, rgb8_to_f32};
use huatu_imaging::resize::resize_rgb8;
use huatu_imaging::sr::{
    RRDBNet, RRDBNetConfig, SRVGGNetCompact, SRVGGNetCompactConfig, TileOptions,
};
use huatu_imaging::{fit, FitMode, FitOptions, ResizeFilter, Size, TargetSize};

fn median_seconds(repeat: usize, mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    work()?; // warm-up: allocations, rayon threads
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let started = Instant::now();
        work()?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn report(op: &str, seconds: f64, extra: &str) {
    println!("{{\"op\": \"{op}\", \"seconds\": {seconds:.6}{extra}}}");
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .context("usage: bench_imaging IMAGE [--repeat N] [--sr]")?;
    let repeat = args
        .iter()
        .position(|a| a == "--repeat")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse::<usize>())
        .transpose()?
        .unwrap_or(5);
    let image = load_image(std::path::Path::new(path))?;
    let rgb8 = image.to_rgb8();
    let (width, height) = rgb8.dimensions();
    eprintln!("{path}: {width}×{height}, median of {repeat}");

    let half = (width / 2, height / 2);
    let double = (width * 2, height * 2);
    report(
        "resize_down_lanczos3",
        median_seconds(repeat, || {
            resize_rgb8(&rgb8, half, ResizeFilter::Lanczos3, None)?;
            Ok(())
        })?,
        "",
    );
    report(
        "resize_up_lanczos3",
        median_seconds(repeat, || {
            resize_rgb8(&rgb8, double, ResizeFilter::Lanczos3, None)?;
            Ok(())
        })?,
        "",
    );
    report(
        "resize_down_bicubic",
        median_seconds(repeat, || {
            resize_rgb8(&rgb8, half, ResizeFilter::CatmullRom, None)?;
            Ok(())
        })?,
        "",
    );
    for (name, mode) in [
        ("fit_center_crop_768", FitMode::CenterCrop),
        ("fit_pad_768", FitMode::Pad),
    ] {
        let options = FitOptions {
            target: TargetSize::Exact(Size::new(768, 768)),
            mode,
            filter: ResizeFilter::Lanczos3,
            seed: 0,
        };
        report(
            name,
            median_seconds(repeat, || {
                fit(&image, &options)?;
                Ok(())
            })?,
            "",
        );
    }
    report(
        "u8_to_f32_and_back",
        median_seconds(repeat, || {
            f32_to_rgb8(&rgb8_to_f32(&rgb8));
            Ok(())
        })?,
        "",
    );

    let rgb = rgb8_to_f32(&rgb8);
    let steps = [
        ("denoise", "denoise:sigma_color=0.1:sigma_space=2"),
        ("sharpen", "sharpen:amount=0.5:sigma=2"),
        ("contrast", "contrast:clip_limit=2:grid=8"),
        ("white_balance", "white-balance:gray-world"),
        ("saturation", "saturation:1.2"),
        ("vibrance", "vibrance:0.3"),
        ("gamma", "gamma:1.2"),
    ];
    for (name, text) in steps {
        let step = Step::parse_list(text)?.remove(0);
        let seconds = median_seconds(repeat, || {
            step.apply(rgb.clone(), None)?;
            Ok(())
        })?;
        report(name, seconds, &format!(", \"step\": \"{step}\""));
    }

    if args.iter().any(|a| a == "--sr") {
        sr_throughput()?;
    }
    Ok(())
}

/// Output megapixels per second of the published architectures (random weights).
fn sr_throughput() -> Result<()> {
    let device = Device::Cpu;
    let cases: [(&str, usize); 2] = [("realesr-general-x4v3", 128), ("RealESRGAN_x4plus", 64)];
    for (name, side) in cases {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let input = Tensor::rand(0f32, 1f32, (1, 3, side, side), &device)?;
        let tiles = TileOptions {
            tile_size: 0,
            tile_pad: 0,
        };
        let seconds = if name == "RealESRGAN_x4plus" {
            let net = RRDBNet::new(vb, &RRDBNetConfig::X4PLUS)?;
            median_seconds(2, || {
                Ok(huatu_imaging::sr::tiled_forward(&net, &input, 4, tiles).map(|_| ())?)
            })?
        } else {
            let net = SRVGGNetCompact::new(vb, &SRVGGNetCompactConfig::GENERAL_X4V3)?;
            median_seconds(2, || {
                Ok(huatu_imaging::sr::tiled_forward(&net, &input, 4, tiles).map(|_| ())?)
            })?
        };
        let output_megapixels = (side * 4 * side * 4) as f64 / 1e6;
        report(
            &format!("sr_{name}"),
            seconds,
            &format!(
                ", \"input\": \"{side}x{side}\", \"output_mp_per_s\": {:.4}",
                output_megapixels / seconds
            ),
        );
    }
    Ok(())
}
