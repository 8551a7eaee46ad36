//! Benchmark of one LoRA training step on the real SDXL UNet architecture with random
//! weights, as `huatu train lora` takes it (`trainer::train_lora`): forward through
//! `forward_timesteps`, MSE against the noise, `backward()`, torch's AdamW on the adapters.
//! The PyTorch side is `scripts/bench/train_lora_step.py` (diffusers' UNet + peft, same
//! shapes); `scripts/bench/train_lora_step.sh` runs both.
//!
//! `cargo run --release -p huatu-train --example bench_train_step -- SIZE [STEPS] [--rank R]
//! [--alpha A] [--batch B] [--config unet.json] [--gradient-checkpointing]`
//!
//! Batch 1 at SIZE² (latents SIZE/8), text embeddings [b, 77, 2048], pooled [b, 1280],
//! time ids [b, 6]; LoRA on `to_q`/`to_k`/`to_v`/`to_out.0` (diffusers' script default).
//! Prints one JSON line: seconds per optimizer step (median of STEPS after one warm-up),
//! its forward/backward/update split, what the gradient store held after `backward()`, and
//! the process's peak resident memory. With `--gradient-checkpointing` the step is the
//! trainer's `checkpointing::checkpointed_gradients` (stage by stage; its forward and
//! backward are not split). Progress with the memory at each stage goes to
//! stderr, so a run that runs out of memory shows how far it got.
//!
//! The weights are plain random tensors drawn with each layer's init hint (as `bench_sdxl`,
//! which draws N(0, 0.02)), not `Var`s: a `VarMap` would make every frozen weight a graph
//! variable and put the whole model on the slow autograd paths, which a real run (weights
//! memory-mapped from a file) never does. Random weights rather than a generated
//! safetensors file also keep loading out of the peak: candle copies each tensor out of
//! the mapping, so for a while both the mapped file and the copies are resident.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use huatu_diffusion::loading::original_keys::Component;
use huatu_diffusion::models::unet_2d_condition::{
    AddedConditions, UNet2DConditionConfig, UNet2DConditionModel,
};
use huatu_train::checkpointing::checkpointed_gradients;
use huatu_train::lora_params::{LoraParams, LoraTargets};
use huatu_train::optimizer::{AdamW, AdamWConfig};

/// Hands out random weights of whatever shape a layer asks for (plain tensors, not `Var`s:
/// the frozen base model records no graph of its own), counting what it gave.
struct RandomWeights {
    elements: Arc<AtomicUsize>,
}

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        _name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        self.elements
            .fetch_add(shape.elem_count(), Ordering::Relaxed);
        // Each layer's own init hint (Kaiming for weights, ones and zeros for norms), so
        // activations and gradients have the scales of a real model (and no denormals).
        Ok(init.var(shape, dtype, device)?.as_detached_tensor())
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

/// `VmHWM` and `VmRSS` of this process in MiB.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn stage(started: Instant, what: &str) {
    let (peak, resident) = memory_mib();
    eprintln!(
        "[{:8.1}s] {what}: rss {resident:.0} MiB, peak {peak:.0} MiB",
        started.elapsed().as_secs_f64()
    );
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[sorted.len() / 2]
}

/// Entries and bytes the gradient store holds, split into the adapters' and the rest
/// (gradients candle computed for frozen weights and inputs).
fn gradient_store_size(grads: &GradStore, vars: &[Var]) -> (usize, f64, usize, f64) {
    let mut trainable = (0, 0f64);
    let mut other = (0, 0f64);
    let trainable_ids: Vec<_> = vars.iter().map(|var| var.as_tensor().id()).collect();
    for id in grads.get_ids() {
        let Some(grad) = grads.get_id(*id) else {
            continue;
        };
        let mib = (grad.elem_count() * grad.dtype().size_in_bytes()) as f64 / (1024.0 * 1024.0);
        let bucket = if trainable_ids.contains(id) {
            &mut trainable
        } else {
            &mut other
        };
        bucket.0 += 1;
        bucket.1 += mib;
    }
    (trainable.0, trainable.1, other.0, other.1)
}

struct Options {
    size: usize,
    steps: usize,
    rank: usize,
    alpha: f64,
    batch: usize,
    config: Option<String>,
    gradient_checkpointing: bool,
}

fn parse_options() -> anyhow::Result<Options> {
    let usage = "usage: bench_train_step SIZE [STEPS] [--rank R] [--alpha A] [--batch B] [--config unet.json] [--gradient-checkpointing]";
    let mut positional = Vec::new();
    let mut options = Options {
        size: 0,
        steps: 3,
        rank: 16,
        alpha: 16.0,
        batch: 1,
        config: None,
        gradient_checkpointing: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value; {usage}"))
        };
        match arg.as_str() {
            "--rank" => options.rank = value("--rank")?.parse()?,
            "--alpha" => options.alpha = value("--alpha")?.parse()?,
            "--batch" => options.batch = value("--batch")?.parse()?,
            "--config" => options.config = Some(value("--config")?),
            "--gradient-checkpointing" => options.gradient_checkpointing = true,
            _ if arg.starts_with("--") => bail!("unknown option {arg}; {usage}"),
            _ => positional.push(arg),
        }
    }
    match positional.as_slice() {
        [size] => options.size = size.parse().context("SIZE must be a number")?,
        [size, steps] => {
            options.size = size.parse().context("SIZE must be a number")?;
            options.steps = steps.parse().context("STEPS must be a number")?;
        }
        _ => bail!("{usage}"),
    }
    if options.size == 0
        || !options.size.is_multiple_of(8)
        || options.steps == 0
        || options.batch == 0
    {
        bail!(
            "SIZE must be a positive multiple of 8 and STEPS, --batch at least 1, got {} {} {}",
            options.size,
            options.steps,
            options.batch
        );
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    let started = Instant::now();
    let device = Device::Cpu;
    let config_path = options.config.clone().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../diffusion/presets/sdxl-base-1.0/unet.json"
        )
        .to_string()
    });
    let config: UNet2DConditionConfig = serde_json::from_str(
        &std::fs::read_to_string(&config_path).with_context(|| format!("reading {config_path}"))?,
    )
    .with_context(|| format!("parsing {config_path}"))?;

    let elements = Arc::new(AtomicUsize::new(0));
    let weights = RandomWeights {
        elements: elements.clone(),
    };
    let vb = VarBuilder::from_backend(Box::new(weights), DType::F32, device.clone());
    let mut unet = UNet2DConditionModel::new(vb, &config)?;
    let build_seconds = started.elapsed().as_secs_f64();
    let base_parameters = elements.load(Ordering::Relaxed);
    stage(
        started,
        &format!("random UNet built: {base_parameters} parameters"),
    );

    // The trainer's `build_params`: peft's gaussian init on the selected layers, attached
    // unmerged as graph variables.
    let targets = LoraTargets::Attn;
    let layers = LoraParams::gaussian(
        Component::Unet,
        &unet.collect_linears(),
        |name| targets.matches(name),
        options.rank,
        0,
        &device,
    )?;
    let params = LoraParams {
        rank: options.rank,
        alpha: options.alpha,
        layers,
    };
    params.attach(Component::Unet, &mut unet.collect_linears(), false)?;
    let vars = params.vars();
    let mut optimizer = AdamW::new(&vars, AdamWConfig::default());
    let learning_rates = vec![1e-4; vars.len()];
    stage(
        started,
        &format!(
            "LoRA rank {} alpha {} on {} layers ({} parameters)",
            params.rank,
            params.alpha,
            params.layers.len(),
            params.parameter_count()
        ),
    );

    let (batch, size) = (options.batch, options.size);
    let latent = size / 8;
    let noisy = Tensor::randn(
        0f32,
        1.0,
        (batch, config.in_channels, latent, latent),
        &device,
    )?;
    let target = Tensor::randn(
        0f32,
        1.0,
        (batch, config.out_channels, latent, latent),
        &device,
    )?;
    let timesteps = Tensor::new(vec![500i64; batch].as_slice(), &device)?;
    let prompt_embeds = Tensor::randn(0f32, 1.0, (batch, 77, config.cross_attention_dim), &device)?;
    let pooled_width = config
        .projection_class_embeddings_input_dim
        .unwrap_or_default()
        - 6 * config.addition_time_embed_dim.unwrap_or_default();
    let added = AddedConditions {
        text_embeds: Tensor::randn(0f32, 1.0, (batch, pooled_width), &device)?,
        time_ids: Tensor::from_vec(
            [size as f32, size as f32, 0.0, 0.0, size as f32, size as f32].repeat(batch),
            (batch, 6),
            &device,
        )?,
    };

    let mut forward_times = Vec::new();
    let mut backward_times = Vec::new();
    let mut update_times = Vec::new();
    let mut step_times = Vec::new();
    let mut losses = Vec::new();
    let mut store = (0, 0.0, 0, 0.0);
    for step in 0..=options.steps {
        let step_started = Instant::now();
        let (loss_value, forward_done, backward_done, step_grads) = if options
            .gradient_checkpointing
        {
            let loss_of = |prediction: &Tensor| -> huatu_train::Result<Tensor> {
                Ok((prediction - &target)?.sqr()?.mean_all()?)
            };
            let (loss, step_grads) = checkpointed_gradients(
                &mut unet,
                &params,
                &noisy,
                &timesteps,
                &prompt_embeds,
                &added,
                &loss_of,
            )?;
            let done = Instant::now();
            (loss.to_scalar::<f32>()?, done, done, step_grads)
        } else {
            let prediction =
                unet.forward_timesteps(&noisy, &timesteps, &prompt_embeds, &added, None)?;
            let loss = (prediction - &target)?.sqr()?.mean_all()?;
            let loss_value = loss.to_scalar::<f32>()?;
            let forward_done = Instant::now();
            stage(
                started,
                &format!("step {step} forward, loss {loss_value:.6}"),
            );
            let grads = loss.backward()?;
            let backward_done = Instant::now();
            store = gradient_store_size(&grads, &vars);
            stage(
                started,
                &format!(
                    "step {step} backward: gradient store holds {} adapter gradients ({:.0} MiB) and {} others ({:.0} MiB)",
                    store.0, store.1, store.2, store.3
                ),
            );
            let step_grads: Vec<Option<Tensor>> = vars
                .iter()
                .map(|var| grads.get(var.as_tensor()).cloned())
                .collect();
            (loss_value, forward_done, backward_done, step_grads)
        };
        optimizer.step(&vars, &step_grads, &learning_rates)?;
        let update_done = Instant::now();
        stage(started, &format!("step {step} update"));
        if step > 0 {
            forward_times.push((forward_done - step_started).as_secs_f64());
            backward_times.push((backward_done - forward_done).as_secs_f64());
            update_times.push((update_done - backward_done).as_secs_f64());
            step_times.push((update_done - step_started).as_secs_f64());
        }
        losses.push(loss_value);
    }
    // The adapters moved off their init (B starts at zero): Σ|B| after the last update.
    let mut up_sum = 0f64;
    for layer in &params.layers {
        up_sum += f64::from(layer.up.as_tensor().abs()?.sum_all()?.to_scalar::<f32>()?);
    }
    let (peak, _) = memory_mib();
    let json = serde_json::json!({
        "impl": "huatu",
        "size": size,
        "batch": batch,
        "rank": options.rank,
        "gradient_checkpointing": options.gradient_checkpointing,
        "lora_layers": params.layers.len(),
        "lora_parameters": params.parameter_count(),
        "base_parameters": base_parameters,
        "adapter_up_abs_sum": up_sum,
        "build_seconds": (build_seconds * 1000.0).round() / 1000.0,
        "seconds_per_step": (median(&step_times) * 1000.0).round() / 1000.0,
        "forward_seconds": (median(&forward_times) * 1000.0).round() / 1000.0,
        "backward_seconds": (median(&backward_times) * 1000.0).round() / 1000.0,
        "update_seconds": (median(&update_times) * 1000.0).round() / 1000.0,
        "step_seconds": step_times.iter().map(|s| (s * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        "losses": losses,
        "gradient_store_other_tensors": store.2,
        "gradient_store_other_mib": store.3.round(),
        "peak_rss_mib": peak.round(),
    });
    println!("{json}");
    Ok(())
}
