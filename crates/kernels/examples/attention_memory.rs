//! One attention call at an SDXL shape, to measure its peak memory from outside:
//! `/usr/bin/time -v target/release/examples/attention_memory PATH DTYPE [BATCH HEADS TOKENS]`
//! with PATH `unfused` (the [n, n] scores materialised, the old f16/bf16 path),
//! `bounded` (`fused_attention`, what the models call) or `chunked` (the candle-ops path
//! other devices take, run here on CPU). Defaults: bf16, 1 × 20 heads × 4096 tokens × 64,
//! the 64² latent level of a 2048² image (half of its classifier-free-guidance batch).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use huatu_kernels::attention::{chunked_attention, fused_attention, reference_attention};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().map_or("bounded", String::as_str);
    let dtype = match args.get(1).map_or("bf16", String::as_str) {
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => anyhow::bail!("dtype must be f32, f16 or bf16, got `{other}`"),
    };
    let number = |index: usize, default: usize| -> anyhow::Result<usize> {
        Ok(match args.get(index) {
            Some(text) => text.parse()?,
            None => default,
        })
    };
    let (batch, heads, tokens) = (number(2, 1)?, number(3, 20)?, number(4, 4096)?);
    let device = Device::Cpu;
    let random = || -> anyhow::Result<Tensor> {
        Ok(Tensor::randn(0f32, 1.0, (batch, heads, tokens, 64), &device)?.to_dtype(dtype)?)
    };
    let (query, key, value) = (random()?, random()?, random()?);
    let started = Instant::now();
    let output = match path {
        "unfused" => reference_attention(&query, &key, &value)?,
        "bounded" => fused_attention(&query, &key, &value)?,
        "chunked" => {
            let rows = huatu_kernels::attention::CHUNK_SCORES / (batch * heads * tokens);
            chunked_attention(&query, &key, &value, rows.max(1))?
        }
        other => anyhow::bail!("path must be unfused, bounded or chunked, got `{other}`"),
    };
    let checksum = output
        .to_dtype(DType::F32)?
        .abs()?
        .sum_all()?
        .to_scalar::<f32>()?;
    println!(
        "{path} {dtype:?} [{batch}, {heads}, {tokens}, 64]: {:.2} s, mean |output| {:.6}",
        started.elapsed().as_secs_f64(),
        checksum / output.elem_count() as f32
    );
    Ok(())
}
