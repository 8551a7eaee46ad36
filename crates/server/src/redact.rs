//! Server paths kept out of texts clients see (a failed job's reason): the data directory
//! and the model paths become `<data>`, `<model>`, …, and any other absolute path keeps
//! only its file name. The full text goes to the server log.

use std::path::Path;

use crate::config::ServerConfig;

/// Replaces the server's own paths in a text (see the module comment).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// (path as text, placeholder), longest path first so nested paths match whole.
    roots: Vec<(String, &'static str)>,
}

impl Redactor {
    pub fn new(config: &ServerConfig) -> Self {
        let mut redactor = Self::default();
        redactor.add(&config.data_dir, "<data>");
        let models = [
            (&config.model, "<model>"),
            (&config.model_config, "<model-config>"),
            (&config.instruct_model, "<instruct-model>"),
            (&config.controlnet, "<controlnet>"),
            (&config.sr_model, "<sr-model>"),
            (&config.intent_model, "<intent-model>"),
            (&config.prompt_model, "<prompt-model>"),
        ];
        for (path, placeholder) in models {
            if let Some(path) = path {
                redactor.add(path, placeholder);
            }
        }
        redactor
    }

    /// Replaces `path` (as given, and as its canonical form) with `placeholder`.
    pub fn add(&mut self, path: &Path, placeholder: &'static str) {
        let mut forms = vec![path.display().to_string()];
        if let Ok(canonical) = path.canonicalize() {
            forms.push(canonical.display().to_string());
        }
        for form in forms {
            let form = form.trim_end_matches('/').to_string();
            // "." or "" would match everywhere.
            if form.len() > 1 && !self.roots.iter().any(|(known, _)| *known == form) {
                self.roots.push((form, placeholder));
            }
        }
        self.roots
            .sort_by_key(|(form, _)| std::cmp::Reverse(form.len()));
    }

    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (form, placeholder) in &self.roots {
            text = text.replace(form.as_str(), placeholder);
        }
        strip_absolute_paths(&text)
    }
}

/// `/any/absolute/path/name.ext` → `…/name.ext` for paths of two or more parts.
fn strip_absolute_paths(text: &str) -> String {
    let is_end = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ')' | ',' | ';');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut previous: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let at_word_start =
            previous.is_none_or(|p| p.is_whitespace() || matches!(p, '(' | '"' | '\'' | '`' | '='));
        if c == '/' && at_word_start {
            let end = rest.find(is_end).unwrap_or(rest.len());
            let token = &rest[..end];
            if token.matches('/').count() >= 2 {
                let name = token.rsplit('/').next().unwrap_or_default();
                out.push_str("…/");
                out.push_str(name);
                previous = token.chars().last();
                rest = &rest[end..];
                continue;
            }
        }
        out.push(c);
        previous = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_become_placeholders_and_others_their_file_name() {
        let mut config = ServerConfig::new("/srv/huatu/data");
        config.model = Some("/models/sdxl".into());
        let redactor = Redactor::new(&config);
        assert_eq!(
            redactor
                .redact("cannot read LoRA /srv/huatu/data/loras/bad.safetensors: header too large"),
            "cannot read LoRA <data>/loras/bad.safetensors: header too large"
        );
        assert_eq!(
            redactor.redact("unet weights in /models/sdxl/unet (\"/models/sdxl/x.bin\")"),
            "unet weights in <model>/unet (\"<model>/x.bin\")"
        );
        assert_eq!(
            redactor.redact("opening /home/someone/cache/weights.pth failed; ratio 1/2"),
            "opening …/weights.pth failed; ratio 1/2"
        );
        assert_eq!(redactor.redact("no path here"), "no path here");
    }
}
