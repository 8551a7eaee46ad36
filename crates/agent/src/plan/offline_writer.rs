//! The offline prompt writer for generation requests: every content word of the
//! instruction, in the user's order, in English.
//!
//! The instruction is split into clauses at punctuation; each clause is cut into words
//! (`segment`, jieba plus the domain lexicon); negated spans go to the negative prompt
//! (`negation`); request words and particles (请, 帮我, 生成, 一张, 了 …) are dropped;
//! each remaining word is translated by the domain lexicon first (several words at once
//! where it knows the phrase), then by the CC-CEDICT glosses (`dictionary`), and a word
//! neither knows is split into the longest pieces they know. "X的Y" puts the head noun Y
//! first ("panda, wearing straw hat"); "(在)X上/里/下" becomes "on/in/under X". Clauses
//! keep their order, so what the user said first comes first in the prompt, inside
//! CLIP's first 77-token window.

use crate::plan::dictionary::Dictionary;
use crate::plan::negation::split_negations;
use crate::plan::prompt::{normalize, with_articles, Lexicon};
use crate::plan::segment::{Segmenter, Word};
use crate::plan::word_classes::{
    is_image_count, is_singular_measure, ASPECT, CLASSIFIERS, FILLERS, POSITIONS, SUFFIXES,
};

/// What the writer made of one instruction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Content {
    /// English phrases in the user's order.
    pub phrases: Vec<String>,
    /// English phrases of the negated things, for the negative prompt.
    pub negatives: Vec<String>,
    /// Chinese words no dictionary knows, left out.
    pub untranslated: Vec<String>,
}

fn clauses(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| ",.;!?:、。，；！？：\n|/()（）\"“”'‘’".contains(c))
        .map(str::trim)
        .filter(|clause| !clause.is_empty())
}

pub struct OfflineWriter<'a> {
    pub lexicon: &'a Lexicon,
    pub dictionary: &'a Dictionary,
    pub segmenter: &'a Segmenter,
}

/// A word with its English (None: unknown).
#[derive(Debug, Clone)]
struct Piece {
    chinese: String,
    tag: String,
    english: Option<String>,
}

impl OfflineWriter<'static> {
    pub fn builtin() -> Self {
        OfflineWriter {
            lexicon: Lexicon::builtin(),
            dictionary: Dictionary::builtin(),
            segmenter: Segmenter::builtin(),
        }
    }
}

impl OfflineWriter<'_> {
    /// The content of a generation request; `negations` reads 不要/别/无 … spans.
    pub fn write(&self, text: &str, negations: bool) -> Content {
        let normalized = normalize(text);
        let mut content = Content::default();
        for clause in clauses(&normalized) {
            let words = colour_depth(self.segmenter.words(clause));
            let (kept, negated) = if negations {
                split_negations(&words)
            } else {
                (words, Vec::new())
            };
            for item in negated {
                let pieces = self.pieces(&item, &mut content.untranslated);
                let phrase = phrases(&pieces).join(" ");
                if phrase == "person" || phrase == "people" {
                    // No one at all: SDXL reads "person" as one figure.
                    content.negatives.push("people".into());
                    content.negatives.push("person".into());
                } else if !phrase.is_empty() {
                    content.negatives.push(phrase);
                }
            }
            let pieces = self.pieces(&kept, &mut content.untranslated);
            content.phrases.extend(phrases(&pieces));
        }
        content.phrases = dedup(content.phrases);
        content.negatives = dedup(content.negatives);
        content
    }

    fn translate(&self, chinese: &str) -> Option<String> {
        if let Some(english) = self.lexicon.get(chinese) {
            return Some(english.to_string());
        }
        if chinese.is_ascii() {
            return Some(chinese.to_string());
        }
        self.dictionary.get(chinese).map(str::to_string)
    }

    /// Words → translated pieces: fillers out, domain phrases over several words, unknown
    /// words split into the longest known pieces.
    fn pieces(&self, words: &[Word], untranslated: &mut Vec<String>) -> Vec<Piece> {
        let mut words = words.to_vec();
        let mut pieces: Vec<Piece> = Vec::new();
        let mut at = 0;
        while at < words.len() {
            // The longest run of whole words the domain lexicon knows as one phrase.
            let phrase = (2..=4.min(words.len() - at)).rev().find_map(|n| {
                let joined: String = words[at..at + n].iter().map(|w| w.text.as_str()).collect();
                self.lexicon
                    .get(&joined)
                    .map(|english| (n, joined, english.to_string()))
            });
            if let Some((n, chinese, english)) = phrase {
                pieces.push(Piece {
                    chinese,
                    tag: "n".into(),
                    english: Some(english),
                });
                at += n;
                continue;
            }
            let word = words[at].clone();
            at += 1;
            let text = word.text.as_str();
            let after_word = !pieces.is_empty();
            if ASPECT.contains(&text) {
                // Kept without English: a position word before it is a verb (下着雨).
                pieces.push(Piece {
                    chinese: text.to_string(),
                    tag: word.tag.clone(),
                    english: None,
                });
                continue;
            }
            let after_number = pieces.last().is_some_and(|p: &Piece| {
                p.chinese
                    .chars()
                    .all(|c| c.is_ascii_digit() || "一二两三四五六七八九十几".contains(c))
            });
            if text == "一" {
                // 一 + classifier, which jieba may fuse with the noun (一/朵玫瑰).
                if let Some(next) = words.get_mut(at) {
                    let mut chars = next.text.chars();
                    if chars.next().is_some_and(|c| CLASSIFIERS.contains(c)) {
                        let rest: String = chars.collect();
                        if rest.is_empty() {
                            at += 1;
                        } else {
                            next.text = rest;
                        }
                        continue;
                    }
                }
            }
            if FILLERS.contains(&text)
                || is_image_count(text)
                || is_singular_measure(text)
                || (after_number && text.chars().count() == 1 && CLASSIFIERS.contains(text))
                || (after_word && SUFFIXES.contains(&text))
                || (text.contains(':') && text.is_ascii())
            {
                continue;
            }
            match self.translate(text) {
                // 一只/一个 … → "a": SDXL needs no articles, and a moved noun would leave it dangling.
                Some(english) if english == "a" || english == "an" => {}
                Some(english) => pieces.push(Piece {
                    chinese: text.to_string(),
                    tag: word.tag.clone(),
                    english: Some(english),
                }),
                None => pieces.extend(self.split_unknown(text, untranslated)),
            }
        }
        pieces
    }

    /// An unknown word as the longest pieces either dictionary knows.
    fn split_unknown(&self, word: &str, untranslated: &mut Vec<String>) -> Vec<Piece> {
        let chars: Vec<char> = word.chars().collect();
        let longest = self.dictionary.longest().max(8).min(chars.len());
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < chars.len() {
            let found = (1..=longest.min(chars.len() - at)).rev().find_map(|n| {
                let piece: String = chars[at..at + n].iter().collect();
                self.translate(&piece).map(|english| (n, piece, english))
            });
            match found {
                Some((n, chinese, english)) => {
                    at += n;
                    if FILLERS.contains(&chinese.as_str())
                        || (at > n && SUFFIXES.contains(&chinese.as_str()))
                    {
                        continue;
                    }
                    pieces.push(Piece {
                        chinese,
                        tag: "x".into(),
                        english: Some(english),
                    });
                }
                None => {
                    untranslated.push(chars[at].to_string());
                    at += 1;
                }
            }
        }
        pieces
    }
}

/// 深/浅 in a clause about colour (颜色太深, 别用太深的颜色) are dark and light colours, not
/// "deep" and "shallow".
fn colour_depth(mut words: Vec<Word>) -> Vec<Word> {
    const COLOUR: [&str; 5] = ["颜色", "配色", "色彩", "色调", "底色"];
    if words.iter().any(|w| COLOUR.contains(&w.text.as_str())) {
        for word in &mut words {
            match word.text.as_str() {
                "深" => word.text = "深色".into(),
                "浅" => word.text = "浅色".into(),
                _ => {}
            }
        }
    }
    words
}

fn position(piece: &Piece) -> Option<&'static str> {
    POSITIONS
        .iter()
        .find(|(word, _)| *word == piece.chinese)
        .map(|(_, preposition)| *preposition)
}

fn is_noun(piece: &Piece) -> bool {
    piece.tag.starts_with('n') || piece.tag == "x" || piece.tag.is_empty()
}

/// Pieces → English phrases: "X的Y" head first, "(在)X上" as "on X", the rest in order.
fn phrases(pieces: &[Piece]) -> Vec<String> {
    // The last 的 with words on both sides: head noun run, then the modifier, then the rest.
    if let Some(de) = pieces.iter().rposition(|p| p.chinese == "的") {
        let (modifier, rest) = (&pieces[..de], &pieces[de + 1..]);
        if modifier.is_empty() {
            return phrases(rest);
        }
        if rest.is_empty() {
            return phrases(modifier);
        }
        let measures = rest
            .iter()
            .take_while(|p| p.tag.starts_with('m') || p.tag.starts_with('q'))
            .count();
        let head = (measures + rest[measures..].iter().take_while(|p| is_noun(p)).count()).max(1);
        let mut out = phrases(&rest[..head]);
        out.extend(phrases(modifier));
        out.extend(phrases(&rest[head..]));
        return out;
    }
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut run_start = 0;
    // After 在 with no position word yet: 在图书馆看书 is "in library, reading".
    let mut after_zai = false;
    for (index, piece) in pieces.iter().enumerate() {
        if piece.chinese == "在" || piece.chinese == "于" {
            run_start = words.len();
            after_zai = true;
            continue;
        }
        if after_zai
            && piece.tag.starts_with('v')
            && words.len() > run_start
            && position(piece).is_none()
        {
            let place = words.split_off(run_start);
            push_phrase(&mut out, &words);
            words.clear();
            out.push(with_preposition("in", &place.join(" ")));
            run_start = 0;
            after_zai = false;
        }
        let before_aspect = pieces
            .get(index + 1)
            .is_some_and(|next| ASPECT.contains(&next.chinese.as_str()));
        if let Some(preposition) = position(piece) {
            if before_aspect {
                // 下着小雨: the verb's object says it ("light rain").
                continue;
            }
            if words.len() > run_start {
                after_zai = false;
                let place = words.split_off(run_start);
                push_phrase(&mut out, &words);
                words.clear();
                out.push(with_preposition(preposition, &place.join(" ")));
                run_start = 0;
                continue;
            }
        }
        if let Some(english) = &piece.english {
            if !english.is_empty() && words.last() != Some(english) {
                words.push(english.clone());
            }
        }
    }
    push_phrase(&mut out, &words);
    out
}

/// "in X", unless the lexicon's English of X has its own preposition (公园里: "in the park").
fn with_preposition(preposition: &str, place: &str) -> String {
    let has_own = [
        "in ", "on ", "at ", "under ", "inside ", "outside ", "beside ", "by ", "near ",
    ]
    .iter()
    .any(|own| place.starts_with(own));
    if has_own {
        place.to_string()
    } else {
        format!("{preposition} {place}")
    }
}

fn push_phrase(out: &mut Vec<String>, words: &[String]) {
    let mut words: Vec<&str> = words.iter().map(String::as_str).collect();
    // A dangling article of a dropped or moved noun.
    while words.last().is_some_and(|w| *w == "a" || *w == "an") {
        words.pop();
    }
    let phrase = with_articles(&words.join(" "));
    if !phrase.trim().is_empty() {
        out.push(phrase.trim().to_string());
    }
}

fn dedup(phrases: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    phrases
        .into_iter()
        .filter(|phrase| seen.insert(phrase.to_lowercase()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> Content {
        OfflineWriter::builtin().write(text, true)
    }

    #[test]
    fn every_content_word_lands_in_order() {
        let content = write("做一张交通安全宣传海报，斑马线上小学生排队过马路，卡通");
        let prompt = content.phrases.join(", ");
        let order = [
            "traffic safety",
            "zebra crossing",
            "school student",
            "lining up",
            "crossing the road",
            "cartoon",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|needle| {
                prompt
                    .find(needle)
                    .unwrap_or_else(|| panic!("{needle} missing: {prompt}"))
            })
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{prompt}");
        assert!(prompt.contains("on zebra crossing"), "{prompt}");
    }

    #[test]
    fn the_domain_lexicon_wins_and_negations_go_negative() {
        let content = write("宝妈专属流量包促销海报，不要文字");
        let prompt = content.phrases.join(", ");
        assert!(prompt.contains("young mother"), "{prompt}");
        assert!(prompt.contains("mobile data plan"), "{prompt}");
        assert!(
            !prompt.contains("treasure") && !prompt.contains("flow"),
            "{prompt}"
        );
        assert_eq!(content.negatives, ["text"]);
        assert_eq!(write("别放人").negatives, ["people", "person"]);
        assert!(write("画一架无人机").negatives.is_empty());
    }

    #[test]
    fn head_nouns_come_first_and_places_get_prepositions() {
        let content = write("画一只戴草帽的熊猫在竹林里钓鱼");
        assert_eq!(
            content.phrases.first().map(String::as_str),
            Some("panda"),
            "{content:?}"
        );
        let prompt = content.phrases.join(", ");
        assert!(
            prompt.contains("straw hat") && prompt.contains("in the bamboo forest"),
            "{prompt}"
        );
        let park = write("老爷爷在公园里下棋").phrases.join(", ");
        assert!(!park.contains("in in"), "{park}");
        let rain = write("窗外下着小雨").phrases.join(", ");
        assert!(!rain.contains("under"), "{rain}");
    }

    #[test]
    fn negated_looks_reach_the_negative_prompt_in_english() {
        let content = write("水彩风格的小狗，温馨不俗气，别让人觉得害怕");
        assert!(
            content.negatives.iter().any(|n| n.contains("tacky")),
            "{content:?}"
        );
        assert!(
            content.negatives.iter().any(|n| n.contains("scary")),
            "{content:?}"
        );
        let prompt = content.phrases.join(", ");
        assert!(
            !prompt.contains("tacky") && !prompt.contains("afraid"),
            "{prompt}"
        );
        let dark = write("森林里的小木屋，颜色不要太深");
        assert!(
            dark.negatives.iter().any(|n| n.contains("dark")),
            "{dark:?}"
        );
        let colours = write("奶茶店logo，配色不要超过三种");
        assert!(
            colours.negatives.iter().any(|n| n.contains("multicolor")),
            "{colours:?}"
        );
    }
}
