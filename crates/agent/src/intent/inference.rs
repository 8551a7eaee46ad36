//! The trained intent model at inference: loads a model folder (config.json, vocab.txt,
//! model.safetensors) or the one built into the binary, runs batches and decodes intents and slot spans.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Serialize;

use crate::error::{AgentError, Result};
use crate::intent::bert::Dropout;
use crate::intent::checkpoint::{load_safetensors, load_safetensors_bytes};
use crate::intent::corpus::{SlotValue, Slots, COUNT_CLASSIFIERS};
use crate::intent::embedded::{self, EMBEDDED_ORIGIN};
use crate::intent::joint::{JointConfig, JointModel};
use crate::intent::labels::{Intent, SlotName, Tag};
use crate::intent::text::parse_number;
use crate::intent::vocab::{Encoding, Vocab};

pub const CONFIG_FILE: &str = "config.json";
pub const VOCAB_FILE: &str = "vocab.txt";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// One parsed instruction: the JSON object of INTENTS.md.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parse {
    pub text: String,
    pub intent: Intent,
    pub confidence: f64,
    pub slots: Slots,
}

pub struct IntentModel {
    model: JointModel,
    vocab: Vocab,
    config: JointConfig,
    device: Device,
}

pub fn read_config(path: &Path) -> Result<JointConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| AgentError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn required(dir: &Path, file: &str) -> Result<PathBuf> {
    let path = dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(AgentError::MissingModelFile {
            dir: dir.to_path_buf(),
            file: file.to_string(),
        })
    }
}

impl IntentModel {
    /// Loads a model folder (config.json, vocab.txt, model.safetensors).
    pub fn load(dir: &Path) -> Result<Self> {
        let config = read_config(&required(dir, CONFIG_FILE)?)?;
        let vocab = Vocab::load(&required(dir, VOCAB_FILE)?)?;
        let weights_path = required(dir, WEIGHTS_FILE)?;
        let tensors = load_safetensors(&weights_path, &Device::Cpu)?;
        Self::assemble(config, vocab, tensors, dir, &weights_path)
    }

    /// The model committed in `models/intent`, built into the binary.
    pub fn embedded() -> Result<Self> {
        let origin = Path::new(EMBEDDED_ORIGIN);
        let config: JointConfig =
            serde_json::from_slice(embedded::CONFIG).map_err(|source| AgentError::Json {
                path: origin.join(CONFIG_FILE),
                source,
            })?;
        let tokens = embedded::VOCAB.lines().map(str::to_string).collect();
        let vocab = Vocab::from_tokens(tokens, &origin.join(VOCAB_FILE))?;
        let tensors = load_safetensors_bytes(embedded::WEIGHTS, &Device::Cpu)?;
        Self::assemble(config, vocab, tensors, origin, &origin.join(WEIGHTS_FILE))
    }

    /// Checks the parts agree and builds the model; `dir` and `weights_path` name them
    /// in errors.
    fn assemble(
        config: JointConfig,
        vocab: Vocab,
        tensors: HashMap<String, Tensor>,
        dir: &Path,
        weights_path: &Path,
    ) -> Result<Self> {
        config.validate()?;
        if vocab.len() != config.bert.vocab_size {
            return Err(AgentError::Config(format!(
                "{} has {} tokens but config.json says vocab_size {}",
                dir.join(VOCAB_FILE).display(),
                vocab.len(),
                config.bert.vocab_size
            )));
        }
        let device = Device::Cpu;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = JointModel::new(vb, &config).map_err(|error| match error {
            AgentError::Candle(candle_core::Error::CannotFindTensor { path }) => {
                AgentError::MissingTensor {
                    path: weights_path.to_path_buf(),
                    name: path,
                }
            }
            other => other,
        })?;
        Ok(Self::from_parts(model, vocab, config, device))
    }

    pub fn from_parts(
        model: JointModel,
        vocab: Vocab,
        config: JointConfig,
        device: Device,
    ) -> Self {
        Self {
            model,
            vocab,
            config,
            device,
        }
    }

    pub fn config(&self) -> &JointConfig {
        &self.config
    }

    pub fn joint(&self) -> &JointModel {
        &self.model
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn parse(&self, text: &str) -> Result<Parse> {
        let mut parses = self.parse_batch(&[text])?;
        parses.pop().ok_or(AgentError::EmptyData)
    }

    /// Parses instructions together (padded to the longest); order is kept.
    pub fn parse_batch(&self, texts: &[&str]) -> Result<Vec<Parse>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings: Vec<Encoding> = texts
            .iter()
            .map(|t| self.vocab.encode(t, self.config.max_len))
            .collect();
        let (input_ids, attention_mask) = pad_batch(&encodings, self.vocab.pad_id, &self.device)?;
        let output = self
            .model
            .forward(&input_ids, &attention_mask, &mut Dropout::disabled())?;
        let intent_probs =
            candle_nn::ops::softmax_last_dim(&output.intent_logits)?.to_vec2::<f32>()?;
        let tag_probs = candle_nn::ops::softmax_last_dim(&output.tag_logits)?.to_vec3::<f32>()?;
        let mut parses = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let (best, confidence) =
                intent_probs[i]
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::MIN),
                        |acc, (j, &p)| if p > acc.1 { (j, p) } else { acc },
                    );
            let intent = Intent::ALL[best];
            let rows = &tag_probs[i][1..=encodings[i].char_indices.len()];
            let slots = decode_slots(text, intent, &encodings[i].char_indices, rows);
            parses.push(Parse {
                text: text.to_string(),
                intent,
                confidence: (confidence as f64 * 1000.0).round() / 1000.0,
                slots,
            });
        }
        Ok(parses)
    }
}

/// Pads encodings to one length: ([b, s] u32 ids, [b, s] f32 mask).
pub fn pad_batch(encodings: &[Encoding], pad_id: u32, device: &Device) -> Result<(Tensor, Tensor)> {
    let seq_len = encodings.iter().map(|e| e.ids.len()).max().unwrap_or(2);
    let mut ids = Vec::with_capacity(encodings.len() * seq_len);
    let mut mask = Vec::with_capacity(encodings.len() * seq_len);
    for encoding in encodings {
        ids.extend_from_slice(&encoding.ids);
        ids.extend(std::iter::repeat_n(pad_id, seq_len - encoding.ids.len()));
        mask.extend(std::iter::repeat_n(1f32, encoding.ids.len()));
        mask.extend(std::iter::repeat_n(0f32, seq_len - encoding.ids.len()));
    }
    let shape = (encodings.len(), seq_len);
    Ok((
        Tensor::from_vec(ids, shape, device)?,
        Tensor::from_vec(mask, shape, device)?,
    ))
}

/// Turns per-character tag probabilities into slots. Only the tags of slots that
/// `intent` may carry compete; a stray `I-x` opens a span; of several spans of one
/// slot the most confident wins; `count` keeps only integers of 2 or more.
pub fn decode_slots(
    text: &str,
    intent: Intent,
    char_indices: &[usize],
    rows: &[Vec<f32>],
) -> Slots {
    let chars: Vec<char> = text.chars().collect();
    let allowed: Vec<bool> = Tag::all()
        .iter()
        .map(|tag| match tag {
            Tag::Outside => true,
            Tag::Begin(slot) | Tag::Inside(slot) => intent.allows(*slot),
        })
        .collect();
    let best_tags = viterbi(rows, &allowed);
    // (slot, first token, last token, summed probability)
    let mut spans: Vec<(SlotName, usize, usize, f32)> = Vec::new();
    for (token, &(tag, p)) in best_tags.iter().enumerate() {
        match tag {
            Tag::Outside => {}
            // Adjacent characters of one slot form one span whether tagged B or I: each
            // slot has one value, so a B right after the same slot is a tagging slip.
            Tag::Begin(slot) | Tag::Inside(slot) if matches!(spans.last(), Some(s) if s.0 == slot && s.2 + 1 == token) => {
                if let Some(span) = spans.last_mut() {
                    span.2 = token;
                    span.3 += p;
                }
            }
            Tag::Begin(slot) | Tag::Inside(slot) => spans.push((slot, token, token, p)),
        }
    }
    let mut best: std::collections::BTreeMap<SlotName, (f32, SlotValue)> = Default::default();
    for (slot, first, last, sum) in spans {
        let (Some(&start), Some(&end)) = (char_indices.get(first), char_indices.get(last)) else {
            continue;
        };
        let value: String = chars[start..=end].iter().collect();
        let value = value.trim().to_string();
        let value = if slot == SlotName::Count {
            // A count of images is followed by its classifier (三张, 4幅); digits inside
            // a name (618) are not a count.
            let classified = chars
                .get(end + 1)
                .is_some_and(|c| COUNT_CLASSIFIERS.contains(c));
            match parse_number(&value).filter(|_| classified) {
                Some(n) if n >= 2 => SlotValue::Count(n),
                _ => continue,
            }
        } else if value.is_empty() {
            continue;
        } else {
            SlotValue::Text(value)
        };
        let score = sum / (last - first + 1) as f32;
        if best.get(&slot).is_none_or(|(s, _)| score > *s) {
            best.insert(slot, (score, value));
        }
    }
    let mut slots: Slots = best
        .into_iter()
        .map(|(slot, (_, value))| (slot, value))
        .collect();
    if let Some(SlotValue::Text(style)) = slots.get_mut(&SlotName::Style) {
        *style = style_convention(text, style);
    }
    slots
}

/// The most probable tag sequence in which every `I-x` follows `B-x` or `I-x`, over the
/// `allowed` tags; each tag with its probability.
fn viterbi(rows: &[Vec<f32>], allowed: &[bool]) -> Vec<(Tag, f32)> {
    let tags = Tag::all();
    let can_follow = |previous: Option<Tag>, next: Tag| match next {
        Tag::Inside(slot) => matches!(previous, Some(Tag::Begin(s) | Tag::Inside(s)) if s == slot),
        _ => true,
    };
    let log = |p: f32| (p.max(1e-12) as f64).ln();
    let mut scores: Vec<f64> = Vec::new();
    let mut back: Vec<Vec<usize>> = Vec::with_capacity(rows.len());
    for (t, row) in rows.iter().enumerate() {
        let mut next_scores = vec![f64::NEG_INFINITY; tags.len()];
        let mut pointers = vec![0usize; tags.len()];
        for (j, &tag) in tags.iter().enumerate() {
            if !allowed.get(j).copied().unwrap_or(false) {
                continue;
            }
            let emission = log(row.get(j).copied().unwrap_or(0.0));
            if t == 0 {
                if can_follow(None, tag) {
                    next_scores[j] = emission;
                }
                continue;
            }
            for (i, &previous) in tags.iter().enumerate() {
                let candidate = scores[i] + emission;
                if scores[i].is_finite()
                    && can_follow(Some(previous), tag)
                    && candidate > next_scores[j]
                {
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
        .max_by(|a, b| a.1.total_cmp(b.1))
    else {
        return Vec::new();
    };
    let mut path = vec![0usize; rows.len()];
    for t in (0..rows.len()).rev() {
        path[t] = state;
        state = back[t][state];
    }
    path.iter()
        .zip(rows)
        .map(|(&j, row)| (tags[j], row.get(j).copied().unwrap_or(0.0)))
        .collect()
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

/// INTENTS.md's style convention applied to a predicted span: the suffixes 风格, 画风,
/// 质感, 效果, 渲染 are dropped, and a bare 风, except in the styles that keep it (国风 …);
/// a span that stops right before the 风 of one of those is extended to it.
fn style_convention(text: &str, style: &str) -> String {
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
    fn viterbi_keeps_inside_tags_after_their_begin() {
        let row = |pairs: &[(Tag, f32)]| {
            let mut r = vec![0.01f32; Tag::COUNT];
            for &(tag, p) in pairs {
                r[tag.index()] = p;
            }
            r
        };
        let subject = SlotName::Subject;
        let style = SlotName::Style;
        // Greedy would give B-subject, I-style: not a valid sequence.
        let rows = vec![
            row(&[(Tag::Begin(subject), 0.5), (Tag::Begin(style), 0.45)]),
            row(&[(Tag::Inside(style), 0.9)]),
            row(&[(Tag::Outside, 0.9)]),
        ];
        let allowed = vec![true; Tag::COUNT];
        let path: Vec<Tag> = viterbi(&rows, &allowed)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(
            path,
            vec![Tag::Begin(style), Tag::Inside(style), Tag::Outside]
        );
        assert!(viterbi(&[], &allowed).is_empty());
    }
}
