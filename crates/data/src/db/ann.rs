//! The approximate nearest-neighbour index beside the rows: an HNSW graph from `usearch`
//! (unum-cloud/usearch) over inner product, saved as `DIR/vectors.usearch`, keyed by the
//! rows' `seq` (SQLite AUTOINCREMENT key). It is a cache of the rows, never the truth: SQLite's
//! `ann_index` table records how many rows (and the highest `seq`) the saved file covers;
//! a file that is missing, unreadable or behind the rows is extended with the newer rows
//! or rebuilt from all of them, and a removal drops it.
//!
//! Why usearch: one well-kept, widely deployed library (ClickHouse, DuckDB, ScyllaDB use
//! it) with SIMD distance kernels, concurrent insertion, f16/i8 quantization for later,
//! and a single-file format that can be memory-mapped (`view`) so a search does not read
//! the whole index; pure-Rust HNSW crates need a custom dump/reload dance and build
//! slower. The cost is a C++ compiler at build time.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::store::Store;
use crate::error::{DataError, Result};

/// The index file inside a database folder.
pub const INDEX_FILE: &str = "vectors.usearch";

/// Below this many images search scans every embedding (exact and fast enough).
pub const DEFAULT_ANN_THRESHOLD: usize = 50_000;

/// Candidates the graph search keeps (usearch's `expansion_search`, at least `4 k`);
/// higher is slower and closer to exact.
const MIN_EXPANSION_SEARCH: usize = 512;
/// Graph degree and build-time candidates (usearch's defaults are 16 and 128): CLIP
/// embeddings are high-dimensional, where a denser graph keeps recall up.
const CONNECTIVITY: usize = 32;
const EXPANSION_ADD: usize = 256;

/// An index ready to search, and how it was obtained.
pub struct AnnIndex {
    index: Index,
    /// Rows indexed.
    pub rows: usize,
    /// What had to be done to make it current.
    pub action: IndexAction,
}

/// How [`ensure_index`] brought the index up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexAction {
    /// The saved file covered every row.
    Loaded,
    /// The saved file was extended with rows added since.
    Extended,
    /// The index was built from all rows (missing, stale or unreadable file).
    Rebuilt,
}

fn options(dimension: usize) -> IndexOptions {
    IndexOptions {
        dimensions: dimension,
        // embeddings are L2-normalised: inner product is the cosine; distance = 1 - dot
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: CONNECTIVITY,
        expansion_add: EXPANSION_ADD,
        expansion_search: 0,
        multi: false,
    }
}

fn ann_error(store: &Store, message: String) -> DataError {
    DataError::BadDatabase {
        path: store.dir().to_path_buf(),
        message: format!("approximate index: {message}"),
    }
}

fn index_path(store: &Store) -> PathBuf {
    store.dir().join(INDEX_FILE)
}

/// The index covering every row of `store`, loading, extending or rebuilding the file.
pub fn ensure_index(store: &Store, dimension: usize) -> Result<AnnIndex> {
    let path = index_path(store);
    let rows = store.count()?;
    let saved = store.ann_state()?;
    let max_seq = store.last_seq()?;
    if let (Some(state), true) = (saved, path.is_file()) {
        let newer = store.count_after(state.max_seq)?;
        if state.rows + newer == rows {
            let loaded = if newer == 0 {
                Index::restore_view(&path.to_string_lossy())
            } else {
                Index::restore(&path.to_string_lossy())
            };
            if let Ok(index) = loaded.map_err(|error| error.to_string()).and_then(|index| {
                if index.dimensions() == dimension && index.size() == state.rows {
                    Ok(index)
                } else {
                    Err("size or dimension differ".into())
                }
            }) {
                if newer == 0 {
                    return Ok(AnnIndex {
                        index,
                        rows,
                        action: IndexAction::Loaded,
                    });
                }
                insert_rows(store, &index, state.max_seq, rows, dimension)?;
                save(store, &index, &path, rows, max_seq)?;
                return Ok(AnnIndex {
                    index,
                    rows,
                    action: IndexAction::Extended,
                });
            }
        }
    }
    let index =
        Index::new(&options(dimension)).map_err(|error| ann_error(store, error.to_string()))?;
    insert_rows(store, &index, 0, rows, dimension)?;
    save(store, &index, &path, rows, max_seq)?;
    Ok(AnnIndex {
        index,
        rows,
        action: IndexAction::Rebuilt,
    })
}

/// Adds every row with `seq` > `after` to `index` (in parallel, a chunk at a time).
fn insert_rows(
    store: &Store,
    index: &Index,
    after: i64,
    total: usize,
    dimension: usize,
) -> Result<()> {
    index
        .reserve_capacity_and_threads(total.max(1), rayon::current_num_threads().max(1))
        .map_err(|error| ann_error(store, error.to_string()))?;
    let mut failure = None;
    store.for_each_vector_chunk(after, dimension, 8192, |keys, vectors| {
        let result: std::result::Result<(), String> = keys
            .par_iter()
            .zip(vectors.par_chunks(dimension))
            .try_for_each(|(&key, vector)| {
                index
                    .add(key as u64, vector)
                    .map_err(|error| error.to_string())
            });
        if let Err(message) = result {
            failure.get_or_insert(message);
        }
    })?;
    match failure {
        Some(message) => Err(ann_error(store, message)),
        None => Ok(()),
    }
}

/// Saves beside the final name, then renames (a crash never leaves half a file), and
/// records what the file covers.
fn save(store: &Store, index: &Index, path: &Path, rows: usize, max_seq: i64) -> Result<()> {
    let partial = path.with_extension("usearch.partial");
    index
        .save(&partial.to_string_lossy())
        .map_err(|error| ann_error(store, format!("cannot save {}: {error}", partial.display())))?;
    std::fs::rename(&partial, path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    store.set_ann_state(rows, max_seq)
}

/// Drops the saved index (after rows were removed); the next search rebuilds it.
pub fn invalidate(store: &Store) -> Result<()> {
    store.clear_ann_state()?;
    let path = index_path(store);
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(DataError::Io {
            path,
            source: error,
        }),
        _ => Ok(()),
    }
}

impl AnnIndex {
    /// The `k` nearest rows: (`seq`, cosine similarity), best first.
    pub fn search(&self, query: &[f32], k: usize) -> std::result::Result<Vec<(i64, f32)>, String> {
        self.index
            .change_expansion_search(MIN_EXPANSION_SEARCH.max(4 * k));
        let matches = self
            .index
            .search(query, k)
            .map_err(|error| error.to_string())?;
        Ok(matches
            .keys
            .iter()
            .zip(&matches.distances)
            .map(|(&key, &distance)| (key as i64, 1.0 - distance))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::search::exact_top_k;

    /// Deterministic pseudo-random unit vectors.
    fn unit_vectors(count: usize, dimension: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let mut values: Vec<f32> = (0..count * dimension).map(|_| next()).collect();
        for vector in values.chunks_mut(dimension) {
            let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
            vector.iter_mut().for_each(|value| *value /= norm);
        }
        values
    }

    #[test]
    fn recall_at_10_against_exact_search() {
        let (count, dimension) = (5000, 32);
        let vectors = unit_vectors(count, dimension, 1);
        let index = Index::new(&options(dimension)).unwrap();
        index.reserve(count).unwrap();
        for (key, vector) in vectors.chunks(dimension).enumerate() {
            index.add(key as u64, vector).unwrap();
        }
        let ann = AnnIndex {
            index,
            rows: count,
            action: IndexAction::Rebuilt,
        };
        let queries = unit_vectors(100, dimension, 2);
        let mut found = 0;
        for query in queries.chunks(dimension) {
            let exact: Vec<i64> = exact_top_k(&vectors, dimension, query, 10, None)
                .iter()
                .map(|hit| hit.row as i64)
                .collect();
            let approximate = ann.search(query, 10).unwrap();
            found += approximate
                .iter()
                .filter(|(key, _)| exact.contains(key))
                .count();
            let best = exact_top_k(&vectors, dimension, query, 1, None)[0].score;
            assert!((approximate[0].1 - best).abs() < 1e-4 || approximate[0].1 < best);
        }
        let recall = found as f64 / 1000.0;
        assert!(recall >= 0.99, "recall@10 {recall}");
    }
}
