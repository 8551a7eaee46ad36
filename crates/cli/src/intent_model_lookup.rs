//! Which intent model `parse`, `plan`, `chat` and `eval` use: the folder given (flag), else
//! `$HUATU_INTENT_MODEL`, else the model built into the binary.

use std::path::{Path, PathBuf};

use anyhow::Context;
use huatu_agent::IntentModel;

pub fn load_intent_model(dir: Option<&Path>) -> anyhow::Result<IntentModel> {
    let dir = dir
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HUATU_INTENT_MODEL").map(PathBuf::from));
    match dir {
        Some(dir) => IntentModel::load(&dir)
            .with_context(|| format!("loading the intent model from {}", dir.display())),
        None => IntentModel::embedded().context("loading the built-in intent model"),
    }
}
