//! Training prompts from captions: the deterministic template (trigger word, caption,
//! scene style words), or any other writer (an LLM) behind [`PromptWriter`], with the
//! template as its fallback.

/// Writes the training prompt of one image.
pub trait PromptWriter {
    /// What writes the prompts, for the report ("template", "LLM model@url").
    fn name(&self) -> String;

    /// The prompt for an image with this caption (`None` when the image has none) and
    /// these database labels; an error message when it cannot.
    fn write(&self, caption: Option<&str>, labels: &[String]) -> Result<String, String>;
}

/// The offline writer: fills `template`'s `{trigger}` and `{caption}` (`{subject}`, as a
/// scene template spells it, is the caption too); other `{…}` placeholders and the empty
/// comma-separated parts they leave disappear. The trigger goes first when the template
/// has no `{trigger}`. Without a caption, the labels stand in for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplatePromptWriter {
    pub template: String,
    pub trigger: String,
}

impl TemplatePromptWriter {
    /// The plain template: `{trigger}, {caption}`, then the style words.
    pub fn new(trigger: &str, style: Option<&str>) -> Self {
        let mut template = String::from("{trigger}, {caption}");
        if let Some(style) = style.map(str::trim).filter(|style| !style.is_empty()) {
            template.push_str(", ");
            template.push_str(style);
        }
        Self {
            template,
            trigger: trigger.to_string(),
        }
    }

    /// The template's own words, without trigger and caption (what an LLM must keep).
    pub fn style_words(&self) -> String {
        join_parts(&remove_placeholders(&self.template))
    }

    /// The prompt `write` gives; it never fails.
    pub fn fill(&self, caption: Option<&str>, labels: &[String]) -> String {
        let caption = match caption.map(str::trim).filter(|text| !text.is_empty()) {
            Some(caption) => caption.to_string(),
            None => labels.join(", "),
        };
        let mut template = self.template.clone();
        if !template.contains("{trigger}") {
            template = format!("{{trigger}}, {template}");
        }
        let filled = template
            .replace("{trigger}", &self.trigger)
            .replace("{caption}", &caption)
            .replace("{subject}", &caption);
        join_parts(&remove_placeholders(&filled))
    }
}

impl PromptWriter for TemplatePromptWriter {
    fn name(&self) -> String {
        format!("template \"{}\"", self.template)
    }

    fn write(&self, caption: Option<&str>, labels: &[String]) -> Result<String, String> {
        Ok(self.fill(caption, labels))
    }
}

/// `text` without any `{name}` placeholder.
fn remove_placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The comma-separated parts of `text`, trimmed, empty ones and repeats dropped.
fn join_parts(text: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split(',').map(str::trim) {
        if !part.is_empty() && !parts.contains(&part) {
            parts.push(part);
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_caption_and_style_in_order() {
        let writer = TemplatePromptWriter::new("htcat", Some("watercolor, soft light"));
        assert_eq!(
            writer.fill(Some(" a cat on a sofa "), &[]),
            "htcat, a cat on a sofa, watercolor, soft light"
        );
        assert_eq!(
            writer.fill(None, &["cat".into(), "sofa".into()]),
            "htcat, cat, sofa, watercolor, soft light"
        );
        assert_eq!(writer.fill(None, &[]), "htcat, watercolor, soft light");
        assert_eq!(writer.style_words(), "watercolor, soft light");
    }

    #[test]
    fn scene_templates_lose_unfilled_parts() {
        let writer = TemplatePromptWriter {
            template: "{trigger}, {subject}, {style}, festive greeting poster, high quality".into(),
            trigger: "htposter".into(),
        };
        assert_eq!(
            writer.fill(Some("a red lantern"), &[]),
            "htposter, a red lantern, festive greeting poster, high quality"
        );
        let no_trigger = TemplatePromptWriter {
            template: "portrait of {subject}".into(),
            trigger: "htportrait".into(),
        };
        assert_eq!(
            no_trigger.fill(Some("a woman"), &[]),
            "htportrait, portrait of a woman"
        );
    }
}
