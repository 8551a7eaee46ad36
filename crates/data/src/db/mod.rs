//! The image database of DESIGN.md part 2: per image an id (the SHA-256 of its bytes), its
//! path, labels, caption, size and its L2-normalised CLIP image embedding; search by a
//! text or an image embedding returns the most similar images by cosine similarity.
//!
//! Rows live in SQLite ([`store`]); the database remembers the CLIP model it was built
//! with (path and fingerprint), so searching needs only the database. Search is exact
//! ([`search`], a parallel scan of every embedding) below a threshold of rows and
//! approximate above it ([`ann`], an HNSW index kept beside the rows and rebuilt from
//! them when lost or stale).

pub mod add;
pub mod ann;
pub mod scan;
pub mod search;
pub mod store;

use std::path::{Path, PathBuf};

use candle_core::Device;
use huatu_imaging::io::load_image;
use serde::Serialize;

pub use add::{content_id, AddOptions, AddProgress, AddReport, SkippedFile};
pub use store::{ImageRow, ModelRecord, Store, DATABASE_FILE};

use crate::clip::ClipModel;
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

/// How a search runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchOptions {
    /// How many hits.
    pub k: usize,
    /// Only hits with at least this cosine similarity.
    pub min_score: Option<f32>,
    /// Scan every embedding even above `ann_threshold`.
    pub exact: bool,
    /// From this many images on, search the approximate index.
    pub ann_threshold: usize,
}

impl SearchOptions {
    pub fn top(k: usize) -> Self {
        Self {
            k,
            min_score: None,
            exact: false,
            ann_threshold: ann::DEFAULT_ANN_THRESHOLD,
        }
    }
}

/// What `db info` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseInfo {
    pub path: PathBuf,
    pub images: usize,
    pub model: ModelRecord,
    /// "exact" below the threshold, else "approximate (8-bit scan, exact re-rank)".
    pub search: &'static str,
    /// Rows the saved approximate index covers (absent when there is none).
    pub indexed: Option<usize>,
}

/// An open image database folder.
pub struct ImageDatabase {
    store: Store,
    /// The approximate index of the last search and the state it covers, so repeated
    /// searches on an unchanged database reuse it.
    ann_cache: std::sync::Mutex<Option<(store::AnnState, ann::AnnIndex)>>,
}

impl std::fmt::Debug for ImageDatabase {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ImageDatabase")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl ImageDatabase {
    /// Opens an existing database; a missing one is an error naming the folder.
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self::with_store(Store::open(dir)?))
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
            return Ok(Self::with_store(Store::create(dir, &record)?));
        }
        let store = Store::open(dir)?;
        let stored = store.model()?;
        check_same_model(dir, &stored, &record)?;
        if stored.path != record.path {
            store.set_model_path(&record.path)?;
        }
        Ok(Self::with_store(store))
    }

    fn with_store(store: Store) -> Self {
        Self {
            store,
            ann_cache: std::sync::Mutex::new(None),
        }
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
        progress: impl FnMut(&AddProgress),
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
        add::add_files(&mut self.store, model, inputs, options, progress)
    }

    /// The `k` stored images most similar to an L2-normalised query embedding, best
    /// first, with score ≥ `min_score` when given (default options otherwise).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        min_score: Option<f32>,
    ) -> Result<Vec<SearchHit>> {
        self.search_with(
            query,
            &SearchOptions {
                min_score,
                ..SearchOptions::top(k)
            },
        )
    }

    /// [`Self::search`] with every option: exact below `ann_threshold` images (or when
    /// asked), else through the approximate index (made current first).
    pub fn search_with(&self, query: &[f32], options: &SearchOptions) -> Result<Vec<SearchHit>> {
        let stored = self.store.model()?;
        if query.len() != stored.dimension {
            return Err(dimension_mismatch(
                self.dir(),
                &stored,
                "the query embedding",
                query.len(),
            ));
        }
        if options.exact {
            return self.exact_search(query, options.k, options.min_score);
        }
        let mut cache = self
            .ann_cache
            .lock()
            .map_err(|_| DataError::InvalidRequest("a search panicked".into()))?;
        // The loaded index is current while the saved state (cleared by removals) and the
        // last assigned seq are what they were: two point lookups, not a count.
        let saved = self.store.ann_state()?;
        let last_seq = self.store.last_seq()?;
        let current = matches!((&*cache, saved), (Some((cached, _)), Some(saved))
            if *cached == saved && saved.max_seq == last_seq);
        if !current {
            *cache = None;
            if self.store.count()? < options.ann_threshold {
                return self.exact_search(query, options.k, options.min_score);
            }
            let index = ann::ensure_index(&self.store, stored.dimension)?;
            if let Some(state) = self.store.ann_state()? {
                *cache = Some((state, index));
            }
        }
        let Some((state, index)) = cache.as_ref() else {
            return Err(DataError::BadDatabase {
                path: self.dir().to_path_buf(),
                message: "the approximate index could not be recorded".into(),
            });
        };
        if state.rows < options.ann_threshold {
            return self.exact_search(query, options.k, options.min_score);
        }
        let matches = index
            .search(query, options.k)
            .map_err(|message| DataError::BadDatabase {
                path: self.dir().to_path_buf(),
                message: format!("approximate search failed: {message}"),
            })?;
        let mut hits = Vec::new();
        for (seq, score) in matches {
            if matches!(options.min_score, Some(minimum) if score < minimum) {
                continue;
            }
            if let Some(row) = self.store.row_by_seq(seq)? {
                hits.push(hit(row, score));
            }
        }
        Ok(hits)
    }

    /// Brings the approximate index up to date now (`db index`); returns what was done.
    pub fn build_index(&self) -> Result<ann::IndexAction> {
        let stored = self.store.model()?;
        Ok(ann::ensure_index(&self.store, stored.dimension)?.action)
    }

    fn exact_search(
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
                    Ok(Some(row)) => Some(Ok(hit(row, scored.score))),
                    Ok(None) => None,
                    Err(error) => Some(Err(error)),
                }
            })
            .collect()
    }

    pub fn info(&self) -> Result<DatabaseInfo> {
        let images = self.store.count()?;
        Ok(DatabaseInfo {
            path: self.dir().to_path_buf(),
            images,
            model: self.store.model()?,
            search: if images < ann::DEFAULT_ANN_THRESHOLD {
                "exact"
            } else {
                "approximate (8-bit scan, exact re-rank)"
            },
            indexed: self.store.ann_state()?.map(|state| state.rows),
        })
    }

    /// Removes images by id (or a unique id prefix of 8+ hex digits) or stored path; the
    /// approximate index, if any, is dropped and rebuilt by the next search that needs it.
    pub fn remove(&mut self, keys: &[String]) -> Result<Vec<ImageRow>> {
        let removed = self.store.remove(keys)?;
        if !removed.is_empty() {
            ann::invalidate(&self.store)?;
        }
        Ok(removed)
    }

    /// Every row (without embeddings), in the order they were added.
    pub fn rows(&self) -> Result<Vec<ImageRow>> {
        self.store.rows()
    }

    /// The stored embedding of one image, by id.
    pub fn embedding(&self, id: &str) -> Result<Option<Vec<f32>>> {
        let dimension = self.store.model()?.dimension;
        self.store.vector(id, dimension)
    }

    /// Every id with its embedding ([n × dimension]).
    pub fn vectors(&self) -> Result<(Vec<String>, Vec<f32>)> {
        let dimension = self.store.model()?.dimension;
        self.store.vectors(dimension)
    }
}

fn hit(row: ImageRow, score: f32) -> SearchHit {
    SearchHit {
        id: row.id,
        path: row.path,
        score,
        labels: row.labels,
        caption: row.caption,
        width: row.width,
        height: row.height,
    }
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
