//! The attention-control hook of Prompt-to-Prompt generation. While a pipeline runs the
//! UNet inside [`with_attention_control`], the attention layers of this thread edit a
//! batch laid out as (original, edited) row pairs:
//!
//! - self-attention sharing, InstructPix2Pix's data generation
//!   (timothybrooks/instruct-pix2pix, its modified `CrossAttention`): each row attends
//!   with its source row's scores, softmax(q_src·k_srcᵀ/√d)·v_own;
//! - cross-attention edits, Google's prompt-to-prompt (replace, refine, re-weight): the
//!   edited rows' attention probabilities over the text tokens become
//!   (P_orig[…, source[j]]·α_j + P_edit[…, j]·(1 − α_j))·w_j, where `source` maps each
//!   edited token to the original token whose map it takes, α says which do, and `w`
//!   re-weights tokens;
//! - recording the cross-attention maps of chosen words, from which the pipeline makes the
//!   local-blend mask (Google's `LocalBlend`).
//!
//! Off, it costs one thread-local read per attention call.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use candle_core::{DType, Result, Tensor, D};

/// What the attention layers do while the control is set.
#[derive(Debug, Clone, Default)]
pub struct AttentionControl {
    /// Self-attention: for each batch row, the row whose attention map it uses (u32 [b]).
    pub self_sources: Option<Tensor>,
    /// Cross-attention: how the edited (odd) rows take the original (even) rows' maps.
    pub cross: Option<CrossAttentionEdit>,
    /// Cross-attention maps of chosen words to record (for local blending).
    pub word_maps: Option<WordMaps>,
}

/// Records, per cross-attention resolution, each row's attention on chosen words.
#[derive(Debug, Clone)]
pub struct WordMaps {
    /// f32 [b, text tokens]: 1 at the tokens of the words to record, per batch row.
    pub words: Tensor,
    /// Query-token count n → the rows' maps [b, n], mean over heads, summed over the
    /// words' tokens and over every recorded layer and step.
    pub store: Rc<RefCell<BTreeMap<usize, Tensor>>>,
}

/// Per text token of the edited prompt (all three [tokens]).
#[derive(Debug, Clone)]
pub struct CrossAttentionEdit {
    /// u32: the original prompt's token whose map this token takes.
    pub source: Tensor,
    /// f32: 1 where the original's map is taken, 0 where the token keeps its own.
    pub alpha: Tensor,
    /// f32: the re-weighting factor (1 leaves the token alone).
    pub weight: Tensor,
}

thread_local! {
    static CONTROL: RefCell<Option<AttentionControl>> = const { RefCell::new(None) };
}

/// Puts the previous control back when dropped, so a failing or panicking UNet call
/// leaves the hook as it was.
struct Restore(Option<AttentionControl>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CONTROL.with(|control| *control.borrow_mut() = previous);
    }
}

/// Runs `f` with `control` on this thread's attention layers.
pub fn with_attention_control<R>(control: &AttentionControl, f: impl FnOnce() -> R) -> R {
    let previous = CONTROL.with(|current| current.replace(Some(control.clone())));
    let _restore = Restore(previous);
    f()
}

/// Query and key with each row replaced by its source row's, when self-attention sharing
/// is on; otherwise `None` (the layer runs unchanged).
pub(crate) fn shared_query_key(query: &Tensor, key: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
    CONTROL.with(|control| {
        let control = control.borrow();
        let Some(rows) = control.as_ref().and_then(|c| c.self_sources.as_ref()) else {
            return Ok(None);
        };
        if rows.dim(0)? != query.dim(0)? {
            candle_core::bail!(
                "attention control: {} source rows for a batch of {}",
                rows.dim(0)?,
                query.dim(0)?
            );
        }
        let rows = rows.to_device(query.device())?;
        let pick = |xs: &Tensor| xs.contiguous()?.index_select(&rows, 0);
        Ok(Some((pick(query)?, pick(key)?)))
    })
}

/// Cross-attention with the edit applied and the word maps recorded ([b, heads, n, d]),
/// when the control asks for either; otherwise `None`. The probabilities are computed
/// explicitly (in f32), as both need them.
pub(crate) fn edited_cross_attention(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
) -> Result<Option<Tensor>> {
    CONTROL.with(|control| {
        let control = control.borrow();
        let Some(control) = control.as_ref().filter(|c| c.cross.is_some() || c.word_maps.is_some()) else {
            return Ok(None);
        };
        let (batch, heads, tokens, head_dim) = query.dims4()?;
        let text_tokens = key.dim(2)?;
        let device = query.device();
        let scale = 1.0 / (head_dim as f64).sqrt();
        let scores = (query.contiguous()?.matmul(&key.t()?.contiguous()?)?.to_dtype(DType::F32)? * scale)?;
        let mut probs = candle_nn::ops::softmax_last_dim(&scores)?;
        if let Some(edit) = &control.cross {
            probs = apply_edit(&probs, edit)?;
        }
        if let Some(maps) = &control.word_maps {
            if maps.words.dims() != [batch, text_tokens] {
                candle_core::bail!(
                    "attention control: word maps for {:?} rows × tokens, the batch has {batch} × {text_tokens}",
                    maps.words.dims()
                );
            }
            // mean over heads, summed over the words' tokens: [b, n]
            let words = maps.words.to_device(device)?.to_dtype(DType::F32)?.reshape((batch, text_tokens, 1))?;
            let per_pixel = (probs.sum(1)? / heads as f64)?.matmul(&words)?.squeeze(2)?;
            let mut store = maps.store.borrow_mut();
            let total = match store.remove(&tokens) {
                Some(sum) => (sum + per_pixel)?,
                None => per_pixel,
            };
            store.insert(tokens, total);
        }
        Ok(Some(probs.to_dtype(query.dtype())?.matmul(&value.contiguous()?)?))
    })
}

/// The edited (odd) rows' probabilities [b, heads, n, m] after the edit.
fn apply_edit(probs: &Tensor, edit: &CrossAttentionEdit) -> Result<Tensor> {
    let (batch, heads, tokens, text_tokens) = probs.dims4()?;
    if batch % 2 != 0 || edit.source.dim(0)? != text_tokens {
        candle_core::bail!(
            "attention control: a cross-attention edit over {} tokens for a batch of {batch} with {text_tokens} tokens",
            edit.source.dim(0)?
        );
    }
    let device = probs.device();
    let rows = |offset: u32| -> Result<Tensor> {
        let indices: Vec<u32> = (0..batch as u32 / 2)
            .map(|pair| 2 * pair + offset)
            .collect();
        Tensor::new(indices.as_slice(), device)
    };
    let original = probs.index_select(&rows(0)?, 0)?;
    let own = probs.index_select(&rows(1)?, 0)?;
    let per_token = |t: &Tensor| -> Result<Tensor> {
        t.to_device(device)?
            .to_dtype(DType::F32)?
            .reshape((1, 1, 1, text_tokens))
    };
    let alpha = per_token(&edit.alpha)?;
    let mapped = original
        .contiguous()?
        .index_select(&edit.source.to_device(device)?, D::Minus1)?;
    let edited = (mapped.broadcast_mul(&alpha)? + own.broadcast_mul(&alpha.affine(-1.0, 1.0)?)?)?
        .broadcast_mul(&per_token(&edit.weight)?)?;
    Tensor::stack(&[&original, &edited], 1)?.reshape((batch, heads, tokens, text_tokens))
}
