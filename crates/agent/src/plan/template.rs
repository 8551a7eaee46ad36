//! Filling a scene's prompt template: generation requests through the offline writer
//! (every content word, negations, purpose wording), edits from their translated slots.

use crate::corpus::{SlotValue, Slots};
use crate::labels::{Intent, SlotName};
use crate::plan::dictionary::Dictionary;
use crate::plan::offline_writer::OfflineWriter;
use crate::plan::prompt::{edit_instruction, join, normalize, Lexicon, WrittenPrompt};
use crate::plan::purpose::Purpose;
use crate::plan::scenes::Scene;
use crate::plan::segment::Segmenter;

/// Fills the scene's template. Generation requests get every content word of the
/// instruction (`offline_writer`) as `{subject}`, the poster's purpose wording as
/// `{purpose}` and their negations in front of the scene's negative prompt; edits get
/// their translated slots. `trigger` is the LoRA trigger word, empty when no LoRA is used.
pub fn write_prompt(
    scene: &Scene,
    intent: Intent,
    text: &str,
    slots: &Slots,
    trigger: &str,
    lexicon: &Lexicon,
) -> WrittenPrompt {
    let mut untranslated = Vec::new();
    let mut english = |slot: SlotName| -> String {
        match slots.get(&slot) {
            Some(SlotValue::Text(value)) => {
                let translation = lexicon.translate(value);
                untranslated.extend(translation.unknown);
                translation.english
            }
            _ => String::new(),
        }
    };
    let target = english(SlotName::Target);
    let content = english(SlotName::Content);
    let (mut subject, mut style) = (english(SlotName::Subject), english(SlotName::Style));
    let mut negatives = Vec::new();
    let mut purpose = "";
    if intent.is_generate() {
        let written = with_offline_writer(lexicon, |writer| writer.write(text, true));
        if !written.phrases.is_empty() {
            // The instruction's own words replace the slots (they hold the slots' words).
            subject = written.phrases.join(", ");
            style.clear();
            untranslated = written.untranslated;
        }
        negatives = written.negatives;
        if intent == Intent::GeneratePoster {
            purpose = Purpose::of(&normalize(text)).wording();
        }
    }
    let instruction = edit_instruction(text, &target, &content, &style);
    let prompt = scene
        .prompt
        .replace("{trigger}", trigger)
        .replace("{subject}", &subject)
        .replace("{style}", &style)
        .replace("{purpose}", purpose)
        .replace("{target}", &target)
        .replace("{content}", &content)
        .replace("{instruction}", &instruction);
    let prompt = join(prompt.split(','), ", ");
    WrittenPrompt {
        negative_prompt: negative_prompt(&negatives, &scene.negative_prompt, &prompt),
        prompt,
        untranslated,
    }
}

/// The user's negations first, then the scene's negative words that the positive prompt
/// does not ask for (a background asked to show people keeps them).
fn negative_prompt(negatives: &[String], scene_negative: &str, prompt: &str) -> String {
    let positive_words: Vec<String> = prompt
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .collect();
    let wanted = |item: &str| {
        let words: Vec<String> = item.split_whitespace().map(str::to_lowercase).collect();
        !words.is_empty()
            && positive_words
                .windows(words.len())
                .any(|window| window == words.as_slice())
    };
    let mut seen = std::collections::HashSet::new();
    negatives
        .iter()
        .map(String::as_str)
        .chain(
            scene_negative
                .split(',')
                .map(str::trim)
                .filter(|item| !wanted(item)),
        )
        .filter(|item| !item.is_empty() && seen.insert(item.to_lowercase()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `write` with the offline writer over `lexicon` (the built-in one's segmenter is
/// made once; another lexicon gets its own).
fn with_offline_writer<T>(lexicon: &Lexicon, write: impl FnOnce(&OfflineWriter<'_>) -> T) -> T {
    let own;
    let segmenter = if std::ptr::eq(lexicon, Lexicon::builtin()) {
        Segmenter::builtin()
    } else {
        own = Segmenter::with_lexicon(lexicon);
        &own
    };
    write(&OfflineWriter {
        lexicon,
        dictionary: Dictionary::builtin(),
        segmenter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::scenes::Scenes;

    #[test]
    fn fills_the_scene_template() {
        let scenes = Scenes::builtin().unwrap_or_else(|e| panic!("{e}"));
        let poster = scenes.get("poster").unwrap_or_else(|| panic!("poster"));
        let slots = Slots::from([
            (SlotName::Subject, SlotValue::Text("中秋".into())),
            (SlotName::Style, SlotValue::Text("水墨".into())),
        ]);
        let written = write_prompt(
            poster,
            Intent::GeneratePoster,
            "中秋海报，水墨风",
            &slots,
            "htposter",
            Lexicon::builtin(),
        );
        assert!(
            written
                .prompt
                .starts_with("htposter, Mid-Autumn Festival, full moon, mooncakes"),
            "{}",
            written.prompt
        );
        assert!(
            written
                .prompt
                .contains("Chinese ink wash style, festive greeting poster"),
            "{}",
            written.prompt
        );
        let without_trigger = write_prompt(
            poster,
            Intent::GeneratePoster,
            "中秋海报",
            &Slots::new(),
            "",
            Lexicon::builtin(),
        );
        assert!(
            without_trigger.prompt.starts_with("Mid-Autumn Festival"),
            "{}",
            without_trigger.prompt
        );
        assert!(!without_trigger.prompt.contains(", ,"));
    }

    #[test]
    fn posters_get_their_purpose_and_negations_their_negative_prompt() {
        let scenes = Scenes::builtin().unwrap_or_else(|e| panic!("{e}"));
        let poster = scenes.get("poster").unwrap_or_else(|| panic!("poster"));
        let written = write_prompt(
            poster,
            Intent::GeneratePoster,
            "公司招聘海报，蓝色，别放人",
            &Slots::new(),
            "",
            Lexicon::builtin(),
        );
        assert!(
            written.prompt.contains("recruitment poster"),
            "{}",
            written.prompt
        );
        assert!(!written.prompt.contains("festive"), "{}", written.prompt);
        assert!(
            written.negative_prompt.starts_with("people, person, "),
            "{}",
            written.negative_prompt
        );
        let background = scenes
            .get("background")
            .unwrap_or_else(|| panic!("background"));
        let written = write_prompt(
            background,
            Intent::GenerateBackground,
            "手机壁纸，一群人在海边放烟花",
            &Slots::new(),
            "",
            Lexicon::builtin(),
        );
        assert!(!written.prompt.contains("no text"), "{}", written.prompt);
        // The scene avoids people unless the user asks for them.
        assert!(
            !written.negative_prompt.contains("people"),
            "{}",
            written.negative_prompt
        );
    }
}
