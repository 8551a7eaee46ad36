//! Tokenizers: CLIP's byte-level BPE, as transformers' `CLIPTokenizer`.

mod byte_level_bpe;
pub mod clip_tokenizer;
mod files;

pub use clip_tokenizer::{ClipSpecialTokens, ClipTokenizer};
