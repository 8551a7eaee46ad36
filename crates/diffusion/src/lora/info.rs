//! What `huatu lora info` shows about a LoRA file: its format, what it changes (modules per
//! component, ranks, alphas, convolution layers) and the training metadata kohya writes
//! in the safetensors header (`ss_*`, `modelspec.*`), including a trigger word.

use std::collections::BTreeMap;

use super::file::{LoraFile, LoraFormat};
use crate::loading::original_keys::Component;

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoraInfo {
    pub format: &'static str,
    /// Modules per component ("unet", "text_encoder", "text_encoder_2").
    pub modules: BTreeMap<&'static str, usize>,
    pub convolution_modules: usize,
    pub ranks: Vec<usize>,
    pub alphas: Vec<f64>,
    /// The trigger word: `modelspec.trigger_phrase`, `ss_trigger_word`/`trigger_word`, or
    /// else the most frequent training tag in `ss_tag_frequency`.
    pub trigger_word: Option<String>,
    /// The most frequent training tags with their counts (kohya's `ss_tag_frequency`).
    pub top_tags: Vec<(String, u64)>,
    /// Every other header entry, long ones shortened.
    pub metadata: BTreeMap<String, String>,
}

fn component_name(component: Component) -> &'static str {
    match component {
        Component::Unet => "unet",
        Component::TextEncoder => "text_encoder",
        Component::TextEncoder2 => "text_encoder_2",
        Component::Vae => "vae",
    }
}

/// kohya's `ss_tag_frequency`: {"<repeats>_<dir>": {tag: count}} summed over folders.
fn tag_counts(metadata: &BTreeMap<String, String>) -> Vec<(String, u64)> {
    let Some(text) = metadata.get("ss_tag_frequency") else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Object(folders)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return Vec::new();
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for tags in folders.values() {
        if let Some(tags) = tags.as_object() {
            for (tag, count) in tags {
                *counts.entry(tag.trim().to_string()).or_default() += count.as_u64().unwrap_or(0);
            }
        }
    }
    let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

impl LoraInfo {
    pub fn of(file: &LoraFile) -> Self {
        let mut modules = BTreeMap::new();
        let mut ranks = Vec::new();
        let mut alphas = Vec::new();
        for module in &file.modules {
            *modules.entry(component_name(module.component)).or_insert(0) += 1;
            ranks.push(module.rank());
            alphas.push(module.alpha.unwrap_or(module.rank() as f64));
        }
        ranks.sort_unstable();
        ranks.dedup();
        alphas.sort_by(f64::total_cmp);
        alphas.dedup();
        let tags = tag_counts(&file.metadata);
        let named_trigger = [
            "modelspec.trigger_phrase",
            "ss_trigger_word",
            "trigger_word",
        ]
        .iter()
        .find_map(|key| {
            file.metadata
                .get(*key)
                .filter(|v| !v.trim().is_empty())
                .cloned()
        });
        let trigger_word = named_trigger.or_else(|| tags.first().map(|(tag, _)| tag.clone()));
        let metadata = file
            .metadata
            .iter()
            .filter(|(key, _)| key.as_str() != "ss_tag_frequency")
            .map(|(key, value)| {
                let value = if value.chars().count() > 120 {
                    format!(
                        "{}… ({} characters)",
                        value.chars().take(120).collect::<String>(),
                        value.chars().count()
                    )
                } else {
                    value.clone()
                };
                (key.clone(), value)
            })
            .collect();
        Self {
            format: match file.format {
                LoraFormat::Kohya => "kohya",
                LoraFormat::Diffusers => "diffusers",
            },
            modules,
            convolution_modules: file.modules.iter().filter(|m| m.is_convolution()).count(),
            ranks,
            alphas,
            trigger_word,
            top_tags: tags.into_iter().take(10).collect(),
            metadata,
        }
    }
}
