//! Benchmark of the real SDXL UNet and VAE architectures with random weights.
//!
//! `cargo run --release -p huatu-diffusion --example bench_sdxl -- unet 512 [repeats]`
//! `cargo run --release -p huatu-diffusion --example bench_sdxl -- vae 512 [repeats]`
//! Prints one JSON line: seconds per call (median of `repeats` after one warm-up) and the
//! process's peak resident memory. `BENCH_WEIGHTS=bf16` holds the UNet's weights in bf16
//! (computing in f32, as `--dtype bf16` loads it on the CPU). `scripts/bench/run.sh` runs it beside diffusers.

use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use huatu_diffusion::models::autoencoder_kl::{AutoencoderKL, AutoencoderKLConfig};
use huatu_diffusion::models::unet_2d_condition::{
    AddedConditions, UNet2DConditionConfig, UNet2DConditionModel,
};

/// Hands out small random weights of whatever shape a layer asks for (plain tensors, not
/// `Var`s, so no autograd graph is kept alive).
struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        _name: &str,
        _init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        Tensor::randn(0f32, 0.02, shape, device)?.to_dtype(dtype)
    }
    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _device: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for {name}")
    }
    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn time<F: FnMut() -> anyhow::Result<()>>(repeats: usize, mut run: F) -> anyhow::Result<f64> {
    run()?; // warm-up
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let started = Instant::now();
        run()?;
        times.push(started.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (part, size) = match args.as_slice() {
        [_, part, size, ..] => (
            part.as_str(),
            size.parse::<usize>().context("size must be a number")?,
        ),
        _ => bail!("usage: bench_sdxl unet|vae SIZE [REPEATS]"),
    };
    let repeats = args.get(3).map(|r| r.parse()).transpose()?.unwrap_or(3);
    let device = Device::Cpu;
    let weights = match std::env::var("BENCH_WEIGHTS").as_deref() {
        Ok("bf16") => DType::BF16,
        Ok("f32") | Err(_) => DType::F32,
        Ok(other) => bail!("BENCH_WEIGHTS must be f32 or bf16, not {other}"),
    };
    let random = |dtype| VarBuilder::from_backend(Box::new(RandomWeights), dtype, device.clone());
    let presets = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/sdxl-base-1.0");
    let latent = size / 8;
    let seconds = match part {
        "unet" => {
            let config: UNet2DConditionConfig =
                serde_json::from_str(&std::fs::read_to_string(format!("{presets}/unet.json"))?)?;
            let unet = UNet2DConditionModel::new(random(weights), &config)?;
            let sample = Tensor::randn(0f32, 1.0, (2, 4, latent, latent), &device)?;
            let context = Tensor::randn(0f32, 1.0, (2, 77, 2048), &device)?;
            let added = AddedConditions {
                text_embeds: Tensor::randn(0f32, 1.0, (2, 1280), &device)?,
                time_ids: Tensor::new(
                    &[[size as f32, size as f32, 0.0, 0.0, size as f32, size as f32]; 2],
                    &device,
                )?,
            };
            time(repeats, || {
                unet.forward(&sample, 500.0, &context, &added, None)?;
                Ok(())
            })?
        }
        "vae" => {
            let config: AutoencoderKLConfig =
                serde_json::from_str(&std::fs::read_to_string(format!("{presets}/vae.json"))?)?;
            let vae = AutoencoderKL::new(random(DType::F32), &config)?;
            let latents = Tensor::randn(0f32, 1.0, (1, 4, latent, latent), &device)?;
            time(repeats, || {
                vae.decode(&latents)?;
                Ok(())
            })?
        }
        other => bail!("unknown part `{other}` (expected unet or vae)"),
    };
    println!(
        "{{\"impl\": \"huatu\", \"part\": \"{part}\", \"size\": {size}, \"weights\": \"{weights:?}\", \"seconds\": {seconds:.3}, \"peak_rss_mib\": {:.0}}}",
        peak_rss_mib()
    );
    Ok(())
}
