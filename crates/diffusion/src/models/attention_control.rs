//! The attention-control hook of Prompt-to-Prompt generation: while a pipeline runs the
//! UNet inside [`share_self_attention`], every self-attention layer of this thread lets
//! some batch rows use another row's attention map — InstructPix2Pix's data generation
//! (timothybrooks/instruct-pix2pix, its modified `CrossAttention`): the edited image's
//! rows attend with the original image's scores, softmax(q_src·k_srcᵀ/√d)·v_own.
//!
//! Off, it costs one thread-local read per attention call; cross-attention is untouched.

use std::cell::RefCell;

use candle_core::{Result, Tensor};

thread_local! {
    static SELF_ATTENTION_SOURCES: RefCell<Option<Tensor>> = const { RefCell::new(None) };
}

/// Resets the hook when dropped, so a failing or panicking UNet call leaves it off.
struct Reset(Option<Tensor>);

impl Drop for Reset {
    fn drop(&mut self) {
        let previous = self.0.take();
        SELF_ATTENTION_SOURCES.with(|sources| *sources.borrow_mut() = previous);
    }
}

/// Runs `f` with self-attention sharing: batch row `i` of every self-attention layer takes
/// the attention map of row `sources[i]` (a u32 tensor of the batch's length).
pub fn share_self_attention<R>(sources: &Tensor, f: impl FnOnce() -> R) -> R {
    let previous = SELF_ATTENTION_SOURCES.with(|current| current.replace(Some(sources.clone())));
    let _reset = Reset(previous);
    f()
}

/// Query and key with each row replaced by its source row's, when sharing is on and the
/// batch matches; otherwise `None` (the layer runs unchanged).
pub(crate) fn shared_query_key(query: &Tensor, key: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
    SELF_ATTENTION_SOURCES.with(|sources| {
        let sources = sources.borrow();
        let Some(rows) = sources.as_ref() else {
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
