//! Span conventions of INTENTS.md and data/intents/README.md applied to decoded spans:
//! where a span may not run on (across a clause separator, or a space between Chinese
//! words), which characters never stand at a span's edge (emoji, punctuation, quote
//! marks), and the words each slot drops (a trailing 的, a singular 一+classifier, a
//! target's trailing 上/里/中, the style suffixes).

use crate::intent::labels::{SlotName, Tag};

/// Characters that end a clause: a span never runs across one
/// (女孩，长发 is the subject 女孩 and an attribute after it).
const CLAUSE_SEPARATORS: &[char] = &[
    '，', ',', '。', '；', ';', '！', '!', '？', '?', '：', '\n', '…',
];

/// Symbols kept at a span's edge although they are not letters or digits (¥28, 50%).
const KEPT_AT_EDGE: &[char] = &['¥', '￥', '$', '€', '£', '%', '％', '#', '+', '&'];

/// Classifiers of a singular 一+classifier, dropped at the start of a subject or content
/// (一只橘猫 → 橘猫). Group words (一群, 一对, 一家, 一双) are not among them.
const SINGULAR_CLASSIFIERS: &[char] = &[
    '只', '隻', '张', '張', '个', '個', '幅', '条', '條', '座', '杯', '本', '位', '名', '头', '頭',
    '匹', '朵', '棵', '把', '辆', '輛', '艘', '架', '盏', '件', '套', '束', '片', '块', '塊', '间',
    '間', '栋', '棟', '支', '颗', '顆', '碗', '盘', '盤', '份', '副', '枚', '道', '轮', '輪', '根',
    '顶', '頂', '款', '尊', '台', '扇', '口',
];

/// Positions relative to an object: the object before them is the target
/// (data/intents/README.md), so they are cut off a target span.
const RELATIVE_POSITIONS: &[&str] = &[
    "旁边", "边上", "上面", "下面", "上方", "下方", "周围", "附近", "后面", "前面", "里面",
];

/// The picture itself, which is never a target (图片右下角 is the frame position).
pub const IMAGE_WORDS: &[&str] = &[
    "图", "图片", "圖片", "照片", "画面", "畫面", "原图", "海报", "图中", "图里",
];

/// Whether the character before `first` is a classifier after 一 or a pointer (一条龙,
/// 这盘菜): a one-character span there is a whole noun, not a piece of a word.
pub fn after_classifier(chars: &[char], first: usize) -> bool {
    first >= 2
        && SINGULAR_CLASSIFIERS.contains(&chars[first - 1])
        && matches!(chars[first - 2], '一' | '这' | '這' | '那')
}

/// Styles that keep their 风 (INTENTS.md, `style`).
const KEEPS_FENG: [&str; 7] = [
    "国风",
    "古风",
    "中国风",
    "科技风",
    "商务风",
    "工业风",
    "ins风",
];

fn is_ascii_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// For each kept position (`char_indices[k]` into `chars`), whether a span may not run
/// on from position k-1 into k: a clause separator on either side, or a space between
/// two characters that are not both parts of ASCII words (`Black Friday sale` runs on,
/// `女孩 长发` does not).
pub fn span_breaks(chars: &[char], char_indices: &[usize]) -> Vec<bool> {
    let mut breaks = vec![false; char_indices.len()];
    for k in 1..char_indices.len() {
        let (before, after) = (char_indices[k - 1], char_indices[k]);
        let (Some(&left), Some(&right)) = (chars.get(before), chars.get(after)) else {
            continue;
        };
        let separated = CLAUSE_SEPARATORS.contains(&left) || CLAUSE_SEPARATORS.contains(&right);
        let spaced = chars
            .get(before + 1..after)
            .is_some_and(|gap| gap.iter().any(|c| c.is_whitespace()));
        let english_on_both_sides = is_ascii_word_char(left) && is_ascii_word_char(right);
        breaks[k] = separated || (spaced && !english_on_both_sides);
    }
    breaks
}

/// Emoji and their joiners (🐱, ☔️, 👨‍🚀): never part of a span.
fn is_emoji(c: char) -> bool {
    matches!(c as u32, 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x1F000..=0x1FAFF | 0xFE0F | 0x200D)
}

/// Whether no span may hold the character `c` at all (a clause separator, an emoji).
fn outside_every_span(c: char) -> bool {
    CLAUSE_SEPARATORS.contains(&c) || is_emoji(c)
}

/// Whether position k comes right after a separator or emoji (a break a span the tagger
/// ran in through may restart at).
pub fn after_separator(chars: &[char], char_indices: &[usize], k: usize) -> bool {
    k > 0
        && char_indices
            .get(k - 1)
            .and_then(|&i| chars.get(i))
            .is_some_and(|&c| outside_every_span(c))
}

/// The tagger's scores made to fit the span rules: a separator or emoji can only be
/// outside a span, and right after one, a tagger that says "inside x" is read as "a new
/// x starts here" (B-x scores at least what I-x does), so a span the tagger ran in
/// through the separator (壁纸，海浪) is kept from the break on, not lost.
pub fn fit_emissions(
    emissions: &[Vec<f32>],
    chars: &[char],
    char_indices: &[usize],
    breaks: &[bool],
) -> Vec<Vec<f32>> {
    let tags = Tag::all();
    let mut fitted = emissions.to_vec();
    for (k, row) in fitted.iter_mut().enumerate() {
        let c = char_indices.get(k).and_then(|&i| chars.get(i)).copied();
        if c.is_some_and(outside_every_span) {
            for (j, tag) in tags.iter().enumerate() {
                if *tag != Tag::Outside {
                    if let Some(score) = row.get_mut(j) {
                        *score = f32::NEG_INFINITY;
                    }
                }
            }
        } else if breaks.get(k).copied().unwrap_or(false) && after_separator(chars, char_indices, k)
        {
            for tag in &tags {
                if let Tag::Begin(slot) = tag {
                    let inside = row.get(Tag::Inside(*slot).index()).copied();
                    if let (Some(inside), Some(begin)) = (inside, row.get_mut(tag.index())) {
                        *begin = begin.max(inside);
                    }
                }
            }
        }
    }
    fitted
}

/// Whether `c` may stand first or last in a span.
fn edge_char(c: char) -> bool {
    c.is_alphanumeric() || KEPT_AT_EDGE.contains(&c)
}

/// The bounds of a decoded span (`chars[start..=end]` of the instruction) under the
/// conventions of `slot`, or `None` when nothing of it is left. The bounds only shrink,
/// so the value is still a substring of the instruction.
pub fn tidy_span(
    slot: SlotName,
    chars: &[char],
    start: usize,
    end: usize,
) -> Option<(usize, usize)> {
    let (mut start, mut end) = (start, end.min(chars.len().checked_sub(1)?));
    let shrink_edges = |start: &mut usize, end: &mut usize| {
        while *start <= *end && !edge_char(chars[*start]) {
            *start += 1;
        }
        while *end > *start && !edge_char(chars[*end]) {
            *end -= 1;
        }
    };
    shrink_edges(&mut start, &mut end);
    if start > end || !edge_char(chars[start]) {
        return None;
    }
    if matches!(
        slot,
        SlotName::Subject | SlotName::Content | SlotName::Target
    ) {
        // A singular 一+classifier or a pointer (这张, 那盘) is dropped; so is a
        // classifier left behind by a span that started after its 一 or 这 (条龙 of 一条龙).
        let classifier = |i: usize| {
            chars.get(i).is_some_and(|c| SINGULAR_CLASSIFIERS.contains(c))
                // 一个人都没有的海滩: 一个人 is not a classifier phrase.
                && chars.get(i + 1) != Some(&'人')
        };
        let leads = |c: char| matches!(c, '一' | '这' | '這' | '那');
        if leads(chars[start]) && classifier(start + 1) && start + 2 <= end {
            start += 2;
        } else if start > 0 && leads(chars[start - 1]) && classifier(start) && start < end {
            start += 1;
        }
        if chars[end] == '的' && end > start + 1 {
            end -= 1;
        }
    }
    if slot == SlotName::Target {
        // 她头上 → 她头, 他身上 → 他; 猫旁边 → 猫 (a position relative to an object).
        let value: String = chars[start..=end].iter().collect();
        if let Some(stem) = RELATIVE_POSITIONS
            .iter()
            .find_map(|p| value.strip_suffix(p))
            .filter(|stem| !stem.is_empty() && !IMAGE_WORDS.contains(stem))
        {
            end = start + stem.chars().count() - 1;
        } else if end > start + 1 && matches!(chars[end], '上' | '里' | '裡' | '中') {
            end -= 1;
            if end > start && chars[end] == '身' {
                end -= 1;
            }
        }
    }
    shrink_edges(&mut start, &mut end);
    (start <= end && edge_char(chars[start])).then_some((start, end))
}

/// INTENTS.md's style convention applied to a predicted span: the suffixes 风格, 画风,
/// 质感, 效果, 渲染 are dropped, and a bare 风, except in the styles that keep it (国风 …);
/// a span that stops right before the 风 of one of those is extended to it.
pub fn style_convention(text: &str, style: &str) -> String {
    let keeps = |candidate: &str| KEEPS_FENG.iter().any(|k| k.eq_ignore_ascii_case(candidate));
    let mut style = style.to_string();
    for suffix in ["风格", "画风", "质感", "效果", "渲染"] {
        match style.strip_suffix(suffix) {
            Some(stem) if !stem.is_empty() => style = stem.to_string(),
            _ => {}
        }
    }
    if keeps(&style) {
        return style;
    }
    if let Some(stem) = style.strip_suffix('风').filter(|stem| !stem.is_empty()) {
        return stem.to_string();
    }
    let extended = format!("{style}风");
    if keeps(&extended) && text.contains(&extended) {
        return extended;
    }
    style
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tidy(slot: SlotName, text: &str, value: &str) -> Option<String> {
        let chars: Vec<char> = text.chars().collect();
        let value: Vec<char> = value.chars().collect();
        let start = (0..chars.len()).find(|&i| chars[i..].starts_with(&value))?;
        let (first, last) = tidy_span(slot, &chars, start, start + value.len() - 1)?;
        Some(chars[first..=last].iter().collect())
    }

    #[test]
    fn style_spans_follow_the_contract() {
        assert_eq!(style_convention("做个国风海报", "国"), "国风");
        assert_eq!(style_convention("中国风的龙", "中国"), "中国风");
        assert_eq!(style_convention("国画", "国"), "国");
        assert_eq!(style_convention("像素风的骑士", "像素风"), "像素");
        assert_eq!(style_convention("水彩风格", "水彩风格"), "水彩");
        assert_eq!(style_convention("要ins风", "ins风"), "ins风");
        assert_eq!(style_convention("要INS风", "INS风"), "INS风");
        assert_eq!(style_convention("3D渲染", "3D渲染"), "3D");
    }

    #[test]
    fn spans_stop_at_separators_and_at_spaces_between_chinese_words() {
        let text = "女孩 长发，侧脸 Black Friday sale";
        let chars: Vec<char> = text.chars().collect();
        let kept: Vec<usize> = (0..chars.len()).filter(|&i| chars[i] != ' ').collect();
        let breaks = span_breaks(&chars, &kept);
        let at = |i: usize| breaks[kept.iter().position(|&k| k == i).unwrap_or(0)];
        assert!(!at(1)); // 孩 after 女
        assert!(at(3)); // 长 after a space
        assert!(at(5) && at(6)); // the comma and 侧 after it
        assert!(at(9)); // B after 脸 and a space: not two English words
        assert!(!at(15) && !at(22)); // Friday, sale
    }

    #[test]
    fn separators_and_emoji_are_outside_and_a_break_starts_a_new_span() {
        let text = "壁纸，海浪🌊";
        let chars: Vec<char> = text.chars().collect();
        let kept: Vec<usize> = (0..chars.len()).collect();
        let breaks = span_breaks(&chars, &kept);
        let inside = Tag::Inside(SlotName::Subject).index();
        let begin = Tag::Begin(SlotName::Subject).index();
        let mut emissions = vec![vec![0.0f32; Tag::all().len()]; chars.len()];
        emissions[3][inside] = 5.0; // 海 tagged as running on from the comma
        let fitted = fit_emissions(&emissions, &chars, &kept, &breaks);
        assert_eq!(fitted[3][begin], 5.0);
        assert_eq!(fitted[2][begin], f32::NEG_INFINITY); // the comma
        assert_eq!(fitted[5][inside], f32::NEG_INFINITY); // the emoji
        assert_eq!(fitted[2][Tag::Outside.index()], 0.0);
    }

    #[test]
    fn emoji_and_punctuation_never_stand_at_a_span_edge() {
        let subject = SlotName::Subject;
        assert_eq!(
            tidy(subject, "画个写毛笔字的老爷爷🧓", "写毛笔字的老爷爷🧓").as_deref(),
            Some("写毛笔字的老爷爷")
        );
        assert_eq!(
            tidy(subject, "一个穿宇航服的小孩👨‍🚀 卡通", "穿宇航服的小孩👨‍").as_deref(),
            Some("穿宇航服的小孩")
        );
        assert_eq!(
            tidy(subject, "主题“慢读时光”", "“慢读时光”").as_deref(),
            Some("慢读时光")
        );
        assert_eq!(
            tidy(SlotName::Content, "把价格改成¥28", "¥28").as_deref(),
            Some("¥28")
        );
        assert_eq!(tidy(subject, "画个🐱🐱", "🐱🐱"), None);
    }

    #[test]
    fn one_character_words_the_slots_drop_are_cut_off() {
        let subject = SlotName::Subject;
        assert_eq!(
            tidy(subject, "画一条龙 中国风", "条龙").as_deref(),
            Some("龙")
        );
        assert_eq!(
            tidy(subject, "一座倒过来的城市", "一座倒过来的城市").as_deref(),
            Some("倒过来的城市")
        );
        assert_eq!(
            tidy(subject, "画一群鸽子在广场上", "一群鸽子在广场上").as_deref(),
            Some("一群鸽子在广场上")
        );
        assert_eq!(
            tidy(subject, "一个人都没有的海滩", "一个人都没有的海滩").as_deref(),
            Some("一个人都没有的海滩")
        );
        assert_eq!(
            tidy(subject, "他在打篮球的Q版画像", "他在打篮球的").as_deref(),
            Some("他在打篮球")
        );
        assert_eq!(
            tidy(SlotName::Content, "让天空变成紫色的", "紫色的").as_deref(),
            Some("紫色")
        );
        assert_eq!(
            tidy(SlotName::Content, "换成一束花", "一束花").as_deref(),
            Some("花")
        );
        assert_eq!(
            tidy(SlotName::Target, "在她头上加个光环", "她头上").as_deref(),
            Some("她头")
        );
        assert_eq!(
            tidy(SlotName::Target, "别在他的衣服上", "他的衣服上").as_deref(),
            Some("他的衣服")
        );
        assert_eq!(
            tidy(SlotName::Target, "贴在他身上", "他身上").as_deref(),
            Some("他")
        );
        assert_eq!(
            tidy(SlotName::Target, "把晚上改成白天", "晚上").as_deref(),
            Some("晚上")
        );
        assert_eq!(
            tidy(SlotName::Target, "在猫旁边加一只狗", "猫旁边").as_deref(),
            Some("猫")
        );
        assert_eq!(
            tidy(SlotName::Target, "在图片下面加字", "图片下面").as_deref(),
            Some("图片下面")
        );
        assert_eq!(
            tidy(SlotName::Target, "换到T恤的正中间", "T恤的").as_deref(),
            Some("T恤")
        );
        assert_eq!(
            tidy(SlotName::Content, "把我拍的这盘菜放到中间", "盘菜").as_deref(),
            Some("菜")
        );
        let chars: Vec<char> = "画一条龙".chars().collect();
        assert!(after_classifier(&chars, 3) && !after_classifier(&chars, 2));
    }
}
