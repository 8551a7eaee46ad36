//! Helpers both training parity tests use.

use std::path::{Path, PathBuf};

use candle_core::Tensor;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

/// A file or folder under tests/fixtures.
pub fn fixture(path: &str) -> PathBuf {
    Path::new(FIXTURES).join(path)
}

pub fn relative_difference(ours: &Tensor, reference: &Tensor) -> anyhow::Result<f64> {
    let difference = (ours - reference)?
        .sqr()?
        .sum_all()?
        .sqrt()?
        .to_scalar::<f32>()? as f64;
    let norm = reference.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()? as f64;
    Ok(difference / norm.max(1e-12))
}
