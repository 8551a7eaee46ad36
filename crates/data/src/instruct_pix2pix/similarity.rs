//! InstructPix2Pix's CLIP filter (metrics/clip_similarity.py of
//! timothybrooks/instruct-pix2pix): for an original/edited image pair and their captions,
//! image–caption similarity of each image, the directional similarity (does the image
//! change point the way the caption change does) and image–image similarity; and the
//! thresholds its generate_img_dataset.py keeps a pair by.

use serde::Serialize;

/// torch's `F.cosine_similarity` for two vectors (each norm clamped at 1e-8).
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    const EPS: f64 = 1e-8;
    let norm = |v: &[f32]| {
        v.iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt()
            .max(EPS)
    };
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    (dot / (norm(a) * norm(b))) as f32
}

/// The four numbers of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClipSimilarity {
    /// Original image vs original caption.
    pub sim_0: f32,
    /// Edited image vs edited caption.
    pub sim_1: f32,
    /// (edited − original image) vs (edited − original caption).
    pub sim_direction: f32,
    /// Original vs edited image.
    pub sim_image: f32,
}

impl ClipSimilarity {
    /// From L2-normalised CLIP embeddings of both images and both captions.
    pub fn new(image_0: &[f32], image_1: &[f32], text_0: &[f32], text_1: &[f32]) -> Self {
        let difference =
            |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
        Self {
            sim_0: cosine_similarity(image_0, text_0),
            sim_1: cosine_similarity(image_1, text_1),
            sim_direction: cosine_similarity(
                &difference(image_1, image_0),
                &difference(text_1, text_0),
            ),
            sim_image: cosine_similarity(image_0, image_1),
        }
    }
}

/// The filter's thresholds (the reference's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClipThresholds {
    /// Each image against its caption (`--clip-threshold`).
    pub caption: f32,
    /// Directional similarity (`--clip-dir-threshold`).
    pub direction: f32,
    /// Original against edited image (`--clip-img-threshold`).
    pub image: f32,
}

impl Default for ClipThresholds {
    fn default() -> Self {
        Self {
            caption: 0.2,
            direction: 0.2,
            image: 0.7,
        }
    }
}

impl ClipThresholds {
    /// `None` when the pair passes, else why not.
    pub fn rejection(&self, similarity: &ClipSimilarity) -> Option<String> {
        let mut reasons = Vec::new();
        if similarity.sim_0 < self.caption {
            reasons.push(format!(
                "original vs caption {:.3} < {}",
                similarity.sim_0, self.caption
            ));
        }
        if similarity.sim_1 < self.caption {
            reasons.push(format!(
                "edited vs edited caption {:.3} < {}",
                similarity.sim_1, self.caption
            ));
        }
        if similarity.sim_direction < self.direction {
            reasons.push(format!(
                "direction {:.3} < {}",
                similarity.sim_direction, self.direction
            ));
        }
        if similarity.sim_image < self.image {
            reasons.push(format!(
                "image vs image {:.3} < {}",
                similarity.sim_image, self.image
            ));
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}
