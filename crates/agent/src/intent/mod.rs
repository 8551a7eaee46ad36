//! The intent model: a BERT-style joint intent + slot model that reads a Chinese
//! instruction (INTENTS.md), with its label set, tokenizer, corpus format, training and
//! evaluation.

pub mod bert;
pub mod calibration;
pub mod checkpoint;
pub mod corpus;
pub mod crf;
pub mod crf_fit;
pub mod decode;
pub mod embedded;
pub mod eval;
pub mod inference;
pub mod joint;
pub mod labels;
pub mod segment;
pub mod spans;
pub mod text;
pub mod train;
pub mod tuning;
pub mod vocab;
