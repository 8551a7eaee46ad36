//! The language-model prompt writer, as the system we implement does it: a local Qwen model
//! (`--prompt-model DIR`, in-process, no network) or the scenes file's chat server is asked,
//! with a few examples, for the SDXL prompt and negative prompt of a generation as JSON, or
//! for an English InstructPix2Pix instruction for a text edit. An answer that is not that
//! JSON, is empty, still holds Chinese or runs too long is refused, and the offline writer's
//! prompt stays; the plan's notes say which writer wrote it.

use std::path::Path;

use candle_core::Device;
use huatu_llm::{ChatMessage, LocalLlm, Role, Sampling};
use serde::Deserialize;

use crate::error::{AgentError, Result};
use crate::plan::planner::{PipelineKind, TaskPlan};
use crate::plan::prompt::WrittenPrompt;
use crate::plan::prompt_cache::{lookup, store, PromptKey};
use crate::plan::scenes::ChatBackend;

/// Longest prompt accepted, in characters (two CLIP windows of ~75 tokens, generously).
const MAX_PROMPT_CHARS: usize = 600;
/// Tokens a local model may write for one answer.
const MAX_NEW_TOKENS: usize = 160;

const GENERATION_SYSTEM: &str = "You write prompts for Stable Diffusion XL. Given a Chinese image request, reply with one JSON object only: {\"prompt\": English comma-separated phrases that keep every object, attribute, action, setting, light, colour, style and mood the user asked for, most important first, \"negative_prompt\": English phrases for what the user said must not appear, plus common defects}. No Chinese, no explanations.";

const GENERATION_EXAMPLES: [(&str, &str); 2] = [
    (
        "画一只戴草帽的熊猫在竹林里钓鱼，水墨风，不要人",
        r#"{"prompt": "a panda wearing a straw hat fishing in a bamboo forest, Chinese ink wash painting, soft light", "negative_prompt": "people, person, blurry, low quality"}"#,
    ),
    (
        "做一张交通安全宣传海报，斑马线上小学生排队过马路，卡通",
        r#"{"prompt": "traffic safety campaign poster, schoolchildren lined up crossing the road on a zebra crossing, cartoon style, clear bold composition", "negative_prompt": "blurry, distorted faces, low quality"}"#,
    ),
];

const EDIT_SYSTEM: &str = "You turn Chinese image-editing requests into one short English InstructPix2Pix instruction. Reply with one JSON object only: {\"instruction\": \"...\"}. No Chinese, no explanations.";

const EDIT_EXAMPLES: [(&str, &str); 2] = [
    (
        "把天空换成晚霞",
        r#"{"instruction": "turn the sky into a sunset glow"}"#,
    ),
    (
        "让她的头发变成红色",
        r#"{"instruction": "make her hair red"}"#,
    ),
];

/// A model that answers a system + user message.
pub enum PromptModel {
    Local(Box<LocalLlm>),
    Chat(ChatBackend),
}

impl PromptModel {
    /// Loads a local model folder or GGUF file.
    pub fn load_local(path: &Path) -> Result<Self> {
        LocalLlm::load(path, &Device::Cpu)
            .map(|llm| PromptModel::Local(Box::new(llm)))
            .map_err(|source| AgentError::PromptModel {
                path: path.to_path_buf(),
                source: Box::new(source),
            })
    }

    /// Names the writer in notes and cache keys.
    pub fn name(&self) -> String {
        match self {
            PromptModel::Local(llm) => format!("local model {}", llm.path.display()),
            PromptModel::Chat(backend) => format!("{} at {}", backend.model, backend.base_url),
        }
    }

    fn answer(&self, system: &str, examples: &[(&str, &str)], request: &str) -> Result<String> {
        match self {
            PromptModel::Local(llm) => {
                let mut messages = vec![ChatMessage::new(Role::System, system)];
                for (question, answer) in examples {
                    messages.push(ChatMessage::new(Role::User, *question));
                    messages.push(ChatMessage::new(Role::Assistant, *answer));
                }
                messages.push(ChatMessage::new(Role::User, request));
                let completion = llm
                    .chat(&messages, MAX_NEW_TOKENS, Sampling::Greedy)
                    .map_err(|source| AgentError::PromptModel {
                        path: llm.path.clone(),
                        source: Box::new(source),
                    })?;
                Ok(completion.text)
            }
            PromptModel::Chat(backend) => {
                let shots: Vec<String> = examples
                    .iter()
                    .map(|(question, answer)| format!("Request: {question}\nReply: {answer}"))
                    .collect();
                let system = format!("{system}\nExamples:\n{}", shots.join("\n"));
                backend.complete(&system, request)
            }
        }
    }
}

#[derive(Deserialize)]
struct GenerationReply {
    prompt: String,
    #[serde(default)]
    negative_prompt: String,
}

#[derive(Deserialize)]
struct EditReply {
    instruction: String,
}

/// The first `{…}` object in `text` (models wrap JSON in prose or code fences).
fn json_object(text: &str) -> Option<&str> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    (end > start).then(|| &text[start..=end])
}

/// Why an English phrase from a model cannot be used, if it cannot.
fn unusable(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return Some("it is empty".into());
    }
    if text.chars().count() > MAX_PROMPT_CHARS {
        return Some(format!("it is longer than {MAX_PROMPT_CHARS} characters"));
    }
    if text.chars().any(is_cjk) {
        return Some("it still holds Chinese".into());
    }
    if text.contains(['{', '}']) {
        return Some("it holds JSON braces".into());
    }
    None
}

fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3400}'..='\u{9fff}' | '\u{f900}'..='\u{faff}' | '\u{20000}'..='\u{2fa1f}')
}

/// A generation's prompt and negative prompt from `reply`, or why not.
pub fn read_generation_reply(reply: &str) -> std::result::Result<(String, String), String> {
    let object = json_object(reply).ok_or("the answer holds no JSON object")?;
    let parsed: GenerationReply = serde_json::from_str(object)
        .map_err(|e| format!("the JSON is not {{prompt, negative_prompt}}: {e}"))?;
    if let Some(reason) = unusable(&parsed.prompt) {
        return Err(format!("the prompt is not usable: {reason}"));
    }
    if !parsed.negative_prompt.trim().is_empty() {
        if let Some(reason) = unusable(&parsed.negative_prompt) {
            return Err(format!("the negative prompt is not usable: {reason}"));
        }
    }
    Ok((
        parsed.prompt.trim().to_string(),
        parsed.negative_prompt.trim().to_string(),
    ))
}

/// A text edit's English instruction from `reply`, or why not.
pub fn read_edit_reply(reply: &str) -> std::result::Result<String, String> {
    let object = json_object(reply).ok_or("the answer holds no JSON object")?;
    let parsed: EditReply = serde_json::from_str(object)
        .map_err(|e| format!("the JSON is not {{instruction}}: {e}"))?;
    if let Some(reason) = unusable(&parsed.instruction) {
        return Err(format!("the instruction is not usable: {reason}"));
    }
    Ok(parsed.instruction.trim().to_string())
}

/// Joins comma-separated phrase lists, each phrase once, in order.
fn merge_phrases(first: &str, second: &str) -> String {
    let mut seen = Vec::<String>::new();
    let mut out = Vec::new();
    for phrase in first.split(',').chain(second.split(',')) {
        let phrase = phrase.trim();
        if phrase.is_empty() || seen.contains(&phrase.to_lowercase()) {
            continue;
        }
        seen.push(phrase.to_lowercase());
        out.push(phrase);
    }
    out.join(", ")
}

/// Asks `model` for the plan's prompt: a generation gets the model's prompt (the LoRA's
/// trigger word kept first) and its negatives before the scene's; a text edit gets the
/// model's English instruction. Region edits keep theirs. When the model fails or its answer
/// is unusable, the offline prompt stays; either way a note says which writer wrote it.
/// Accepted answers are kept in the prompt cache, by instruction, model and offline prompt.
pub fn rewrite_with(plan: &mut TaskPlan, instruction: &str, model: &PromptModel) {
    if plan.pipeline == PipelineKind::ControlNetInpaint {
        return;
    }
    let name = model.name();
    let trigger = plan
        .lora
        .as_ref()
        .map(|lora| lora.trigger.clone())
        .unwrap_or_default();
    let key = PromptKey {
        instruction: instruction.to_string(),
        writer: "language model".into(),
        model: name.clone(),
        context: format!(
            "{}|{trigger}|{}|{}",
            plan.pipeline, plan.prompt, plan.negative_prompt
        ),
    };
    let outcome = match lookup(&key) {
        Some(kept) => Ok(kept),
        None => ask(plan, instruction, model, &trigger).inspect(|written| {
            store(key, written.clone());
        }),
    };
    plan.notes.push(match outcome {
        Ok(written) => {
            plan.prompt = written.prompt;
            plan.negative_prompt = written.negative_prompt;
            format!("prompt written by {name}")
        }
        Err(reason) => {
            format!("{name} gave no usable prompt ({reason}); the offline writer's prompt is used")
        }
    });
}

/// The model's prompt and negative prompt for `plan`, or why there is none.
fn ask(
    plan: &TaskPlan,
    instruction: &str,
    model: &PromptModel,
    trigger: &str,
) -> std::result::Result<WrittenPrompt, String> {
    let written = |prompt: String, negative_prompt: String| WrittenPrompt {
        prompt,
        negative_prompt,
        untranslated: Vec::new(),
    };
    if plan.pipeline == PipelineKind::InstructPix2Pix {
        let reply = model
            .answer(EDIT_SYSTEM, &EDIT_EXAMPLES, instruction)
            .map_err(|error| error.to_string())?;
        let english = read_edit_reply(&reply)?;
        return Ok(written(english, plan.negative_prompt.clone()));
    }
    let reply = model
        .answer(GENERATION_SYSTEM, &GENERATION_EXAMPLES, instruction)
        .map_err(|error| error.to_string())?;
    let (prompt, negative) = read_generation_reply(&reply)?;
    Ok(written(
        merge_phrases(trigger, &prompt),
        merge_phrases(&negative, &plan.negative_prompt),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_answer_is_read_and_a_bad_one_refused() {
        let reply = "Sure! ```json\n{\"prompt\": \"a red lantern, night market\", \"negative_prompt\": \"people\"}\n```";
        assert_eq!(
            read_generation_reply(reply),
            Ok(("a red lantern, night market".into(), "people".into()))
        );
        for (bad, why) in [
            ("a red lantern", "no JSON object"),
            ("{\"prompt\": \"红灯笼\"}", "still holds Chinese"),
            ("{\"prompt\": \"  \"}", "it is empty"),
            ("{\"text\": \"a lantern\"}", "not {prompt, negative_prompt}"),
        ] {
            let refusal = read_generation_reply(bad).err().unwrap_or_default();
            assert!(refusal.contains(why), "{bad}: {refusal}");
        }
        assert_eq!(
            read_edit_reply("{\"instruction\": \"make it snow\"}"),
            Ok("make it snow".into())
        );
        assert!(read_edit_reply("{\"instruction\": \"下雪\"}").is_err());
    }

    #[test]
    fn phrases_merge_once_in_order() {
        assert_eq!(
            merge_phrases("hta_style", "a cat, Hta_style, soft light, a cat"),
            "hta_style, a cat, soft light"
        );
        assert_eq!(merge_phrases("", "people"), "people");
    }
}
