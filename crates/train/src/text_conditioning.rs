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
        let mut embeds = Vec::with_capacity(captions.len());
        let mut pooled = Vec::with_capacity(captions.len());
        for caption in captions {
            if !self.encoded.contains_key(caption) {
                let encoded = encode_tokens(components, &truncated_tokens(components, caption))?;
                self.encoded.insert(caption.clone(), encoded);
            }
            if let Some(encoded) = self.encoded.get(caption) {
                embeds.push(encoded.prompt_embeds.clone());
                pooled.push(encoded.pooled_prompt_embeds.clone());
            }
        }
        Ok((Tensor::cat(&embeds, 0)?, Tensor::cat(&pooled, 0)?))
    }
}

/// The same conditioning through the encoders with the autograd graph kept (text-encoder
/// LoRA training): nothing is cached.
pub fn encode_batch_with_graph(
    components: &SdxlComponents,
    captions: &[String],
) -> Result<(Tensor, Tensor)> {
    let mut embeds = Vec::with_capacity(captions.len());
    let mut pooled = Vec::with_capacity(captions.len());
    for caption in captions {
        let encoded = encode_tokens(components, &truncated_tokens(components, caption))?;
        embeds.push(encoded.prompt_embeds);
        pooled.push(encoded.pooled_prompt_embeds);
    }
    Ok((Tensor::cat(&embeds, 0)?, Tensor::cat(&pooled, 0)?))
}
