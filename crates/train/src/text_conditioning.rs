//! The text conditioning of a training step, as diffusers' script's `encode_prompt`: each
//! caption tokenized to 77 tokens (truncated) by both tokenizers; prompt embeds = both
//! encoders' penultimate hidden states concatenated on the feature axis, pooled = the second
//! encoder's projected output. With frozen encoders every caption is encoded once.

use std::collections::HashMap;

use candle_core::Tensor;
use huatu_diffusion::loading::SdxlComponents;
use huatu_diffusion::pipelines::prompt_encoding::{
    encode_tokens, tokenize, PromptEmbeddings, PromptTokens,
};

use crate::Result;

/// Captions encoded so far (frozen text encoders).
#[derive(Default)]
pub struct CaptionCache {
    encoded: HashMap<String, PromptEmbeddings>,
}

/// The caption's tokens truncated to one 77-token window, as the script's tokenizer call
/// (`max_length`, `truncation=True`): the first window is exactly that.
pub fn truncated_tokens(components: &SdxlComponents, caption: &str) -> PromptTokens {
    let mut tokens = tokenize(components, caption);
    tokens.windows.truncate(1);
    tokens.windows_2.truncate(1);
    tokens
}

impl CaptionCache {
    /// [b, 77, 2048] and [b, 1280] for a batch of captions.
    pub fn batch(
        &mut self,
        components: &SdxlComponents,
        captions: &[String],
    ) -> Result<(Tensor, Tensor)> {
        for caption in captions {
            if !self.encoded.contains_key(caption) {
                let encoded = encode_tokens(components, &truncated_tokens(components, caption))?;
                self.encoded.insert(caption.clone(), encoded);
            }
        }
        stack(
            captions
                .iter()
                .filter_map(|caption| self.encoded.get(caption).cloned()),
        )
    }
}

/// The same conditioning through the encoders with the autograd graph kept (text-encoder
/// LoRA training): nothing is cached.
pub fn encode_batch_with_graph(
    components: &SdxlComponents,
    captions: &[String],
) -> Result<(Tensor, Tensor)> {
    let encoded = captions
        .iter()
        .map(|caption| encode_tokens(components, &truncated_tokens(components, caption)))
        .collect::<huatu_diffusion::Result<Vec<_>>>()?;
    stack(encoded.into_iter())
}

/// The batch's prompt embeds and pooled embeds, concatenated on the batch axis.
fn stack(encoded: impl Iterator<Item = PromptEmbeddings>) -> Result<(Tensor, Tensor)> {
    let (embeds, pooled): (Vec<Tensor>, Vec<Tensor>) = encoded
        .map(|encoded| (encoded.prompt_embeds, encoded.pooled_prompt_embeds))
        .unzip();
    Ok((Tensor::cat(&embeds, 0)?, Tensor::cat(&pooled, 0)?))
}
