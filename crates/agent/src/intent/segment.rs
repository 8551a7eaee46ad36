//! Word boundaries for the character model: jieba's dictionary segmentation (jieba-rs,
//! with its word frequencies and HMM for unknown words) turned into one BMES tag per
//! character, as in the soft-lexicon / BMES features of Chinese NER (Peng et al. 2019,
//! "Simplify the Usage of Lexicon in Chinese NER").
//!
//! The text is normalised first (`normalize_char`, one character to one character), so
//! traditional characters and full-width letters meet the simplified dictionary and the
//! tags stay aligned with the user's characters. Runs of ASCII letters and digits (an
//! English word, `4K`, `16:9`, `3.5`) are always one word, whatever the dictionary says.

use std::sync::OnceLock;

use jieba_rs::Jieba;

use crate::intent::text::normalize_char;
use crate::intent::vocab::Encoding;

/// A character's place in its word. Index 0 is kept for [CLS], [SEP] and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WordTag {
    /// A one-character word.
    Single,
    Begin,
    Middle,
    End,
}

impl WordTag {
    /// Rows of the word-boundary embedding table: special tokens plus the four tags.
    pub const TABLE_SIZE: usize = 5;

    pub fn index(self) -> u32 {
        match self {
            WordTag::Single => 1,
            WordTag::Begin => 2,
            WordTag::Middle => 3,
            WordTag::End => 4,
        }
    }

    /// Whether a word starts at this character.
    pub fn starts_word(self) -> bool {
        matches!(self, WordTag::Single | WordTag::Begin)
    }

    /// Whether a word ends at this character.
    pub fn ends_word(self) -> bool {
        matches!(self, WordTag::Single | WordTag::End)
    }
}

/// jieba over its embedded dictionary, built once per process (most of a single
/// `huatu parse` call's time: 350,000 words into the trie).
fn jieba() -> &'static Jieba {
    static JIEBA: OnceLock<Jieba> = OnceLock::new();
    JIEBA.get_or_init(Jieba::new)
}

/// Starts building the dictionary on another thread, so that it overlaps with loading
/// the model's weights; the first segmentation waits for it if it is not done.
pub fn prepare_in_background() {
    // Without a thread (none to be had) the first segmentation builds it instead.
    let _ = std::thread::Builder::new()
        .name("jieba-dictionary".into())
        .spawn(|| {
            jieba();
        });
}

fn is_ascii_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// Joiners that stay inside a number: 16:9, 3.5, 1920x1080, 3×4.
fn joins_digits(c: char) -> bool {
    matches!(c, ':' | '.' | 'x' | '×' | '*' | '/')
}

/// One tag per character of `text` (`text.chars()`).
pub fn word_tags(text: &str) -> Vec<WordTag> {
    let chars: Vec<char> = text.chars().map(normalize_char).collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let normalized: String = chars.iter().collect();
    let mut starts = vec![false; chars.len()];
    for token in jieba().cut(&normalized, true) {
        if let Some(start) = starts.get_mut(token.start) {
            *start = true;
        }
    }
    starts[0] = true;
    keep_ascii_words_whole(&chars, &mut starts);
    for (i, c) in chars.iter().enumerate() {
        // Spaces and punctuation end whatever came before them.
        if c.is_whitespace() || (i > 0 && chars[i - 1].is_whitespace()) {
            starts[i] = true;
        }
    }
    let mut tags = Vec::with_capacity(chars.len());
    for i in 0..chars.len() {
        let begins = starts[i];
        let ends = starts.get(i + 1).copied().unwrap_or(true);
        tags.push(match (begins, ends) {
            (true, true) => WordTag::Single,
            (true, false) => WordTag::Begin,
            (false, true) => WordTag::End,
            (false, false) => WordTag::Middle,
        });
    }
    tags
}

/// Makes every run of ASCII letters and digits (with digit joiners between digits) one
/// word, cut from the characters around it.
fn keep_ascii_words_whole(chars: &[char], starts: &mut [bool]) {
    let mut i = 0;
    while i < chars.len() {
        if !is_ascii_word_char(chars[i]) {
            i += 1;
            continue;
        }
        let begin = i;
        i += 1;
        while i < chars.len() {
            let joined_number = joins_digits(chars[i])
                && chars[i - 1].is_ascii_digit()
                && chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if is_ascii_word_char(chars[i]) || joined_number {
                i += 1;
            } else {
                break;
            }
        }
        starts[begin] = true;
        for start in &mut starts[begin + 1..i] {
            *start = false;
        }
        if let Some(next) = starts.get_mut(i) {
            *next = true;
        }
    }
}

/// The word tags (`word_tags` of the text) per token of `encoding` ([CLS], characters,
/// [SEP]) as embedding indices, 0 on the special tokens.
pub fn token_word_tags(tags: &[WordTag], encoding: &Encoding) -> Vec<u32> {
    let mut ids = Vec::with_capacity(encoding.ids.len());
    ids.push(0);
    ids.extend(
        encoding
            .char_indices
            .iter()
            .map(|&i| tags.get(i).map_or(0, |tag| tag.index())),
    );
    ids.resize(encoding.ids.len(), 0);
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (c, tag) in text.chars().zip(word_tags(text)) {
            if tag.starts_word() || out.is_empty() {
                out.push(String::new());
            }
            if let Some(last) = out.last_mut() {
                last.push(c);
            }
        }
        out
    }

    #[test]
    fn dictionary_words_are_kept_together() {
        let words = words("装满水果的玻璃碗");
        assert!(words.contains(&"水果".to_string()), "{words:?}");
        assert!(!words.iter().any(|w| w == "的玻"), "{words:?}");
    }

    #[test]
    fn english_words_and_numbers_stay_whole() {
        assert!(words("一个火箭app icon").contains(&"app".to_string()));
        assert!(words("横版16:9的海报").contains(&"16:9".to_string()));
        assert!(words("做张4K壁纸").contains(&"4K".to_string()));
        assert!(words("Black Friday sale poster").contains(&"Friday".to_string()));
        assert!(words("要ins风").contains(&"ins".to_string()));
    }

    #[test]
    fn traditional_text_is_segmented_like_simplified() {
        let traditional: Vec<bool> = word_tags("幫我畫張貓頭像圖")
            .iter()
            .map(|t| t.starts_word())
            .collect();
        let simplified: Vec<bool> = word_tags("帮我画张猫头像图")
            .iter()
            .map(|t| t.starts_word())
            .collect();
        assert_eq!(traditional, simplified);
    }

    #[test]
    fn tags_follow_the_encoding_and_skip_spaces() {
        let text = "画 猫头鹰";
        let vocab = crate::intent::vocab::Vocab::from_texts([text].into_iter(), 1);
        let encoding = vocab.encode(text, 32);
        let ids = token_word_tags(&word_tags(text), &encoding);
        assert_eq!(ids.len(), encoding.ids.len());
        assert_eq!(ids[0], 0);
        assert_eq!(*ids.last().unwrap_or(&9), 0);
        assert_eq!(ids[1], WordTag::Single.index());
        assert_eq!(ids[2], WordTag::Begin.index());
    }
}
