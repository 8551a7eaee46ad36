//! Prompt-to-Prompt pairs per minute (InstructPix2Pix's data generation) on a model folder,
//! model loading excluded; the reference side is scripts/bench/edit_pair.py.
//!
//!     cargo run --release -p huatu-diffusion --example bench_edit_pair -- MODEL_DIR SIZE STEPS PAIRS
//!
//! Prints one JSON line: pairs, seconds, pairs_per_minute, peak_rss_mib.

use std::time::Instant;

use candle_core::Device;
use huatu_diffusion::loading::{LoadOptions, ModelSource, SdxlComponents};
use huatu_diffusion::pipelines::{edit_pair, EditPairRequest, NoProgress, Text2ImageRequest};
use huatu_diffusion::schedulers::SchedulerKind;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, size, steps, pairs] = args.as_slice() else {
        anyhow::bail!("usage: bench_edit_pair MODEL_DIR SIZE STEPS PAIRS");
    };
    let (size, steps, pairs): (usize, usize, usize) =
        (size.parse()?, steps.parse()?, pairs.parse()?);
    let source = ModelSource::from_path(std::path::Path::new(model))?;
    let components = SdxlComponents::load(&source, LoadOptions::default(), &Device::Cpu)?;
    let started = Instant::now();
    for index in 0..pairs {
        let mut base = Text2ImageRequest::new("a photo of a red cat on a sofa");
        base.width = size;
        base.height = size;
        base.settings.num_inference_steps = steps;
        base.settings.guidance_scale = 7.5;
        base.settings.scheduler = SchedulerKind::EulerAncestral;
        base.settings.seed = index as u64;
        let request = EditPairRequest::new(base, "a photo of a blue cat on a sofa", 0.5);
        edit_pair(&components, &request, &mut NoProgress)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "side": "huatu",
            "size": size,
            "steps": steps,
            "pairs": pairs,
            "seconds": seconds,
            "pairs_per_minute": pairs as f64 * 60.0 / seconds,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}
