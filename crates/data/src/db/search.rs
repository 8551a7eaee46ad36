//! Exact (brute-force) nearest neighbours by cosine similarity: every stored embedding is
//! L2-normalised, so the score is one dot product per row, computed in parallel over
//! chunks of rows with rayon; each chunk keeps its own best k and the chunks' winners
//! are merged. Ties go to the earlier row, so results are deterministic.

use rayon::prelude::*;

/// Rows per parallel work item.
const ROWS_PER_CHUNK: usize = 4096;

/// One match: the row's position in the scanned order and its cosine similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub row: usize,
    pub score: f32,
}

/// The `k` rows of `vectors` ([n × dimension], row-major) most similar to `query`, best
/// first, keeping only scores ≥ `min_score` when given.
pub fn exact_top_k(
    vectors: &[f32],
    dimension: usize,
    query: &[f32],
    k: usize,
    min_score: Option<f32>,
) -> Vec<Scored> {
    if dimension == 0 || k == 0 || query.len() != dimension {
        return Vec::new();
    }
    let chunk_values = ROWS_PER_CHUNK * dimension;
    let mut best: Vec<Scored> = vectors
        .par_chunks(chunk_values)
        .enumerate()
        .flat_map_iter(|(chunk_index, chunk)| {
            let first_row = chunk_index * ROWS_PER_CHUNK;
            let scored = chunk
                .chunks_exact(dimension)
                .enumerate()
                .map(|(offset, vector)| Scored {
                    row: first_row + offset,
                    score: dot(vector, query),
                })
                .filter(|scored| !matches!(min_score, Some(minimum) if scored.score < minimum))
                .collect();
            keep_best(scored, k)
        })
        .collect();
    best.sort_by(order);
    best.truncate(k);
    best
}

/// Best first; equal scores by row.
fn order(a: &Scored, b: &Scored) -> std::cmp::Ordering {
    b.score.total_cmp(&a.score).then(a.row.cmp(&b.row))
}

fn keep_best(mut scored: Vec<Scored>, k: usize) -> Vec<Scored> {
    if scored.len() > k {
        scored.select_nth_unstable_by(k - 1, order);
        scored.truncate(k);
    }
    scored
}

/// Dot product with four independent accumulators (lets the compiler vectorise).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 4];
    let chunks = a.len() / 4 * 4;
    for (left, right) in a[..chunks].chunks_exact(4).zip(b[..chunks].chunks_exact(4)) {
        for lane in 0..4 {
            sums[lane] += left[lane] * right[lane];
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(left, right)| left * right)
        .sum();
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_first_with_ties_by_row_and_a_floor() {
        // rows: [1,0], [0,1], [1,0], [0.6,0.8]
        let vectors = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.6, 0.8];
        let hits = exact_top_k(&vectors, 2, &[1.0, 0.0], 3, None);
        let rows: Vec<usize> = hits.iter().map(|hit| hit.row).collect();
        assert_eq!(rows, [0, 2, 3]);
        let hits = exact_top_k(&vectors, 2, &[1.0, 0.0], 10, Some(0.5));
        assert_eq!(hits.len(), 3);
    }

    #[test]
    fn chunks_merge_like_one_pass() {
        let dimension = 3;
        let rows = ROWS_PER_CHUNK * 2 + 17;
        let vectors: Vec<f32> = (0..rows * dimension)
            .map(|index| ((index * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let query = [0.3, -0.5, 0.8];
        let hits = exact_top_k(&vectors, dimension, &query, 5, None);
        let mut all: Vec<Scored> = vectors
            .chunks_exact(dimension)
            .enumerate()
            .map(|(row, vector)| Scored {
                row,
                score: dot(vector, &query),
            })
            .collect();
        all.sort_by(order);
        assert_eq!(hits, all[..5]);
    }
}
