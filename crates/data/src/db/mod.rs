//! The image database of DESIGN.md part 2: per image an id (the SHA-256 of its bytes), its
//! path, labels, caption, size and its L2-normalised CLIP image embedding; search by a
//! text or an image embedding returns the most similar images by cosine similarity.
//!
//! Rows live in SQLite ([`store`]); the database remembers the CLIP model it was built
//! with (path and fingerprint), so searching needs only the database. Search is exact
//! ([`search`]): a parallel scan of every embedding, fine for up to a few million images.

pub mod scan;
pub mod search;
pub mod store;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use huatu_imaging::io::load_image;
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use store::{ImageRow, ModelRecord, Store, DATABASE_FILE};

use crate::clip::{normalized_rows, ClipModel};
use crate::error::{DataError, Result};

/// What a search is for: a description or an example image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Text(String),
    Image(PathBuf),
}

/// The L2-normalised CLIP embedding of a query.
pub fn embed_query(model: &ClipModel, query: &Query) -> Result<Vec<f32>> {
    match query {
        Query::Text(text) => model.embed_text(text),
        Query::Image(path) => model.embed_image(&load_image(path)?),
    }
}

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

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub id: String,
    pub path: String,
    /// Cosine similarity to the query.
    pub score: f32,
    pub labels: Vec<String>,
    pub caption: Option<String>,
    pub width: u32,
    pub height: u32,
}

/// What `db info` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseInfo {
    pub path: PathBuf,
    pub images: usize,
    pub model: ModelRecord,
    pub search: &'static str,
}

/// An open image database folder.
#[derive(Debug)]
pub struct ImageDatabase {
    store: Store,
}

impl ImageDatabase {
    /// Opens an existing database; a missing one is an error naming the folder.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self {
            store: Store::open(dir)?,
        })
    }

    /// Opens the database in `dir`, creating it for `model` if there is none. An existing
    /// database must have been built with the same model (same fingerprint); if the model
    /// has moved, its new location is recorded.
    pub fn open_or_create(dir: &Path, model: &ClipModel) -> Result<Self> {
        let record = ModelRecord {
            path: std::fs::canonicalize(model.dir()).unwrap_or_else(|_| model.dir().into()),
            fingerprint: model.fingerprint().to_string(),
            dimension: model.projection_dim(),
        };
        if !dir.join(DATABASE_FILE).is_file() {
            return Ok(Self {
                store: Store::create(dir, &record)?,
            });
        }
        let store = Store::open(dir)?;
        let stored = store.model()?;
        check_same_model(dir, &stored, &record)?;
        if stored.path != record.path {
            store.set_model_path(&record.path)?;
        }
        Ok(Self { store })
    }

    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    pub fn model_record(&self) -> Result<ModelRecord> {
        self.store.model()
    }

    /// Loads the CLIP model the database was built with and checks it is still the same.
    pub fn load_model(&self, device: &Device) -> Result<ClipModel> {
        let stored = self.store.model()?;
        if !stored.path.is_dir() {
            return Err(DataError::MissingModelPart {
                what: format!(
                    "the CLIP model the database {} was built with (if it moved, run `db add --model NEW_DIR` once to record it)",
                    self.dir().display()
                ),
                path: stored.path,
            });
        }
        let model = ClipModel::load(&stored.path, device)?;
        let loaded = ModelRecord {
            path: stored.path.clone(),
            fingerprint: model.fingerprint().to_string(),
            dimension: model.projection_dim(),
        };
        check_same_model(self.dir(), &stored, &loaded)?;
        Ok(model)
    }

    /// Adds image files and folders (recursively). Unreadable files are skipped and
    /// reported; files whose content is already present are left alone. Each batch is
    /// written in one transaction.
    pub fn add(
        &mut self,
        model: &ClipModel,
        inputs: &[PathBuf],
        options: &AddOptions,
        mut progress: impl FnMut(&AddProgress),
    ) -> Result<AddReport> {
        let stored = self.store.model()?;
        if stored.dimension != model.projection_dim() {
            return Err(dimension_mismatch(
                self.dir(),
                &stored,
                "the CLIP model",
                model.projection_dim(),
            ));
        }
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
                        if seen.contains(&id) || self.store.contains(&id)? {
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
                report.added += self.store.insert(&entries)?;
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

    /// The `k` stored images most similar to an L2-normalised query embedding, best
    /// first, with score ≥ `min_score` when given.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        min_score: Option<f32>,
    ) -> Result<Vec<SearchHit>> {
        let stored = self.store.model()?;
        if query.len() != stored.dimension {
            return Err(dimension_mismatch(
                self.dir(),
                &stored,
                "the query embedding",
                query.len(),
            ));
        }
        let (ids, vectors) = self.store.vectors(stored.dimension)?;
        search::exact_top_k(&vectors, stored.dimension, query, k, min_score)
            .into_iter()
            .filter_map(|scored| {
                let id = &ids[scored.row];
                match self.store.row(id) {
                    Ok(Some(row)) => Some(Ok(SearchHit {
                        id: row.id,
                        path: row.path,
                        score: scored.score,
                        labels: row.labels,
                        caption: row.caption,
                        width: row.width,
                        height: row.height,
                    })),
                    Ok(None) => None,
                    Err(error) => Some(Err(error)),
                }
            })
            .collect()
    }

    pub fn info(&self) -> Result<DatabaseInfo> {
        Ok(DatabaseInfo {
            path: self.dir().to_path_buf(),
            images: self.store.count()?,
            model: self.store.model()?,
            search: "exact",
        })
    }

    /// Removes images by id (or a unique id prefix of 8+ hex digits) or stored path.
    pub fn remove(&mut self, keys: &[String]) -> Result<Vec<ImageRow>> {
        self.store.remove(keys)
    }

    /// Every row (without embeddings), in the order they were added.
    pub fn rows(&self) -> Result<Vec<ImageRow>> {
        self.store.rows()
    }

    /// Every id with its embedding ([n × dimension]).
    pub fn vectors(&self) -> Result<(Vec<String>, Vec<f32>)> {
        let dimension = self.store.model()?.dimension;
        self.store.vectors(dimension)
    }
}

/// A file's content id (SHA-256, hex) and its bytes.
type HashedFile = (String, Vec<u8>);

fn read_and_hash(path: &Path) -> std::io::Result<HashedFile> {
    let bytes = std::fs::read(path)?;
    let id = Sha256::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok((id, bytes))
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
    let image = image::load_from_memory(bytes).map_err(|error| skip(error.to_string()))?;
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

fn check_same_model(dir: &Path, stored: &ModelRecord, other: &ModelRecord) -> Result<()> {
    if stored.dimension != other.dimension {
        return Err(dimension_mismatch(
            dir,
            stored,
            &format!("the CLIP model at {}", other.path.display()),
            other.dimension,
        ));
    }
    if stored.fingerprint != other.fingerprint {
        return Err(DataError::BadDatabase {
            path: dir.to_path_buf(),
            message: format!(
                "it was built with a different CLIP model (at {}, fingerprint {}) than the one at {} (fingerprint {}); their embeddings are not comparable — use that model or a new database",
                stored.path.display(),
                short(&stored.fingerprint),
                other.path.display(),
                short(&other.fingerprint)
            ),
        });
    }
    Ok(())
}

fn dimension_mismatch(dir: &Path, stored: &ModelRecord, what: &str, actual: usize) -> DataError {
    DataError::DimensionMismatch {
        what: what.to_string(),
        path: dir.to_path_buf(),
        model: stored.path.clone(),
        expected: stored.dimension,
        actual,
    }
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}
