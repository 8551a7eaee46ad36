//! Reading a transformers tokenizer folder: `vocab.json` + `merges.txt` (what the hub's
//! SDXL folders and transformers 4 hold) or `tokenizer.json` (all transformers 5's
//! `save_pretrained` writes), plus `tokenizer_config.json` / `special_tokens_map.json`,
//! and the defaults of what those files may leave out (special tokens, maximum length).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::byte_level_bpe::{MergeTable, END_OF_WORD};
use crate::{Error, Result};

pub(super) const DEFAULT_MODEL_MAX_LENGTH: usize = 77;
const DEFAULT_BOS_TOKEN: &str = "<|startoftext|>";
const DEFAULT_EOS_TOKEN: &str = "<|endoftext|>";

/// The special token strings of a CLIP tokenizer (transformers' defaults: bos
/// `<|startoftext|>`, eos = unk = pad = `<|endoftext|>`; SDXL's second tokenizer uses `!`
/// as pad).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipSpecialTokens {
    pub bos_token: String,
    pub eos_token: String,
    pub unk_token: String,
    pub pad_token: String,
}

impl Default for ClipSpecialTokens {
    fn default() -> Self {
        Self {
            bos_token: DEFAULT_BOS_TOKEN.to_string(),
            eos_token: DEFAULT_EOS_TOKEN.to_string(),
            unk_token: DEFAULT_EOS_TOKEN.to_string(),
            pad_token: DEFAULT_EOS_TOKEN.to_string(),
        }
    }
}

/// `vocab.json`: an object of token → id.
pub(super) fn parse_vocab(vocab_json: &str) -> std::result::Result<HashMap<String, u32>, String> {
    serde_json::from_str(vocab_json)
        .map_err(|error| format!("not a JSON object of token → id: {error}"))
}

/// Everything `ClipTokenizer` needs from a folder.
pub(super) struct TokenizerFiles {
    pub vocab: HashMap<String, u32>,
    pub merges: MergeTable,
    pub special_tokens: ClipSpecialTokens,
    pub model_max_length: usize,
}

impl TokenizerFiles {
    pub fn read(dir: &Path) -> Result<Self> {
        let vocab_path = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        let tokenizer_json_path = dir.join("tokenizer.json");
        let (vocab, merges) =
            if (vocab_path.is_file() && merges_path.is_file()) || !tokenizer_json_path.is_file() {
                read_vocab_and_merges(&vocab_path, &merges_path)?
            } else {
                read_tokenizer_json(&tokenizer_json_path)?
            };

        let mut special_tokens = ClipSpecialTokens::default();
        let mut model_max_length = DEFAULT_MODEL_MAX_LENGTH;
        for (file, what) in [
            ("tokenizer_config.json", "a tokenizer configuration"),
            ("special_tokens_map.json", "a tokenizer special tokens map"),
        ] {
            let path = dir.join(file);
            if !path.is_file() {
                continue;
            }
            let config = read_json_value(&path, what)?;
            apply_special_tokens(&config, &mut special_tokens);
            if let Some(length) = config.get("model_max_length") {
                model_max_length =
                    parse_model_max_length(length).map_err(|message| Error::BadModelFile {
                        path: path.clone(),
                        message,
                    })?;
            }
        }
        Ok(Self {
            vocab,
            merges,
            special_tokens,
            model_max_length,
        })
    }
}

fn read_vocab_and_merges(
    vocab_path: &Path,
    merges_path: &Path,
) -> Result<(HashMap<String, u32>, MergeTable)> {
    let vocab_json = read_required(
        vocab_path,
        "tokenizer vocabulary (vocab.json, or tokenizer.json)",
    )?;
    let merges_txt = read_required(
        merges_path,
        "tokenizer merges (merges.txt, or tokenizer.json)",
    )?;
    let vocab = parse_vocab(&vocab_json).map_err(|message| bad_file(vocab_path, message))?;
    let merges = MergeTable::from_lines(merges_txt.lines(), &vocab)
        .map_err(|error| bad_file(merges_path, error))?;
    Ok((vocab, merges))
}

/// The `model` of a `tokenizers` JSON file, which must be CLIP's BPE (`</w>` word ends);
/// its `added_tokens` join the vocabulary as the fast tokenizer maps them.
fn read_tokenizer_json(path: &Path) -> Result<(HashMap<String, u32>, MergeTable)> {
    let document = read_json_value(path, "a tokenizers tokenizer.json")?;
    let model = &document["model"];
    if model["type"].as_str() != Some("BPE")
        || model["end_of_word_suffix"].as_str() != Some(END_OF_WORD)
    {
        return Err(bad_file(
            path,
            "not a CLIP tokenizer (model must be BPE with end_of_word_suffix \"</w>\")",
        ));
    }
    let mut vocab: HashMap<String, u32> =
        serde_json::from_value(model["vocab"].clone()).map_err(|error| {
            bad_file(
                path,
                format!("model.vocab is not an object of token → id: {error}"),
            )
        })?;
    for added in document["added_tokens"].as_array().into_iter().flatten() {
        let content = added["content"].as_str();
        let id = added["id"].as_u64().and_then(|id| u32::try_from(id).ok());
        if let (Some(content), Some(id)) = (content, id) {
            vocab.entry(content.to_string()).or_insert(id);
        }
    }
    // Merges are "left right" strings (older files) or [left, right] pairs.
    let entries = model["merges"]
        .as_array()
        .ok_or_else(|| bad_file(path, "model.merges is not a list"))?;
    let mut pairs = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let pair = match entry {
            serde_json::Value::String(line) => line.split_once(' '),
            serde_json::Value::Array(parts) => match parts.as_slice() {
                [left, right] => left.as_str().zip(right.as_str()),
                _ => None,
            },
            _ => None,
        };
        pairs.push(pair.ok_or_else(|| {
            bad_file(
                path,
                format!("model.merges[{index}] is not a pair: {entry}"),
            )
        })?);
    }
    let merges = MergeTable::from_pairs(pairs, &vocab).map_err(|error| bad_file(path, error))?;
    Ok((vocab, merges))
}

fn bad_file(path: &Path, message: impl ToString) -> Error {
    Error::BadModelFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn read_required(path: &Path, what: &str) -> Result<String> {
    if !path.is_file() {
        return Err(Error::MissingModelPart {
            what: what.to_string(),
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json_value(path: &Path, what: &'static str) -> Result<serde_json::Value> {
    let text = read_required(path, what)?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: PathBuf::from(path),
        what,
        source,
    })
}

/// Overrides the special tokens named in a transformers tokenizer config or special
/// tokens map. A token is a string or an `AddedToken` object (`{"content": ...}`).
fn apply_special_tokens(config: &serde_json::Value, special: &mut ClipSpecialTokens) {
    let token = |key: &str| match config.get(key) {
        Some(serde_json::Value::String(content)) => Some(content.clone()),
        Some(serde_json::Value::Object(object)) => object
            .get("content")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string),
        _ => None,
    };
    for (key, slot) in [
        ("bos_token", &mut special.bos_token),
        ("eos_token", &mut special.eos_token),
        ("unk_token", &mut special.unk_token),
        ("pad_token", &mut special.pad_token),
    ] {
        if let Some(content) = token(key) {
            *slot = content;
        }
    }
}

fn parse_model_max_length(value: &serde_json::Value) -> std::result::Result<usize, String> {
    // transformers writes 1e30 for "no limit"; a CLIP text encoder needs a real one.
    value
        .as_u64()
        .filter(|length| (2..=1 << 16).contains(length))
        .and_then(|length| usize::try_from(length).ok())
        .ok_or_else(|| format!("model_max_length must be an integer from 2 to 65536, got {value}"))
}
