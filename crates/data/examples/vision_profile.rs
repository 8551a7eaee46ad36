//! Where the time of an image-embedding forward goes: the whole CLIP vision tower
//! (`get_image_features`, projection included) on a random [batch, 3, 224, 224] batch,
//! then each kind of operation of one encoder layer at the real shapes, repeated as often
//! as the tower runs it. `scripts/bench/clip_throughput.py DIR N --ops` times the same
//! operations in PyTorch.
//!
//!     cargo run --release -p huatu-data --example vision_profile -- MODEL_DIR [BATCH] [REPEATS]

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Module, Tensor};
use huatu_data::clip::ClipModel;

/// Best of `repeats` runs of `run`, in seconds.
fn best_seconds(
    repeats: usize,
    mut run: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let start = Instant::now();
        run()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let model_dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: vision_profile MODEL_DIR [BATCH] [REPEATS]"))?,
    );
    let batch: usize = args
        .next()
        .map(|value| value.parse())
        .transpose()?
        .unwrap_or(16);
    let repeats: usize = args
        .next()
        .map(|value| value.parse())
        .transpose()?
        .unwrap_or(3);
    let device = Device::Cpu;
    if std::env::var_os("BLIP").is_some() {
        return profile_blip(&model_dir, batch, repeats);
    }
    let model = ClipModel::load(&model_dir, &device)?;
    let vision = model.config().vision_config.clone();
    let size = vision.image_size;
    let pixel_values = Tensor::randn(0f32, 1.0, (batch, 3, size, size), &device)?;

    let seconds = best_seconds(repeats, || {
        model.image_features(&pixel_values)?;
        Ok(())
    })?;
    println!(
        "image_features [{batch}, 3, {size}, {size}]: {seconds:.3} s ({:.2} images/s)",
        batch as f64 / seconds
    );

    // One layer's operations at the real shapes, times the number of layers.
    let layers = vision.num_hidden_layers as f64;
    let hidden = vision.hidden_size;
    let heads = vision.num_attention_heads;
    let head_dim = hidden / heads;
    let tokens = (size / vision.patch_size).pow(2) + 1;
    let rows = batch * tokens;
    let xs = Tensor::randn(0f32, 1.0, (batch, tokens, hidden), &device)?;
    let linear = |inputs: usize, outputs: usize| -> anyhow::Result<candle_nn::Linear> {
        Ok(candle_nn::Linear::new(
            (Tensor::randn(0f32, 1.0, (outputs, inputs), &device)? * 0.02)?,
            Some(Tensor::zeros(outputs, DType::F32, &device)?),
        ))
    };
    let projection = linear(hidden, hidden)?;
    let fc1 = linear(hidden, vision.intermediate_size)?;
    let fc2 = linear(vision.intermediate_size, hidden)?;
    let wide = Tensor::randn(
        0f32,
        1.0,
        (batch, tokens, vision.intermediate_size),
        &device,
    )?;
    let norm = candle_nn::LayerNorm::new(
        Tensor::ones(hidden, DType::F32, &device)?,
        Tensor::zeros(hidden, DType::F32, &device)?,
        1e-5,
    );
    let query = Tensor::randn(0f32, 1.0, (batch, heads, tokens, head_dim), &device)?;
    let report = |name: &str,
                  per_layer: f64,
                  run: &mut dyn FnMut() -> anyhow::Result<()>|
     -> anyhow::Result<()> {
        let seconds = best_seconds(repeats, run)? * per_layer * layers;
        println!("  {name:<40} {seconds:>7.3} s per forward");
        Ok(())
    };
    println!(
        "per operation, {rows} rows of {hidden} ({tokens} tokens), {} layers:",
        vision.num_hidden_layers
    );
    report(
        "linear hidden->hidden (×4: q, k, v, out)",
        4.0,
        &mut || {
            projection.forward(&xs)?;
            Ok(())
        },
    )?;
    report("linear hidden->intermediate (fc1)", 1.0, &mut || {
        fc1.forward(&xs)?;
        Ok(())
    })?;
    report("linear intermediate->hidden (fc2)", 1.0, &mut || {
        fc2.forward(&wide)?;
        Ok(())
    })?;
    report(
        "attention, unfused (matmul softmax matmul)",
        1.0,
        &mut || {
            let scores = (query.matmul(&query.t()?)? * (head_dim as f64).powf(-0.5))?;
            candle_nn::ops::softmax_last_dim(&scores)?.matmul(&query)?;
            Ok(())
        },
    )?;
    report("attention, huatu-kernels fused", 1.0, &mut || {
        huatu_kernels::fused_attention(&query, &query, &query)?;
        Ok(())
    })?;
    let product = wide.reshape((rows, vision.intermediate_size))?;
    let wide_bias = Tensor::zeros(vision.intermediate_size, DType::F32, &device)?;
    report("bias + quick_gelu, huatu-kernels", 1.0, &mut || {
        huatu_kernels::bias_activation(
            &product,
            Some(&wide_bias),
            huatu_kernels::Activation::QuickGelu,
        )?;
        Ok(())
    })?;
    report("bias + gelu_erf, huatu-kernels", 1.0, &mut || {
        huatu_kernels::bias_activation(
            &product,
            Some(&wide_bias),
            huatu_kernels::Activation::GeluErf,
        )?;
        Ok(())
    })?;
    report("split heads (3 transposes + contiguous)", 3.0, &mut || {
        xs.reshape((batch, tokens, heads, head_dim))?
            .transpose(1, 2)?
            .contiguous()?;
        Ok(())
    })?;
    report("quick_gelu on [rows, intermediate]", 1.0, &mut || {
        (&wide * candle_nn::ops::sigmoid(&(&wide * 1.702)?)?)?;
        Ok(())
    })?;
    report("gelu_erf on [rows, intermediate]", 1.0, &mut || {
        wide.gelu_erf()?;
        Ok(())
    })?;
    report("layer norm (×2)", 2.0, &mut || {
        norm.forward(&xs)?;
        Ok(())
    })?;
    report("residual add (×2)", 2.0, &mut || {
        (&xs + &xs)?;
        Ok(())
    })?;
    Ok(())
}

/// BLIP captioning (`BLIP=1`): the vision tower alone, then greedy generation of 20
/// tokens after it, on a random [batch, 3, image_size, image_size] batch.
fn profile_blip(model_dir: &std::path::Path, batch: usize, repeats: usize) -> anyhow::Result<()> {
    let device = Device::Cpu;
    let model = huatu_data::BlipForConditionalGeneration::load(model_dir, &device)?;
    let size = model.config().vision_config.image_size;
    let pixel_values = Tensor::randn(0f32, 1.0, (batch, 3, size, size), &device)?;
    let vision = best_seconds(repeats, || {
        model.image_embeds(&pixel_values)?;
        Ok(())
    })?;
    println!("BLIP vision [{batch}, 3, {size}, {size}]: {vision:.3} s");
    let options = huatu_data::CaptionOptions {
        max_new_tokens: 20,
        num_beams: 1,
        prompt: None,
    };
    let total = best_seconds(repeats, || {
        model.generate(&pixel_values, &options)?;
        Ok(())
    })?;
    println!(
        "BLIP generate, 20 tokens: {total:.3} s ({:.3} s decoding; {:.3} captions/s)",
        total - vision,
        batch as f64 / total
    );
    Ok(())
}
