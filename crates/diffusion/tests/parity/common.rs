//! Helpers the parity tests share: fixture paths and the tiny SDXL model.

use std::path::{Path, PathBuf};

use candle_core::Device;
use huatu_diffusion::loading::{LoadOptions, ModelSource, SdxlComponents};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

/// A file or folder under tests/fixtures.
pub fn fixture(path: &str) -> PathBuf {
    Path::new(FIXTURES).join(path)
}

/// The tiny random SDXL model (tests/fixtures/sdxl_tiny) in f32 on the CPU.
pub fn load_tiny_sdxl() -> anyhow::Result<SdxlComponents> {
    let source = ModelSource::from_path(&fixture("sdxl_tiny"))?;
    Ok(SdxlComponents::load(
        &source,
        LoadOptions::default(),
        &Device::Cpu,
    )?)
}
