//! transformers' `BertTokenizer` (tokenizers' `BertNormalizer`, `BertPreTokenizer`,
//! `WordPiece` model and decoder, `TemplateProcessing` with `[CLS] … [SEP]`), read from
//! `tokenizer.json` or, without it, `vocab.txt` with tokenizer_config.json's
//! `do_lower_case`, `strip_accents` and `tokenize_chinese_chars`: BLIP's and
//! Chinese-CLIP's tokenizer.
//!
//! Encoding: clean the text (control characters dropped, whitespace made spaces), put
//! spaces around CJK ideographs, strip accents (NFD, marks dropped) and lowercase, split
//! on whitespace and punctuation, then greedy longest-match WordPiece (`##` for word
//! continuations, `[UNK]` for a word that cannot be spelled). Punctuation is BERT's: ASCII
//! symbols plus the common Unicode punctuation blocks (General Punctuation, CJK Symbols
//! and Punctuation, fullwidth forms, Latin-1's `¡«·»¿`) — a close approximation of
//! Unicode's `P*` categories.
//!
//! Decoding with `skip_special_tokens` as transformers does: special tokens (the added
//! tokens marked special, `[DEC]` among them) dropped, pieces joined by the WordPiece
//! decoder with its per-token cleanup (" ." → "."), then transformers'
//! `clean_up_tokenization` when tokenizer_config.json sets `clean_up_tokenization_spaces`
//! (transformers 5's default is false).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use crate::error::{DataError, Result};

/// A BERT WordPiece tokenizer.
#[derive(Debug, Clone)]
pub struct BertTokenizer {
    vocab: HashMap<String, u32>,
    tokens: HashMap<u32, String>,
    special: HashSet<u32>,
    normalizer: Normalizer,
    unk_token: String,
    max_input_chars_per_word: usize,
    clean_up_tokenization_spaces: bool,
    model_max_length: usize,
    cls_token_id: u32,
    sep_token_id: u32,
    pad_token_id: u32,
}

/// `BertNormalizer`'s switches (`clean_text` is always on, as in every BERT tokenizer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Normalizer {
    handle_chinese_chars: bool,
    /// `strip_accents`, which follows `lowercase` when unset.
    strip_accents: bool,
    lowercase: bool,
}

impl Normalizer {
    /// `lowercase`, `strip_accents` (null: as lowercase), `handle_chinese_chars` under
    /// any of the two spellings (tokenizer.json's normalizer, tokenizer_config.json).
    fn from_json(value: &Value, lowercase_key: &str, chinese_key: &str) -> Self {
        let lowercase = value[lowercase_key].as_bool().unwrap_or(true);
        Self {
            handle_chinese_chars: value[chinese_key].as_bool().unwrap_or(true),
            strip_accents: value["strip_accents"].as_bool().unwrap_or(lowercase),
            lowercase,
        }
    }
}

fn bad(path: &Path, message: impl Into<String>) -> DataError {
    DataError::BadModelFile {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl BertTokenizer {
    /// Loads `tokenizer.json`, else `vocab.txt` (with `[PAD] [UNK] [CLS] [SEP] [MASK]` and
    /// `extra_special_tokens`, appended when missing, as special tokens — BLIP's `[DEC]`
    /// and `[ENC]`), and tokenizer_config.json when there is one. `model` names the model
    /// in errors ("BLIP", "Chinese-CLIP").
    pub fn from_dir(dir: &Path, model: &str, extra_special_tokens: &[&str]) -> Result<Self> {
        let json_path = dir.join("tokenizer.json");
        let vocab_path = dir.join("vocab.txt");
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = if config_path.is_file() {
            serde_json::from_str(&read_text(&config_path)?).map_err(|source| DataError::Json {
                path: config_path.clone(),
                what: "a tokenizer configuration",
                source,
            })?
        } else {
            Value::Null
        };
        let mut tokenizer = if json_path.is_file() {
            Self::from_tokenizer_json(&json_path)?
        } else if vocab_path.is_file() {
            let normalizer =
                Normalizer::from_json(&config, "do_lower_case", "tokenize_chinese_chars");
            Self::from_vocab_txt(&vocab_path, normalizer, extra_special_tokens)?
        } else {
            return Err(DataError::MissingModelPart {
                what: format!("the {model} tokenizer (tokenizer.json or vocab.txt)"),
                path: json_path,
            });
        };
        tokenizer.clean_up_tokenization_spaces = config["clean_up_tokenization_spaces"]
            .as_bool()
            .unwrap_or(false);
        // transformers' "no limit" is a huge float (VERY_LARGE_INTEGER, 1e30)
        tokenizer.model_max_length = match &config["model_max_length"] {
            Value::Number(number) => number
                .as_u64()
                .and_then(|length| usize::try_from(length).ok())
                .unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        Ok(tokenizer)
    }

    fn from_tokenizer_json(path: &Path) -> Result<Self> {
        let value: Value =
            serde_json::from_str(&read_text(path)?).map_err(|source| DataError::Json {
                path: path.to_path_buf(),
                what: "a tokenizers tokenizer",
                source,
            })?;
        let model = &value["model"];
        if model["type"] != "WordPiece" {
            return Err(bad(
                path,
                format!("a BERT tokenizer must be WordPiece, got {}", model["type"]),
            ));
        }
        let mut vocab: HashMap<String, u32> = model["vocab"]
            .as_object()
            .ok_or_else(|| bad(path, "no `model.vocab` object"))?
            .iter()
            .filter_map(|(token, id)| Some((token.clone(), u32::try_from(id.as_u64()?).ok()?)))
            .collect();
        let mut special = HashSet::new();
        for added in value["added_tokens"].as_array().into_iter().flatten() {
            let (Some(content), Some(id)) = (added["content"].as_str(), added["id"].as_u64())
            else {
                continue;
            };
            let id =
                u32::try_from(id).map_err(|_| bad(path, format!("token id {id} is too large")))?;
            vocab.insert(content.to_string(), id);
            if added["special"].as_bool().unwrap_or(false) {
                special.insert(id);
            }
        }
        let normalizer =
            Normalizer::from_json(&value["normalizer"], "lowercase", "handle_chinese_chars");
        let unk_token = model["unk_token"].as_str().unwrap_or("[UNK]").to_string();
        let max_chars = model["max_input_chars_per_word"].as_u64().unwrap_or(100) as usize;
        Self::build(path, vocab, special, normalizer, unk_token, max_chars)
    }

    fn from_vocab_txt(
        path: &Path,
        normalizer: Normalizer,
        extra_special_tokens: &[&str],
    ) -> Result<Self> {
        let mut vocab: HashMap<String, u32> = read_text(path)?
            .lines()
            .enumerate()
            .map(|(index, token)| (token.to_string(), index as u32))
            .collect();
        let mut special = HashSet::new();
        for token in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .iter()
            .chain(extra_special_tokens)
        {
            let next = vocab.len() as u32;
            let id = *vocab.entry(token.to_string()).or_insert(next);
            special.insert(id);
        }
        Self::build(path, vocab, special, normalizer, "[UNK]".into(), 100)
    }

    fn build(
        path: &Path,
        vocab: HashMap<String, u32>,
        special: HashSet<u32>,
        normalizer: Normalizer,
        unk_token: String,
        max_input_chars_per_word: usize,
    ) -> Result<Self> {
        let id = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| bad(path, format!("the vocabulary has no {token} token")))
        };
        let cls_token_id = id("[CLS]")?;
        let sep_token_id = id("[SEP]")?;
        // `[PAD]` only matters for batches of texts; BERT vocabularies start with it
        let pad_token_id = vocab.get("[PAD]").copied().unwrap_or(0);
        id(&unk_token)?;
        let tokens = vocab
            .iter()
            .map(|(token, &id)| (id, token.clone()))
            .collect();
        Ok(Self {
            vocab,
            tokens,
            special,
            normalizer,
            unk_token,
            max_input_chars_per_word,
            clean_up_tokenization_spaces: false,
            model_max_length: usize::MAX,
            cls_token_id,
            sep_token_id,
            pad_token_id,
        })
    }

    pub fn cls_token_id(&self) -> u32 {
        self.cls_token_id
    }

    /// `[SEP]`, which ends every encoded text.
    pub fn sep_token_id(&self) -> u32 {
        self.sep_token_id
    }

    pub fn pad_token_id(&self) -> u32 {
        self.pad_token_id
    }

    /// tokenizer_config.json's `model_max_length` (`usize::MAX` when unset).
    pub fn model_max_length(&self) -> usize {
        self.model_max_length
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// `tokenizer(text).input_ids`: `[CLS]` pieces… `[SEP]`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = vec![self.cls_token_id];
        for word in self.pre_tokenize(text) {
            self.word_piece(&word, &mut ids);
        }
        ids.push(self.sep_token_id);
        ids
    }

    /// `decode(ids, skip_special_tokens=True)`.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_with(ids, self.clean_up_tokenization_spaces)
    }

    /// `decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up)`.
    pub fn decode_with(&self, ids: &[u32], clean_up: bool) -> String {
        let mut text = String::new();
        for (index, token) in ids
            .iter()
            .filter(|id| !self.special.contains(id))
            .filter_map(|id| self.tokens.get(id))
            .enumerate()
        {
            let piece = if index == 0 {
                token.clone()
            } else if let Some(rest) = token.strip_prefix("##") {
                rest.to_string()
            } else {
                format!(" {token}")
            };
            text.push_str(&cleanup(&piece));
        }
        if clean_up {
            clean_up_tokenization(&text)
        } else {
            text
        }
    }

    /// `BertNormalizer` + `BertPreTokenizer`: the words and punctuation marks of `text`.
    fn pre_tokenize(&self, text: &str) -> Vec<String> {
        let mut normalized = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
                continue;
            }
            if c.is_whitespace() {
                normalized.push(' ');
            } else if self.normalizer.handle_chinese_chars && is_cjk(c) {
                normalized.push(' ');
                normalized.push(c);
                normalized.push(' ');
            } else {
                normalized.push(c);
            }
        }
        if self.normalizer.strip_accents {
            normalized = normalized
                .nfd()
                .filter(|c| !is_combining_mark(*c))
                .collect();
        }
        if self.normalizer.lowercase {
            normalized = normalized.to_lowercase();
        }
        let mut words = Vec::new();
        for chunk in normalized.split_whitespace() {
            let mut word = String::new();
            for c in chunk.chars() {
                if is_punctuation(c) {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    words.push(c.to_string());
                } else {
                    word.push(c);
                }
            }
            if !word.is_empty() {
                words.push(word);
            }
        }
        words
    }

    /// Greedy longest-match WordPiece of one word, `[UNK]` if any part has no piece.
    fn word_piece(&self, word: &str, ids: &mut Vec<u32>) {
        let unk = self.vocab.get(&self.unk_token).copied().unwrap_or(0);
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > self.max_input_chars_per_word {
            ids.push(unk);
            return;
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let piece: String = chars[start..end].iter().collect();
                let piece = if start > 0 {
                    format!("##{piece}")
                } else {
                    piece
                };
                if let Some(&id) = self.vocab.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => pieces.push(id),
                None => {
                    ids.push(unk);
                    return;
                }
            }
            start = end;
        }
        ids.extend(pieces);
    }
}

/// tokenizers' WordPiece decoder `cleanup`, applied to each token.
fn cleanup(piece: &str) -> String {
    piece
        .replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" do not", " don't")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// transformers' `clean_up_tokenization` (tokenization_utils_base.py).
fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// BERT's `_is_chinese_char`: the CJK Unified Ideographs blocks.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// Unicode combining marks (category Mn), the ones NFD splits off accented letters.
fn is_combining_mark(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// BERT's `_is_punctuation`: ASCII symbols, or (approximately) Unicode punctuation.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32,
            0x00A1 | 0x00A7 | 0x00AB | 0x00B6 | 0x00B7 | 0x00BB | 0x00BF
            | 0x2010..=0x2027 | 0x2030..=0x205E | 0x3001..=0x3003 | 0x3008..=0x3011
            | 0x3014..=0x301F | 0x30FB | 0xFE50..=0xFE6B | 0xFF01..=0xFF03 | 0xFF05..=0xFF0A
            | 0xFF0C..=0xFF0F | 0xFF1A | 0xFF1B | 0xFF1F | 0xFF20 | 0xFF3B..=0xFF3D | 0xFF3F
            | 0xFF5B | 0xFF5D | 0xFF5F..=0xFF65)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer(config: &str) -> BertTokenizer {
        let dir = tempfile::tempdir().unwrap();
        let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncat\nCat\n猫\n##狗\n";
        std::fs::write(dir.path().join("vocab.txt"), vocab).unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), config).unwrap();
        BertTokenizer::from_dir(dir.path(), "test", &[]).unwrap()
    }

    #[test]
    fn vocab_txt_follows_tokenizer_config() {
        // defaults: lowercased, CJK characters split, no length limit
        let default = tokenizer("{}");
        assert_eq!(default.encode("Cat 猫狗"), [2, 5, 7, 1, 3]);
        assert_eq!(default.model_max_length(), usize::MAX);
        // as BertNormalizer(lowercase=False, handle_chinese_chars=False): "猫狗" is one
        // word, spelled 猫 ##狗
        let cased = tokenizer(
            r#"{"do_lower_case": false, "tokenize_chinese_chars": false, "model_max_length": 77}"#,
        );
        assert_eq!(cased.encode("Cat 猫狗"), [2, 6, 7, 8, 3]);
        assert_eq!(cased.model_max_length(), 77);
        // transformers' "no limit" (1e30) is no limit
        assert_eq!(
            tokenizer(r#"{"model_max_length": 1e30}"#).model_max_length(),
            usize::MAX
        );
    }
}
