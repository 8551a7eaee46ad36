//! CLIP's tokenizer, as transformers' `CLIPTokenizer` (models/clip/tokenization_clip.py,
//! transformers 5, backed by `tokenizers`; the same pipeline as transformers 4's
//! `CLIPTokenizerFast`, which is what diffusers loads):
//!
//! 1. special tokens (bos, eos, unk, pad) are cut out of the raw text first, case
//!    sensitive, leftmost-longest — so SDXL's second tokenizer, whose pad token is `!`,
//!    turns every `!` into that token;
//! 2. each remaining piece is normalised: NFC, every run of whitespace → one space,
//!    lower-cased character by character (no final-sigma rule);
//! 3. split with CLIP's pattern (`'s|'t|…|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`, whitespace
//!    dropped), then with GPT-2's byte-level pattern;
//! 4. each piece is mapped byte by byte to printable characters and run through BPE with
//!    `</w>` on its last symbol (see `byte_level_bpe`);
//! 5. `[bos] + ids + [eos]`; padding on the right with the pad token.
//!
//! Unlike transformers 4's slow tokenizer there is no ftfy/BasicTokenizer pass: control
//! characters are kept and CJK characters are not split apart, as in the reference.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use super::byte_level_bpe::{bytes_to_unicode, encode_word, MergeTable};
pub use super::files::ClipSpecialTokens;
use super::files::{parse_vocab, TokenizerFiles, DEFAULT_MODEL_MAX_LENGTH};
use crate::{Error, Result};

/// CLIP's pre-tokenization pattern (the `Split` pre-tokenizer of `CLIPTokenizer`).
const CLIP_SPLIT_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
/// GPT-2's pattern as applied by the `ByteLevel` pre-tokenizer, less its whitespace
/// branches: the pieces it sees come from `CLIP_SPLIT_PATTERN` and hold no whitespace. It
/// only splits a lower-cased `<|STARTOFTEXT|>` typed as text into `<|`, the word and `|>`.
const BYTE_LEVEL_SPLIT_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}+|[^\s\p{L}\p{N}]+";

/// CLIP byte-level BPE tokenizer; see the module documentation for the exact pipeline.
pub struct ClipTokenizer {
    vocab: HashMap<String, u32>,
    merges: MergeTable,
    byte_encoder: [char; 256],
    split_pattern: Regex,
    byte_level_pattern: Regex,
    whitespace_pattern: Regex,
    /// Special token strings and ids, cut out of the raw text before normalisation.
    special_tokens: Vec<(String, u32)>,
    bos_token_id: u32,
    eos_token_id: u32,
    pad_token_id: u32,
    unk_token_id: Option<u32>,
    model_max_length: usize,
    /// Byte-mapped word → its BPE ids (the reference caches words the same way).
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClipTokenizer")
            .field("vocab_size", &self.vocab.len())
            .field("merges", &self.merges.len())
            .field("bos_token_id", &self.bos_token_id)
            .field("eos_token_id", &self.eos_token_id)
            .field("pad_token_id", &self.pad_token_id)
            .field("model_max_length", &self.model_max_length)
            .finish_non_exhaustive()
    }
}

impl Clone for ClipTokenizer {
    fn clone(&self) -> Self {
        let cache = self
            .cache
            .lock()
            .map(|cache| cache.clone())
            .unwrap_or_default();
        Self {
            vocab: self.vocab.clone(),
            merges: self.merges.clone(),
            byte_encoder: self.byte_encoder,
            split_pattern: self.split_pattern.clone(),
            byte_level_pattern: self.byte_level_pattern.clone(),
            whitespace_pattern: self.whitespace_pattern.clone(),
            special_tokens: self.special_tokens.clone(),
            bos_token_id: self.bos_token_id,
            eos_token_id: self.eos_token_id,
            pad_token_id: self.pad_token_id,
            unk_token_id: self.unk_token_id,
            model_max_length: self.model_max_length,
            cache: Mutex::new(cache),
        }
    }
}

impl ClipTokenizer {
    /// Loads a tokenizer folder as transformers saves it: `vocab.json` + `merges.txt` (hub
    /// SDXL folders, transformers 4), or `tokenizer.json` (transformers 5 `save_pretrained`);
    /// special tokens and `model_max_length` from `tokenizer_config.json` and
    /// `special_tokens_map.json` (the latter wins; both optional; a token may be a string
    /// or an object with `content`). Errors name the missing or bad file.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let files = TokenizerFiles::read(dir)?;
        Self::build(
            files.vocab,
            files.merges,
            &files.special_tokens,
            files.model_max_length,
        )
        .map_err(|error| Error::BadModelFile {
            path: dir.to_path_buf(),
            message: error.to_string(),
        })
    }

    /// Builds a tokenizer from the contents of `vocab.json` and `merges.txt`, with
    /// transformers' default special tokens except `pad_token` and a 77-token limit.
    pub fn from_vocab_and_merges(
        vocab_json: &str,
        merges_txt: &str,
        pad_token: &str,
    ) -> Result<Self> {
        let special_tokens = ClipSpecialTokens {
            pad_token: pad_token.to_string(),
            ..Default::default()
        };
        Self::from_parts(
            vocab_json,
            merges_txt,
            &special_tokens,
            DEFAULT_MODEL_MAX_LENGTH,
        )
    }

    /// Builds a tokenizer from the contents of `vocab.json` and `merges.txt` with explicit
    /// special tokens and sequence length (bos + content + eos).
    pub fn from_parts(
        vocab_json: &str,
        merges_txt: &str,
        special_tokens: &ClipSpecialTokens,
        model_max_length: usize,
    ) -> Result<Self> {
        let vocab = parse_vocab(vocab_json).map_err(Error::Tokenizer)?;
        let merges = MergeTable::from_lines(merges_txt.lines(), &vocab)?;
        Self::build(vocab, merges, special_tokens, model_max_length)
    }

    fn build(
        vocab: HashMap<String, u32>,
        merges: MergeTable,
        special: &ClipSpecialTokens,
        model_max_length: usize,
    ) -> Result<Self> {
        if model_max_length < 2 {
            return Err(Error::Tokenizer(format!(
                "model_max_length must leave room for bos and eos (at least 2), got {model_max_length}"
            )));
        }
        let id_of = |role: &str, token: &str| {
            vocab.get(token).copied().ok_or_else(|| {
                Error::Tokenizer(format!("{role} {token:?} is not in the vocabulary"))
            })
        };
        let bos_token_id = id_of("bos_token", &special.bos_token)?;
        let eos_token_id = id_of("eos_token", &special.eos_token)?;
        let pad_token_id = id_of("pad_token", &special.pad_token)?;
        let unk_token_id = vocab.get(&special.unk_token).copied();

        let mut special_tokens: Vec<(String, u32)> = Vec::new();
        for token in [
            &special.pad_token,
            &special.bos_token,
            &special.eos_token,
            &special.unk_token,
        ] {
            if let Some(&id) = vocab.get(token.as_str()) {
                if !token.is_empty() && !special_tokens.iter().any(|(known, _)| known == token) {
                    special_tokens.push((token.clone(), id));
                }
            }
        }

        let compile = |pattern: &str| {
            Regex::new(pattern)
                .map_err(|error| Error::Tokenizer(format!("bad pattern {pattern}: {error}")))
        };
        Ok(Self {
            vocab,
            merges,
            byte_encoder: bytes_to_unicode(),
            split_pattern: compile(CLIP_SPLIT_PATTERN)?,
            byte_level_pattern: compile(BYTE_LEVEL_SPLIT_PATTERN)?,
            whitespace_pattern: compile(r"\s+")?,
            special_tokens,
            bos_token_id,
            eos_token_id,
            pad_token_id,
            unk_token_id,
            model_max_length,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn bos_token_id(&self) -> u32 {
        self.bos_token_id
    }

    pub fn eos_token_id(&self) -> u32 {
        self.eos_token_id
    }

    pub fn pad_token_id(&self) -> u32 {
        self.pad_token_id
    }

    /// Sequence length the text encoder takes, bos and eos included (77 for CLIP).
    pub fn model_max_length(&self) -> usize {
        self.model_max_length
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// The prompt's token ids without bos, eos, padding or truncation.
    pub fn encode_content(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match self.find_special_token(rest) {
                Some((start, length, id)) => {
                    self.encode_ordinary(&rest[..start], &mut ids);
                    ids.push(id);
                    rest = &rest[start + length..];
                }
                None => {
                    self.encode_ordinary(rest, &mut ids);
                    break;
                }
            }
        }
        ids
    }

    /// `[bos] + content + [eos]`, no padding or truncation: transformers'
    /// `tokenizer(text).input_ids`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let content = self.encode_content(text);
        let mut ids = Vec::with_capacity(content.len() + 2);
        ids.push(self.bos_token_id);
        ids.extend(content);
        ids.push(self.eos_token_id);
        ids
    }

    /// Exactly `model_max_length` ids: transformers' `tokenizer(text, padding="max_length",
    /// max_length=tokenizer.model_max_length, truncation=True).input_ids`, as diffusers
    /// calls it. Truncation drops content tokens past `model_max_length - 2`; eos is kept.
    pub fn encode_padded(&self, text: &str) -> Vec<u32> {
        let mut content = self.encode_content(text);
        content.truncate(self.model_max_length - 2);
        self.window(&content)
    }

    /// Long-prompt windows, the rule of the popular SD UIs: the content tokens (no bos/eos)
    /// are cut into consecutive chunks of `model_max_length - 2` (75) tokens; each chunk
    /// becomes `[bos] + chunk + [eos]` padded with the pad token to `model_max_length` (77).
    /// An empty prompt gives one window `[bos, eos, pad…]`. A prompt of at most 75 tokens
    /// gives one window equal to [`Self::encode_padded`], so it matches diffusers exactly;
    /// longer prompts are encoded window by window and concatenated by the caller.
    pub fn encode_windows(&self, text: &str) -> Vec<Vec<u32>> {
        let content = self.encode_content(text);
        if content.is_empty() {
            return vec![self.empty_window()];
        }
        content
            .chunks(self.model_max_length - 2)
            .map(|chunk| self.window(chunk))
            .collect()
    }

    /// The window of an empty prompt: `[bos, eos]` padded to `model_max_length`.
    pub fn empty_window(&self) -> Vec<u32> {
        self.window(&[])
    }

    /// Appends empty windows until there are `count` (prompt and negative prompt must have
    /// the same number of windows to be batched); never removes any.
    pub fn pad_windows(&self, windows: &mut Vec<Vec<u32>>, count: usize) {
        while windows.len() < count {
            windows.push(self.empty_window());
        }
    }

    /// `[bos] + content + [eos]` padded to `model_max_length`; content must fit.
    fn window(&self, content: &[u32]) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.model_max_length.max(content.len() + 2));
        ids.push(self.bos_token_id);
        ids.extend_from_slice(content);
        ids.push(self.eos_token_id);
        ids.resize(self.model_max_length.max(ids.len()), self.pad_token_id);
        ids
    }

    /// Leftmost special token in `text` (the longest one where several start there):
    /// (byte offset, byte length, id).
    fn find_special_token(&self, text: &str) -> Option<(usize, usize, u32)> {
        text.char_indices().find_map(|(start, _)| {
            self.special_tokens
                .iter()
                .filter(|(token, _)| text[start..].starts_with(token.as_str()))
                .max_by_key(|(token, _)| token.len())
                .map(|(token, id)| (start, token.len(), *id))
        })
    }

    /// Normalises, pre-tokenizes and BPE-encodes text that holds no special token.
    fn encode_ordinary(&self, text: &str, ids: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let composed: String = text.nfc().collect();
        let spaced = self.whitespace_pattern.replace_all(&composed, " ");
        // Character by character, as `tokenizers`' Lowercase (str::to_lowercase would
        // turn a word-final Σ into ς).
        let lowered: String = spaced.chars().flat_map(char::to_lowercase).collect();
        for piece in self.split_pattern.find_iter(&lowered) {
            for word in self.byte_level_pattern.find_iter(piece.as_str()) {
                self.encode_word(word.as_str(), ids);
            }
        }
    }

    fn encode_word(&self, word: &str, ids: &mut Vec<u32>) {
        let mapped: String = word
            .bytes()
            .map(|byte| self.byte_encoder[usize::from(byte)])
            .collect();
        if let Ok(cache) = self.cache.lock() {
            if let Some(cached) = cache.get(&mapped) {
                ids.extend_from_slice(cached);
                return;
            }
        }
        let word_ids = encode_word(&mapped, &self.vocab, &self.merges, self.unk_token_id);
        ids.extend_from_slice(&word_ids);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(mapped, word_ids);
        }
    }
}

#[cfg(test)]
#[path = "clip_tokenizer_tests.rs"]
mod tests;
