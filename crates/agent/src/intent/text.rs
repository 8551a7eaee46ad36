//! Character normalisation before the model sees text (full-width ASCII to half-width,
//! ASCII lower case, traditional to simplified characters) and Chinese numerals.
//!
//! Normalisation maps one character to one character, so character offsets into the
//! user's text stay valid and slot values can be copied verbatim from the original.

use std::collections::HashMap;
use std::sync::OnceLock;

/// traditional → simplified pairs, shared with the corpus generator.
const TRADITIONAL: &str = include_str!("traditional.txt");

fn traditional_table() -> &'static HashMap<char, char> {
    static TABLE: OnceLock<HashMap<char, char>> = OnceLock::new();
    TABLE.get_or_init(|| {
        TRADITIONAL
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let mut chars = line.chars();
                Some((chars.next()?, chars.next()?))
            })
            .collect()
    })
}

/// The character the model sees for `c`.
pub fn normalize_char(c: char) -> char {
    let c = match c {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    let c = c.to_ascii_lowercase();
    traditional_table().get(&c).copied().unwrap_or(c)
}

fn digit_value(c: char) -> Option<u32> {
    match c {
        '零' | '〇' => Some(0),
        '一' | '壹' => Some(1),
        '二' | '两' | '兩' | '贰' => Some(2),
        '三' | '叁' => Some(3),
        '四' | '肆' => Some(4),
        '五' | '伍' => Some(5),
        '六' | '陆' => Some(6),
        '七' | '柒' => Some(7),
        '八' | '捌' => Some(8),
        '九' | '玖' => Some(9),
        _ => None,
    }
}

/// Whether `c` can be part of a number (Arabic or Chinese).
pub fn is_numeral_char(c: char) -> bool {
    let c = normalize_char(c);
    c.is_ascii_digit() || digit_value(c).is_some() || matches!(c, '十' | '拾' | '百')
}

/// Parses "3", "３", "三", "两", "十二", "二十", "一百" into a number; `None` for
/// anything else (including vague amounts such as 几).
pub fn parse_number(text: &str) -> Option<u32> {
    let text: String = text.trim().chars().map(normalize_char).collect();
    if text.is_empty() {
        return None;
    }
    if text.chars().all(|c| c.is_ascii_digit()) {
        return text.parse().ok();
    }
    let mut total = 0u32;
    let mut current: Option<u32> = None;
    for c in text.chars() {
        if let Some(value) = digit_value(c) {
            if current.is_some() {
                // "二三" is not a number we accept.
                return None;
            }
            current = Some(value);
        } else if matches!(c, '十' | '拾') {
            total += current.unwrap_or(1) * 10;
            current = None;
        } else if c == '百' {
            total += current? * 100;
            current = None;
        } else {
            return None;
        }
    }
    Some(total + current.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_is_one_to_one_per_character() {
        assert_eq!(normalize_char('Ｌ'), 'l');
        assert_eq!(normalize_char('：'), ':');
        assert_eq!(normalize_char('圖'), '图');
        assert_eq!(normalize_char('畫'), '画');
        assert_eq!(normalize_char('猫'), '猫');
        assert_eq!(normalize_char('P'), 'p');
    }

    #[test]
    fn chinese_and_arabic_numbers() {
        assert_eq!(parse_number("3"), Some(3));
        assert_eq!(parse_number("１２"), Some(12));
        assert_eq!(parse_number("三"), Some(3));
        assert_eq!(parse_number("两"), Some(2));
        assert_eq!(parse_number("十"), Some(10));
        assert_eq!(parse_number("十二"), Some(12));
        assert_eq!(parse_number("二十"), Some(20));
        assert_eq!(parse_number("二十五"), Some(25));
        assert_eq!(parse_number("一百"), Some(100));
        assert_eq!(parse_number("几"), None);
        assert_eq!(parse_number("二三"), None);
        assert_eq!(parse_number(""), None);
    }
}
