//! Times huatu-imaging's resizing, fitting and classical enhancer steps on one image,
//! and Real-ESRGAN throughput at the published model sizes with random weights.
//! Prints one JSON object per line (`{"op", "seconds", ...}`, the median of `--repeat`
//! runs) for scripts/bench/imaging.py, which times OpenCV and Pillow on the same image
//! in the same run and prints the ratios.
//!
//! cargo run --release -p huatu-imaging --example bench_imaging -- IMAGE [--repeat N] [--sr]
//! [--sr-side N] (`--sr-side`: the input tile of both SR generators; default 128 for
//! realesr-general-x4v3, 64 for RealESRGAN_x4plus)

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
        .context("usage: bench_imaging IMAGE [--repeat N] [--sr] [--sr-side N]")?;
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
        let side = args
            .iter()
            .position(|a| a == "--sr-side")
            .and_then(|i| args.get(i + 1))
            .map(|n| n.parse::<usize>())
            .transpose()?;
        sr_throughput(side)?;
    }
    Ok(())
}

/// Random weights as plain tensors, as a loaded `.pth`/safetensors file gives them: a
/// `VarMap`'s variables would put every layer inside an autograd graph, where the fused
/// convolution (rightly) steps aside for candle's generic one.
fn plain_weights(
    device: &Device,
    build: impl Fn(VarBuilder) -> candle_core::Result<()>,
) -> Result<VarBuilder<'static>> {
    let varmap = VarMap::new();
    build(VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    let tensors = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("the weight map's lock is poisoned"))?
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect();
    Ok(VarBuilder::from_tensors(tensors, DType::F32, device))
}

/// Output megapixels per second of the published architectures (random weights).
fn sr_throughput(side: Option<usize>) -> Result<()> {
    let device = Device::Cpu;
    let cases: [(&str, usize); 2] = [
        ("realesr-general-x4v3", side.unwrap_or(128)),
        ("RealESRGAN_x4plus", side.unwrap_or(64)),
    ];
    for (name, side) in cases {
        let input = Tensor::rand(0f32, 1f32, (1, 3, side, side), &device)?;
        let tiles = TileOptions {
            tile_size: 0,
            tile_pad: 0,
        };
        let seconds = if name == "RealESRGAN_x4plus" {
            let net = RRDBNet::new(
                plain_weights(&device, |vb| {
                    RRDBNet::new(vb, &RRDBNetConfig::X4PLUS).map(|_| ())
                })?,
                &RRDBNetConfig::X4PLUS,
            )?;
            median_seconds(2, || {
                Ok(huatu_imaging::sr::tiled_forward(&net, &input, 4, tiles).map(|_| ())?)
            })?
        } else {
            let config = &SRVGGNetCompactConfig::GENERAL_X4V3;
            let net = SRVGGNetCompact::new(
                plain_weights(&device, |vb| SRVGGNetCompact::new(vb, config).map(|_| ()))?,
                config,
            )?;
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
