//! Parity of `AutoencoderKL` with diffusers on the tiny SDXL VAE (tests/fixtures/sdxl_tiny/vae:
//! 4 levels, so the same ×8 factor as SDXL, sample_size 32 so that tiling really tiles);
//! reference outputs written by scripts/fixtures/sdxl_tiny.py into
//! tests/fixtures/sdxl_tiny_reference/vae.safetensors.
//! mirrors diffusers `AutoencoderKL.decode` / `.encode(...).latent_dist` without tiling, and
//! after `enable_tiling()` (`tiled_decode`, `_tiled_encode`).
//! Tolerance: 1e-4 absolute, f32 on CPU.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use huatu_diffusion::loading::safetensors_files::{component_weight_files, mmap_var_builder};
use huatu_diffusion::models::autoencoder_kl::{AutoencoderKL, AutoencoderKLConfig, TileSettings};

use crate::common::fixture;

const TOLERANCE: f32 = 1e-4;

fn load_vae() -> anyhow::Result<AutoencoderKL> {
    let path = fixture("sdxl_tiny/vae/config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let config: AutoencoderKLConfig = serde_json::from_str(&text)?;
    let files = component_weight_files(&fixture("sdxl_tiny/vae"))?;
    let vb = mmap_var_builder(&files, DType::F32, &Device::Cpu)?;
    Ok(AutoencoderKL::new(vb, &config)?)
}

struct Reference {
    tensors: HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
}

fn reference() -> anyhow::Result<Reference> {
    let path = fixture("sdxl_tiny_reference/vae.safetensors");
    let bytes =
        std::fs::read(&path).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    Ok(Reference {
        tensors: candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?,
        metadata,
    })
}

impl Reference {
    fn get(&self, name: &str) -> anyhow::Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| anyhow::anyhow!("reference has no tensor `{name}`"))
    }

    fn setting(&self, name: &str) -> anyhow::Result<&str> {
        self.metadata
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow::anyhow!("reference metadata has no `{name}`"))
    }
}

#[test]
fn decode_matches_diffusers() -> anyhow::Result<()> {
    let (vae, reference) = (load_vae()?, reference()?);
    let decoded = vae.decode(reference.get("decode_in")?)?;
    assert_close("decode_out", &decoded, reference.get("decode_out")?)
}

#[test]
fn encode_matches_diffusers() -> anyhow::Result<()> {
    let (vae, reference) = (load_vae()?, reference()?);
    let posterior = vae.encode(reference.get("encode_in")?)?;
    assert_close(
        "encode_mean",
        posterior.mode(),
        reference.get("encode_mean")?,
    )?;
    assert_close(
        "encode_logvar",
        &posterior.logvar,
        reference.get("encode_logvar")?,
    )
}

#[test]
fn tile_settings_match_diffusers() -> anyhow::Result<()> {
    let (vae, reference) = (load_vae()?, reference()?);
    let expected = TileSettings {
        tile_sample_min_size: reference.setting("tile_sample_min_size")?.parse()?,
        tile_latent_min_size: reference.setting("tile_latent_min_size")?.parse()?,
        tile_overlap_factor: reference.setting("tile_overlap_factor")?.parse()?,
    };
    assert_eq!(vae.tile_settings(), expected);
    Ok(())
}

#[test]
fn tiled_decode_matches_diffusers() -> anyhow::Result<()> {
    let (vae, reference) = (load_vae()?, reference()?);
    let latents = reference.get("tiled_decode_in")?;
    let expected = reference.get("tiled_decode_out")?;
    assert_close("tiled_decode_out", &vae.tiled_decode(latents)?, expected)?;
    // diffusers' decode after enable_tiling() picks the tiled path for these latents.
    assert_close(
        "tiled_decode_out (decode_with_tiling)",
        &vae.decode_with_tiling(latents, true)?,
        expected,
    )
}

#[test]
fn tiled_encode_matches_diffusers() -> anyhow::Result<()> {
    let (vae, reference) = (load_vae()?, reference()?);
    let posterior = vae.encode_with_tiling(reference.get("encode_in")?, true)?;
    assert_close(
        "tiled_encode_mean",
        posterior.mode(),
        reference.get("tiled_encode_mean")?,
    )?;
    assert_close(
        "tiled_encode_logvar",
        &posterior.logvar,
        reference.get("tiled_encode_logvar")?,
    )
}

fn assert_close(name: &str, actual: &Tensor, expected: &Tensor) -> anyhow::Result<()> {
    assert_eq!(actual.dims(), expected.dims(), "{name}: shape");
    let difference: f32 = (actual - expected)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar()?;
    assert!(
        difference <= TOLERANCE,
        "{name}: max abs difference {difference:e} > {TOLERANCE:e}"
    );
    Ok(())
}
