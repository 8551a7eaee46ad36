//! `db add`: files and folders in, rows out. Per batch: read and hash in parallel (the
//! SHA-256 of the bytes is the id, so content already stored is skipped), decode, read
//! sidecars and preprocess in parallel, embed the batch with CLIP in one call, write the
//! rows in one transaction.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::scan;
use super::store::{ImageRow, Store};
use crate::clip::{normalized_rows, ClipModel};
use crate::error::Result;

/// How `add` labels and batches.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// Labels given for every image; sidecar labels are appended to them.
    pub labels: Vec<String>,
    /// Images embedded per model call.
    pub batch_size: usize,
}

impl Default for AddOptions {
    fn default() -> Self {
        Self {
            labels: Vec::new(),
            batch_size: 16,
        }
    }
}

/// Where an `add` run is, after each batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AddProgress {
    pub done: usize,
    pub total: usize,
    pub added: usize,
    pub images_per_second: f64,
}

/// A file `add` could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// The outcome of an `add` run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AddReport {
    pub added: usize,
    /// Files whose content was already in the database (or earlier in this run).
    pub already_present: usize,
    pub skipped: Vec<SkippedFile>,
    pub seconds: f64,
}

pub(super) fn add_files(
    store: &mut Store,
    model: &ClipModel,
    inputs: &[PathBuf],
    options: &AddOptions,
    mut progress: impl FnMut(&AddProgress),
) -> Result<AddReport> {
    let files = scan::collect_images(inputs)?;
    let start = Instant::now();
    let mut report = AddReport::default();
    let mut seen = HashSet::new();
    let mut done = 0;
    for batch in files.chunks(options.batch_size.max(1)) {
        // Read and hash in parallel; ids already stored or seen are no-ops.
        let hashed: Vec<(PathBuf, std::io::Result<HashedFile>)> = batch
            .par_iter()
            .map(|path| (path.clone(), read_and_hash(path)))
            .collect();
        let mut fresh = Vec::new();
        for (path, outcome) in hashed {
            match outcome {
                Err(error) => report.skipped.push(SkippedFile {
                    path,
                    reason: error.to_string(),
                }),
                Ok((id, bytes)) => {
                    if seen.contains(&id) || store.contains(&id)? {
                        report.already_present += 1;
                    } else {
                        seen.insert(id.clone());
                        fresh.push((path, id, bytes));
                    }
                }
            }
        }
        // Decode, read sidecars and preprocess in parallel.
        let prepared: Vec<std::result::Result<(ImageRow, Tensor), SkippedFile>> = fresh
            .into_par_iter()
            .map(|(path, id, bytes)| prepare(model, &path, id, &bytes, &options.labels))
            .collect();
        let mut rows = Vec::new();
        let mut pixel_values = Vec::new();
        for outcome in prepared {
            match outcome {
                Ok((row, pixels)) => {
                    rows.push(row);
                    pixel_values.push(pixels);
                }
                Err(skipped) => report.skipped.push(skipped),
            }
        }
        if !rows.is_empty() {
            let features = model.image_features(&Tensor::stack(&pixel_values, 0)?)?;
            let vectors = normalized_rows(&features)?;
            let entries: Vec<(ImageRow, Vec<f32>)> = rows.into_iter().zip(vectors).collect();
            report.added += store.insert(&entries)?;
        }
        done += batch.len();
        let seconds = start.elapsed().as_secs_f64();
        progress(&AddProgress {
            done,
            total: files.len(),
            added: report.added,
            images_per_second: if seconds > 0.0 {
                done as f64 / seconds
            } else {
                0.0
            },
        });
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// A file's content id (SHA-256, hex) and its bytes.
type HashedFile = (String, Vec<u8>);

fn read_and_hash(path: &Path) -> std::io::Result<HashedFile> {
    let bytes = std::fs::read(path)?;
    Ok((content_id(&bytes), bytes))
}

/// An image's id in the database: the SHA-256 of its file's bytes, in hex.
pub fn content_id(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Decodes one file and preprocesses it for the model; any failure skips the file.
fn prepare(
    model: &ClipModel,
    path: &Path,
    id: String,
    bytes: &[u8],
    labels: &[String],
) -> std::result::Result<(ImageRow, Tensor), SkippedFile> {
    let skip = |reason: String| SkippedFile {
        path: path.to_path_buf(),
        reason,
    };
    let limits = huatu_imaging::io::DecodeLimits::DEFAULT;
    let image = huatu_imaging::io::decode_image(bytes, None, "the file", &limits)
        .map_err(|error| skip(error.to_string()))?;
    if image.width() == 0 || image.height() == 0 {
        return Err(skip("the image is empty".into()));
    }
    let sidecar = scan::read_sidecar(path).map_err(|error| skip(error.to_string()))?;
    let mut all_labels = labels.to_vec();
    for label in sidecar.labels {
        if !all_labels.contains(&label) {
            all_labels.push(label);
        }
    }
    let pixel_values = model
        .processor()
        .preprocess(&image, &Device::Cpu)
        .map_err(|error| skip(error.to_string()))?;
    let stored_path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok((
        ImageRow {
            id,
            path: stored_path.to_string_lossy().into_owned(),
            labels: all_labels,
            caption: sidecar.caption,
            width: image.width(),
            height: image.height(),
        },
        pixel_values,
    ))
}
