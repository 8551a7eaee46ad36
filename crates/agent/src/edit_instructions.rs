//! Edit instructions for InstructPix2Pix training data: from an image caption, an
//! (instruction, edited caption) pair — the English instruction the model trains on, the
//! same instruction in Chinese for users, and the caption of the edited image that
//! Prompt-to-Prompt draws.
//!
//! Offline, deterministic templates over the caption's words: change a colour, the season,
//! the time of day or the style, swap an object for another, add an item or remove one the
//! caption mentions. Which applies is decided by the caption; which is taken, by the seed.
//! Chinese nouns come from the agent's bilingual lexicon read backwards, so a noun it does
//! not know stays English inside the Chinese sentence.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Serialize;

/// One edit of a caption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EditIdea {
    /// The English instruction (what InstructPix2Pix trains on).
    pub instruction: String,
    /// The instruction in Chinese, for users.
    pub instruction_zh: String,
    /// The caption of the edited image.
    pub edited_caption: String,
    /// Which template made it ("colour", "season", "time", "style", "swap", "add", "remove"),
    /// or "llm".
    pub kind: String,
}

const COLOURS: [(&str, &str); 10] = [
    ("red", "红色"),
    ("blue", "蓝色"),
    ("green", "绿色"),
    ("yellow", "黄色"),
    ("white", "白色"),
    ("black", "黑色"),
    ("pink", "粉色"),
    ("purple", "紫色"),
    ("orange", "橙色"),
    ("brown", "棕色"),
];
const SEASONS: [(&str, &str); 4] = [
    ("spring", "春天"),
    ("summer", "夏天"),
    ("autumn", "秋天"),
    ("winter", "冬天"),
];
const TIMES: [(&str, &str, &str); 4] = [
    ("at night", "night", "夜晚"),
    ("at sunset", "sunset", "日落时分"),
    ("in the morning", "morning", "清晨"),
    ("at noon", "noon", "正午"),
];
const STYLES: [(&str, &str); 6] = [
    ("a watercolor painting", "水彩画"),
    ("an oil painting", "油画"),
    ("a pencil sketch", "铅笔素描"),
    ("a Chinese ink painting", "水墨画"),
    ("a cartoon", "卡通"),
    ("pixel art", "像素画"),
];
const ITEMS: [(&str, &str); 6] = [
    ("a hat", "一顶帽子"),
    ("sunglasses", "一副墨镜"),
    ("a red scarf", "一条红围巾"),
    ("flowers", "一些花"),
    ("a lantern", "一盏灯笼"),
    ("a balloon", "一个气球"),
];
const SWAPS: [(&str, &str); 12] = [
    ("cat", "dog"),
    ("dog", "cat"),
    ("horse", "zebra"),
    ("car", "bicycle"),
    ("apple", "orange"),
    ("man", "robot"),
    ("woman", "statue"),
    ("house", "castle"),
    ("tree", "palm tree"),
    ("boat", "ship"),
    ("bird", "butterfly"),
    ("cup", "vase"),
];
const SWAP_ZH: [(&str, &str); 22] = [
    ("cat", "猫"),
    ("dog", "狗"),
    ("horse", "马"),
    ("zebra", "斑马"),
    ("car", "汽车"),
    ("bicycle", "自行车"),
    ("apple", "苹果"),
    ("orange", "橙子"),
    ("man", "男人"),
    ("robot", "机器人"),
    ("woman", "女人"),
    ("statue", "雕像"),
    ("house", "房子"),
    ("castle", "城堡"),
    ("tree", "树"),
    ("palm tree", "棕榈树"),
    ("boat", "小船"),
    ("ship", "大船"),
    ("bird", "鸟"),
    ("butterfly", "蝴蝶"),
    ("cup", "杯子"),
    ("vase", "花瓶"),
];

/// English word → a Chinese word for it: the templates' own table, then the lexicon read
/// backwards (its shortest Chinese entry whose English is exactly the word).
fn chinese(word: &str) -> String {
    static REVERSE: OnceLock<HashMap<String, String>> = OnceLock::new();
    let reverse = REVERSE.get_or_init(|| {
        let mut map: HashMap<String, String> = HashMap::new();
        for line in include_str!("plan/lexicon.tsv").lines() {
            let Some((zh, en)) = line.split_once('\t') else {
                continue;
            };
            if line.starts_with('#') {
                continue;
            }
            let (zh, en) = (zh.trim(), en.trim().to_lowercase());
            let shorter = map
                .get(&en)
                .is_none_or(|known| zh.chars().count() < known.chars().count());
            if shorter {
                map.insert(en, zh.to_string());
            }
        }
        for (en, zh) in SWAP_ZH {
            map.insert(en.to_string(), zh.to_string());
        }
        map
    });
    reverse
        .get(&word.to_lowercase())
        .cloned()
        .unwrap_or_else(|| word.to_string())
}

/// The caption's words, lowercased, punctuation stripped.
fn words(caption: &str) -> Vec<String> {
    caption
        .split(|c: char| c.is_whitespace() || c == ',' || c == '.')
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// `caption` with the whole word (or phrase) `from` replaced by `to`, first occurrence.
fn replace_word(caption: &str, from: &str, to: &str) -> Option<String> {
    let lower = caption.to_lowercase();
    let mut start = 0;
    while let Some(found) = lower[start..].find(from) {
        let at = start + found;
        let end = at + from.len();
        let before = lower[..at].chars().next_back();
        let after = lower[end..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        if boundary(before) && boundary(after) {
            return Some(format!("{}{to}{}", &caption[..at], &caption[end..]));
        }
        start = end;
    }
    None
}

/// Every template edit that applies to `caption`, in a fixed order.
pub fn template_edits(caption: &str) -> Vec<EditIdea> {
    let caption = caption.trim().trim_end_matches('.');
    let words = words(caption);
    let mut ideas = Vec::new();
    let idea = |kind: &str, instruction: String, zh: String, edited: String| EditIdea {
        instruction,
        instruction_zh: zh,
        edited_caption: edited,
        kind: kind.to_string(),
    };
    // colour: the first colour word and the word after it
    if let Some(index) = words
        .iter()
        .position(|w| COLOURS.iter().any(|(c, _)| c == w))
    {
        let colour = &words[index];
        let colour_zh = COLOURS.iter().find(|(c, _)| c == colour).map(|(_, z)| *z);
        let other = COLOURS
            .iter()
            .cycle()
            .skip_while(|(c, _)| c != colour)
            .nth(1)
            .copied();
        if let (Some(noun), Some(colour_zh), Some((new, new_zh))) =
            (words.get(index + 1), colour_zh, other)
        {
            let from = format!("{colour} {noun}");
            if let Some(edited) = replace_word(caption, &from, &format!("{new} {noun}")) {
                ideas.push(idea(
                    "colour",
                    format!("make the {noun} {new}"),
                    format!("把{colour_zh}的{}改成{new_zh}", chinese(noun)),
                    edited,
                ));
            }
        }
    }
    // swap an object the caption names
    for (from, to) in SWAPS {
        if let Some(edited) = replace_word(caption, from, to) {
            ideas.push(idea(
                "swap",
                format!("turn the {from} into a {to}"),
                format!("把{}换成{}", chinese(from), chinese(to)),
                edited,
            ));
            break;
        }
    }
    // remove an item the caption adds with "with"
    if let Some(at) = caption.to_lowercase().find(" with ") {
        let item = caption[at + 6..]
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if !item.is_empty() {
            let bare = item
                .trim_start_matches("a ")
                .trim_start_matches("an ")
                .trim_start_matches("the ");
            let rest = &caption[at + 6 + item.len()..];
            ideas.push(idea(
                "remove",
                format!("remove the {bare}"),
                format!("去掉{}", chinese(bare)),
                format!("{}{rest}", &caption[..at]),
            ));
        }
    }
    // season: change the one named, else set one
    let named_season = SEASONS
        .iter()
        .position(|(s, _)| words.iter().any(|w| w == s));
    let (season, season_zh) = SEASONS[(named_season.map_or(3, |i| i + 2)) % SEASONS.len()];
    let edited = match named_season {
        Some(index) => replace_word(caption, SEASONS[index].0, season),
        None => Some(format!("{caption} in {season}")),
    };
    if let Some(edited) = edited {
        ideas.push(idea(
            "season",
            format!("make it {season}"),
            format!("改成{season_zh}"),
            edited,
        ));
    }
    // time of day, when the caption names none
    if !TIMES
        .iter()
        .any(|(_, word, _)| words.iter().any(|w| w == word))
    {
        let (phrase, word, zh) = TIMES[0];
        ideas.push(idea(
            "time",
            format!("make it {word}"),
            format!("改成{zh}"),
            format!("{caption} {phrase}"),
        ));
    }
    // style
    let (style, style_zh) = STYLES[caption.len() % STYLES.len()];
    ideas.push(idea(
        "style",
        format!("make it {style}"),
        format!("改成{style_zh}风格"),
        format!("{style} of {caption}"),
    ));
    // add an item
    if !caption.to_lowercase().contains(" with ") {
        let (item, item_zh) = ITEMS[words.len() % ITEMS.len()];
        ideas.push(idea(
            "add",
            format!("add {item}"),
            format!("加上{item_zh}"),
            format!("{caption} with {item}"),
        ));
    }
    ideas
}

/// The template edit for `caption` chosen by `seed` (None for an empty caption).
pub fn template_edit(caption: &str, seed: u64) -> Option<EditIdea> {
    if caption.trim().is_empty() {
        return None;
    }
    let ideas = template_edits(caption);
    let index = (seed % ideas.len().max(1) as u64) as usize;
    ideas.into_iter().nth(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_swaps_and_removals_edit_the_caption_where_it_says_so() {
        let ideas = template_edits("a red cat sitting on a sofa with a hat");
        let kind = |k: &str| ideas.iter().find(|i| i.kind == k).cloned().expect(k);
        let colour = kind("colour");
        assert_eq!(colour.instruction, "make the cat blue");
        assert_eq!(
            colour.edited_caption,
            "a blue cat sitting on a sofa with a hat"
        );
        assert_eq!(colour.instruction_zh, "把红色的猫改成蓝色");
        let swap = kind("swap");
        assert_eq!(swap.instruction, "turn the cat into a dog");
        assert_eq!(
            swap.edited_caption,
            "a red dog sitting on a sofa with a hat"
        );
        assert_eq!(swap.instruction_zh, "把猫换成狗");
        let remove = kind("remove");
        assert_eq!(remove.instruction, "remove the hat");
        assert_eq!(remove.edited_caption, "a red cat sitting on a sofa");
        assert!(ideas.iter().all(|i| i.kind != "add"));
    }

    #[test]
    fn seasons_times_styles_and_items_apply_to_any_caption() {
        let ideas = template_edits("a house in summer.");
        let season = ideas.iter().find(|i| i.kind == "season").expect("season");
        assert_eq!(season.edited_caption, "a house in winter");
        assert_eq!(season.instruction, "make it winter");
        assert!(ideas.iter().any(|i| i.kind == "time"));
        assert!(ideas.iter().any(|i| i.kind == "style"));
        assert!(ideas.iter().any(|i| i.kind == "add"));
        // words inside other words are not edited
        assert!(template_edits("a catalogue on a desk")
            .iter()
            .all(|i| i.kind != "swap"));
        assert_eq!(template_edit("a dog", 0), template_edit("a dog", 0));
        assert_eq!(template_edit("  ", 0), None);
    }
}
