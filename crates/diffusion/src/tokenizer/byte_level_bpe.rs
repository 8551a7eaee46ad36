//! Byte-level BPE with `</w>` word ends, as the Hugging Face `tokenizers` BPE model that
//! transformers' `CLIPTokenizer` is built on (`BPE(continuing_subword_prefix="",
//! end_of_word_suffix="</w>", fuse_unk=False)` after a `ByteLevel` pre-tokenizer).
//!
//! The merge loop follows `tokenizers`' `Word::merge_all`: a min-heap of candidate merges
//! ordered by rank then position, stale entries skipped. For merge tables learned in
//! order this equals the classic "merge the best pair everywhere" loop of the original
//! CLIP code; for hand-written tables it is the behaviour transformers has today.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use crate::{Error, Result};

/// Suffix that marks the last symbol of a word.
pub(crate) const END_OF_WORD: &str = "</w>";

/// GPT-2's reversible byte → printable character table (`bytes_to_unicode`): printable
/// Latin-1 bytes map to themselves, the others to U+0100 onwards in byte order.
pub(crate) fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_unprintable = 0u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(byte)
        } else {
            next_unprintable += 1;
            255 + next_unprintable
        };
        // Every code is below U+0200, so always a valid char.
        table[usize::from(byte)] = char::from_u32(code).unwrap_or('\u{FFFD}');
    }
    table
}

/// The merge table: a pair of token ids → (rank, id of the merged token).
#[derive(Debug, Clone, Default)]
pub(crate) struct MergeTable {
    merges: HashMap<(u32, u32), (u32, u32)>,
}

impl MergeTable {
    /// Parses `merges.txt` lines ("left right", an optional `#version` first line) against
    /// the vocabulary. As `tokenizers`, every part and every merged token must be in it.
    pub(crate) fn from_lines<'a>(
        lines: impl IntoIterator<Item = &'a str>,
        vocab: &HashMap<String, u32>,
    ) -> Result<Self> {
        let mut pairs = Vec::new();
        for (line_index, line) in lines.into_iter().enumerate() {
            if (line_index == 0 && line.starts_with("#version")) || line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            let (Some(left), Some(right), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(Error::Tokenizer(format!(
                    "merges line {} is not two tokens separated by one space: {line:?}",
                    line_index + 1
                )));
            };
            pairs.push((left, right));
        }
        Self::from_pairs(pairs, vocab)
    }

    /// Builds the table from merge pairs in rank order (first = applied first).
    pub(crate) fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        vocab: &HashMap<String, u32>,
    ) -> Result<Self> {
        let mut merges = HashMap::new();
        for (rank, (left, right)) in pairs.into_iter().enumerate() {
            let id_of = |token: &str| {
                vocab.get(token).copied().ok_or_else(|| {
                    Error::Tokenizer(format!(
                        "merge {} ({left} {right}): token {token:?} is not in the vocabulary",
                        rank + 1
                    ))
                })
            };
            let key = (id_of(left)?, id_of(right)?);
            let merged_id = id_of(&format!("{left}{right}"))?;
            let rank =
                u32::try_from(rank).map_err(|_| Error::Tokenizer("too many merges".into()))?;
            // As `tokenizers`, a repeated pair takes its last rank.
            merges.insert(key, (rank, merged_id));
        }
        Ok(Self { merges })
    }

    pub(crate) fn len(&self) -> usize {
        self.merges.len()
    }

    fn get(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        self.merges.get(&(left, right)).copied()
    }
}

/// One symbol of a word being merged: a token id in a doubly linked list over positions.
#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    previous: Option<usize>,
    next: Option<usize>,
    removed: bool,
}

/// A candidate merge of the symbol at `position` with its right neighbour.
#[derive(Debug, PartialEq, Eq)]
struct Candidate {
    rank: u32,
    position: usize,
    merged_id: u32,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.rank, self.position).cmp(&(other.rank, other.position))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Splits one byte-mapped word into token ids: its characters (the last one with `</w>`)
/// looked up in the vocabulary (missing ones become `unknown_id`, or are dropped without
/// one), then merged by rank.
pub(crate) fn encode_word(
    word: &str,
    vocab: &HashMap<String, u32>,
    merges: &MergeTable,
    unknown_id: Option<u32>,
) -> Vec<u32> {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
    let mut characters = word.char_indices().peekable();
    while let Some((start, character)) = characters.next() {
        let end = start + character.len_utf8();
        let is_last = characters.peek().is_none();
        let piece = &word[start..end];
        let id = if is_last {
            vocab.get(&format!("{piece}{END_OF_WORD}"))
        } else {
            vocab.get(piece)
        };
        if let Some(id) = id.copied().or(unknown_id) {
            let position = symbols.len();
            symbols.push(Symbol {
                id,
                previous: position.checked_sub(1),
                next: None,
                removed: false,
            });
            if let Some(previous) = position.checked_sub(1) {
                symbols[previous].next = Some(position);
            }
        }
    }

    let mut queue = BinaryHeap::new();
    for position in 1..symbols.len() {
        if let Some((rank, merged_id)) = merges.get(symbols[position - 1].id, symbols[position].id)
        {
            queue.push(Reverse(Candidate {
                rank,
                position: position - 1,
                merged_id,
            }));
        }
    }
    while let Some(Reverse(candidate)) = queue.pop() {
        let left = symbols[candidate.position];
        let Some(right_position) = left.next else {
            continue;
        };
        if left.removed {
            continue;
        }
        // Skip entries made stale by earlier merges around this position.
        match merges.get(left.id, symbols[right_position].id) {
            Some((_, merged_id)) if merged_id == candidate.merged_id => {}
            _ => continue,
        }
        let right_next = symbols[right_position].next;
        symbols[right_position].removed = true;
        symbols[candidate.position].id = candidate.merged_id;
        symbols[candidate.position].next = right_next;
        if let Some(after) = right_next {
            symbols[after].previous = Some(candidate.position);
        }
        let merged = symbols[candidate.position];
        if let Some(before) = merged.previous {
            if let Some((rank, merged_id)) = merges.get(symbols[before].id, merged.id) {
                queue.push(Reverse(Candidate {
                    rank,
                    position: before,
                    merged_id,
                }));
            }
        }
        if let Some(after) = merged.next {
            if let Some((rank, merged_id)) = merges.get(merged.id, symbols[after].id) {
                queue.push(Reverse(Candidate {
                    rank,
                    position: candidate.position,
                    merged_id,
                }));
            }
        }
    }
    symbols
        .iter()
        .filter(|symbol| !symbol.removed)
        .map(|symbol| symbol.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary(tokens: &[&str]) -> HashMap<String, u32> {
        tokens
            .iter()
            .enumerate()
            .map(|(index, token)| (token.to_string(), index as u32))
            .collect()
    }

    #[test]
    fn byte_table_matches_gpt2() {
        let table = bytes_to_unicode();
        assert_eq!(table[usize::from(b'a')], 'a');
        assert_eq!(table[usize::from(b'!')], '!');
        assert_eq!(table[0], '\u{100}');
        assert_eq!(table[usize::from(b' ')], '\u{120}'); // 'Ġ'
        assert_eq!(table[0xAD], '\u{143}');
        assert_eq!(table[0xFF], '\u{FF}');
        let mut sorted = table.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }

    #[test]
    fn merges_by_rank_with_word_end() {
        let vocab = vocabulary(&["c", "a", "t", "t</w>", "ca", "cat</w>", "s</w>", "at</w>"]);
        let merges = MergeTable::from_lines(["#version: 0.2", "c a", "ca t</w>"], &vocab).unwrap();
        assert_eq!(merges.len(), 2);
        assert_eq!(encode_word("cat", &vocab, &merges, None), vec![5]);
        // "t" not last: no "t</w>"; "ca" merges, "t" stays.
        assert_eq!(encode_word("cats", &vocab, &merges, None), vec![4, 2, 6]);
        // Lower rank wins even when it is further right.
        let merges = MergeTable::from_lines(["a t</w>", "c a"], &vocab).unwrap();
        assert_eq!(encode_word("cat", &vocab, &merges, None), vec![0, 7]);
    }

    #[test]
    fn unknown_characters_become_the_unknown_id() {
        let vocab = vocabulary(&["a", "a</w>", "<unk>"]);
        let merges = MergeTable::default();
        assert_eq!(encode_word("ab", &vocab, &merges, Some(2)), vec![0, 2]);
        assert_eq!(encode_word("ab", &vocab, &merges, None), vec![0]);
    }

    #[test]
    fn repeated_pairs_merge_left_to_right() {
        let vocab = vocabulary(&["a", "a</w>", "aa", "aa</w>"]);
        let merges = MergeTable::from_lines(["a a", "a a</w>"], &vocab).unwrap();
        // a a a</w>: (a,a) rank 0 merges first at position 0, then "aa" + "a</w>" has no merge.
        assert_eq!(encode_word("aaa", &vocab, &merges, None), vec![2, 1]);
        assert_eq!(encode_word("aaaa", &vocab, &merges, None), vec![2, 3]);
    }

    #[test]
    fn rejects_merges_outside_the_vocabulary() {
        let vocab = vocabulary(&["a", "b"]);
        let error = MergeTable::from_lines(["a b"], &vocab).unwrap_err();
        assert!(error.to_string().contains("\"ab\""), "{error}");
        assert!(MergeTable::from_lines(["a b c"], &vocab).is_err());
    }
}
