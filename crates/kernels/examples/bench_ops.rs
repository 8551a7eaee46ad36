//! huatu's convolution and group-norm kernels against candle's operations at the shapes
//! SDXL's UNet (512², batch 2 for guidance) and VAE decoder (512², batch 1) run.
//! `cargo run --release -p huatu-kernels --example bench_ops [repeats] [filter]`
//! Prints one line per case: median seconds of each and the speed-up; the same cases in
//! PyTorch: `python scripts/bench/ops_torch.py`.

use std::time::Instant;

use candle_core::{Device, Tensor};
use huatu_kernels::conv2d::{conv2d_fused, reference_conv2d_fused, Conv2dExtras, Conv2dParams};
use huatu_kernels::fused_linear::fused_linear;
use huatu_kernels::geglu::{geglu, reference_geglu};
use huatu_kernels::group_norm::{group_norm, reference_group_norm};

fn median_seconds<F: FnMut() -> candle_core::Result<Tensor>>(
    repeats: usize,
    mut run: F,
) -> candle_core::Result<f64> {
    run()?; // warm-up
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let started = Instant::now();
        run()?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(times[times.len() / 2])
}

struct ConvCase {
    label: &'static str,
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    size: usize,
    kernel: usize,
    stride: usize,
    upsample: bool,
}

const fn conv(
    label: &'static str,
    batch: usize,
    channels: (usize, usize),
    size: usize,
    kernel: usize,
) -> ConvCase {
    ConvCase {
        label,
        batch,
        in_channels: channels.0,
        out_channels: channels.1,
        size,
        kernel,
        stride: 1,
        upsample: false,
    }
}

fn main() -> candle_core::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let repeats = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(3);
    let filter = args.get(2).cloned().unwrap_or_default();
    // HUATU_BENCH_SKIP_CANDLE=1 times only huatu's kernels (candle's big convolutions take seconds).
    let skip_candle = std::env::var_os("HUATU_BENCH_SKIP_CANDLE").is_some();
    let device = Device::Cpu;
    let conv_cases = [
        conv("unet conv3x3 320 @64² b2", 2, (320, 320), 64, 3),
        conv("unet conv3x3 640 @32² b2", 2, (640, 640), 32, 3),
        conv("unet conv3x3 1280 @16² b2", 2, (1280, 1280), 16, 3),
        conv("unet conv3x3 2560→1280 @16² b2", 2, (2560, 1280), 16, 3),
        conv("unet conv1x1 960→320 @64² b2", 2, (960, 320), 64, 1),
        ConvCase {
            stride: 2,
            ..conv("unet down conv3x3 s2 320 @64² b2", 2, (320, 320), 64, 3)
        },
        ConvCase {
            upsample: true,
            ..conv("unet up ×2+conv3x3 1280 @16² b2", 2, (1280, 1280), 16, 3)
        },
        conv("vae conv3x3 512 @64²", 1, (512, 512), 64, 3),
        conv("vae conv3x3 512 @128²", 1, (512, 512), 128, 3),
        conv("vae conv3x3 256 @256²", 1, (256, 256), 256, 3),
        conv("vae conv3x3 128 @512²", 1, (128, 128), 512, 3),
        conv("vae conv3x3 128→3 @512²", 1, (128, 3), 512, 3),
        ConvCase {
            upsample: true,
            ..conv("vae up ×2+conv3x3 256 @256²", 1, (256, 256), 256, 3)
        },
    ];
    for case in conv_cases
        .iter()
        .filter(|case| case.label.contains(&filter))
    {
        let xs = Tensor::randn(
            0f32,
            1.0,
            (case.batch, case.in_channels, case.size, case.size),
            &device,
        )?;
        let weight = Tensor::randn(
            0f32,
            0.02,
            (
                case.out_channels,
                case.in_channels,
                case.kernel,
                case.kernel,
            ),
            &device,
        )?;
        let bias = Tensor::randn(0f32, 0.02, case.out_channels, &device)?;
        let params = Conv2dParams {
            stride: case.stride,
            padding: case.kernel / 2,
        };
        let extras = Conv2dExtras {
            upsample_nearest_2x: case.upsample,
            ..Default::default()
        };
        let ours = median_seconds(repeats, || {
            conv2d_fused(&xs, &weight, Some(&bias), params, extras)
        })?;
        let candle = if skip_candle {
            f64::NAN
        } else {
            median_seconds(repeats, || {
                reference_conv2d_fused(&xs, &weight, Some(&bias), params, extras)
            })?
        };
        let out_size = case.size * if case.upsample { 2 } else { 1 } / case.stride;
        let flops = 2.0
            * (case.batch
                * case.out_channels
                * out_size
                * out_size
                * case.in_channels
                * case.kernel
                * case.kernel) as f64;
        println!(
            "{}: huatu {ours:.4}s ({:.0} GFLOP/s), candle {candle:.4}s, speed-up {:.2}×",
            case.label,
            flops / ours / 1e9,
            candle / ours
        );
    }
    if "matmul".contains(&filter) || filter.is_empty() {
        // The ceiling: one plain gemm with the flops of the 1280-channel 16² convolution.
        let lhs = Tensor::randn(0f32, 1.0, (1280, 11520), &device)?;
        let rhs = Tensor::randn(0f32, 1.0, (11520, 512), &device)?;
        let seconds = median_seconds(repeats, || lhs.matmul(&rhs))?;
        println!(
            "matmul 1280×11520×512: {seconds:.4}s ({:.0} GFLOP/s)",
            2.0 * 1280.0 * 11520.0 * 512.0 / seconds / 1e9
        );
    }
    let norm_cases = [
        ("unet group_norm+silu 320 @64² b2", 2, 320, 64, true),
        ("unet group_norm 1280 @16² b2", 2, 1280, 16, false),
        ("vae group_norm+silu 512 @128²", 1, 512, 128, true),
        ("vae group_norm+silu 128 @512²", 1, 128, 512, true),
    ];
    for (label, batch, channels, size, with_silu) in norm_cases
        .into_iter()
        .filter(|case| case.0.contains(&filter))
    {
        let xs = Tensor::randn(0f32, 1.0, (batch, channels, size, size), &device)?;
        let weight = Tensor::randn(1f32, 0.1, channels, &device)?;
        let bias = Tensor::randn(0f32, 0.1, channels, &device)?;
        let ours = median_seconds(repeats, || {
            group_norm(&xs, 32, &weight, &bias, 1e-6, with_silu)
        })?;
        let candle = median_seconds(repeats, || {
            reference_group_norm(&xs, 32, &weight, &bias, 1e-6, with_silu)
        })?;
        println!(
            "{label}: huatu {ours:.4}s, candle {candle:.4}s, speed-up {:.2}×",
            candle / ours
        );
    }
    let geglu_cases = [
        ("unet geglu 1024 tokens ×2·2560 b2", 1024, 2560),
        ("unet geglu 256 tokens ×2·5120 b2", 256, 5120),
    ];
    for (label, tokens, inner) in geglu_cases
        .into_iter()
        .filter(|case| case.0.contains(&filter))
    {
        let xs = Tensor::randn(0f32, 1.0, (2, tokens, 2 * inner), &device)?;
        let ours = median_seconds(repeats, || geglu(&xs))?;
        let candle = median_seconds(repeats, || reference_geglu(&xs))?;
        println!(
            "{label}: huatu {ours:.4}s, candle {candle:.4}s, speed-up {:.2}×",
            candle / ours
        );
    }
    // The UNet transformer's linears at 512² (batch 2): GFLOP/s of the GEMM, to set beside
    // `torch.matmul` at the same shapes (scripts/bench/ops_torch.py).
    let linear_cases = [
        ("unet linear 512×1280→10240", 512, 1280, 10240),
        ("unet linear 512×5120→1280", 512, 5120, 1280),
        ("unet linear 512×1280→1280", 512, 1280, 1280),
        ("unet linear 2048×640→640", 2048, 640, 640),
    ];
    for (label, rows, in_features, out_features) in linear_cases
        .into_iter()
        .filter(|case| case.0.contains(&filter))
    {
        let xs = Tensor::randn(0f32, 1.0, (rows, in_features), &device)?;
        let weight = Tensor::randn(0f32, 0.02, (out_features, in_features), &device)?;
        let bias = Tensor::randn(0f32, 0.02, out_features, &device)?;
        let ours = median_seconds(repeats, || {
            fused_linear(&xs, &weight, Some(&bias), None, None)
        })?;
        let flops = 2.0 * (rows * in_features * out_features) as f64;
        println!(
            "{label}: huatu {ours:.4}s, {:.1} GFLOP/s",
            flops / ours / 1e9
        );
    }
    Ok(())
}
