//! Retrieval benchmark of the image database: N random unit vectors (768-d by default)
//! stored through the real SQLite rows, then the approximate index (8-bit scan with exact
//! re-ranking, crates/data/src/db/ann.rs) against exact search: build time, load time of
//! the saved index, recall@10, query latency p50/p99 and peak memory. Also writes the vectors
//! and queries as raw little-endian f32 (`--dump DIR`: vectors.f32, queries.f32) so
//! scripts/bench/ann_faiss.py can run faiss on the same data.
//!
//!     cargo run --release -p huatu-data --example ann_bench -- [N] [DIM] [--dump DIR]

use std::path::PathBuf;
use std::time::Instant;

use huatu_data::db::ann::INDEX_FILE;
use huatu_data::db::search::exact_top_k;
use huatu_data::db::{ImageDatabase, ImageRow, ModelRecord, SearchOptions, Store};

/// Deterministic pseudo-random unit vectors (SplitMix64 → uniform → normalised).
fn unit_vectors(count: usize, dimension: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut values: Vec<f32> = (0..count * dimension)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    for vector in values.chunks_mut(dimension) {
        let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
        vector.iter_mut().for_each(|value| *value /= norm);
    }
    values
}

/// The process's peak resident memory (Linux `VmHWM`), 0 where unknown.
fn peak_memory_gib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmHWM:").and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
            })
        })
        .map_or(0.0, |kib| kib / (1u64 << 20) as f64)
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn write_f32(path: &PathBuf, values: &[f32]) -> std::io::Result<()> {
    use std::io::Write;
    let mut writer = std::io::BufWriter::new(std::fs::File::create(path)?);
    for value in values {
        writer.write_all(&value.to_le_bytes())?;
    }
    writer.flush()
}

fn main() -> anyhow::Result<()> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let dump = arguments
        .iter()
        .position(|argument| argument == "--dump")
        .and_then(|index| arguments.get(index + 1))
        .map(PathBuf::from);
    let numbers: Vec<usize> = arguments
        .iter()
        .filter_map(|argument| argument.parse().ok())
        .collect();
    let count = numbers.first().copied().unwrap_or(100_000);
    let dimension = numbers.get(1).copied().unwrap_or(768);
    let (query_count, k) = (200, 10);

    let vectors = unit_vectors(count, dimension, 1);
    let queries = unit_vectors(query_count, dimension, 2);
    if let Some(dir) = &dump {
        std::fs::create_dir_all(dir)?;
        write_f32(&dir.join("vectors.f32"), &vectors)?;
        write_f32(&dir.join("queries.f32"), &queries)?;
    }

    let scratch = tempfile::tempdir()?;
    let record = ModelRecord {
        path: PathBuf::from("(benchmark)"),
        fingerprint: "benchmark".into(),
        dimension,
    };
    let mut store = Store::create(scratch.path(), &record)?;
    let start = Instant::now();
    for (chunk_index, chunk) in vectors.chunks(dimension * 10_000).enumerate() {
        let rows: Vec<(ImageRow, Vec<f32>)> = chunk
            .chunks(dimension)
            .enumerate()
            .map(|(offset, vector)| {
                let index = chunk_index * 10_000 + offset;
                let row = ImageRow {
                    id: format!("{index:064x}"),
                    path: format!("image{index}.png"),
                    labels: Vec::new(),
                    caption: None,
                    width: 1,
                    height: 1,
                };
                (row, vector.to_vec())
            })
            .collect();
        store.insert(&rows)?;
    }
    println!(
        "{count} × {dimension}: rows written in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    drop(store);

    let database = ImageDatabase::open(scratch.path())?;
    let start = Instant::now();
    database.build_index()?;
    let build_seconds = start.elapsed().as_secs_f64();
    let peak_after_build = peak_memory_gib();
    drop(database);

    let approximate_options = SearchOptions {
        ann_threshold: 0,
        ..SearchOptions::top(k)
    };
    // a fresh process's first search: open, load the saved index, search
    let start = Instant::now();
    let database = ImageDatabase::open(scratch.path())?;
    database.search_with(&queries[..dimension], &approximate_options)?;
    let first_search_seconds = start.elapsed().as_secs_f64();
    let index_bytes = std::fs::metadata(scratch.path().join(INDEX_FILE))?.len();

    let mut exact_in_memory = Vec::new();
    let mut approximate = Vec::new();
    let mut found = 0;
    for query in queries.chunks(dimension) {
        let start = Instant::now();
        let exact: Vec<String> = exact_top_k(&vectors, dimension, query, k, None)
            .iter()
            .map(|hit| format!("{:064x}", hit.row))
            .collect();
        exact_in_memory.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        let hits = database.search_with(query, &approximate_options)?;
        approximate.push(start.elapsed().as_secs_f64() * 1e3);
        found += hits.iter().filter(|hit| exact.contains(&hit.id)).count();
    }
    // exact through the database: rows read from SQLite each time
    let mut exact_from_rows = Vec::new();
    for query in queries.chunks(dimension).take(3) {
        let start = Instant::now();
        database.search_with(
            query,
            &SearchOptions {
                exact: true,
                ..approximate_options
            },
        )?;
        exact_from_rows.push(start.elapsed().as_secs_f64() * 1e3);
    }
    for timings in [&mut exact_in_memory, &mut approximate, &mut exact_from_rows] {
        timings.sort_by(f64::total_cmp);
    }
    println!(
        "huatu index (8-bit scan + exact re-rank): build {build_seconds:.1}s, recall@{k} {:.4}, \
         query p50 {:.2} ms p99 {:.2} ms; index file {:.0} MB, first search of a fresh open {:.2}s",
        found as f64 / (query_count * k) as f64,
        percentile(&approximate, 0.5),
        percentile(&approximate, 0.99),
        index_bytes as f64 / 1e6,
        first_search_seconds
    );
    println!(
        "peak memory: {peak_after_build:.2} GiB after the build, {:.2} GiB in all (both include \
         the benchmark's own f32 copy of the vectors, {:.2} GiB, for exact search)",
        peak_memory_gib(),
        (count * dimension * 4) as f64 / (1u64 << 30) as f64
    );
    println!(
        "exact scan in memory ({} threads): p50 {:.2} ms p99 {:.2} ms; exact via db rows: p50 {:.0} ms",
        rayon::current_num_threads(),
        percentile(&exact_in_memory, 0.5),
        percentile(&exact_in_memory, 0.99),
        percentile(&exact_from_rows, 0.5)
    );
    Ok(())
}
