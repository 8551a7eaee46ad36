//! The scenes file as written on disk (`scenes.toml`), read with the `toml` crate: any
//! table or key not listed here is an error that names it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::intent::labels::Intent;

/// A whole scenes file: `[scenes.NAME]` tables and an optional `[prompt]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneFile {
    #[serde(default)]
    pub scenes: BTreeMap<String, SceneTable>,
    pub prompt: Option<PromptTable>,
}

/// One `[scenes.NAME]` table; ranges and spellings are checked by `scenes.rs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SceneTable {
    pub intent: Intent,
    pub lora: Option<String>,
    pub lora_scale: Option<f64>,
    pub trigger: Option<String>,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub width: i64,
    pub height: i64,
    pub steps: i64,
    pub guidance: f64,
    pub scheduler: String,
    pub enhancer: Option<String>,
}

/// The `[prompt]` table: which prompt writer to use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptTable {
    pub backend: Option<String>,
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<String>,
    pub api_key_env: Option<String>,
    pub timeout_s: Option<i64>,
}

impl SceneFile {
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}
