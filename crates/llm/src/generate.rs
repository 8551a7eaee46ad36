//! Answering: the prompt read in one pass, then one token at a time from the KV cache,
//! chosen greedily (transformers' `do_sample=False`) or sampled with a seed (temperature,
//! then nucleus `top_p`), until an end token or the token budget.

use std::time::Instant;

use candle_core::Tensor;
use rand::{Rng, SeedableRng};

use crate::chat::{chat_prompt, ChatMessage};
use crate::error::{LlmError, Result};
use crate::model::KvCache;
use crate::weights::LocalLlm;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    Greedy,
    Seeded {
        seed: u64,
        temperature: f64,
        top_p: f64,
    },
}

impl Sampling {
    pub fn check(&self) -> Result<()> {
        if let Sampling::Seeded {
            temperature, top_p, ..
        } = *self
        {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(LlmError::Sampling(format!(
                    "temperature must be a positive number, got {temperature}"
                )));
            }
            if !(top_p > 0.0 && top_p <= 1.0) {
                return Err(LlmError::Sampling(format!(
                    "top_p must be within (0, 1], got {top_p}"
                )));
            }
        }
        Ok(())
    }
}

/// What the model answered and how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    /// Time to read the prompt, and to write the answer.
    pub prompt_seconds: f64,
    pub answer_seconds: f64,
}

impl Completion {
    /// Answer tokens per second (after the prompt).
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens.len() as f64 / self.answer_seconds.max(1e-9)
    }
}

impl LocalLlm {
    /// Tokens of `text`, special tokens (`<|im_start|>` …) recognised.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|error| self.tokenizer_error(error))?
            .get_ids()
            .to_vec())
    }

    pub fn decode(&self, tokens: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(tokens, true)
            .map_err(|error| self.tokenizer_error(error))
    }

    fn tokenizer_error(&self, error: impl std::fmt::Display) -> LlmError {
        LlmError::Tokenizer {
            path: self.path.clone(),
            message: error.to_string(),
        }
    }

    /// The tokens that end an answer: the config's end tokens and `<|im_end|>`.
    pub fn stop_tokens(&self) -> Vec<u32> {
        let mut stops = self.model.config.eos_token_ids.clone();
        for special in ["<|im_end|>", "<|endoftext|>"] {
            if let Some(id) = self.tokenizer.token_to_id(special) {
                stops.push(id);
            }
        }
        stops.sort_unstable();
        stops.dedup();
        stops
    }

    /// Continues `prompt` by at most `max_new_tokens`; `stop` tokens end it (not included).
    pub fn complete(
        &self,
        prompt: &[u32],
        max_new_tokens: usize,
        sampling: Sampling,
        stop: &[u32],
    ) -> Result<Completion> {
        sampling.check()?;
        if prompt.is_empty() {
            return Err(LlmError::Sampling("the prompt is empty".into()));
        }
        let mut rng = match sampling {
            Sampling::Seeded { seed, .. } => Some(rand::rngs::StdRng::seed_from_u64(seed)),
            Sampling::Greedy => None,
        };
        let mut cache = KvCache::new();
        let started = Instant::now();
        let mut logits = self.model.forward(prompt, &mut cache, false)?;
        let prompt_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut tokens = Vec::new();
        let limit = self.model.config.max_position_embeddings;
        while tokens.len() < max_new_tokens && cache.len() < limit {
            let next = choose(&logits.squeeze(0)?, sampling, rng.as_mut())?;
            if stop.contains(&next) {
                break;
            }
            tokens.push(next);
            if tokens.len() == max_new_tokens || cache.len() >= limit {
                break;
            }
            logits = self.model.forward(&[next], &mut cache, false)?;
        }
        Ok(Completion {
            text: self.decode(&tokens)?,
            tokens,
            prompt_tokens: prompt.len(),
            prompt_seconds,
            answer_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Answers a conversation in the model's chat layout.
    pub fn chat(
        &self,
        messages: &[ChatMessage],
        max_new_tokens: usize,
        sampling: Sampling,
    ) -> Result<Completion> {
        let prompt = self.encode(&chat_prompt(self.model.config.family, messages))?;
        self.complete(&prompt, max_new_tokens, sampling, &self.stop_tokens())
    }
}

/// The next token from one row of logits.
fn choose(
    logits: &Tensor,
    sampling: Sampling,
    rng: Option<&mut rand::rngs::StdRng>,
) -> Result<u32> {
    let values: Vec<f32> = logits.to_vec1()?;
    let best = |values: &[f32]| {
        values
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                if v > bv {
                    (i, v)
                } else {
                    (bi, bv)
                }
            })
            .0 as u32
    };
    let (
        Sampling::Seeded {
            temperature, top_p, ..
        },
        Some(rng),
    ) = (sampling, rng)
    else {
        return Ok(best(&values));
    };
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut weighted: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (i, ((f64::from(v) - f64::from(max)) / temperature).exp()))
        .collect();
    let total: f64 = weighted.iter().map(|(_, w)| w).sum();
    weighted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut kept = 0.0;
    let mut cut = weighted.len();
    for (index, (_, weight)) in weighted.iter().enumerate() {
        kept += weight / total;
        if kept >= top_p {
            cut = index + 1;
            break;
        }
    }
    weighted.truncate(cut);
    let mass: f64 = weighted.iter().map(|(_, w)| w).sum();
    let mut draw = rng.gen::<f64>() * mass;
    for (token, weight) in &weighted {
        if draw < *weight {
            return Ok(*token as u32);
        }
        draw -= weight;
    }
    Ok(weighted
        .last()
        .map_or(best(&values), |(token, _)| *token as u32))
}
