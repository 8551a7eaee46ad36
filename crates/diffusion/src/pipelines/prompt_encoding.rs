//! Prompt encoding for SDXL's two text encoders, after diffusers
//! `StableDiffusionXLPipeline.encode_prompt`: each encoder's penultimate hidden state
//! (`hidden_states[-2]`), concatenated on the feature axis, and the pooled projection of
//! the second encoder.
//!
//! Long prompts: diffusers truncates at 77 tokens. huatu, like the popular UIs, splits
//! the prompt's tokens into windows of 75, wraps each in bos/eos and pads it to 77,
//! encodes each window on its own and concatenates the hidden states along the sequence
//! axis; the pooled embedding is the first window's. Prompt and negative prompt are
//! padded to the same number of windows with empty windows. A prompt of at most 75
//! tokens is exactly one window and matches diffusers.

use candle_core::{Device, Tensor, D};

use crate::loading::SdxlComponents;
use crate::Result;

/// Text conditioning for one prompt: [1, 77·windows, 768+1280] and [1, 1280] for SDXL.
#[derive(Debug, Clone)]
pub struct PromptEmbeddings {
    pub prompt_embeds: Tensor,
    pub pooled_prompt_embeds: Tensor,
}

impl PromptEmbeddings {
    /// All zeros of the same shape (diffusers' `force_zeros_for_empty_prompt`).
    pub fn zeros_like(&self) -> Result<Self> {
        Ok(Self {
            prompt_embeds: self.prompt_embeds.zeros_like()?,
            pooled_prompt_embeds: self.pooled_prompt_embeds.zeros_like()?,
        })
    }
}

/// Token windows of one prompt for both tokenizers.
pub struct PromptTokens {
    pub windows: Vec<Vec<u32>>,
    pub windows_2: Vec<Vec<u32>>,
}

pub fn tokenize(components: &SdxlComponents, prompt: &str) -> PromptTokens {
    PromptTokens {
        windows: components.tokenizer.encode_windows(prompt),
        windows_2: components.tokenizer_2.encode_windows(prompt),
    }
}

/// Pads both token lists with empty windows to `count` windows.
pub fn pad_windows(tokens: &mut PromptTokens, components: &SdxlComponents, count: usize) {
    components.tokenizer.pad_windows(&mut tokens.windows, count);
    components
        .tokenizer_2
        .pad_windows(&mut tokens.windows_2, count);
}

fn ids_tensor(ids: &[u32], device: &Device) -> Result<Tensor> {
    Ok(Tensor::new(ids, device)?.unsqueeze(0)?)
}

/// Runs both text encoders over every window.
pub fn encode_tokens(
    components: &SdxlComponents,
    tokens: &PromptTokens,
) -> Result<PromptEmbeddings> {
    let device = &components.device;
    let mut windows = Vec::with_capacity(tokens.windows.len());
    let mut pooled = None;
    for (ids, ids_2) in tokens.windows.iter().zip(&tokens.windows_2) {
        // hidden_states[-2] of the first encoder; its last layer is never needed.
        let penultimate_index = components.text_encoder.config().num_hidden_layers - 1;
        let hidden = components
            .text_encoder
            .hidden_state(&ids_tensor(ids, device)?, penultimate_index)?;
        let second = components
            .text_encoder_2
            .forward(&ids_tensor(ids_2, device)?)?;
        let hidden_2 = penultimate(&second.hidden_states)?;
        windows.push(Tensor::cat(&[&hidden, hidden_2], D::Minus1)?); // [1, 77, 768+1280]
        if pooled.is_none() {
            pooled = Some(second.text_embeds.clone());
        }
    }
    let pooled_prompt_embeds = match pooled {
        Some(pooled) => pooled,
        None => {
            return Err(crate::Error::InvalidRequest(
                "a prompt produced no token window".into(),
            ))
        }
    };
    Ok(PromptEmbeddings {
        prompt_embeds: Tensor::cat(&windows, 1)?,
        pooled_prompt_embeds,
    })
}

fn penultimate(hidden_states: &[Tensor]) -> Result<&Tensor> {
    hidden_states
        .len()
        .checked_sub(2)
        .map(|index| &hidden_states[index])
        .ok_or_else(|| {
            crate::Error::Config("text encoder returned fewer than two hidden states".into())
        })
}

/// The positive and (when guidance is on) negative conditioning, as diffusers builds it:
/// no negative prompt and `force_zeros_for_empty_prompt` → zeros; otherwise the negative
/// prompt (an explicitly empty one included) is encoded like any prompt.
pub fn encode_prompt_pair(
    components: &SdxlComponents,
    prompt: &str,
    negative_prompt: Option<&str>,
    do_classifier_free_guidance: bool,
) -> Result<(PromptEmbeddings, Option<PromptEmbeddings>)> {
    let mut tokens = tokenize(components, prompt);
    if !do_classifier_free_guidance {
        return Ok((encode_tokens(components, &tokens)?, None));
    }
    let zero_out_negative = negative_prompt.is_none() && components.force_zeros_for_empty_prompt;
    if zero_out_negative {
        let positive = encode_tokens(components, &tokens)?;
        let negative = positive.zeros_like()?;
        return Ok((positive, Some(negative)));
    }
    let mut negative_tokens = tokenize(components, negative_prompt.unwrap_or(""));
    let count = tokens.windows.len().max(negative_tokens.windows.len());
    pad_windows(&mut tokens, components, count);
    pad_windows(&mut negative_tokens, components, count);
    Ok((
        encode_tokens(components, &tokens)?,
        Some(encode_tokens(components, &negative_tokens)?),
    ))
}
