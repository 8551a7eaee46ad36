//! Caption decoding as transformers 5 runs it for `BlipForConditionalGeneration.generate`
//! (generation/utils.py): greedy search (`_sample` without sampling) and beam search
//! (`_beam_search` with its defaults: `length_penalty` 1.0, `early_stopping` False), both
//! with the decoder's key/value cache, a whole batch of images at once.
//!
//! Every step mirrors the reference's arithmetic in f32 — the `-1e9` masks, the length
//! normalisation, the top-k over `num_beams · vocab` continuations (2 · `num_beams` kept,
//! ties to the lower index), the early-stop heuristic — so the token ids are the same. The
//! returned rows are what `generate` returns: prompt + generated ids, shorter rows padded
//! (greedy: `pad_token_id`; beam search: `pad_token_id or eos_token_id`, so `eos` when
//! the pad id is 0).

use candle_core::Tensor;

use super::text_decoder::BlipTextLMHeadModel;

/// The reference's "minus infinity" for scores of impossible beams.
const MASKED: f32 = -1.0e9;

/// What `generate` is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerationSettings {
    /// `max_length` = prompt length + `max_new_tokens`.
    pub max_new_tokens: usize,
    /// 1 = greedy.
    pub num_beams: usize,
    /// Generation stops at this token (`sep_token_id` for BLIP).
    pub eos_token_id: u32,
    pub pad_token_id: u32,
}

/// Runs the decoder over `image_embeds` [b, s, h] from `prompt` (starting with bos) and
/// returns one row of ids per image.
pub fn generate(
    decoder: &BlipTextLMHeadModel,
    image_embeds: &Tensor,
    prompt: &[u32],
    settings: &GenerationSettings,
) -> candle_core::Result<Vec<Vec<u32>>> {
    if prompt.is_empty() || settings.max_new_tokens == 0 || settings.num_beams == 0 {
        return Err(candle_core::Error::Msg(format!(
            "generation needs a prompt (got {} ids), max_new_tokens ≥ 1 (got {}) and num_beams ≥ 1 (got {})",
            prompt.len(),
            settings.max_new_tokens,
            settings.num_beams
        )));
    }
    if settings.num_beams == 1 {
        greedy(decoder, image_embeds, prompt, settings)
    } else {
        beam_search(decoder, image_embeds, prompt, settings)
    }
}

/// The first index of the largest value (`torch.argmax`).
fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (index, &value) in row.iter().enumerate() {
        if value > row[best] {
            best = index;
        }
    }
    best as u32
}

/// [rows, t] ids tensor of one token per row.
fn column(ids: &[u32], device: &candle_core::Device) -> candle_core::Result<Tensor> {
    Tensor::from_vec(ids.to_vec(), (ids.len(), 1), device)
}

/// The prompt, one copy per row.
fn prompt_rows(
    prompt: &[u32],
    rows: usize,
    device: &candle_core::Device,
) -> candle_core::Result<Tensor> {
    Tensor::new(prompt, device)?.unsqueeze(0)?.repeat((rows, 1))
}

/// transformers' `_sample` with `do_sample=False`: argmax each step; finished rows get
/// `pad_token_id`; stop when every row has produced eos or at `max_length`.
fn greedy(
    decoder: &BlipTextLMHeadModel,
    image_embeds: &Tensor,
    prompt: &[u32],
    settings: &GenerationSettings,
) -> candle_core::Result<Vec<Vec<u32>>> {
    let device = image_embeds.device();
    let batch = image_embeds.dim(0)?;
    let max_length = prompt.len() + settings.max_new_tokens;
    let mut sequences = vec![prompt.to_vec(); batch];
    let mut unfinished = vec![true; batch];
    let mut cache = decoder.new_cache(image_embeds)?;
    let mut logits = decoder.forward(&prompt_rows(prompt, batch, device)?, &mut cache)?;
    loop {
        let rows: Vec<Vec<f32>> = logits.to_vec2()?;
        let next: Vec<u32> = rows
            .iter()
            .zip(&unfinished)
            .map(|(row, &open)| {
                if open {
                    argmax(row)
                } else {
                    settings.pad_token_id
                }
            })
            .collect();
        for ((sequence, open), &token) in sequences.iter_mut().zip(unfinished.iter_mut()).zip(&next)
        {
            sequence.push(token);
            *open &= token != settings.eos_token_id;
        }
        if sequences[0].len() >= max_length || !unfinished.iter().any(|&open| open) {
            return Ok(sequences);
        }
        logits = decoder.forward(&column(&next, device)?, &mut cache)?;
    }
}

/// `x - max - log Σ exp(x - max)` (`log_softmax` in f32).
fn log_softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&value| (value - max).exp()).sum();
    let log_sum = sum.ln();
    row.iter().map(|&value| value - max - log_sum).collect()
}

/// Indices of the `k` largest values, best first, the lower index first among equals
/// (`torch.topk`).
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// One hypothesis: the generated ids (after the prompt) and its score.
#[derive(Debug, Clone)]
struct Beam {
    tokens: Vec<u32>,
    score: f32,
    finished: bool,
}

/// The beam state of one image (one row of the reference's [batch, beams, …] tensors).
#[derive(Debug, Clone)]
struct ImageBeams {
    running: Vec<Beam>,
    done: Vec<Beam>,
    improvement_possible: bool,
}

/// A continuation: parent beam, token, accumulated log-probability.
struct Candidate {
    beam: usize,
    token: u32,
    score: f32,
    hits_stop: bool,
}

impl ImageBeams {
    fn new(num_beams: usize) -> Self {
        let beam = |score| Beam {
            tokens: Vec::new(),
            score,
            finished: false,
        };
        let mut running = vec![beam(MASKED); num_beams];
        running[0].score = 0.0;
        Self {
            running,
            done: vec![beam(MASKED); num_beams],
            improvement_possible: true,
        }
    }

    /// One step of `_beam_search` for this image: `log_probs` holds one row per running
    /// beam; `generated` is the number of ids generated before this step. Returns, per new
    /// running beam, its parent beam and token, and whether every kept continuation hit a
    /// stopping criterion.
    fn step(
        &mut self,
        log_probs: &[Vec<f32>],
        generated: usize,
        settings: &GenerationSettings,
    ) -> (Vec<(usize, u32)>, bool) {
        let num_beams = self.running.len();
        let vocab = log_probs[0].len();
        // `_get_top_k_continuations`: log-probs plus the running scores, flattened
        let accumulated: Vec<f32> = log_probs
            .iter()
            .zip(&self.running)
            .flat_map(|(row, beam)| row.iter().map(move |&value| value + beam.score))
            .collect();
        let at_max_length = generated + 1 >= settings.max_new_tokens;
        let candidates: Vec<Candidate> = top_k(&accumulated, 2 * num_beams)
            .into_iter()
            .map(|index| {
                let token = (index % vocab) as u32;
                Candidate {
                    beam: index / vocab,
                    token,
                    score: accumulated[index],
                    hits_stop: token == settings.eos_token_id || at_max_length,
                }
            })
            .collect();
        let extend = |candidate: &Candidate| {
            let mut tokens = self.running[candidate.beam].tokens.clone();
            tokens.push(candidate.token);
            tokens
        };

        // `_get_running_beams_for_next_iteration`
        let running_scores: Vec<f32> = candidates
            .iter()
            .map(|candidate| candidate.score + if candidate.hits_stop { MASKED } else { 0.0 })
            .collect();
        let next_running: Vec<usize> = top_k(&running_scores, num_beams);

        // `_update_finished_beams`: only the best `num_beams` continuations may finish
        let length = (generated + 1) as f32; // length_penalty 1.0
        let mut merged: Vec<Beam> = self.done.clone();
        for (rank, candidate) in candidates.iter().enumerate() {
            let just_finished = candidate.hits_stop && rank < num_beams;
            let mut score = candidate.score / length;
            if !self.improvement_possible {
                score += MASKED;
            }
            if !just_finished {
                score += MASKED;
            }
            merged.push(Beam {
                tokens: extend(candidate),
                score,
                finished: just_finished,
            });
        }
        let merged_scores: Vec<f32> = merged.iter().map(|beam| beam.score).collect();
        self.done = top_k(&merged_scores, num_beams)
            .into_iter()
            .map(|index| merged[index].clone())
            .collect();

        let parents: Vec<(usize, u32)> = next_running
            .iter()
            .map(|&rank| (candidates[rank].beam, candidates[rank].token))
            .collect();
        self.running = next_running
            .iter()
            .map(|&rank| Beam {
                tokens: extend(&candidates[rank]),
                score: running_scores[rank],
                finished: false,
            })
            .collect();

        // `_check_early_stop_heuristic` (early_stopping False: the current length)
        let best_possible = self.running[0].score / (generated + 1) as f32;
        let worst_done = self
            .done
            .iter()
            .map(|beam| beam.score)
            .fold(f32::INFINITY, f32::min);
        self.improvement_possible &= self.done.iter().any(|beam| {
            let worst = if beam.finished { worst_done } else { MASKED };
            best_possible > worst
        });
        let all_stop = candidates.iter().all(|candidate| candidate.hits_stop);
        (parents, all_stop)
    }
}

/// transformers' `_beam_search` over the whole batch: `num_beams` rows per image, the
/// cache reordered after every step.
fn beam_search(
    decoder: &BlipTextLMHeadModel,
    image_embeds: &Tensor,
    prompt: &[u32],
    settings: &GenerationSettings,
) -> candle_core::Result<Vec<Vec<u32>>> {
    let device = image_embeds.device();
    let batch = image_embeds.dim(0)?;
    let num_beams = settings.num_beams;
    // `_expand_inputs_for_generation`: each image repeated num_beams times, in place
    let mut cache = decoder.new_cache(image_embeds)?;
    cache.repeat_rows(num_beams)?;
    let mut logits =
        decoder.forward(&prompt_rows(prompt, batch * num_beams, device)?, &mut cache)?;
    let mut images = vec![ImageBeams::new(num_beams); batch];
    let mut generated = 0;
    loop {
        let log_probs: Vec<Vec<f32>> = logits
            .to_vec2::<f32>()?
            .iter()
            .map(|row| log_softmax(row))
            .collect();
        let mut all_stop = true;
        let mut parent_rows = Vec::with_capacity(batch * num_beams);
        let mut next_tokens = Vec::with_capacity(batch * num_beams);
        for (image, state) in images.iter_mut().enumerate() {
            let rows = &log_probs[image * num_beams..(image + 1) * num_beams];
            let (parents, image_stops) = state.step(rows, generated, settings);
            all_stop &= image_stops;
            for (beam, token) in parents {
                parent_rows.push((image * num_beams + beam) as u32);
                next_tokens.push(token);
            }
        }
        generated += 1;
        let improvement_possible = images.iter().any(|state| state.improvement_possible);
        if !improvement_possible || all_stop {
            break;
        }
        cache.reorder(&Tensor::new(parent_rows.as_slice(), device)?)?;
        logits = decoder.forward(&column(&next_tokens, device)?, &mut cache)?;
    }
    let fill = if settings.pad_token_id != 0 {
        settings.pad_token_id
    } else {
        settings.eos_token_id
    };
    let longest = images
        .iter()
        .map(|state| state.done[0].tokens.len())
        .max()
        .unwrap_or(0);
    Ok(images
        .iter()
        .map(|state| {
            let mut row = prompt.to_vec();
            row.extend(&state.done[0].tokens);
            row.resize(prompt.len() + longest, fill);
            row
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_prefers_lower_indices_on_ties() {
        assert_eq!(top_k(&[1.0, 3.0, 3.0, 2.0], 3), vec![1, 2, 3]);
    }

    #[test]
    fn log_softmax_sums_to_one() {
        let total: f32 = log_softmax(&[1.0, 2.0, 3.0]).iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
