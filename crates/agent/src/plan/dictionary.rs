//! The general Chinese → English dictionary under the domain lexicon: one short gloss per
//! simplified headword from CC-CEDICT (CC BY-SA 4.0; `data/cedict/README.md` says how the
//! glosses were chosen), embedded gzip-compressed and read once on first use.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;

const GLOSSES_GZ: &[u8] = include_bytes!("../../../../data/cedict/cedict_gloss.tsv.gz");

/// Which dictionary the offline writer uses; part of the prompt cache's key.
pub const DICTIONARY_VERSION: &str = "cc-cedict-2023-11-07";

pub struct Dictionary {
    entries: HashMap<String, String>,
    longest: usize,
}

impl Dictionary {
    /// The embedded CC-CEDICT glosses (empty if the embedded file were unreadable, which
    /// a unit test rules out).
    pub fn builtin() -> &'static Dictionary {
        static DICTIONARY: OnceLock<Dictionary> = OnceLock::new();
        DICTIONARY.get_or_init(|| {
            let mut text = String::new();
            let read = flate2::read::GzDecoder::new(GLOSSES_GZ).read_to_string(&mut text);
            if read.is_err() {
                text.clear();
            }
            Dictionary::parse(&text)
        })
    }

    /// `headword<TAB>gloss` lines.
    pub fn parse(text: &str) -> Dictionary {
        let entries: HashMap<String, String> = text
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .map(|(word, gloss)| (word.to_string(), gloss.to_string()))
            .collect();
        let longest = entries.keys().map(|k| k.chars().count()).max().unwrap_or(1);
        Dictionary { entries, longest }
    }

    pub fn get(&self, word: &str) -> Option<&str> {
        self.entries.get(word).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The longest headword, in characters.
    pub fn longest(&self) -> usize {
        self.longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_glosses_read_and_hold_common_words() {
        let dictionary = Dictionary::builtin();
        assert!(dictionary.len() > 90_000, "{}", dictionary.len());
        assert_eq!(dictionary.get("斑马线"), Some("crosswalk"));
        assert_eq!(dictionary.get("跑步机"), Some("treadmill"));
        assert_eq!(dictionary.get("跑"), Some("running"));
        assert!(dictionary.get("不存在的词语").is_none());
    }
}
