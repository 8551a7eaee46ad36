//! Which text token of the edited caption takes which token's cross-attention map from the
//! original caption (Google's prompt-to-prompt): `replace` maps position to position
//! (captions of equal token length, a word swapped), `refine` aligns the two token
//! sequences by their longest common subsequence and lets only the shared tokens take the
//! original's maps; re-weighting scales the maps of chosen words' tokens.
//!
//! Positions are those of one 77-token CLIP window: bos, the caption's tokens, then eos
//! and padding, which are aligned tail to tail.

use crate::{Error, Result};

/// Which cross-attention edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrossAttentionMode {
    /// The edited caption keeps its own cross-attention (InstructPix2Pix's generation).
    #[default]
    Off,
    /// Every token takes the original's map at its position (a word swap).
    Replace,
    /// Tokens the captions share take the original's maps; new tokens keep their own.
    Refine,
}

impl std::str::FromStr for CrossAttentionMode {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "off" => Ok(Self::Off),
            "replace" => Ok(Self::Replace),
            "refine" => Ok(Self::Refine),
            other => Err(format!(
                "unknown cross-attention edit `{other}` (expected off, replace or refine)"
            )),
        }
    }
}

/// The per-token arrays of one window: source position, α and weight.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenMap {
    pub source: Vec<u32>,
    pub alpha: Vec<f32>,
    pub weight: Vec<f32>,
}

/// Pairs (i, j) of a longest common subsequence of `a` and `b`, in order; ties go to
/// skipping an element of `a` first.
pub fn common_subsequence(a: &[u32], b: &[u32]) -> Vec<(usize, usize)> {
    let (n, m) = (a.len(), b.len());
    // lengths[i][j]: LCS length of a[i..] and b[j..]
    let mut lengths = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lengths[i][j] = if a[i] == b[j] {
                lengths[i + 1][j + 1] + 1
            } else {
                lengths[i + 1][j].max(lengths[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut pairs) = (0, 0, Vec::new());
    while i < n && j < m {
        if a[i] == b[j] {
            pairs.push((i, j));
            i += 1;
            j += 1;
        } else if lengths[i + 1][j] >= lengths[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

/// The token map of a window of `window` tokens for captions with these content tokens
/// (no bos/eos), `reweight` given as each word's content tokens and factor.
pub fn token_map(
    mode: CrossAttentionMode,
    original: &[u32],
    edited: &[u32],
    reweight: &[(String, Vec<u32>, f64)],
    window: usize,
) -> Result<TokenMap> {
    let longest = original.len().max(edited.len());
    if longest + 2 > window {
        return Err(Error::InvalidRequest(format!(
            "cross-attention edits need captions of at most {} tokens, got {longest}",
            window - 2
        )));
    }
    let mut source: Vec<u32> = (0..window as u32).collect();
    let mut alpha = vec![0f32; window];
    match mode {
        CrossAttentionMode::Off => {}
        CrossAttentionMode::Replace => {
            if original.len() != edited.len() {
                return Err(Error::InvalidRequest(format!(
                    "replace needs captions of the same token length ({} and {}); use refine",
                    original.len(),
                    edited.len()
                )));
            }
            alpha.fill(1.0);
        }
        CrossAttentionMode::Refine => {
            alpha[0] = 1.0; // bos
            for (i, j) in common_subsequence(original, edited) {
                source[j + 1] = (i + 1) as u32;
                alpha[j + 1] = 1.0;
            }
            // eos and padding, tail to tail
            for position in edited.len() + 1..window {
                let from = position + original.len() - edited.len();
                if from < window {
                    source[position] = from as u32;
                    alpha[position] = 1.0;
                }
            }
        }
    }
    let mut weight = vec![1f32; window];
    for (word, tokens, factor) in reweight {
        let found = (!tokens.is_empty())
            .then(|| {
                edited
                    .windows(tokens.len())
                    .position(|piece| piece == tokens.as_slice())
            })
            .flatten();
        let Some(start) = found else {
            return Err(Error::InvalidRequest(format!(
                "cannot re-weight `{word}`: it is not in the edited caption"
            )));
        };
        weight[start + 1..start + 1 + tokens.len()].fill(*factor as f32);
    }
    Ok(TokenMap {
        source,
        alpha,
        weight,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refine_maps_shared_tokens_and_keeps_new_ones() {
        // "a red cat" → "a very red cat": "very" is new
        let map = token_map(
            CrossAttentionMode::Refine,
            &[10, 20, 30],
            &[10, 40, 20, 30],
            &[],
            8,
        )
        .unwrap();
        assert_eq!(map.source[..5], [0, 1, 2, 2, 3]);
        assert_eq!(map.alpha[..5], [1.0, 1.0, 0.0, 1.0, 1.0]);
        // eos of the edited (position 5) takes the original's eos (position 4)
        assert_eq!((map.source[5], map.alpha[5]), (4, 1.0));
        assert_eq!((map.source[7], map.alpha[7]), (6, 1.0));
    }

    #[test]
    fn replace_needs_equal_lengths_and_reweight_finds_words() {
        let reweight = vec![("cat".to_string(), vec![30], 2.0)];
        let map = token_map(
            CrossAttentionMode::Replace,
            &[10, 20, 30],
            &[10, 21, 30],
            &reweight,
            6,
        )
        .unwrap();
        assert_eq!(map.source, [0, 1, 2, 3, 4, 5]);
        assert!(map.alpha.iter().all(|a| *a == 1.0));
        assert_eq!(map.weight, [1.0, 1.0, 1.0, 2.0, 1.0, 1.0]);
        assert!(token_map(CrossAttentionMode::Replace, &[10], &[10, 20], &[], 6).is_err());
        let missing = vec![("dog".to_string(), vec![99], 2.0)];
        assert!(token_map(CrossAttentionMode::Off, &[10], &[10], &missing, 6).is_err());
    }
}
