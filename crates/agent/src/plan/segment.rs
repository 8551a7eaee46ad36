//! Word segmentation of instructions with jieba-rs over the words huatu can translate
//! (`data/jieba`: jieba's dictionary, frequencies and tags, cut to the headwords of the
//! CC-CEDICT glosses and the domain lexicon), with every headword of the domain lexicon
//! added so that domain words and idioms (宝妈, 流量包, 氛围感) come out whole. No HMM: a
//! run jieba does not know stays in single characters, which the writer then matches
//! against its dictionaries.

use std::io::BufReader;
use std::sync::OnceLock;

use jieba_rs::Jieba;

const DICTIONARY_GZ: &[u8] = include_bytes!("../../../../data/jieba/dict_subset.txt.gz");

/// jieba over the embedded dictionary (empty if it were unreadable, which a test rules out).
fn jieba() -> Jieba {
    let mut reader = BufReader::new(flate2::read::GzDecoder::new(DICTIONARY_GZ));
    Jieba::with_dict(&mut reader).unwrap_or_else(|_| Jieba::empty())
}

use crate::plan::prompt::Lexicon;

/// One word with jieba's part-of-speech tag (`n`, `v`, `f` for position words …; `x`
/// for punctuation and words it has no tag for).
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub text: String,
    pub tag: String,
}

pub struct Segmenter {
    jieba: Jieba,
}

impl Segmenter {
    /// jieba's dictionary plus the built-in lexicon's headwords.
    pub fn builtin() -> &'static Segmenter {
        static SEGMENTER: OnceLock<Segmenter> = OnceLock::new();
        SEGMENTER.get_or_init(|| Segmenter::with_lexicon(Lexicon::builtin()))
    }

    pub fn with_lexicon(lexicon: &Lexicon) -> Segmenter {
        let mut jieba = jieba();
        for word in lexicon.headwords() {
            // Single characters are already in jieba; raising them would split words.
            if word.chars().count() > 1 && !word.is_ascii() {
                jieba.add_word(word, None, None);
            }
        }
        Segmenter { jieba }
    }

    /// The words of `text`, spaces left out.
    pub fn words(&self, text: &str) -> Vec<Word> {
        self.jieba
            .tag(text, false)
            .into_iter()
            .filter(|tag| !tag.word.trim().is_empty())
            .map(|tag| Word {
                text: tag.word.to_string(),
                tag: tag.tag.to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<String> {
        Segmenter::builtin()
            .words(text)
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn the_embedded_dictionary_reads() {
        assert_eq!(texts("交通安全宣传"), ["交通安全", "宣传"]);
    }

    #[test]
    fn domain_words_stay_whole() {
        let words = texts("宝妈专属流量包促销海报");
        assert!(words.contains(&"宝妈".to_string()), "{words:?}");
        assert!(words.contains(&"流量包".to_string()), "{words:?}");
        assert_eq!(texts("斑马线上 小学生"), ["斑马线", "上", "小学生"]);
    }
}
