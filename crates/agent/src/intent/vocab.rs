//! Character tokenizer over a BERT `vocab.txt`: one token per non-space character, so
//! the model's tags map 1:1 onto characters of the user's text.
//!
//! With a character vocabulary built from the corpus every character is its own entry.
//! With a Hugging Face WordPiece vocabulary (bert-base-chinese) a Latin letter or digit
//! that continues a word is looked up as `##c` first, as BERT spells word pieces; CJK
//! characters are single tokens there already (BertTokenizer's `_tokenize_chinese_chars`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::error::{AgentError, Result};
use crate::intent::text::normalize_char;

pub const PAD: &str = "[PAD]";
pub const UNK: &str = "[UNK]";
pub const CLS: &str = "[CLS]";
pub const SEP: &str = "[SEP]";

#[derive(Debug, Clone)]
pub struct Vocab {
    tokens: Vec<String>,
    index: HashMap<String, u32>,
    pub pad_id: u32,
    pub unk_id: u32,
    pub cls_id: u32,
    pub sep_id: u32,
}

/// A tokenised instruction: `ids` = [CLS] chars… [SEP]; `char_indices[i]` is the index
/// (in `text.chars()`) of the character behind token `i + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    pub ids: Vec<u32>,
    pub char_indices: Vec<usize>,
}

impl Vocab {
    pub fn from_tokens(tokens: Vec<String>, origin: &Path) -> Result<Self> {
        let index: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let special = |token: &str| {
            index
                .get(token)
                .copied()
                .ok_or_else(|| AgentError::MissingSpecialToken {
                    path: origin.to_path_buf(),
                    token: token.to_string(),
                })
        };
        Ok(Self {
            pad_id: special(PAD)?,
            unk_id: special(UNK)?,
            cls_id: special(CLS)?,
            sep_id: special(SEP)?,
            tokens,
            index,
        })
    }

    /// Builds a character vocabulary: the special tokens, then every normalised
    /// character seen at least `min_count` times, most frequent first (ties by code).
    pub fn from_texts<'a>(texts: impl Iterator<Item = &'a str>, min_count: usize) -> Self {
        let mut counts: BTreeMap<char, usize> = BTreeMap::new();
        for text in texts {
            for c in text.chars().filter(|c| !c.is_whitespace()) {
                *counts.entry(normalize_char(c)).or_default() += 1;
            }
        }
        let mut chars: Vec<(char, usize)> = counts
            .into_iter()
            .filter(|&(_, n)| n >= min_count)
            .collect();
        chars.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut tokens: Vec<String> = [PAD, UNK, CLS, SEP].map(String::from).to_vec();
        tokens.extend(chars.into_iter().map(|(c, _)| c.to_string()));
        let index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        Self {
            tokens,
            index,
            pad_id: 0,
            unk_id: 1,
            cls_id: 2,
            sep_id: 3,
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let tokens = text.lines().map(|l| l.trim_end_matches('\r').to_string());
        Self::from_tokens(tokens.collect(), path)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = self.tokens.join("\n");
        text.push('\n');
        std::fs::write(path, text).map_err(|source| AgentError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    fn lookup(&self, c: char, continues_word: bool) -> u32 {
        let mut buffer = [0u8; 4];
        let piece = c.encode_utf8(&mut buffer);
        if continues_word {
            if let Some(&id) = self.index.get(&format!("##{piece}")) {
                return id;
            }
        }
        self.index.get(&*piece).copied().unwrap_or(self.unk_id)
    }

    /// Tokenises `text`, keeping at most `max_len` tokens including [CLS] and [SEP].
    pub fn encode(&self, text: &str, max_len: usize) -> Encoding {
        let room = max_len.saturating_sub(2);
        let mut ids = vec![self.cls_id];
        let mut char_indices = Vec::new();
        let mut previous_alnum = false;
        for (i, c) in text.chars().enumerate() {
            if c.is_whitespace() {
                previous_alnum = false;
                continue;
            }
            if char_indices.len() == room {
                break;
            }
            let c = normalize_char(c);
            let alnum = c.is_ascii_alphanumeric();
            ids.push(self.lookup(c, alnum && previous_alnum));
            char_indices.push(i);
            previous_alnum = alnum;
        }
        ids.push(self.sep_id);
        Encoding { ids, char_indices }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_map_one_to_one_and_skip_spaces() {
        let vocab = Vocab::from_texts(["画一张图", "logo"].into_iter(), 1);
        let encoding = vocab.encode("画 LOGO图?", 64);
        assert_eq!(encoding.char_indices, vec![0, 2, 3, 4, 5, 6, 7]);
        assert_eq!(encoding.ids.len(), 9);
        assert_eq!(encoding.ids[0], vocab.cls_id);
        assert_eq!(*encoding.ids.last().unwrap_or(&0), vocab.sep_id);
        // "?" was never seen: unknown.
        assert_eq!(encoding.ids[7], vocab.unk_id);
        assert_eq!(vocab.token(encoding.ids[2]), Some("l"));
    }

    #[test]
    fn wordpiece_vocabularies_use_continuation_pieces() {
        let tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "p", "##p", "##t", "图"];
        let vocab = Vocab::from_tokens(tokens.map(String::from).to_vec(), Path::new("v"))
            .unwrap_or_else(|e| panic!("{e}"));
        let encoding = vocab.encode("PPT图", 16);
        assert_eq!(encoding.ids, vec![2, 4, 5, 6, 7, 3]);
    }

    #[test]
    fn long_text_is_truncated_not_rejected() {
        let vocab = Vocab::from_texts(["画"].into_iter(), 1);
        let encoding = vocab.encode(&"画".repeat(500), 10);
        assert_eq!(encoding.ids.len(), 10);
        assert_eq!(encoding.char_indices.len(), 8);
    }

    #[test]
    fn missing_special_token_is_an_error() {
        let result = Vocab::from_tokens(vec!["[PAD]".into()], Path::new("v.txt"));
        assert!(matches!(
            result,
            Err(AgentError::MissingSpecialToken { .. })
        ));
    }
}
