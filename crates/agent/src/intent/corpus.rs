//! Labelled instructions as JSON lines (`{"text", "intent", "slots"}`, the format of
//! INTENTS.md) and their conversion to per-character BIO tags.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::intent::labels::{Intent, SlotName, Tag};
use crate::intent::text::{is_numeral_char, parse_number};

/// A slot value: verbatim text, or the integer of `count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SlotValue {
    Count(u32),
    Text(String),
}

pub type Slots = BTreeMap<SlotName, SlotValue>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub text: String,
    pub intent: Intent,
    #[serde(default)]
    pub slots: Slots,
}

/// Classifiers that follow a count of images (来三张, 2幅, 四个版本).
pub const COUNT_CLASSIFIERS: &[char] = &[
    '张', '張', '幅', '个', '個', '款', '份', '套', '组', '版', '副', '种',
];

impl Example {
    /// Per-character tags (one per `text.chars()`), or a message naming the slot whose
    /// value cannot be found in the text.
    pub fn char_tags(&self) -> std::result::Result<Vec<Tag>, String> {
        let chars: Vec<char> = self.text.chars().collect();
        let mut tags = vec![Tag::Outside; chars.len()];
        let mut taken = vec![false; chars.len()];
        let mut text_slots: Vec<(SlotName, Vec<char>)> = Vec::new();
        for (&slot, value) in &self.slots {
            match (slot, value) {
                (SlotName::Count, SlotValue::Count(n)) => {
                    let (start, end) = find_count(&chars, *n)
                        .ok_or_else(|| format!("count {n} is not written in the text"))?;
                    mark(&mut tags, &mut taken, slot, start, end);
                }
                (SlotName::Count, SlotValue::Text(_)) => {
                    return Err("count must be an integer".into());
                }
                (_, SlotValue::Text(text)) => text_slots.push((slot, text.chars().collect())),
                (_, SlotValue::Count(_)) => {
                    return Err(format!("slot {slot} must be text, not a number"));
                }
            }
        }
        // Longer values first, so that a short value inside a longer one (style 水彩 in
        // subject 水彩笔) takes its own occurrence.
        text_slots.sort_by_key(|slot| std::cmp::Reverse(slot.1.len()));
        for (slot, value) in text_slots {
            if value.is_empty() {
                return Err(format!("slot {slot} is empty"));
            }
            let start = (0..=chars.len().saturating_sub(value.len()))
                .find(|&start| {
                    chars[start..].starts_with(&value)
                        && !taken[start..start + value.len()].iter().any(|&t| t)
                })
                .ok_or_else(|| {
                    format!(
                        "{slot} `{}` is not a free substring of the text",
                        value.iter().collect::<String>()
                    )
                })?;
            mark(&mut tags, &mut taken, slot, start, start + value.len());
        }
        Ok(tags)
    }
}

fn mark(tags: &mut [Tag], taken: &mut [bool], slot: SlotName, start: usize, end: usize) {
    for i in start..end {
        tags[i] = if i == start {
            Tag::Begin(slot)
        } else {
            Tag::Inside(slot)
        };
        taken[i] = true;
    }
}

/// The numeral run that writes `count`, preferring one followed by a classifier.
fn find_count(chars: &[char], count: u32) -> Option<(usize, usize)> {
    let mut candidates = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if is_numeral_char(chars[i]) {
            let start = i;
            while i < chars.len() && is_numeral_char(chars[i]) {
                i += 1;
            }
            let run: String = chars[start..i].iter().collect();
            if parse_number(&run) == Some(count) {
                let classified = chars.get(i).is_some_and(|c| COUNT_CLASSIFIERS.contains(c));
                candidates.push((classified, start, i));
            }
        } else {
            i += 1;
        }
    }
    candidates
        .iter()
        .find(|c| c.0)
        .or(candidates.first())
        .map(|&(_, start, end)| (start, end))
}

/// Reads labelled JSON lines; blank lines and lines starting with `#` or `//` are skipped.
/// Every slot value must be findable in its text.
pub fn read_jsonl(path: &Path) -> Result<Vec<Example>> {
    let content = std::fs::read_to_string(path).map_err(|source| AgentError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut examples = Vec::new();
    for (number, line) in content.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let bad = |message: String| AgentError::BadLine {
            path: path.to_path_buf(),
            line: number + 1,
            message,
        };
        let example: Example = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        example.char_tags().map_err(bad)?;
        examples.push(example);
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(json: &str) -> Example {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn spans_become_bio_tags() {
        let e = example(
            r#"{"text":"来三张水彩风格的荷花","intent":"generate.free","slots":{"subject":"荷花","style":"水彩","count":3}}"#,
        );
        let tags: Vec<String> = e
            .char_tags()
            .unwrap_or_default()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(
            tags,
            [
                "O",
                "B-count",
                "O",
                "B-style",
                "I-style",
                "O",
                "O",
                "O",
                "B-subject",
                "I-subject"
            ]
        );
    }

    #[test]
    fn count_prefers_the_number_with_a_classifier() {
        let e = example(
            r#"{"text":"三只小猫在睡觉，来3张","intent":"generate.free","slots":{"subject":"三只小猫在睡觉","count":3}}"#,
        );
        let tags = e.char_tags().unwrap_or_default();
        assert_eq!(tags[9], Tag::Begin(SlotName::Count));
        assert_eq!(tags[0], Tag::Begin(SlotName::Subject));
    }

    #[test]
    fn a_value_not_in_the_text_is_reported() {
        let e = example(r#"{"text":"画只猫","intent":"generate.free","slots":{"subject":"狗"}}"#);
        assert!(e.char_tags().is_err());
        let e = example(r#"{"text":"画只猫","intent":"generate.free","slots":{"count":2}}"#);
        assert!(e.char_tags().is_err());
    }
}
