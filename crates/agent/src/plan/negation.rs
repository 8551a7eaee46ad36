//! Negations in a generation request (不要文字, 别放人, 无水印, 不带logo, 去掉边框): the
//! words after a negation cue, up to the end of the clause or a contrast word (但是),
//! are things the picture must not show. Each listed item (和, 与, 或, 、) is one
//! negative. The cue and the verb after it (放, 出现, 有 …) are dropped.

use crate::plan::segment::Word;

/// Cues, as jieba cuts them: one word or two or three adjacent words joined.
const CUES: [&str; 32] = [
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
];

/// Verbs and determiners between a cue and the thing (别放人, 不要出现任何文字).
const AFTER_CUE: [&str; 22] = [
    "放", "出现", "有", "加", "带", "要", "用", "画", "出", "包含", "含", "是", "任何", "其他",
    "其它", "多余", "的", "画面", "里", "中", "加上", "添加",
];

/// Words that end a negated span (不要卡通，但是要可爱 / 不要人只要风景).
const CONTRAST: [&str; 6] = ["但", "但是", "而是", "只要", "只", "就"];

/// Words that separate the items of a negated list.
const SEPARATORS: [&str; 7] = ["和", "与", "或", "及", "以及", "或者", "还有"];

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

/// A clause's words without its negated spans, and each negated item.
pub fn split_negations(words: &[Word]) -> (Vec<Word>, Vec<Vec<Word>>) {
    let mut kept = Vec::new();
    let mut negated = Vec::new();
    let mut at = 0;
    while at < words.len() {
        let Some(cue) = cue_at(words, at) else {
            kept.push(words[at].clone());
            at += 1;
            continue;
        };
        at += cue;
        while at < words.len() && AFTER_CUE.contains(&words[at].text.as_str()) {
            at += 1;
        }
        let mut item = Vec::new();
        while at < words.len() && !CONTRAST.contains(&words[at].text.as_str()) {
            let word = &words[at];
            if SEPARATORS.contains(&word.text.as_str()) {
                negated.push(std::mem::take(&mut item));
            } else if !AFTER_CUE.contains(&word.text.as_str()) || !item.is_empty() {
                item.push(word.clone());
            }
            at += 1;
        }
        negated.push(item);
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
    }
}
