//! The CRF's second training stage: with the encoder and tagger trained (per-character
//! cross-entropy), their logits on the training data are computed once and frozen, and
//! only the CRF's start, end and transition scores are fitted to the gold tag sequences
//! by the forward-algorithm negative log-likelihood (piecewise training, Sutton &
//! McCallum 2005). Back-propagating the sequential forward algorithm through the
//! encoder at every step made an epoch several times slower on two cores.

use candle_core::Tensor;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use crate::error::Result;
use crate::intent::bert::Dropout;
use crate::intent::joint::{Batch, JointModel};

/// Frozen tagger logits of one batch with its gold tags.
pub struct FrozenBatch {
    /// [b, s, tags]
    pub emissions: Tensor,
    /// [b, s] u32
    pub tags: Tensor,
    /// [b, s] f32
    pub mask: Tensor,
}

/// The tagger's logits for `batch` without dropout, detached from the encoder.
pub fn freeze(model: &JointModel, batch: &Batch) -> Result<FrozenBatch> {
    let output = model.forward(
        &batch.input_ids,
        &batch.word_tags,
        &batch.attention_mask,
        &mut Dropout::disabled(),
    )?;
    Ok(FrozenBatch {
        emissions: output.tag_logits.detach(),
        tags: batch.tags.clone(),
        mask: batch.tag_weights.clone(),
    })
}

/// Fits the CRF variables `vars` over `batches` for `epochs` passes; returns the mean
/// negative log-likelihood per character of each pass.
pub fn fit_crf(
    model: &JointModel,
    vars: Vec<candle_core::Var>,
    batches: &[FrozenBatch],
    epochs: usize,
    learning_rate: f64,
) -> Result<Vec<f32>> {
    let Some(crf) = model.crf() else {
        return Ok(Vec::new());
    };
    let mut optimizer = AdamW::new(
        vars,
        ParamsAdamW {
            lr: learning_rate,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut losses = Vec::with_capacity(epochs);
    for _ in 0..epochs {
        let (mut total, mut characters) = (0f64, 0f64);
        for batch in batches {
            let count = batch.mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
            let nll = crf.neg_log_likelihood(&batch.emissions, &batch.tags, &batch.mask)?;
            let loss = (nll / count)?;
            total += loss.to_scalar::<f32>()? as f64 * count;
            characters += count;
            optimizer.backward_step(&loss)?;
        }
        losses.push((total / characters.max(1.0)) as f32);
    }
    Ok(losses)
}
