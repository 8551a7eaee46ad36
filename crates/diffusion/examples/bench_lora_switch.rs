//! Benchmark: switching LoRA adapters on the full-size SDXL architecture versus reloading
//! the model. Builds (once) a diffusers folder with random f16 weights in the real SDXL
//! shapes under DIR (about 7 GB), loads it in f16, makes two random rank-32 adapters on
//! every attention projection of the UNet and both text encoders, and times: loading the
//! model, merging adapter A, switching to B, to A+B, and back to the base model.
//!
//! `cargo run --release -p huatu-diffusion --example bench_lora_switch -- DIR`
//! Prints one JSON line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::Init;
use huatu_diffusion::loading::original_keys::Component;
use huatu_diffusion::loading::weight_table::WeightTable;
use huatu_diffusion::loading::{LoadOptions, ModelSource, SdxlComponents};
use huatu_diffusion::lora::{LoraFile, LoraFormat, LoraModule, UnmatchedModules};
use huatu_diffusion::models::autoencoder_kl::{AutoencoderKL, AutoencoderKLConfig};
use huatu_diffusion::models::clip_text::{
    ClipTextConfig, ClipTextModel, ClipTextModelWithProjection,
};
use huatu_diffusion::models::unet_2d_condition::{UNet2DConditionConfig, UNet2DConditionModel};

const PRESETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/presets/sdxl-base-1.0");
const TOKENIZERS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/sdxl_tiny"
);

/// Small random weights of any shape, as plain tensors.
struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        _: &str,
        _: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        Tensor::randn(0f32, 0.02, shape, device)?.to_dtype(dtype)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape for {name}")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

fn preset<T: serde::de::DeserializeOwned>(name: &str) -> anyhow::Result<T> {
    Ok(serde_json::from_str(&std::fs::read_to_string(format!(
        "{PRESETS}/{name}"
    ))?)?)
}

/// Builds one component on random weights and saves what it asked for.
fn write_component(
    dir: &Path,
    file: &str,
    config_name: &str,
    build: impl FnOnce(candle_nn::VarBuilder<'static>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (vb, table) = WeightTable::recording(Box::new(RandomWeights), DType::F16, &Device::Cpu);
    build(vb)?;
    let tensors: HashMap<String, Tensor> = table
        .names()
        .into_iter()
        .filter_map(|name| table.get(&name).map(|t| (name, t)))
        .collect();
    candle_core::safetensors::save(&tensors, dir.join(file))?;
    std::fs::copy(format!("{PRESETS}/{config_name}"), dir.join("config.json"))?;
    Ok(())
}

fn write_model(root: &Path) -> anyhow::Result<()> {
    eprintln!("writing a random full-size SDXL to {} …", root.display());
    write_component(
        &root.join("unet"),
        "diffusion_pytorch_model.safetensors",
        "unet.json",
        |vb| {
            UNet2DConditionModel::new(vb, &preset::<UNet2DConditionConfig>("unet.json")?)?;
            Ok(())
        },
    )?;
    write_component(
        &root.join("vae"),
        "diffusion_pytorch_model.safetensors",
        "vae.json",
        |vb| {
            AutoencoderKL::new(vb, &preset::<AutoencoderKLConfig>("vae.json")?)?;
            Ok(())
        },
    )?;
    write_component(
        &root.join("text_encoder"),
        "model.safetensors",
        "text_encoder.json",
        |vb| {
            ClipTextModel::new(vb, &preset::<ClipTextConfig>("text_encoder.json")?)?;
            Ok(())
        },
    )?;
    write_component(
        &root.join("text_encoder_2"),
        "model.safetensors",
        "text_encoder_2.json",
        |vb| {
            ClipTextModelWithProjection::new(
                vb,
                &preset::<ClipTextConfig>("text_encoder_2.json")?,
            )?;
            Ok(())
        },
    )?;
    std::fs::create_dir_all(root.join("scheduler"))?;
    std::fs::copy(
        format!("{PRESETS}/scheduler.json"),
        root.join("scheduler/scheduler_config.json"),
    )?;
    for part in ["tokenizer", "tokenizer_2"] {
        std::fs::create_dir_all(root.join(part))?;
        for entry in std::fs::read_dir(format!("{TOKENIZERS}/{part}"))? {
            let entry = entry?;
            std::fs::copy(entry.path(), root.join(part).join(entry.file_name()))?;
        }
    }
    std::fs::copy(
        format!("{TOKENIZERS}/model_index.json"),
        root.join("model_index.json"),
    )?;
    Ok(())
}

/// A random rank-`rank` adapter on every attention projection the model holds.
fn random_adapter(
    components: &SdxlComponents,
    rank: usize,
    name: &str,
) -> anyhow::Result<LoraFile> {
    let targets = [
        (
            Component::Unet,
            &components.weights.unet,
            ["to_q", "to_k", "to_v", "to_out.0"],
        ),
        (
            Component::TextEncoder,
            &components.weights.text_encoder,
            ["q_proj", "k_proj", "v_proj", "out_proj"],
        ),
        (
            Component::TextEncoder2,
            &components.weights.text_encoder_2,
            ["q_proj", "k_proj", "v_proj", "out_proj"],
        ),
    ];
    let mut modules = Vec::new();
    for (component, table, suffixes) in targets {
        for weight in table.names() {
            let Some(module) = weight.strip_suffix(".weight") else {
                continue;
            };
            if !suffixes.iter().any(|s| module.ends_with(&format!(".{s}"))) {
                continue;
            }
            let held = table.get(&weight).context("weight")?;
            let (out, input) = held.dims2()?;
            modules.push(LoraModule {
                component,
                name: module.to_string(),
                down: Tensor::randn(0f32, 0.01, (rank, input), &Device::Cpu)?,
                up: Tensor::randn(0f32, 0.01, (out, rank), &Device::Cpu)?,
                alpha: Some(rank as f64 / 2.0),
                rank_stabilized: false,
            });
        }
    }
    Ok(LoraFile {
        path: PathBuf::from(name),
        format: LoraFormat::Diffusers,
        modules,
        metadata: Default::default(),
    })
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: bench_lora_switch DIR")?,
    );
    if !root
        .join("unet/diffusion_pytorch_model.safetensors")
        .is_file()
    {
        write_model(&root)?;
    }
    let options = LoadOptions {
        dtype: DType::F16,
        ..LoadOptions::default()
    };
    let source = ModelSource::from_path(&root)?;
    // The first load warms the page cache; the second is the reload a switch would cost.
    drop(SdxlComponents::load(&source, options, &Device::Cpu)?);
    let started = Instant::now();
    let mut components = SdxlComponents::load(&source, options, &Device::Cpu)?;
    let reload = started.elapsed().as_secs_f64();

    let a = random_adapter(&components, 32, "a")?;
    let b = random_adapter(&components, 32, "b")?;
    let parameters: usize = a
        .modules
        .iter()
        .map(|m| m.down.elem_count() + m.up.elem_count())
        .sum();
    let mut time = |set: &[(&LoraFile, f64)]| -> anyhow::Result<(f64, usize)> {
        let report = components.set_loras(set, UnmatchedModules::Error)?;
        Ok((report.seconds, report.weights_written))
    };
    let (apply_a, weights) = time(&[(&a, 1.0)])?;
    let (switch_b, _) = time(&[(&b, 1.0)])?;
    let (both, _) = time(&[(&a, 0.7), (&b, 0.3)])?;
    let (unload, _) = time(&[])?;
    println!(
        "{{\"reload_seconds\": {reload:.2}, \"apply_seconds\": {apply_a:.2}, \"switch_seconds\": {switch_b:.2}, \
         \"two_adapters_seconds\": {both:.2}, \"unload_seconds\": {unload:.2}, \"adapter_modules\": {}, \
         \"adapter_parameters\": {parameters}, \"weights_touched\": {weights}, \"reload_over_switch\": {:.1}}}",
        a.modules.len(),
        reload / switch_b
    );
    Ok(())
}
