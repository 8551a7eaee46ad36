//! From the tagger's per-character scores to slot values: constrained Viterbi over the
//! CRF's transition scores, word-boundary costs from the segmentation, and the rules
//! that refuse spans nothing justifies (INTENTS.md's span conventions).

use std::collections::BTreeMap;

use crate::intent::corpus::{SlotValue, Slots, COUNT_CLASSIFIERS};
use crate::intent::crf::TransitionScores;
use crate::intent::labels::{Intent, SlotName, Tag};
use crate::intent::segment::WordTag;
use crate::intent::spans::{
    after_classifier, after_separator, fit_emissions, span_breaks, style_convention, tidy_span,
    IMAGE_WORDS,
};
use crate::intent::text::parse_number;

/// Cost of a span edge inside an ASCII word or number: English words and numbers are
/// kept whole, so this never pays.
const INSIDE_ASCII_WORD: f32 = 1.0e4;

/// One instruction's tagger output, position k being the k-th kept character.
pub struct TaggerOutput<'a> {
    pub text: &'a str,
    pub intent: Intent,
    /// Index in `text.chars()` of each position.
    pub char_indices: &'a [usize],
    /// [positions][tags]: scores the CRF adds up (logits, or log-probabilities).
    pub emissions: &'a [Vec<f32>],
    /// [positions][tags]: per-character tag probabilities, to rank spans of one slot.
    pub probabilities: &'a [Vec<f32>],
    /// [positions]: where the segmentation puts words.
    pub word_tags: &'a [WordTag],
}

/// How the tags are decoded.
pub struct DecodeSettings<'a> {
    pub transitions: &'a TransitionScores,
    /// Cost of starting or ending a span inside a dictionary word.
    pub boundary_penalty: f32,
}

/// Slots of one instruction: only slots `intent` may carry; adjacent characters of one
/// slot form one span; unjustified spans are dropped; of several spans of one slot the
/// most confident wins; `count` keeps only integers of 2 or more.
pub fn decode_slots(output: &TaggerOutput, settings: &DecodeSettings) -> Slots {
    let chars: Vec<char> = output.text.chars().collect();
    let allowed: Vec<bool> = Tag::all()
        .iter()
        .map(|tag| match tag {
            Tag::Outside => true,
            Tag::Begin(slot) | Tag::Inside(slot) => output.intent.allows(*slot),
        })
        .collect();
    let edge_costs = edge_costs(output, &chars, settings.boundary_penalty);
    let breaks = span_breaks(&chars, output.char_indices);
    let emissions = fit_emissions(output.emissions, &chars, output.char_indices, &breaks);
    let path = viterbi(
        &emissions,
        settings.transitions,
        &allowed,
        &Edges {
            costs: &edge_costs,
            breaks: &breaks,
        },
    );
    let mut spans: Vec<Span> = Vec::new();
    for (position, &tag) in path.iter().enumerate() {
        let p = output
            .probabilities
            .get(position)
            .and_then(|row| row.get(tag.index()))
            .copied()
            .unwrap_or(0.0);
        match tag {
            Tag::Outside => {}
            // Each slot has one value, so a B right after the same slot is a slip.
            Tag::Begin(slot) | Tag::Inside(slot) if matches!(spans.last(), Some(s) if s.slot == slot && s.last + 1 == position) => {
                if let Some(span) = spans.last_mut() {
                    span.last = position;
                    span.probability_sum += p;
                }
            }
            Tag::Begin(slot) | Tag::Inside(slot) => spans.push(Span {
                slot,
                first: position,
                last: position,
                probability_sum: p,
                // The tagger ran this span in through a separator (画一只猫，黄的): the
                // start was read from its inside score.
                continued: breaks.get(position).copied().unwrap_or(false)
                    && after_separator(&chars, output.char_indices, position)
                    && output.emissions.get(position).is_some_and(|row| {
                        row.get(Tag::Begin(slot).index()) < row.get(Tag::Inside(slot).index())
                    }),
            }),
        }
    }
    let mut best: BTreeMap<SlotName, (f32, SlotValue)> = BTreeMap::new();
    for span in spans {
        let (Some(&start), Some(&end)) = (
            output.char_indices.get(span.first),
            output.char_indices.get(span.last),
        ) else {
            continue;
        };
        let value = if span.slot == SlotName::Count {
            let value: String = chars[start..=end].iter().collect();
            // A count of images is followed by its classifier (三张, 4幅); digits inside
            // a name (618) are not a count.
            let classified = chars
                .get(end + 1)
                .is_some_and(|c| COUNT_CLASSIFIERS.contains(c));
            match parse_number(&value).filter(|_| classified) {
                Some(n) if n >= 2 => SlotValue::Count(n),
                _ => continue,
            }
        } else {
            let Some((first, last)) = tidy_span(span.slot, &chars, start, end) else {
                continue;
            };
            let position = |c: usize| output.char_indices.binary_search(&c).ok();
            let (Some(p), Some(q)) = (position(first), position(last)) else {
                continue;
            };
            let value: String = chars[first..=last].iter().collect();
            // A noun right after 一条 / 这盘 stands on its own (一条龙 → 龙).
            let whole_noun =
                after_classifier(&chars, first) && !IMAGE_WORDS.contains(&value.as_str());
            if !whole_noun && !justified(span.slot, &value, &output.word_tags[p..=q]) {
                continue;
            }
            SlotValue::Text(value)
        };
        // Of several spans of one slot, one the tagger started itself beats one it ran
        // in through a separator; then the most confident wins.
        let score = span.probability_sum / (span.last - span.first + 1) as f32
            - if span.continued { 1.0 } else { 0.0 };
        if best.get(&span.slot).is_none_or(|(s, _)| score > *s) {
            best.insert(span.slot, (score, value));
        }
    }
    let mut slots: Slots = best
        .into_iter()
        .map(|(slot, (_, value))| (slot, value))
        .collect();
    if let Some(SlotValue::Text(style)) = slots.get_mut(&SlotName::Style) {
        *style = style_convention(output.text, style);
    }
    slots
}

struct Span {
    slot: SlotName,
    first: usize,
    last: usize,
    probability_sum: f32,
    /// Started where the tagger said "inside", right after a separator.
    continued: bool,
}

/// Whether a text span may stand as `slot`'s value. Style, aspect and region are never a
/// single character (简, 蓝, 正 alone are pieces of words); subject, target and content
/// may be one character only when the segmentation makes it a word of its own (画只猫 →
/// 猫, 给她戴顶帽子 → 她), not a piece of one (女 of 女孩).
pub fn justified(slot: SlotName, value: &str, word_tags: &[WordTag]) -> bool {
    let length = value.chars().count();
    if length == 0 {
        return false;
    }
    if length > 1 {
        return true;
    }
    match slot {
        SlotName::Count => true,
        SlotName::Style | SlotName::Aspect | SlotName::Region => false,
        SlotName::Subject | SlotName::Target | SlotName::Content => {
            word_tags.len() == 1 && word_tags[0] == WordTag::Single
        }
    }
}

/// Cost of a span edge before each position: 0 where a word starts, the penalty inside a
/// dictionary word, prohibitive inside an ASCII word or number.
fn edge_costs(output: &TaggerOutput, chars: &[char], penalty: f32) -> Vec<f32> {
    output
        .word_tags
        .iter()
        .enumerate()
        .map(|(position, tag)| {
            if tag.starts_word() {
                return 0.0;
            }
            let ascii = output
                .char_indices
                .get(position)
                .and_then(|&i| chars.get(i))
                .is_some_and(char::is_ascii_alphanumeric);
            if ascii {
                INSIDE_ASCII_WORD
            } else {
                penalty
            }
        })
        .collect()
}

/// Where spans may start, end and run on, per position.
pub struct Edges<'a> {
    /// What a span starting or ending between position t-1 and t pays.
    pub costs: &'a [f32],
    /// Where no span runs on from position t-1 into t (`spans::span_breaks`).
    pub breaks: &'a [bool],
}

/// The best tag sequence under the CRF's scores in which every `I-x` follows `B-x` or
/// `I-x`, over the `allowed` tags; a span starting or ending between position t-1 and t
/// pays `edges.costs[t]`, and where `edges.breaks[t]` a slot does not go on from t-1 to t
/// (neither `I-x` nor a second `B-x` right after `x`).
pub fn viterbi(
    emissions: &[Vec<f32>],
    transitions: &TransitionScores,
    allowed: &[bool],
    edges: &Edges,
) -> Vec<Tag> {
    let tags = Tag::all();
    let in_slot = |tag: Tag| match tag {
        Tag::Begin(s) | Tag::Inside(s) => Some(s),
        Tag::Outside => None,
    };
    let can_follow = |previous: Option<Tag>, next: Tag| match next {
        Tag::Inside(slot) => previous.and_then(in_slot) == Some(slot),
        _ => true,
    };
    // A count is a numeral inside a word (三张, 两幅): its edges cost nothing.
    let worded = |slot: Option<SlotName>| slot.is_some_and(|s| s != SlotName::Count);
    let edge = |previous: Tag, next: Tag| {
        let starts = matches!(next, Tag::Begin(s) if s != SlotName::Count);
        let ends = worded(in_slot(previous)) && !matches!(next, Tag::Inside(_));
        starts || ends
    };
    let score_of = |row: &[f32], j: usize| row.get(j).copied().unwrap_or(f32::NEG_INFINITY);
    let mut scores: Vec<f32> = Vec::new();
    let mut back: Vec<Vec<usize>> = Vec::with_capacity(emissions.len());
    for (t, row) in emissions.iter().enumerate() {
        let mut next_scores = vec![f32::NEG_INFINITY; tags.len()];
        let mut pointers = vec![0usize; tags.len()];
        for (j, &tag) in tags.iter().enumerate() {
            if !allowed.get(j).copied().unwrap_or(false) {
                continue;
            }
            let emission = score_of(row, j);
            if t == 0 {
                if can_follow(None, tag) {
                    next_scores[j] = transitions.start[j] + emission;
                }
                continue;
            }
            let cost = edges.costs.get(t).copied().unwrap_or(0.0);
            let broken = edges.breaks.get(t).copied().unwrap_or(false);
            for (i, &previous) in tags.iter().enumerate() {
                if !scores[i].is_finite() || !can_follow(Some(previous), tag) {
                    continue;
                }
                let runs_on = match tag {
                    Tag::Inside(_) => true,
                    Tag::Begin(slot) => in_slot(previous) == Some(slot),
                    Tag::Outside => false,
                };
                if broken && runs_on {
                    continue;
                }
                let mut candidate = scores[i] + transitions.between[i][j] + emission;
                if edge(previous, tag) {
                    candidate -= cost;
                }
                if candidate > next_scores[j] {
                    next_scores[j] = candidate;
                    pointers[j] = i;
                }
            }
        }
        scores = next_scores;
        back.push(pointers);
    }
    let Some((mut state, _)) = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_finite())
        .map(|(j, s)| (j, s + transitions.end[j]))
        .max_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return Vec::new();
    };
    let mut path = vec![0usize; emissions.len()];
    for t in (0..emissions.len()).rev() {
        path[t] = state;
        state = back[t][state];
    }
    path.into_iter().map(|j| tags[j]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::segment::word_tags;

    /// No edge costs and no breaks over `n` positions.
    fn free(n: usize) -> Edges<'static> {
        let costs: &'static [f32] = Box::leak(vec![0.0; n].into_boxed_slice());
        let breaks: &'static [bool] = Box::leak(vec![false; n].into_boxed_slice());
        Edges { costs, breaks }
    }

    fn row(pairs: &[(Tag, f32)]) -> Vec<f32> {
        let mut r = [0.01f32; Tag::COUNT];
        for &(tag, p) in pairs {
            r[tag.index()] = p;
        }
        r.iter().map(|p| p.ln()).collect()
    }

    #[test]
    fn viterbi_keeps_inside_tags_after_their_begin() {
        let subject = SlotName::Subject;
        let style = SlotName::Style;
        // Greedy would give B-subject, I-style: not a valid sequence.
        let rows = vec![
            row(&[(Tag::Begin(subject), 0.5), (Tag::Begin(style), 0.45)]),
            row(&[(Tag::Inside(style), 0.9)]),
            row(&[(Tag::Outside, 0.9)]),
        ];
        let allowed = vec![true; Tag::COUNT];
        let uniform = TransitionScores::uniform(Tag::COUNT);
        let path = viterbi(&rows, &uniform, &allowed, &free(3));
        assert_eq!(
            path,
            vec![Tag::Begin(style), Tag::Inside(style), Tag::Outside]
        );
        assert!(viterbi(&[], &uniform, &allowed, &free(0)).is_empty());
    }

    #[test]
    fn learned_transitions_change_the_path() {
        let subject = SlotName::Subject;
        let rows = vec![
            row(&[(Tag::Begin(subject), 0.9)]),
            row(&[(Tag::Inside(subject), 0.45), (Tag::Outside, 0.55)]),
        ];
        let allowed = vec![true; Tag::COUNT];
        let mut transitions = TransitionScores::uniform(Tag::COUNT);
        let plain = viterbi(&rows, &transitions, &allowed, &free(2));
        assert_eq!(plain[1], Tag::Outside);
        transitions.between[Tag::Begin(subject).index()][Tag::Outside.index()] = -2.0;
        let with_crf = viterbi(&rows, &transitions, &allowed, &free(2));
        assert_eq!(with_crf[1], Tag::Inside(subject));
    }

    /// Tagger scores that favour `wanted` per character, for the decoding tests.
    fn decode(text: &str, intent: Intent, wanted: &[Tag], confidence: f32, penalty: f32) -> Slots {
        let chars: Vec<usize> = (0..text.chars().count()).collect();
        let probabilities: Vec<Vec<f32>> = wanted
            .iter()
            .map(|&tag| {
                let mut r = vec![(1.0 - confidence) / (Tag::COUNT - 1) as f32; Tag::COUNT];
                r[tag.index()] = confidence;
                r
            })
            .collect();
        let emissions: Vec<Vec<f32>> = probabilities
            .iter()
            .map(|r| r.iter().map(|p| p.ln()).collect())
            .collect();
        let tags = word_tags(text);
        let output = TaggerOutput {
            text,
            intent,
            char_indices: &chars,
            emissions: &emissions,
            probabilities: &probabilities,
            word_tags: &tags,
        };
        let uniform = TransitionScores::uniform(Tag::COUNT);
        decode_slots(
            &output,
            &DecodeSettings {
                transitions: &uniform,
                boundary_penalty: penalty,
            },
        )
    }

    fn tags_for(text: &str, spans: &[(SlotName, &str)]) -> Vec<Tag> {
        let chars: Vec<char> = text.chars().collect();
        let mut tags = vec![Tag::Outside; chars.len()];
        for &(slot, value) in spans {
            let value: Vec<char> = value.chars().collect();
            let start = (0..chars.len())
                .find(|&i| chars[i..].starts_with(&value))
                .unwrap_or(0);
            for (k, tag) in tags[start..start + value.len()].iter_mut().enumerate() {
                *tag = if k == 0 {
                    Tag::Begin(slot)
                } else {
                    Tag::Inside(slot)
                };
            }
        }
        tags
    }

    fn text_slot(slots: &Slots, slot: SlotName) -> Option<String> {
        match slots.get(&slot) {
            Some(SlotValue::Text(value)) => Some(value.clone()),
            _ => None,
        }
    }

    #[test]
    fn a_weak_span_edge_inside_a_word_moves_to_the_word_boundary() {
        // The tagger leans towards 装满水果的玻璃 (dropping 碗) with little confidence.
        let text = "一个装满水果的玻璃碗，素描风格";
        let mut wanted = tags_for(
            text,
            &[
                (SlotName::Subject, "装满水果的玻璃碗"),
                (SlotName::Style, "素描"),
            ],
        );
        wanted[9] = Tag::Outside; // 碗
        let slots = decode(text, Intent::GenerateFree, &wanted, 0.4, 0.0);
        assert_eq!(
            text_slot(&slots, SlotName::Subject).as_deref(),
            Some("装满水果的玻璃")
        );
        let slots = decode(text, Intent::GenerateFree, &wanted, 0.4, 3.0);
        assert_eq!(
            text_slot(&slots, SlotName::Subject).as_deref(),
            Some("装满水果的玻璃碗")
        );
        assert_eq!(text_slot(&slots, SlotName::Style).as_deref(), Some("素描"));
    }

    #[test]
    fn one_character_pieces_of_words_are_not_slots() {
        // 可 of 可爱 as a style, 正 of 正面 as an aspect: refused even when confident.
        let text = "给我画个可爱的小女孩在吹泡泡";
        let wanted = tags_for(
            text,
            &[
                (SlotName::Subject, "小女孩在吹泡泡"),
                (SlotName::Style, "可"),
            ],
        );
        let slots = decode(text, Intent::GeneratePortrait, &wanted, 0.9, 0.0);
        assert_eq!(text_slot(&slots, SlotName::Style), None);
        assert_eq!(
            text_slot(&slots, SlotName::Subject).as_deref(),
            Some("小女孩在吹泡泡")
        );
        let text = "一个穿白大褂的医生，半身，正面";
        let wanted = tags_for(
            text,
            &[
                (SlotName::Subject, "穿白大褂的医生"),
                (SlotName::Aspect, "正"),
            ],
        );
        let slots = decode(text, Intent::GeneratePortrait, &wanted, 0.9, 0.0);
        assert!(!slots.contains_key(&SlotName::Aspect));
        // 男 of 男人 is not a target; 猫 standing alone is a subject.
        assert!(!justified(SlotName::Target, "男", &word_tags("男人")[..1]));
        let tags = word_tags("画只猫");
        assert!(justified(SlotName::Subject, "猫", &tags[2..3]));
        assert!(justified(SlotName::Count, "三", &[WordTag::Begin]));
    }

    #[test]
    fn english_words_in_chinese_requests_are_never_cut() {
        // 火箭ap (the tagger stops inside "app"): the span gives up the whole word.
        let text = "一个火箭app icon，渐变色";
        let mut wanted = tags_for(text, &[(SlotName::Subject, "火箭ap")]);
        wanted[6] = Tag::Outside;
        let slots = decode(text, Intent::GenerateIcon, &wanted, 0.6, 0.0);
        let subject = text_slot(&slots, SlotName::Subject).unwrap_or_default();
        assert!(subject == "火箭" || subject == "火箭app", "{subject}");
        // Black Friday sale: a span never ends after the B.
        let text = "Black Friday sale poster，黑金配色的";
        let mut wanted = tags_for(text, &[(SlotName::Subject, "Black Friday sale")]);
        for tag in &mut wanted[1..5] {
            *tag = Tag::Outside;
        }
        let slots = decode(text, Intent::GeneratePoster, &wanted, 0.5, 0.0);
        assert_ne!(text_slot(&slots, SlotName::Subject).as_deref(), Some("B"));
    }

    #[test]
    fn a_count_inside_a_word_pays_no_boundary_cost() {
        // jieba keeps 三张 together; the count 三 must survive a high boundary cost.
        let text = "来三张水彩风格的荷花";
        let mut wanted = tags_for(
            text,
            &[(SlotName::Subject, "荷花"), (SlotName::Style, "水彩")],
        );
        wanted[1] = Tag::Begin(SlotName::Count);
        let slots = decode(text, Intent::GenerateFree, &wanted, 0.6, 8.0);
        assert_eq!(slots.get(&SlotName::Count), Some(&SlotValue::Count(3)));
    }

    #[test]
    fn slots_the_intent_cannot_carry_are_not_decoded() {
        let text = "把天空换成晚霞";
        let wanted = tags_for(
            text,
            &[(SlotName::Target, "天空"), (SlotName::Content, "晚霞")],
        );
        let slots = decode(text, Intent::Other, &wanted, 0.9, 1.0);
        assert!(slots.is_empty());
        let slots = decode(text, Intent::EditInstruct, &wanted, 0.9, 1.0);
        assert_eq!(text_slot(&slots, SlotName::Target).as_deref(), Some("天空"));
        assert_eq!(
            text_slot(&slots, SlotName::Content).as_deref(),
            Some("晚霞")
        );
    }
}
