//! The word classes the offline writer treats apart from content words: request verbs
//! and particles to drop, style suffixes, position words with their prepositions,
//! aspect particles and classifiers.

/// Request verbs, fillers, particles and pronouns: they say nothing about the picture.
pub const FILLERS: &[&str] = &[
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
    "个",
];

/// Classifiers after a number (一朵, 三只): the number carries the meaning.
pub const CLASSIFIERS: &str =
    "个只张幅条位名件把朵棵座辆艘头匹架根块盆瓶间栋顶轮片杯碗束盘支颗粒株枝台部本封套幢款";

/// 一 + classifier (一朵, 一只): a singular that SDXL needs no word for (一双, 一对, 一群
/// say more and are translated).
pub fn is_singular_measure(word: &str) -> bool {
    let chars: Vec<char> = word.chars().collect();
    chars.len() == 2 && chars[0] == '一' && CLASSIFIERS.contains(chars[1])
}

/// Words that only make sense after another word (水墨风, 胶片感, 卡通风格).
pub const SUFFIXES: &[&str] = &["风", "感", "风的", "风格的", "系", "调"];

/// Position words after a place and the English preposition.
pub const POSITIONS: &[(&str, &str)] = &[
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
pub const ASPECT: &[&str] = &["着", "了", "过"];

/// Numbers of images, not of things in them (三张, 两幅).
pub fn is_image_count(word: &str) -> bool {
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
