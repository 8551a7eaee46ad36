//! Finding a dataset's images in the database: every query (an example image, the
//! description, an example's caption) searches; a hit found by several queries keeps its
//! best score; the examples themselves and near-duplicates (of an example or of a
//! better-scoring hit) are dropped with the reason, so the report says why each is out.

use std::collections::HashMap;

use serde::Serialize;

use crate::db::{ImageDatabase, ImageRow};
use crate::error::Result;

/// One search of the database: what it was made from, and its embedding.
#[derive(Debug, Clone)]
pub struct NamedQuery {
    /// e.g. "example cat.png", "description", "caption of cat.png".
    pub name: String,
    pub embedding: Vec<f32>,
}

/// A database image found by at least one query.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub row: ImageRow,
    /// The best cosine similarity over the queries that found it.
    pub score: f32,
    /// The query that gave `score`.
    pub query: String,
    pub embedding: Vec<f32>,
}

/// An image left out of the dataset, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dropped {
    pub path: String,
    pub id: Option<String>,
    pub score: Option<f32>,
    pub reason: String,
}

/// How many hits each query found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryReport {
    pub query: String,
    pub hits: usize,
    pub best_score: Option<f32>,
}

/// Runs every query (`pool` hits each, at least `min_score`) and merges the hits by id,
/// best score first (ties by id, so runs repeat). Hits whose id is in `exclude` (the
/// examples) are not candidates.
pub fn search(
    database: &ImageDatabase,
    queries: &[NamedQuery],
    pool: usize,
    min_score: Option<f32>,
    exclude: &[String],
) -> Result<(Vec<Candidate>, Vec<QueryReport>)> {
    let mut found: HashMap<String, Candidate> = HashMap::new();
    let mut reports = Vec::with_capacity(queries.len());
    for query in queries {
        let hits = database.search(&query.embedding, pool, min_score)?;
        reports.push(QueryReport {
            query: query.name.clone(),
            hits: hits.len(),
            best_score: hits.first().map(|hit| hit.score),
        });
        for hit in hits {
            if exclude.contains(&hit.id) {
                continue;
            }
            if let Some(known) = found.get_mut(&hit.id) {
                if hit.score > known.score {
                    known.score = hit.score;
                    known.query = query.name.clone();
                }
                continue;
            }
            let Some(embedding) = database.embedding(&hit.id)? else {
                continue; // removed since the search
            };
            let row = ImageRow {
                id: hit.id.clone(),
                path: hit.path,
                labels: hit.labels,
                caption: hit.caption,
                width: hit.width,
                height: hit.height,
            };
            found.insert(
                hit.id,
                Candidate {
                    row,
                    score: hit.score,
                    query: query.name.clone(),
                    embedding,
                },
            );
        }
    }
    let mut candidates: Vec<Candidate> = found.into_values().collect();
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.row.id.cmp(&b.row.id))
    });
    Ok((candidates, reports))
}

/// Keeps, best first, the candidates whose cosine similarity to every example and every
/// kept candidate is below `threshold`; the others are dropped as near-duplicates.
pub fn deduplicate(
    candidates: Vec<Candidate>,
    examples: &[(String, Vec<f32>)],
    threshold: f32,
) -> (Vec<Candidate>, Vec<Dropped>) {
    let mut kept: Vec<Candidate> = Vec::new();
    let mut dropped = Vec::new();
    for candidate in candidates {
        let twin = examples
            .iter()
            .map(|(name, embedding)| (name.clone(), cosine(embedding, &candidate.embedding)))
            .chain(kept.iter().map(|other| {
                (
                    other.row.path.clone(),
                    cosine(&other.embedding, &candidate.embedding),
                )
            }))
            .find(|(_, similarity)| *similarity >= threshold);
        match twin {
            Some((name, similarity)) => dropped.push(Dropped {
                path: candidate.row.path.clone(),
                id: Some(candidate.row.id.clone()),
                score: Some(candidate.score),
                reason: format!("near-duplicate of {name} (cosine {similarity:.4})"),
            }),
            None => kept.push(candidate),
        }
    }
    (kept, dropped)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    // the embeddings are L2-normalised
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, score: f32, embedding: Vec<f32>) -> Candidate {
        Candidate {
            row: ImageRow {
                id: id.into(),
                path: format!("/images/{id}.png"),
                labels: Vec::new(),
                caption: None,
                width: 8,
                height: 8,
            },
            score,
            query: "example".into(),
            embedding,
        }
    }

    #[test]
    fn near_duplicates_of_examples_and_better_hits_are_dropped() {
        let s = 0.6_f32.sqrt();
        let t = 0.4_f32.sqrt();
        let candidates = vec![
            candidate("a", 0.9, vec![1.0, 0.0, 0.0]),
            candidate("b", 0.8, vec![0.999, 0.0447, 0.0]),
            candidate("c", 0.7, vec![0.0, 1.0, 0.0]),
            candidate("d", 0.6, vec![0.0, 0.0, 1.0]),
            candidate("e", 0.5, vec![s, 0.0, t]),
        ];
        let examples = vec![("example.png".to_string(), vec![0.0, 0.0, 1.0])];
        let (kept, dropped) = deduplicate(candidates, &examples, 0.95);
        let ids: Vec<&str> = kept.iter().map(|c| c.row.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "e"]);
        assert_eq!(dropped.len(), 2);
        assert!(dropped[0].reason.contains("/images/a.png"), "{dropped:?}");
        assert!(dropped[1].reason.contains("example.png"), "{dropped:?}");
    }
}
