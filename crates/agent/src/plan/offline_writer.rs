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

/// Request verbs, fillers, particles and pronouns: they say nothing about the picture.
const FILLERS: &[&str] = &[
    "请",
    "请帮",
    "请你",
    "帮",
    "帮我",
    "帮忙",
    "麻烦",
    "给",
    "给我",
    "我",
    "我们",
    "你",
    "您",
    "生成",
    "画",
    "画个",
    "画张",
    "画出",
    "做",
    "做个",
    "做张",
    "来",
    "来个",
    "来张",
    "整",
    "整个",
    "设计",
    "制作",
    "弄",
    "搞",
    "要",
    "想",
    "想要",
    "需要",
    "一下",
    "了",
    "吧",
    "呢",
    "啊",
    "呀",
    "哦",
    "嘛",
    "得",
    "地",
    "把",
    "是",
    "出",
    "出来",
    "一些",
    "那种",
    "这种",
    "这个",
    "那个",
    "张",
    "幅",
    "图",
    "图片",
    "用",
    "用于",
    "用的",
    "适合",
    "可以",
    "能",
    "谢谢",
    "款",
    "元素",
    "作为",
    "一份",
    "一版",
    "份",
    "并且",
    "然后",
    "再",
    "就",
    "会",
    "所",
    "之",
    "其",
    "被",
    "让",
    "使",
    "有点",
    "比较",
    "一点",
    "感觉",
    "样子",
    "风格",
    "画风",
    "效果",
    "主题",
    "主题是",
    "为",
    "以",
    "稍微",
    "尽量",
    "最好",
    "希望",
    "帮我画",
    "帮我做",
    "帮我生成",
    "给我画",
    "给我做",
    "生成一张",
    "画一张",
    "做一张",
    "来一张",
    "一张",
    "一幅",
    "一个",
    "一款",
    "一套",
    "一版",
    "画面",
    "画面中",
    "画面里",
    "图中",
    "图里",
    "图上",
    "只要",
    "只有",
    "只",
    "仅",
    "就好",
    "就行",
];

/// Classifiers after a number (一朵, 三只): the number carries the meaning.
const CLASSIFIERS: &str =
    "个只张幅条位名件把朵棵座辆艘头匹架根块盆瓶间栋顶轮片杯碗束盘支颗粒株枝台部本封套幢";

/// 一 + classifier (一朵, 一只): a singular that SDXL needs no word for (一双, 一对, 一群
/// say more and are translated).
fn is_singular_measure(word: &str) -> bool {
    let chars: Vec<char> = word.chars().collect();
    chars.len() == 2 && chars[0] == '一' && CLASSIFIERS.contains(chars[1])
}

/// Words that only make sense after another word (水墨风, 胶片感, 卡通风格).
const SUFFIXES: &[&str] = &["风", "感", "风的", "风格的", "系", "调"];

/// Position words after a place and the English preposition.
const POSITIONS: &[(&str, &str)] = &[
    ("上", "on"),
    ("下", "under"),
    ("里", "in"),
    ("中", "in"),
    ("内", "inside"),
    ("外", "outside"),
    ("旁", "beside"),
    ("边", "beside"),
    ("旁边", "beside"),
    ("上面", "on"),
    ("上边", "on"),
    ("下面", "under"),
    ("下边", "under"),
    ("里面", "inside"),
    ("里边", "inside"),
    ("中间", "in the middle of"),
    ("中央", "in the center of"),
    ("当中", "in the middle of"),
    ("周围", "around"),
    ("附近", "near"),
    ("前", "in front of"),
    ("前面", "in front of"),
    ("后", "behind"),
    ("后面", "behind"),
    ("背后", "behind"),
    ("上方", "above"),
    ("下方", "below"),
    ("之上", "above"),
    ("之下", "below"),
    ("之间", "between"),
    ("对面", "across from"),
];

/// Particles after which a position word is a verb (下着雨, 上了色).
const ASPECT: &[&str] = &["着", "了", "过"];

/// Numbers of images, not of things in them (三张, 两幅).
fn is_image_count(word: &str) -> bool {
    let mut chars: Vec<char> = word.chars().collect();
    let Some(last) = chars.pop() else {
        return false;
    };
    "张幅份套版".contains(last)
        && !chars.is_empty()
        && chars
            .iter()
            .all(|c| c.is_ascii_digit() || "一二两三四五六七八九十几".contains(*c))
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
            let words = self.segmenter.words(clause);
            let (kept, negated) = if negations {
                split_negations(&words)
            } else {
                (words, Vec::new())
            };
            for item in negated {
                let pieces = self.pieces(&item, &mut content.untranslated);
                let phrase = phrases(&pieces).join(" ");
                if !phrase.is_empty() {
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
    for (index, piece) in pieces.iter().enumerate() {
        if piece.chinese == "在" || piece.chinese == "于" {
            run_start = words.len();
            continue;
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
                let place = words.split_off(run_start);
                push_phrase(&mut out, &words);
                words.clear();
                out.push(format!("{preposition} {}", place.join(" ")));
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
        assert_eq!(write("别放人").negatives, ["person"]);
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
        let rain = write("窗外下着小雨").phrases.join(", ");
        assert!(!rain.contains("under"), "{rain}");
    }
}
