//! Prompt writing: the domain lexicon (`lexicon.tsv`), the English edit instruction and
//! what a writer produces; `template` fills a scene's template (`template::write_prompt`).
//!
//! Translation is longest-match over the lexicon after character normalisation;
//! "X的Y" becomes "Y, X" (the head noun first, as SDXL prompts read best), and
//! "在X上/里/中/下" becomes "on/in/in/under X". Chinese that the lexicon does not know
//! is left out of the prompt and reported, never passed through (SDXL's CLIP encoders
//! cannot read it).

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::text::normalize_char;

const LEXICON: &str = include_str!("lexicon.tsv");

pub struct Lexicon {
    entries: HashMap<String, String>,
    longest: usize,
    /// A hash of the lexicon's text, so cached prompts of another lexicon never mix.
    version: String,
}

/// English text plus the Chinese pieces that could not be translated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Translation {
    pub english: String,
    pub unknown: Vec<String>,
}

impl Lexicon {
    pub fn builtin() -> &'static Lexicon {
        static LEXICON_TABLE: OnceLock<Lexicon> = OnceLock::new();
        LEXICON_TABLE.get_or_init(|| Lexicon::parse(LEXICON))
    }

    pub fn parse(text: &str) -> Lexicon {
        let entries: HashMap<String, String> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('\t'))
            .map(|(zh, en)| (normalize(zh.trim()), en.trim().to_string()))
            .filter(|(zh, _)| !zh.is_empty())
            .collect();
        let longest = entries.keys().map(|k| k.chars().count()).max().unwrap_or(1);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(text, &mut hasher);
        let version = format!("lexicon-{:016x}", std::hash::Hasher::finish(&hasher));
        Lexicon {
            entries,
            longest,
            version,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Identifies the lexicon's content (a hash of its text).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The English of one headword (normalised Chinese), if the lexicon has it.
    pub fn get(&self, chinese: &str) -> Option<&str> {
        self.entries.get(chinese).map(String::as_str)
    }

    /// Every headword, normalised.
    pub fn headwords(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn translate(&self, text: &str) -> Translation {
        let normalized = normalize(text);
        let mut unknown = Vec::new();
        let english = with_articles(&self.phrase(&normalized, &mut unknown));
        Translation { english, unknown }
    }

    /// The position word (上, 里面, 中间 …) that ends a location phrase at `chars[at..]`,
    /// with its length: a single 上/里/中/下 that begins a longer word (下棋, 上衣) is not one.
    fn position_at(&self, chars: &[char], at: usize) -> Option<(&'static str, usize)> {
        let two: String = chars[at..(at + 2).min(chars.len())].iter().collect();
        if let Some(&(_, preposition)) = POSITION_WORDS.iter().find(|(word, _)| *word == two) {
            return Some((preposition, 2));
        }
        let preposition = match chars[at] {
            '上' => "on",
            '下' => "under",
            '里' | '中' => "in",
            _ => return None,
        };
        let starts_word = (2..=self.longest.min(chars.len() - at)).any(|n| {
            let piece: String = chars[at..at + n].iter().collect();
            self.entries.contains_key(&piece)
        });
        (!starts_word).then_some((preposition, 1))
    }

    /// "X的Y" → "Y, X"; otherwise a run of words.
    fn phrase(&self, text: &str, unknown: &mut Vec<String>) -> String {
        if let Some(english) = self.entries.get(text) {
            return english.clone();
        }
        if let Some((head, tail)) = text.rsplit_once('的') {
            if !head.is_empty() && !tail.is_empty() {
                let tail = self.phrase(tail, unknown);
                let head = self.phrase(head, unknown);
                return join([tail, head].iter().map(String::as_str), ", ");
            }
        }
        let chars: Vec<char> = text.chars().filter(|&c| c != '的').collect();
        // "X里" / "X上面" with no 在 (the head of "X里的Y"): "in X".
        if chars.len() > 2 {
            for length in [2, 1] {
                let at = chars.len() - length;
                if let Some((preposition, found)) = self.position_at(&chars, at) {
                    if found == length {
                        let inner: String = chars[..at].iter().collect();
                        return format!("{preposition} {}", self.phrase(&inner, unknown));
                    }
                }
            }
        }
        let mut words: Vec<String> = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '在' {
                let end = (i + 2..chars.len())
                    .find_map(|j| self.position_at(&chars, j).map(|(p, n)| (j, p, n)));
                if let Some((end, preposition, length)) = end {
                    let inner: String = chars[i + 1..end].iter().collect();
                    words.push(format!("{preposition} {}", self.phrase(&inner, unknown)));
                    i = end + length;
                    continue;
                }
                i += 1;
                continue;
            }
            if chars[i].is_ascii() {
                let start = i;
                while i < chars.len() && chars[i].is_ascii() {
                    i += 1;
                }
                let ascii: String = chars[start..i].iter().collect();
                if !ascii.trim().is_empty() {
                    words.push(ascii.trim().to_string());
                }
                continue;
            }
            let found = (1..=self.longest.min(chars.len() - i)).rev().find_map(|n| {
                let piece: String = chars[i..i + n].iter().collect();
                self.entries.get(&piece).map(|english| (n, english.clone()))
            });
            match found {
                Some((n, english)) => {
                    words.push(english);
                    i += n;
                }
                None => {
                    // Gather the unknown run so it is reported once.
                    let start = i;
                    i += 1;
                    while i < chars.len() && !chars[i].is_ascii() && !self.starts_word(&chars[i..])
                    {
                        i += 1;
                    }
                    unknown.push(chars[start..i].iter().collect());
                }
            }
        }
        join(words.iter().map(String::as_str), " ")
    }

    fn starts_word(&self, chars: &[char]) -> bool {
        (1..=self.longest.min(chars.len())).any(|n| {
            let piece: String = chars[..n].iter().collect();
            self.entries.contains_key(&piece)
        })
    }
}

/// Two-character position words and the preposition each stands for.
const POSITION_WORDS: [(&str, &str); 10] = [
    ("上面", "on"),
    ("上边", "on"),
    ("里面", "in"),
    ("里边", "in"),
    ("中间", "in the middle of"),
    ("当中", "in the middle of"),
    ("下面", "under"),
    ("下边", "under"),
    ("上方", "above"),
    ("下方", "below"),
];

/// "a" before a vowel sound written as a vowel letter becomes "an" (a orange cat → an …).
pub(crate) fn with_articles(english: &str) -> String {
    let words: Vec<&str> = english.split(' ').collect();
    let mut out = Vec::with_capacity(words.len());
    for (index, word) in words.iter().enumerate() {
        let next_vowel = words
            .get(index + 1)
            .and_then(|next| next.chars().next())
            .is_some_and(|c| "aeiouAEIOU".contains(c));
        out.push(if *word == "a" && next_vowel {
            "an"
        } else {
            word
        });
    }
    out.join(" ")
}

pub(crate) fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii() { c } else { normalize_char(c) })
        .collect()
}

pub(crate) fn join<'a>(parts: impl Iterator<Item = &'a str>, separator: &str) -> String {
    parts
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(separator)
}

/// What a prompt writer produces for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenPrompt {
    pub prompt: String,
    pub negative_prompt: String,
    /// Chinese pieces left out because no translation was known.
    pub untranslated: Vec<String>,
}

/// The English edit instruction for InstructPix2Pix ("replace the sky with sunset glow").
pub fn edit_instruction(text: &str, target: &str, content: &str, style: &str) -> String {
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    let removal = has(&[
        "去掉", "删除", "删掉", "移除", "抹掉", "擦掉", "p掉", "P掉", "去除",
    ]);
    let addition = has(&["加", "添", "放", "戴上", "穿上", "画上"]);
    let replacement = has(&["替换", "换掉"]);
    // The lexicon writes "X的Y" head first ("passers-by, in the background"; "color, car"):
    // one noun phrase here.
    let (target, colour_of) = match target.strip_prefix("color, ") {
        Some(owner) => (owner.replace(", ", " "), true),
        None => (target.replace(", ", " "), false),
    };
    let target = target.as_str();
    let mut parts = Vec::new();
    if removal && !target.is_empty() {
        parts.push(format!("remove the {target}"));
    } else if !target.is_empty() && (colour_of || is_colour(content)) {
        parts.push(format!("make the {target} {content}"));
    } else if !target.is_empty() && !content.is_empty() && addition {
        let preposition = if is_frame_position(target) {
            "in"
        } else {
            "to"
        };
        parts.push(format!("add {content} {preposition} the {target}"));
    } else if !target.is_empty() && !content.is_empty() && replacement {
        parts.push(format!("replace the {target} with {content}"));
    } else if !target.is_empty() && !content.is_empty() {
        parts.push(format!("turn the {target} into {content}"));
    } else if !content.is_empty() {
        parts.push(format!("add {content}"));
    } else if !target.is_empty() {
        parts.push(format!("change the {target}"));
    }
    if !style.is_empty() {
        parts.push(style_instruction(style));
    }
    parts.join(", ")
}

/// A colour as the lexicon writes it (red, light blue, golden …): a colour edit says
/// "make the X red", not "turn the X into red".
fn is_colour(english: &str) -> bool {
    const COLOURS: [&str; 17] = [
        "red", "blue", "green", "yellow", "white", "black", "pink", "purple", "orange", "brown",
        "gray", "grey", "golden", "gold", "silver", "blonde", "beige",
    ];
    english
        .split_whitespace()
        .last()
        .is_some_and(|word| COLOURS.contains(&word.to_lowercase().as_str()))
}

fn is_frame_position(english: &str) -> bool {
    [
        "corner", "left", "right", "top", "bottom", "center", "middle",
    ]
    .iter()
    .any(|word| english.split_whitespace().any(|w| w == *word))
}

/// "make it Y style", or "make it a Y" for a kind of picture (a watercolor painting).
fn style_instruction(style: &str) -> String {
    let kind_of_picture = ["painting", "sketch", "drawing", "illustration", "photo"]
        .iter()
        .any(|kind| style.ends_with(kind));
    if style.contains("style") {
        format!("make it {style}")
    } else if kind_of_picture {
        with_articles(&format!("make it a {style}"))
    } else {
        format!("make it {style} style")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_with_longest_match_and_reorders_modifiers() {
        let lexicon = Lexicon::builtin();
        assert!(lexicon.len() > 300);
        assert_eq!(
            lexicon.translate("元宵祝福").english,
            "Lantern Festival, glowing red lanterns, tangyuan rice balls greetings, best wishes"
        );
        assert_eq!(
            lexicon.translate("穿汉服的女孩").english,
            "girl, wearing hanfu"
        );
        assert_eq!(
            lexicon.translate("在月球上的猫").english,
            "cat, on the moon"
        );
        assert_eq!(
            lexicon.translate("小男孩在放风筝").english,
            "little boy flying a kite"
        );
        assert_eq!(
            lexicon.translate("穿西裝的男人").english,
            "man, wearing suit"
        );
        // Position words end location phrases only where they are not part of a word.
        assert_eq!(
            lexicon.translate("冰箱里的蛋糕").english,
            format!(
                "{}, in {}",
                lexicon.translate("蛋糕").english,
                lexicon.translate("冰箱").english
            )
        );
        let chess = lexicon.translate("老人在公园下棋").english;
        assert!(!chess.contains("under"), "{chess}");
        assert_eq!(
            with_articles("a orange cat, a dog, a"),
            "an orange cat, a dog, a"
        );
        let unknown = lexicon.translate("饕餮猫");
        assert_eq!(unknown.english, "cat");
        assert_eq!(unknown.unknown, vec!["饕餮".to_string()]);
        assert_eq!(
            lexicon.translate("Happy New Year").english,
            "Happy New Year"
        );
    }

    #[test]
    fn edit_instructions_follow_the_verb() {
        assert_eq!(
            edit_instruction("把天空换成晚霞", "sky", "sunset glow", ""),
            "turn the sky into sunset glow"
        );
        assert_eq!(
            edit_instruction("去掉图片里的路人", "passers-by", "", ""),
            "remove the passers-by"
        );
        assert_eq!(
            edit_instruction("在左上角加一轮月亮", "top left", "moon", ""),
            "add moon in the top left"
        );
        assert_eq!(
            edit_instruction("改成水彩风格", "", "", "watercolor painting"),
            "make it a watercolor painting"
        );
    }

    #[test]
    fn edit_kinds_get_their_own_verbs() {
        // Colour changes, of a thing or of the thing's colour (X的颜色).
        assert_eq!(
            edit_instruction("把裙子改成粉色", "dress", "pink", ""),
            "make the dress pink"
        );
        assert_eq!(
            edit_instruction("把杯子的颜色换成浅蓝", "color, cup", "light blue", ""),
            "make the cup light blue"
        );
        // A thing in a frame position is added in it, a thing on a thing to it.
        assert_eq!(
            edit_instruction("在左下角加一只猫", "bottom left corner", "cat", ""),
            "add cat in the bottom left corner"
        );
        assert_eq!(
            edit_instruction("用蛋糕替换桌上的花瓶", "vase, on the table", "cake", ""),
            "replace the vase on the table with cake"
        );
        assert_eq!(
            edit_instruction("删掉水里的船", "boat, in the water", "", ""),
            "remove the boat in the water"
        );
        assert_eq!(
            edit_instruction("变成赛博朋克", "", "", "cyberpunk"),
            "make it cyberpunk style"
        );
        assert_eq!(
            edit_instruction("改成油画", "", "", "oil painting"),
            "make it an oil painting"
        );
    }
}
