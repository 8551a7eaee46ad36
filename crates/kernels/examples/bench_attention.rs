//! Fused attention against candle's unfused formulation at SDXL's attention shapes.
//! `cargo run --release -p huatu-kernels --example bench_attention [fused]` (`fused`: ours
//! only, for profiling); `scripts/bench/ops_torch.py` times PyTorch's SDPA at the same shapes.

use std::time::Instant;

use candle_core::{Device, Tensor};
use huatu_kernels::attention::{fused_attention, reference_attention};

fn seconds<F: FnMut() -> candle_core::Result<Tensor>>(mut run: F) -> candle_core::Result<f64> {
    run()?;
    let started = Instant::now();
    for _ in 0..3 {
        run()?;
    }
    Ok(started.elapsed().as_secs_f64() / 3.0)
}

fn main() -> candle_core::Result<()> {
    let device = Device::Cpu;
    let fused_only = std::env::args().nth(1).as_deref() == Some("fused");
    // (label, batch·heads layout, queries, keys, head dim) for SDXL at 1024² with guidance.
    let cases = [
        ("self 64×64 latent, 10 heads", 10, 4096, 4096),
        ("self 32×32 latent, 20 heads", 20, 1024, 1024),
        ("cross 64×64 latent, 10 heads", 10, 4096, 77),
    ];
    for (label, heads, queries, keys) in cases {
        let query = Tensor::randn(0f32, 1.0, (2, heads, queries, 64), &device)?;
        let key = Tensor::randn(0f32, 1.0, (2, heads, keys, 64), &device)?;
        let value = Tensor::randn(0f32, 1.0, (2, heads, keys, 64), &device)?;
        let fused = seconds(|| fused_attention(&query, &key, &value))?;
        if fused_only {
            println!("{label}: fused {fused:.3}s");
            continue;
        }
        let unfused = seconds(|| reference_attention(&query, &key, &value))?;
        println!(
            "{label}: fused {fused:.3}s, candle unfused {unfused:.3}s, speed-up {:.1}×",
            unfused / fused
        );
    }
    Ok(())
}
