//! Prompt-to-Prompt image pairs, as InstructPix2Pix generated its training data
//! (timothybrooks/instruct-pix2pix, dataset_creation/generate_img_dataset.py): the
//! original caption and the edited caption are denoised together from the same initial
//! noise, and for the first fraction `p` of the steps every self-attention layer gives the
//! edited image the original image's attention maps (both in the unconditional and the
//! conditional half of classifier-free guidance), so the pair differs only where the
//! captions differ. Step `i` of `n` shares when `p > i / (n − 1)`, the reference's rule.
//!
//! Google's prompt-to-prompt cross-attention edits come on top when asked
//! (`cross_attention`: replace or refine, for the first `cross_attention_fraction` of the
//! steps by the same rule; `reweight` scales chosen words' maps): see
//! [`crate::models::attention_control`] and [`super::token_alignment`].
//!
//! Everything else is `text_to_image`: the same encoding, guidance, schedulers and decoder.
//! Each image keeps its own scheduler and noise stream, both seeded alike, so ancestral
//! samplers add the same noise to both images (the reference's "same noise across the
//! batch").

use candle_core::{DType, Tensor};

use super::guidance;
use super::latents::{decode_latents, micro_conditioning, prepare_latents};
use super::progress::{Progress, ProgressSink};
use super::prompt_encoding::{encode_tokens, pad_windows, tokenize, PromptEmbeddings};
use super::stable_diffusion_xl::Text2ImageRequest;
use super::token_alignment::{token_map, CrossAttentionMode};
use crate::loading::SdxlComponents;
use huatu_imaging::RgbImage;
use std::cell::RefCell;
use std::rc::Rc;

use crate::models::attention_control::{
    with_attention_control, AttentionControl, CrossAttentionEdit, WordMaps,
};
use crate::models::unet_2d_condition::AddedConditions;
use crate::schedulers::NoiseSource;
use crate::{Error, Result};

/// A pair request: `base` is the original caption's text-to-image request (its prompt,
/// size, steps, guidance, scheduler, seed and latents apply to both images).
#[derive(Debug, Clone)]
pub struct EditPairRequest {
    pub base: Text2ImageRequest,
    pub edited_prompt: String,
    /// Fraction of the denoising steps with shared self-attention maps (IP2P samples it
    /// in [0.1, 0.9]).
    pub self_attention_fraction: f64,
    /// Google's prompt-to-prompt cross-attention edit (off in InstructPix2Pix's generation).
    pub cross_attention: CrossAttentionMode,
    /// Fraction of the steps the cross-attention edit (and re-weighting) applies to.
    pub cross_attention_fraction: f64,
    /// Words of the edited caption whose cross-attention maps are scaled, and by how much.
    pub reweight: Vec<(String, f64)>,
    /// Google's local blend: only where these words attend may the edited image differ.
    pub local_blend: Option<LocalBlend>,
}

/// Local blending (Google's `LocalBlend`): after each step from `start` of the way on, the
/// edited latents outside a mask are set back to the original's. The mask: each image's
/// cross-attention on the words (mean over heads, summed over the words' tokens, over the
/// lowest-resolution cross-attention layers and over the steps so far), max-pooled 3×3,
/// upsampled (nearest) to the latents, divided by its maximum, above `threshold` in
/// either image.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalBlend {
    /// Words of either caption (each must be in at least one).
    pub words: Vec<String>,
    pub threshold: f64,
    /// Fraction of the steps after which blending starts.
    pub start: f64,
}

impl EditPairRequest {
    /// InstructPix2Pix's pair: self-attention sharing only.
    pub fn new(
        base: Text2ImageRequest,
        edited_prompt: impl Into<String>,
        self_attention_fraction: f64,
    ) -> Self {
        Self {
            base,
            edited_prompt: edited_prompt.into(),
            self_attention_fraction,
            cross_attention: CrossAttentionMode::Off,
            cross_attention_fraction: 0.0,
            reweight: Vec::new(),
            local_blend: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.base.validate()?;
        for (name, fraction) in [
            ("shared-attention fraction p", self.self_attention_fraction),
            ("cross-attention fraction", self.cross_attention_fraction),
        ] {
            if !(0.0..=1.0).contains(&fraction) {
                return Err(Error::InvalidRequest(format!(
                    "the {name} must be within [0, 1], got {fraction}"
                )));
            }
        }
        if let Some((word, weight)) = self.reweight.iter().find(|(_, weight)| !weight.is_finite()) {
            return Err(Error::InvalidRequest(format!(
                "the weight of `{word}` must be finite, got {weight}"
            )));
        }
        if let Some(blend) = &self.local_blend {
            if blend.words.is_empty()
                || !(0.0..=1.0).contains(&blend.start)
                || !blend.threshold.is_finite()
            {
                return Err(Error::InvalidRequest(
                    "local blend needs words, a start within [0, 1] and a finite threshold".into(),
                ));
            }
        }
        Ok(())
    }

    /// Whether step `index` of `total` shares self-attention.
    pub fn shares_at(&self, index: usize, total: usize) -> bool {
        active(self.self_attention_fraction, index, total)
    }

    /// Whether step `index` of `total` edits cross-attention.
    pub fn edits_cross_attention_at(&self, index: usize, total: usize) -> bool {
        self.has_cross_attention_edit() && active(self.cross_attention_fraction, index, total)
    }

    fn has_cross_attention_edit(&self) -> bool {
        self.cross_attention != CrossAttentionMode::Off || !self.reweight.is_empty()
    }
}

/// The reference's rule: step `index` of `total` is controlled while
/// `fraction > index / (total − 1)`.
fn active(fraction: f64, index: usize, total: usize) -> bool {
    let progress = if total > 1 {
        index as f64 / (total - 1) as f64
    } else {
        0.0
    };
    fraction > progress
}

/// Per batch row, 1 at the tokens of the blend words in that row's caption: [rows, tokens].
fn blend_words(
    components: &SdxlComponents,
    request: &EditPairRequest,
    blend: &LocalBlend,
    rows: usize,
    text_tokens: usize,
) -> Result<Tensor> {
    let tokenizer = &components.tokenizer;
    let captions = [
        request.base.settings.prompt.as_str(),
        request.edited_prompt.as_str(),
    ];
    let mut marks = [vec![0f32; text_tokens], vec![0f32; text_tokens]];
    for word in &blend.words {
        let tokens = tokenizer.encode_content(word);
        let mut found = false;
        for (caption, marks) in captions.iter().zip(marks.iter_mut()) {
            let content = tokenizer.encode_content(caption);
            let start = (!tokens.is_empty())
                .then(|| {
                    content
                        .windows(tokens.len())
                        .position(|piece| piece == tokens.as_slice())
                })
                .flatten();
            if let Some(start) = start.filter(|start| start + tokens.len() < text_tokens) {
                marks[start + 1..start + 1 + tokens.len()].fill(1.0);
                found = true;
            }
        }
        if !found {
            return Err(Error::InvalidRequest(format!(
                "local blend: `{word}` is in neither caption"
            )));
        }
    }
    let values: Vec<f32> = (0..rows).flat_map(|row| marks[row % 2].clone()).collect();
    Ok(Tensor::from_vec(
        values,
        (rows, text_tokens),
        &components.device,
    )?)
}

/// The local-blend mask [1, 1, h, w] from the recorded maps of the conditional rows.
fn blend_mask(
    store: &std::collections::BTreeMap<usize, Tensor>,
    conditional: usize,
    latents: &Tensor,
    threshold: f64,
) -> Result<Tensor> {
    let (_, _, height, width) = latents.dims4()?;
    let Some((&tokens, maps)) = store.iter().next() else {
        return Err(Error::InvalidRequest(
            "local blend: the UNet has no cross-attention".into(),
        ));
    };
    let factor = ((height * width) as f64 / tokens as f64).sqrt().round() as usize;
    let (map_height, map_width) = (height / factor.max(1), width / factor.max(1));
    if map_height * map_width != tokens {
        return Err(Error::InvalidRequest(format!(
            "local blend: {tokens} attention positions do not tile {height}×{width} latents"
        )));
    }
    let maps = maps
        .narrow(0, conditional, 2)?
        .reshape((2, 1, map_height, map_width))?;
    let pooled = maps
        .pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .max_pool2d_with_stride(3, 1)?;
    let upsampled = pooled.upsample_nearest2d(height, width)?;
    let peak = upsampled
        .max_keepdim(2)?
        .max_keepdim(3)?
        .clamp(f32::MIN_POSITIVE, f32::MAX)?;
    let above = upsampled
        .broadcast_div(&peak)?
        .gt(threshold)?
        .to_dtype(DType::F32)?;
    Ok(above.max_keepdim(0)?)
}

/// The cross-attention edit over every text token of the batch's conditioning.
fn cross_attention_edit(
    components: &SdxlComponents,
    request: &EditPairRequest,
    text_tokens: usize,
) -> Result<CrossAttentionEdit> {
    let tokenizer = &components.tokenizer;
    let original = tokenizer.encode_content(&request.base.settings.prompt);
    let edited = tokenizer.encode_content(&request.edited_prompt);
    let reweight: Vec<(String, Vec<u32>, f64)> = request
        .reweight
        .iter()
        .map(|(word, weight)| (word.clone(), tokenizer.encode_content(word), *weight))
        .collect();
    let map = token_map(
        request.cross_attention,
        &original,
        &edited,
        &reweight,
        text_tokens,
    )?;
    let device = &components.device;
    Ok(CrossAttentionEdit {
        source: Tensor::new(map.source.as_slice(), device)?,
        alpha: Tensor::new(map.alpha.as_slice(), device)?,
        weight: Tensor::new(map.weight.as_slice(), device)?,
    })
}

/// Both images' final latents ([1, 4, h/8, w/8] each, unscaled) and pictures.
#[derive(Debug, Clone)]
pub struct EditPairOutput {
    pub original_latents: Tensor,
    pub edited_latents: Tensor,
    pub original: RgbImage,
    pub edited: RgbImage,
}

/// Generates the original/edited pair.
pub fn edit_pair(
    components: &SdxlComponents,
    request: &EditPairRequest,
    progress: &mut dyn ProgressSink,
) -> Result<EditPairOutput> {
    request.validate()?;
    let base = &request.base;
    let device = &components.device;
    let dtype = components.dtype;
    let guided = base.settings.guidance_scale > 1.0;

    progress.report(Progress::EncodingPrompt)?;
    let (original, edited, negative) =
        encode_pair(components, base, &request.edited_prompt, guided)?;
    let time_ids = micro_conditioning(
        &base.settings.micro_conditioning,
        base.height,
        base.width,
        device,
    )?;
    // rows: [uncond original, uncond edited, cond original, cond edited] (CFG), else [original, edited]
    let mut rows = Vec::new();
    if let Some(negative) = &negative {
        rows.extend([negative.0.clone(), negative.1.clone()]);
    }
    rows.extend([original, edited]);
    let batch = rows.len();
    let prompt_embeds = Tensor::cat(
        &rows
            .iter()
            .map(|row| &row.prompt_embeds)
            .collect::<Vec<_>>(),
        0,
    )?
    .to_dtype(dtype)?;
    let text_embeds = Tensor::cat(
        &rows
            .iter()
            .map(|row| &row.pooled_prompt_embeds)
            .collect::<Vec<_>>(),
        0,
    )?
    .to_dtype(dtype)?;
    let added = AddedConditions {
        text_embeds,
        time_ids: Tensor::cat(&vec![&time_ids; batch], 0)?.to_dtype(dtype)?,
    };
    // every row takes the original's map: its own half's first row
    let sources: Vec<u32> = (0..batch as u32).map(|row| row - row % 2).collect();
    let sources = Tensor::new(sources.as_slice(), device)?;
    let word_maps = match &request.local_blend {
        Some(blend) => Some(WordMaps {
            words: blend_words(components, request, blend, batch, prompt_embeds.dim(1)?)?,
            store: Rc::new(RefCell::new(std::collections::BTreeMap::new())),
        }),
        None => None,
    };
    let cross_edit = match request.has_cross_attention_edit() {
        true => Some(cross_attention_edit(
            components,
            request,
            prompt_embeds.dim(1)?,
        )?),
        false => None,
    };

    let build = || {
        base.settings.scheduler.build(
            &components.scheduler_config,
            base.settings.num_inference_steps,
        )
    };
    let mut schedulers = [build()?, build()?];
    let timesteps = schedulers[0].timesteps().to_vec();
    let mut noise = NoiseSource::new(base.settings.seed);
    let latents = prepare_latents(
        base.settings.noise.as_ref(),
        &mut noise,
        components.unet.config().in_channels,
        base.height,
        base.width,
        schedulers[0].init_noise_sigma(),
        dtype,
        device,
    )?;
    let mut noises = [noise.clone(), noise];
    let mut latents = [latents.clone(), latents];

    for (index, &timestep) in timesteps.iter().enumerate() {
        let pair = Tensor::cat(&[&latents[0], &latents[1]], 0)?;
        let model_input = if guided {
            Tensor::cat(&[&pair, &pair], 0)?
        } else {
            pair
        };
        let model_input = schedulers[0].scale_model_input(&model_input, timestep)?;
        let control = AttentionControl {
            self_sources: request
                .shares_at(index, timesteps.len())
                .then(|| sources.clone()),
            cross: cross_edit
                .as_ref()
                .filter(|_| request.edits_cross_attention_at(index, timesteps.len()))
                .cloned(),
            word_maps: word_maps.clone(),
        };
        let run = || {
            components
                .unet
                .forward(&model_input, timestep, &prompt_embeds, &added, None)
        };
        let noise_pred = with_attention_control(&control, run)?;
        let noise_pred = if guided {
            guidance::combine(
                &noise_pred,
                base.settings.guidance_scale,
                base.settings.guidance_rescale,
            )?
        } else {
            noise_pred
        };
        for image in 0..2 {
            let prediction = noise_pred.narrow(0, image, 1)?;
            latents[image] = schedulers[image].step(
                &prediction,
                timestep,
                &latents[image],
                &mut noises[image],
            )?;
        }
        if let (Some(blend), Some(maps)) = (&request.local_blend, &word_maps) {
            if index as f64 >= blend.start * timesteps.len() as f64 {
                let conditional = if guided { 2 } else { 0 };
                let mask = blend_mask(
                    &maps.store.borrow(),
                    conditional,
                    &latents[0],
                    blend.threshold,
                )?
                .to_dtype(latents[0].dtype())?;
                latents[1] = (&latents[0] + (&latents[1] - &latents[0])?.broadcast_mul(&mask)?)?;
            }
        }
        progress.report(Progress::Step {
            step: index + 1,
            total: timesteps.len(),
        })?;
    }

    progress.report(Progress::Decoding)?;
    let [original_latents, edited_latents] = latents;
    Ok(EditPairOutput {
        original: decode_latents(components, &original_latents, &base.settings.decode)?,
        edited: decode_latents(components, &edited_latents, &base.settings.decode)?,
        original_latents: original_latents.to_dtype(DType::F32)?,
        edited_latents: edited_latents.to_dtype(DType::F32)?,
    })
}

/// The original's and the edited caption's conditioning, and their negatives with guidance.
type PairEmbeddings = (
    PromptEmbeddings,
    PromptEmbeddings,
    Option<(PromptEmbeddings, PromptEmbeddings)>,
);

/// Both captions' conditioning and, with guidance, each one's negative (zeros without a
/// negative prompt under `force_zeros_for_empty_prompt`, as `encode_prompt_pair`), every
/// prompt padded to the same number of token windows so they batch.
fn encode_pair(
    components: &SdxlComponents,
    base: &Text2ImageRequest,
    edited_prompt: &str,
    guided: bool,
) -> Result<PairEmbeddings> {
    let mut original = tokenize(components, &base.settings.prompt);
    let mut edited = tokenize(components, edited_prompt);
    let zero_negative =
        base.settings.negative_prompt.is_none() && components.force_zeros_for_empty_prompt;
    let mut negative = (guided && !zero_negative).then(|| {
        tokenize(
            components,
            base.settings.negative_prompt.as_deref().unwrap_or(""),
        )
    });
    let count = [Some(&original), Some(&edited), negative.as_ref()]
        .into_iter()
        .flatten()
        .map(|tokens| tokens.windows.len())
        .max()
        .unwrap_or(1);
    for tokens in [Some(&mut original), Some(&mut edited), negative.as_mut()]
        .into_iter()
        .flatten()
    {
        pad_windows(tokens, components, count);
    }
    let original = encode_tokens(components, &original)?;
    let edited = encode_tokens(components, &edited)?;
    let negatives = match (guided, negative) {
        (false, _) => None,
        (true, Some(tokens)) => {
            let negative = encode_tokens(components, &tokens)?;
            Some((negative.clone(), negative))
        }
        (true, None) => Some((original.zeros_like()?, edited.zeros_like()?)),
    };
    Ok((original, edited, negatives))
}
