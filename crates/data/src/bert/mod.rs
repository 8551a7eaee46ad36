//! BERT inside huatu-data: the layers BLIP's text decoder and Chinese-CLIP's text tower
//! share, the bidirectional encoder Chinese-CLIP uses, and the WordPiece tokenizer of both.
//! (The agent's intent model has its own BERT, trained with autograd, in huatu-agent.)
//!
//! - [`layers`]: embeddings, attention and feed-forward blocks under transformers' keys;
//! - [`model`]: `BertModel` without pooler (`ChineseCLIPTextModel`) and its config;
//! - [`tokenizer`]: `BertTokenizer` (WordPiece, Chinese characters split).

pub mod layers;
pub mod model;
pub mod tokenizer;

pub use model::{BertConfig, BertModel};
pub use tokenizer::BertTokenizer;
