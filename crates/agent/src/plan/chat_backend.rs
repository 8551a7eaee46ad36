//! The second prompt writer: an OpenAI-compatible chat-completions server (llama.cpp,
//! vLLM, Ollama, LM Studio …) turns the instruction and slots into an English SDXL
//! prompt. HTTP through `ureq` (https with rustls, so an API key never travels in
//! clear to a remote server; http for local ones), JSON with serde.

use serde_json::json;

use crate::edit_instructions::EditIdea;
use crate::error::{AgentError, Result};
use crate::intent::corpus::{SlotValue, Slots};
use crate::plan::prompt::WrittenPrompt;
/// The chat server's settings are part of the scenes file (`[prompt]`); this module is how
/// they are used.
pub use crate::plan::scenes::ChatBackend;

const SYSTEM: &str = "You write prompts for Stable Diffusion XL. Given a Chinese image request, its extracted slots and a prompt template, reply with one English prompt only: comma-separated phrases, no quotes, no explanations, no Chinese.";

const EDIT_SYSTEM: &str = "You write image edits for InstructPix2Pix training data. Given an image caption, reply with one JSON object only: {\"instruction\": an English edit instruction, \"instruction_zh\": the same instruction in Chinese, \"edited_caption\": the caption of the edited image, changed only where the instruction says}. Examples: Caption: a girl riding a horse -> {\"instruction\": \"have her ride a dragon\", \"instruction_zh\": \"让她骑一条龙\", \"edited_caption\": \"a girl riding a dragon\"}. Caption: a red car parked in the street -> {\"instruction\": \"make it snow\", \"instruction_zh\": \"让天下雪\", \"edited_caption\": \"a red car parked in the snowy street\"}.";

const TRAINING_SYSTEM: &str = "You write training captions for a Stable Diffusion XL LoRA. Given an image caption (or tags), reply with one English training prompt only: comma-separated phrases describing what is in the image, the given trigger word first, the given style words kept, no quotes, no explanations.";

fn llm_error(base_url: &str, message: impl Into<String>) -> AgentError {
    AgentError::PromptBackend {
        url: base_url.to_string(),
        message: message.into(),
    }
}

impl ChatBackend {
    /// The English prompt for `text` from the scene's prompt `template`; the scene's
    /// `negative_prompt` is passed through.
    pub fn write_prompt(
        &self,
        template: &str,
        negative_prompt: &str,
        text: &str,
        slots: &Slots,
        trigger: &str,
    ) -> Result<WrittenPrompt> {
        let slot_list: Vec<String> = slots
            .iter()
            .map(|(slot, value)| match value {
                SlotValue::Text(v) => format!("{slot}: {v}"),
                SlotValue::Count(n) => format!("{slot}: {n}"),
            })
            .collect();
        let user = format!(
            "Request: {text}\nSlots: {}\nTemplate: {}\nKeep the trigger word `{trigger}` first if it is not empty.",
            slot_list.join("; "),
            template
        );
        let prompt = self.complete(SYSTEM, &user)?;
        Ok(WrittenPrompt {
            prompt,
            negative_prompt: negative_prompt.to_string(),
            untranslated: Vec::new(),
        })
    }

    /// The training prompt of one dataset image (`huatu dataset build`): the caption
    /// (or, without one, the image's labels) rewritten as an SDXL training prompt with
    /// the trigger word first and the style words kept. A reply that drops the trigger
    /// gets it put back in front.
    pub fn write_training_prompt(
        &self,
        caption: Option<&str>,
        labels: &[String],
        trigger: &str,
        style: &str,
    ) -> Result<String> {
        let mut user = match caption {
            Some(caption) => format!("Caption: {caption}"),
            None => format!("Tags: {}", labels.join(", ")),
        };
        user += &format!("\nTrigger word (first): {trigger}");
        if !style.trim().is_empty() {
            user += &format!("\nStyle words to keep: {}", style.trim());
        }
        let prompt = self.complete(TRAINING_SYSTEM, &user)?;
        let starts_with_trigger = prompt
            .split(',')
            .next()
            .is_some_and(|first| first.trim() == trigger);
        Ok(if trigger.is_empty() || starts_with_trigger {
            prompt
        } else {
            format!("{trigger}, {prompt}")
        })
    }

    /// An InstructPix2Pix edit of an image caption (few-shot, as the paper's fine-tuned
    /// GPT-3 was taught): the English instruction, its Chinese translation for users and
    /// the edited image's caption, from a JSON reply.
    pub fn write_edit(&self, caption: &str) -> Result<EditIdea> {
        let reply = self.complete(EDIT_SYSTEM, &format!("Caption: {caption}"))?;
        let start = reply.find('{');
        let end = reply.rfind('}');
        let json = match (start, end) {
            (Some(start), Some(end)) if start < end => &reply[start..=end],
            _ => {
                return Err(llm_error(
                    &self.base_url,
                    "the edit reply holds no JSON object",
                ))
            }
        };
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|source| AgentError::PromptBackendJson {
                url: self.base_url.clone(),
                source,
            })?;
        let field = |name: &str| {
            value
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| llm_error(&self.base_url, format!("the edit reply has no `{name}`")))
        };
        let idea = EditIdea {
            instruction: field("instruction")?,
            instruction_zh: field("instruction_zh")?,
            edited_caption: field("edited_caption")?,
            kind: "llm".into(),
        };
        if idea.edited_caption.eq_ignore_ascii_case(caption.trim()) {
            return Err(llm_error(
                &self.base_url,
                "the edited caption is the caption itself",
            ));
        }
        Ok(idea)
    }

    /// One chat completion: the reply's first message, trimmed of quotes; an empty reply
    /// is an error.
    pub(crate) fn complete(&self, system: &str, user: &str) -> Result<String> {
        let body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0.2,
        });
        let value = self.post("/chat/completions", &body)?;
        let content = value
            .pointer("/choices/0/message/content")
            .and_then(|c| c.as_str())
            .ok_or_else(|| llm_error(&self.base_url, "reply has no choices[0].message.content"))?;
        let prompt = content.trim().trim_matches('"').trim().to_string();
        if prompt.is_empty() {
            return Err(llm_error(
                &self.base_url,
                "the model returned an empty prompt",
            ));
        }
        Ok(prompt)
    }

    /// POSTs `body` as JSON to `base_url` + `path` and reads the JSON reply; connect,
    /// read and write each time out after `timeout`.
    fn post(&self, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.base_url.trim_end_matches('/'));
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(self.timeout)
            .timeout_read(self.timeout)
            .timeout_write(self.timeout)
            .build();
        let mut request = agent
            .post(&url)
            .set("Content-Type", "application/json")
            .set("Accept", "application/json");
        if let Some(key) = &self.api_key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        let response = match request.send_string(&body.to_string()) {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let reply: String = response
                    .into_string()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect();
                return Err(AgentError::PromptBackendStatus {
                    url: self.base_url.clone(),
                    status,
                    reply,
                });
            }
            Err(ureq::Error::Transport(source)) => {
                return Err(AgentError::PromptBackendRequest {
                    url: self.base_url.clone(),
                    source: Box::new(source),
                })
            }
        };
        let text = response
            .into_string()
            .map_err(|source| AgentError::PromptBackendReply {
                url: self.base_url.clone(),
                source,
            })?;
        serde_json::from_str(&text).map_err(|source| AgentError::PromptBackendJson {
            url: self.base_url.clone(),
            source,
        })
    }
}
