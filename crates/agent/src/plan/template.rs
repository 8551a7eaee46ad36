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
            purpose = Purpose::of(&normalize(text)).wording_avoiding(&negatives);
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
    let prompt = join(
        prompt
            .split(',')
            .filter(|item| !carries_a_negative(item, &negatives)),
        ", ",
    );
    WrittenPrompt {
        negative_prompt: negative_prompt(&negatives, &scene.negative_prompt, &prompt),
        prompt,
        untranslated,
    }
}

/// Words that only grade a negated look (不要太喜庆: "too festive" negates "festive").
const GRADING: [&str; 7] = ["too", "overly", "very", "so", "no", "any", "excessively"];

/// Whether a positive prompt item holds something the user negated, which then wins over
/// the lexicon's and the template's words (别放月饼 on a 中秋 poster: no "mooncakes").
/// A negative matches as whole words in order, a plural "s"/"es" aside.
fn carries_a_negative(item: &str, negatives: &[String]) -> bool {
    let item_words: Vec<String> = words_of(item);
    negatives
        .iter()
        .flat_map(|negative| negative.split(','))
        .map(|negative| {
            words_of(negative)
                .into_iter()
                .skip_while(|word| GRADING.contains(&word.as_str()))
                .collect::<Vec<_>>()
        })
        .filter(|negative| !negative.is_empty())
        .any(|negative| {
            item_words.windows(negative.len()).any(|window| {
                window.iter().zip(&negative).all(|(word, negated)| {
                    word == negated
                        || word.strip_suffix('s') == Some(negated.as_str())
                        || word.strip_suffix("es") == Some(negated.as_str())
                })
            })
        })
}

fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '-' && c != '\'')
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
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

    #[test]
    fn negated_things_leave_the_positive_prompt() {
        let scenes = Scenes::builtin().unwrap_or_else(|e| panic!("{e}"));
        let poster = scenes.get("poster").unwrap_or_else(|| panic!("poster"));
        // The lexicon's 端午 brings zongzi; the user said no zongzi.
        let written = write_prompt(
            poster,
            Intent::GeneratePoster,
            "端午节海报，龙舟比赛，不要粽子",
            &Slots::new(),
            "",
            Lexicon::builtin(),
        );
        assert!(!written.prompt.contains("zongzi"), "{}", written.prompt);
        assert!(written.prompt.contains("dragon boat"), "{}", written.prompt);
        assert!(
            written.negative_prompt.contains("zongzi"),
            "{}",
            written.negative_prompt
        );
        // A festival poster asked for a quiet look gets no festive template words.
        let written = write_prompt(
            poster,
            Intent::GeneratePoster,
            "重阳节海报，登高望远，不要太喜庆",
            &Slots::new(),
            "",
            Lexicon::builtin(),
        );
        assert!(
            !written.prompt.contains("festive") && !written.prompt.contains("celebrat"),
            "{}",
            written.prompt
        );
        assert!(
            written.negative_prompt.contains("festive"),
            "{}",
            written.negative_prompt
        );
        assert!(carries_a_negative("mooncakes", &["mooncake".into()]));
        assert!(carries_a_negative(
            "festive greeting",
            &["too festive".into()]
        ));
        assert!(!carries_a_negative("red background", &["text red".into()]));
    }
}
