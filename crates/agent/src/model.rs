//! The trained intent model at inference: loads a model folder (config.json, vocab.txt,
//! model.safetensors), runs batches and decodes intents and slot spans.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Serialize;

use crate::bert::Dropout;
use crate::checkpoint::load_safetensors;
use crate::corpus::{SlotValue, Slots};
use crate::error::{AgentError, Result};
use crate::joint::{JointConfig, JointModel};
use crate::labels::{Intent, SlotName, Tag};
use crate::text::parse_number;
use crate::vocab::{Encoding, Vocab};

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
    pub fn load(dir: &Path) -> Result<Self> {
        let config = read_config(&required(dir, CONFIG_FILE)?)?;
        config.validate()?;
        let vocab = Vocab::load(&required(dir, VOCAB_FILE)?)?;
        if vocab.len() != config.bert.vocab_size {
            return Err(AgentError::Config(format!(
                "{} has {} tokens but config.json says vocab_size {}",
                dir.join(VOCAB_FILE).display(),
                vocab.len(),
                config.bert.vocab_size
            )));
        }
        let device = Device::Cpu;
        let weights_path = required(dir, WEIGHTS_FILE)?;
        let tensors = load_safetensors(&weights_path, &device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = JointModel::new(vb, &config).map_err(|error| match error {
            AgentError::Candle(candle_core::Error::CannotFindTensor { path }) => {
                AgentError::MissingTensor {
                    path: weights_path.clone(),
                    name: path,
                }
            }
            other => other,
        })?;
        Ok(Self::from_parts(model, vocab, config, device))
    }

    pub fn from_parts(model: JointModel, vocab: Vocab, config: JointConfig, device: Device) -> Self {
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
        let intent_probs = candle_nn::ops::softmax_last_dim(&output.intent_logits)?.to_vec2::<f32>()?;
        let tag_probs = candle_nn::ops::softmax_last_dim(&output.tag_logits)?.to_vec3::<f32>()?;
        let mut parses = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let (best, confidence) = intent_probs[i]
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |acc, (j, &p)| if p > acc.1 { (j, p) } else { acc });
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
        ids.extend(std::iter::repeat(pad_id).take(seq_len - encoding.ids.len()));
        mask.extend(std::iter::repeat(1f32).take(encoding.ids.len()));
        mask.extend(std::iter::repeat(0f32).take(seq_len - encoding.ids.len()));
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
pub fn decode_slots(text: &str, intent: Intent, char_indices: &[usize], rows: &[Vec<f32>]) -> Slots {
    let chars: Vec<char> = text.chars().collect();
    let allowed: Vec<bool> = Tag::all()
        .iter()
        .map(|tag| match tag {
            Tag::Outside => true,
            Tag::Begin(slot) | Tag::Inside(slot) => intent.allows(*slot),
        })
        .collect();
    let best_tags: Vec<(Tag, f32)> = rows
        .iter()
        .map(|row| {
            let (index, p) = row
                .iter()
                .enumerate()
                .filter(|(j, _)| allowed.get(*j).copied().unwrap_or(false))
                .fold((0, f32::MIN), |acc, (j, &p)| if p > acc.1 { (j, p) } else { acc });
            (Tag::from_index(index).unwrap_or(Tag::Outside), p)
        })
        .collect();
    // (slot, first token, last token, summed probability)
    let mut spans: Vec<(SlotName, usize, usize, f32)> = Vec::new();
    for (token, &(tag, p)) in best_tags.iter().enumerate() {
        match tag {
            Tag::Outside => {}
            Tag::Inside(slot) if matches!(spans.last(), Some(s) if s.0 == slot && s.2 + 1 == token) => {
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
            match parse_number(&value) {
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
    best.into_iter().map(|(slot, (_, value))| (slot, value)).collect()
}

