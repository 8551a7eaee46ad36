//! The committed intent model (`models/intent`), built into the binary so an installed
//! `huatu` understands instructions without the source tree.

/// How errors name the embedded model's files.
pub const EMBEDDED_ORIGIN: &str = "<built-in intent model>";

pub const CONFIG: &[u8] = include_bytes!("../../../../models/intent/config.json");
pub const VOCAB: &str = include_str!("../../../../models/intent/vocab.txt");
pub const WEIGHTS: &[u8] = include_bytes!("../../../../models/intent/model.safetensors");
