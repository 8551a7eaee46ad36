//! Negations in a generation request (不要文字, 别放人, 无水印, 不带logo, 去掉边框): the
//! words after a negation cue, up to the end of the clause or a contrast word (但是),
//! are things the picture must not show. Each listed item (和, 与, 或, 、) is one
//! negative. The cue and the verb after it (放, 出现, 有 …) are dropped.
//!
//! Besides the cues: a lone 不 before the last word of a clause negates a quality
//! (可爱不吓人, 高级不俗气); 让人/看着 + a feeling names how the picture looks (不要让人害怕:
//! nothing scary); 不要超过两种 in a clause about colour is "many colors".

use crate::plan::segment::Word;

/// Cues, as jieba cuts them: one word or two or three adjacent words joined.
const CUES: [&str; 38] = [
    "不要",
    "别",
    "无",
    "不带",
    "去掉",
    "没有",
    "不需要",
    "不用",
    "避免",
    "禁止",
    "不含",
    "不能有",
    "勿",
    "不想要",
    "拒绝",
    "去除",
    "不准",
    "不许",
    "不加",
    "不出现",
    "不能出现",
    "不包含",
    "杜绝",
    "排除",
    "不放",
    "别加",
    "别带",
    "不可以有",
    "不得有",
    "不想",
    "不能",
    "不希望",
    "避免出现",
    "请勿",
    "别出现",
    "不要有",
    "无需",
    "不必",
];

/// Verbs and determiners between a cue and the thing (别放人, 不要出现任何文字).
const AFTER_CUE: [&str; 26] = [
    "放", "出现", "有", "加", "带", "要", "用", "画", "出", "包含", "含", "是", "任何", "其他",
    "其它", "多余", "的", "画面", "里", "中", "加上", "添加", "看到", "看见", "见到", "放上",
];

/// Words that are themselves a negated thing (无人的街道: no people), with the thing.
const NEGATED_WORDS: [(&str, &str); 7] = [
    ("无人", "人"),
    ("没人", "人"),
    ("无字", "文字"),
    ("有人", "人"),
    ("任何人", "人"),
    ("无水印", "水印"),
    ("别太花哨", "花哨"),
];

/// Words that end a negated span (不要卡通，但是要可爱 / 不要人只要风景).
const CONTRAST: [&str; 6] = ["但", "但是", "而是", "只要", "只", "就"];

/// Cues meaning "without", whose span a 的 ends (不含人物的森林: a forest without people).
const WITHOUT: [&str; 6] = ["不含", "不带", "没有", "无", "不包含", "不能有"];

/// Words that separate the items of a negated list.
const SEPARATORS: [&str; 9] = ["和", "与", "或", "及", "以及", "或者", "还有", "也", "跟"];

/// Words between a lone 不 and the quality it negates (不太刺眼 keeps 太: "too glaring").
const INTENSIFIERS: [&str; 6] = ["太", "很", "那么", "过于", "过分", "会"];

/// Words that say the picture's effect on the viewer (不要让人看着害怕): dropped at the
/// start of a negated span, the feeling after them read as a look.
const IMPRESSION: [&str; 8] = [
    "让人",
    "令人",
    "使人",
    "看着",
    "看起来",
    "显得",
    "感觉",
    "觉得",
];

/// Feelings → the look that causes them, as a lexicon word (害怕 → 可怕: scary).
const FEELINGS: [(&str, &str); 7] = [
    ("害怕", "可怕"),
    ("恐惧", "可怕"),
    ("惊恐", "可怕"),
    ("怕", "可怕"),
    ("难受", "不适"),
    ("不舒服", "不适"),
    ("恶心", "不适"),
];

/// Words of a clause about colour (配色不要超过两种).
const COLOUR_WORDS: [&str; 6] = ["颜色", "配色", "色彩", "色调", "色", "用色"];

/// "More than": a negated 超过 N 种 in a clause about colour is too many colours.
const MORE_THAN: [&str; 3] = ["超过", "多于", "多过"];

/// Tags of words a lone 不 does not negate as a quality: particles, positions, numbers,
/// classifiers, prepositions, conjunctions, pronouns.
const NOT_QUALITIES: [char; 7] = ['u', 'f', 'm', 'q', 'p', 'c', 'r'];

/// A lone 不 at `words[at]` negating the clause's last word (可爱不吓人, 简约不花哨,
/// 温暖不太刺眼): the number of words after 不 it covers.
fn quality_negation(words: &[Word], at: usize) -> Option<usize> {
    if words[at].text != "不" {
        return None;
    }
    let rest = &words[at + 1..];
    let end = rest
        .iter()
        .position(|w| CONTRAST.contains(&w.text.as_str()) || SEPARATORS.contains(&w.text.as_str()))
        .unwrap_or(rest.len());
    let span = &rest[..end];
    let quality = match span {
        [quality] => quality,
        [intensifier, quality] if INTENSIFIERS.contains(&intensifier.text.as_str()) => quality,
        _ => return None,
    };
    let not_quality = quality.tag.starts_with(NOT_QUALITIES) || quality.text == "是";
    (!not_quality).then_some(span.len())
}

/// The length in words of the cue starting at `words[at]`, if one does.
fn cue_at(words: &[Word], at: usize) -> Option<usize> {
    (1..=3).rev().find(|&n| {
        at + n <= words.len()
            && CUES.contains(
                &words[at..at + n]
                    .iter()
                    .map(|w| w.text.as_str())
                    .collect::<String>()
                    .as_str(),
            )
    })
}

fn word(text: &str) -> Word {
    Word {
        text: text.to_string(),
        tag: "n".into(),
    }
}

fn negated_word(text: &str) -> Option<&'static str> {
    NEGATED_WORDS
        .iter()
        .find(|(word, _)| *word == text)
        .map(|(_, thing)| *thing)
}

/// The number of impression words at `words[at]` (让人, 让 + 人, 看 + 着, 看着 …).
fn impression_at(words: &[Word], at: usize) -> Option<usize> {
    let text = |i: usize| words.get(i).map(|w| w.text.as_str());
    let mut skip = 0;
    loop {
        let here = text(at + skip);
        let next = text(at + skip + 1);
        let step = match (here, next) {
            (Some("让" | "令" | "使"), Some("人")) | (Some("看"), Some("着")) => 2,
            (Some(one), _) if IMPRESSION.contains(&one) => 1,
            _ => break,
        };
        skip += step;
    }
    (skip > 0).then_some(skip)
}

fn mentions_colour(words: &[Word]) -> bool {
    words
        .iter()
        .any(|w| COLOUR_WORDS.contains(&w.text.as_str()))
}

/// 不超过三种 in a clause about colour (颜色不超过三种): the words it covers, from 不.
fn more_than_colours(words: &[Word], at: usize) -> Option<usize> {
    let starts = words[at].text == "不"
        && words
            .get(at + 1)
            .is_some_and(|w| MORE_THAN.contains(&w.text.as_str()));
    if !starts || !mentions_colour(words) {
        return None;
    }
    let counts = words[at + 2..]
        .iter()
        .take_while(|w| w.tag.starts_with(['m', 'q']) || w.text == "种")
        .count();
    Some(2 + counts)
}

/// A clause's words without its negated spans, and each negated item.
pub fn split_negations(words: &[Word]) -> (Vec<Word>, Vec<Vec<Word>>) {
    let mut kept = Vec::new();
    let mut negated = Vec::new();
    let mut at = 0;
    while at < words.len() {
        if let Some(thing) = negated_word(&words[at].text).filter(|_| words[at].text != "有人") {
            negated.push(vec![word(thing)]);
            at += 1;
            continue;
        }
        if cue_at(words, at).is_none() {
            if let Some(covered) = more_than_colours(words, at) {
                negated.push(vec![word("多色")]);
                at += covered;
                continue;
            }
            if let Some(covered) = quality_negation(words, at) {
                negated.push(words[at + 1..at + 1 + covered].to_vec());
                at += 1 + covered;
                continue;
            }
        }
        let Some(cue) = cue_at(words, at) else {
            kept.push(words[at].clone());
            at += 1;
            continue;
        };
        let cue_text: String = words[at..at + cue]
            .iter()
            .map(|w| w.text.as_str())
            .collect();
        at += cue;
        let mut item = Vec::new();
        let mut starting = true;
        let mut impression = false;
        while at < words.len() && !CONTRAST.contains(&words[at].text.as_str()) {
            let text = words[at].text.as_str();
            if starting {
                if let Some(skip) = impression_at(words, at) {
                    // 不要让人看着害怕: how the picture looks, not who is in it.
                    impression = true;
                    at += skip;
                    continue;
                }
                if MORE_THAN.contains(&text) && mentions_colour(words) {
                    item.push(word("多色"));
                    starting = false;
                    at += 1;
                    while words
                        .get(at)
                        .is_some_and(|w| w.tag.starts_with(['m', 'q']) || w.text == "种")
                    {
                        at += 1;
                    }
                    continue;
                }
            }
            if impression {
                if let Some((_, look)) = FEELINGS.iter().find(|(feeling, _)| *feeling == text) {
                    item.push(word(look));
                    starting = false;
                    at += 1;
                    continue;
                }
            }
            if let Some(cue) = cue_at(words, at) {
                // 不要文字也不要logo: a cue inside the span starts the next item.
                negated.push(std::mem::take(&mut item));
                starting = true;
                at += cue;
                continue;
            }
            if text == "的" && !starting && WITHOUT.contains(&cue_text.as_str()) {
                // 不含人物的森林: "without" ends at 的; what follows is wanted. (不要黑色的背景
                // negates the whole span.)
                break;
            }
            if SEPARATORS.contains(&text) {
                negated.push(std::mem::take(&mut item));
                starting = true;
            } else if starting && AFTER_CUE.contains(&text) {
                // The verb or determiner between the cue and the thing.
            } else if let Some(thing) = negated_word(text) {
                item.push(word(thing));
                starting = false;
            } else {
                item.push(words[at].clone());
                starting = false;
            }
            at += 1;
        }
        negated.push(item);
        if words.get(at).is_some_and(|w| w.text == "的") {
            at += 1;
        }
    }
    negated.retain(|item| !item.is_empty());
    (kept, negated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::segment::Segmenter;

    fn split(text: &str) -> (Vec<String>, Vec<String>) {
        let words = Segmenter::builtin().words(text);
        let (kept, negated) = split_negations(&words);
        (
            kept.into_iter().map(|w| w.text).collect(),
            negated
                .into_iter()
                .map(|item| item.into_iter().map(|w| w.text).collect())
                .collect(),
        )
    }

    #[test]
    fn negated_items_are_split_off() {
        assert_eq!(split("别放人"), (vec![], vec!["人".to_string()]));
        assert_eq!(split("无水印").1, ["水印"]);
        assert_eq!(split("不带文字和logo").1, ["文字", "logo"]);
        let (kept, negated) = split("不要卡通但是要可爱");
        assert_eq!(negated, ["卡通"]);
        assert_eq!(kept.first().map(String::as_str), Some("但是"));
        assert_eq!(split("无人机").1, Vec::<String>::new());
        assert_eq!(split("别墅").1, Vec::<String>::new());
        assert_eq!(split("不要有文字也不要logo").1, ["文字", "logo"]);
        assert_eq!(split("图中不要出现任何人").1, ["人"]);
        assert_eq!(split("不能有人").1, ["人"]);
        assert_eq!(
            split("不含人物的森林"),
            (vec!["森林".to_string()], vec!["人物".to_string()])
        );
        assert_eq!(split("不要黑色的背景").1.len(), 1);
        let (kept, negated) = split("无人的街道");
        assert_eq!(
            (kept, negated),
            (
                vec!["的".to_string(), "街道".to_string()],
                vec!["人".to_string()]
            )
        );
    }

    #[test]
    fn a_lone_bu_negates_the_quality_that_ends_the_clause() {
        assert_eq!(split("温馨不俗气").1, ["俗气"]);
        assert_eq!(split("温馨不俗气").0, ["温馨"]);
        assert_eq!(split("明亮但不太刺眼").1, ["太刺眼"]);
        assert_eq!(split("卡通一点不恐怖").1, ["恐怖"]);
        // Not a quality at the clause's end: nothing negated.
        assert!(split("不同颜色的气球").1.is_empty());
        assert!(split("一动不动的猫").1.is_empty());
        assert!(split("不出现文字").1 == ["文字"]);
    }

    #[test]
    fn impressions_and_colour_counts_are_read_as_looks() {
        assert_eq!(split("别让人觉得害怕").1, ["可怕"]);
        assert_eq!(split("不要看着让人恶心").1, ["不适"]);
        // 人 without 让/令 is still a person.
        assert_eq!(split("不要出现人").1, ["人"]);
        assert_eq!(split("用色不要超过三种").1, ["多色"]);
        assert_eq!(split("颜色不超过两种").1, ["多色"]);
        // 超过 outside a colour clause is left as the user wrote it.
        assert_eq!(split("不要超过两只猫").1, ["超过两只猫"]);
    }
}
