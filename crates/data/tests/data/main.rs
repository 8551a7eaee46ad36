//! End-to-end tests of huatu-data, in one binary to save link time: BLIP, CLIP and
//! Chinese-CLIP parity with transformers on the tiny random models, and the image database.

mod blip_parity;
mod chinese_clip_parity;
mod clip_parity;
mod clip_similarity;
mod image_db;

use std::path::PathBuf;

/// A path under the workspace's tests/fixtures.
pub fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(path)
}
