//! Qwen's chat prompt (ChatML, as its tokenizer_config's `chat_template` writes it):
//! `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`.
//! Qwen3 answers without its thinking block when the prompt ends with an empty one (the
//! template's `enable_thinking=False`).

use crate::config::Family;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// The prompt text for `messages`, ready for the assistant's answer.
pub fn chat_prompt(family: Family, messages: &[ChatMessage]) -> String {
    let mut text = String::new();
    for message in messages {
        text.push_str("<|im_start|>");
        text.push_str(message.role.as_str());
        text.push('\n');
        text.push_str(message.content.trim());
        text.push_str("<|im_end|>\n");
    }
    text.push_str("<|im_start|>assistant\n");
    if family == Family::Qwen3 {
        text.push_str("<think>\n\n</think>\n\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_is_chatml() {
        let messages = [
            ChatMessage::new(Role::System, "You write prompts."),
            ChatMessage::new(Role::User, "画一只熊猫"),
        ];
        assert_eq!(
            chat_prompt(Family::Qwen2, &messages),
            "<|im_start|>system\nYou write prompts.<|im_end|>\n<|im_start|>user\n画一只熊猫<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(
            chat_prompt(Family::Qwen3, &messages).ends_with("assistant\n<think>\n\n</think>\n\n")
        );
    }
}
