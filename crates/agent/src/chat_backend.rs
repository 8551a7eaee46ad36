//! The second prompt writer: an OpenAI-compatible chat-completions server (llama.cpp,
//! vLLM, Ollama, LM Studio …) turns the instruction and slots into an English SDXL
//! prompt. Plain HTTP/1.1 over `std::net` (local servers; no TLS), JSON with serde.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::json;

use crate::corpus::{SlotValue, Slots};
use crate::edit_instructions::EditIdea;
use crate::error::{AgentError, Result};
use crate::prompt::WrittenPrompt;
use crate::scenes::Scene;

/// `[prompt]` settings: where the server is and which model to ask.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatBackend {
    /// e.g. `http://127.0.0.1:8080/v1`
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

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
    pub fn write_prompt(
        &self,
        scene: &Scene,
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
            scene.prompt
        );
        let prompt = self.complete(SYSTEM, &user)?;
        Ok(WrittenPrompt {
            prompt,
            negative_prompt: scene.negative_prompt.clone(),
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
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| llm_error(&self.base_url, format!("the edit reply is not JSON: {e}")))?;
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
    fn complete(&self, system: &str, user: &str) -> Result<String> {
        let body = json!({
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "temperature": 0.2,
        });
        let response = self.post("/chat/completions", &body.to_string())?;
        let value: serde_json::Value = serde_json::from_str(&response)
            .map_err(|e| llm_error(&self.base_url, format!("reply is not JSON: {e}")))?;
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

    fn post(&self, path: &str, body: &str) -> Result<String> {
        let rest = self.base_url.strip_prefix("http://").ok_or_else(|| {
            llm_error(
                &self.base_url,
                "only http:// URLs are supported (run a local server or a TLS proxy)",
            )
        })?;
        let (authority, base_path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let host_port = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let address = host_port
            .to_socket_addrs()
            .map_err(|e| llm_error(&self.base_url, format!("cannot resolve {host_port}: {e}")))?
            .next()
            .ok_or_else(|| llm_error(&self.base_url, format!("no address for {host_port}")))?;
        let io = |e: std::io::Error| llm_error(&self.base_url, e.to_string());
        let mut stream = TcpStream::connect_timeout(&address, self.timeout).map_err(io)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let full_path = format!("/{}{path}", base_path.trim_end_matches('/')).replace("//", "/");
        let mut request = format!(
            "POST {full_path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if let Some(key) = &self.api_key {
            request += &format!("Authorization: Bearer {key}\r\n");
        }
        request += "\r\n";
        stream.write_all(request.as_bytes()).map_err(io)?;
        stream.write_all(body.as_bytes()).map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(io)?;
        let (status, headers, body) = split_response(&raw)
            .ok_or_else(|| llm_error(&self.base_url, "malformed HTTP reply"))?;
        let chunked = headers.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("transfer-encoding:")
                && l.to_ascii_lowercase().contains("chunked")
        });
        let body = if chunked {
            dechunk(body).ok_or_else(|| llm_error(&self.base_url, "malformed chunked body"))?
        } else {
            body.to_vec()
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        if !(200..300).contains(&status) {
            let snippet: String = body.chars().take(200).collect();
            return Err(llm_error(
                &self.base_url,
                format!("HTTP {status}: {snippet}"),
            ));
        }
        Ok(body)
    }
}

fn split_response(raw: &[u8]) -> Option<(u16, String, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, head, &raw[end + 4..]))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n").as_deref(),
            Some(&b"Wikipedia"[..])
        );
        assert_eq!(dechunk(b"zz\r\n"), None);
    }
}
