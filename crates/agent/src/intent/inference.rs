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
use crate::intent::corpus::Slots;
use crate::intent::decode::{decode_slots, DecodeSettings, TaggerOutput};
use crate::intent::embedded::{self, EMBEDDED_ORIGIN};
use crate::intent::joint::{JointConfig, JointModel};
use crate::intent::labels::Intent;
use crate::intent::segment::{self, token_word_tags, word_tags, WordTag};
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

struct Forward {
    encodings: Vec<Encoding>,
    /// Per character of each text.
    word_tags: Vec<Vec<WordTag>>,
    output: crate::intent::joint::JointOutput,
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
        segment::prepare_in_background();
        let config = read_config(&required(dir, CONFIG_FILE)?)?;
        let vocab = Vocab::load(&required(dir, VOCAB_FILE)?)?;
        let weights_path = required(dir, WEIGHTS_FILE)?;
        let tensors = load_safetensors(&weights_path, &Device::Cpu)?;
        Self::assemble(config, vocab, tensors, dir, &weights_path)
    }

    /// The model committed in `models/intent`, built into the binary.
    pub fn embedded() -> Result<Self> {
        segment::prepare_in_background();
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

    /// The model's outputs for `texts` with what decoding needs beside them.
    fn run(&self, texts: &[&str]) -> Result<Forward> {
        let encodings: Vec<Encoding> = texts
            .iter()
            .map(|t| self.vocab.encode(t, self.config.max_len))
            .collect();
        let (input_ids, attention_mask) = pad_batch(&encodings, self.vocab.pad_id, &self.device)?;
        let word_tags: Vec<Vec<WordTag>> = texts.iter().map(|t| word_tags(t)).collect();
        let word_tag_ids: Vec<Vec<u32>> = word_tags
            .iter()
            .zip(&encodings)
            .map(|(tags, encoding)| token_word_tags(tags, encoding))
            .collect();
        let word_tag_ids = pad_ids(&word_tag_ids, 0, &self.device)?;
        let output = self.model.forward(
            &input_ids,
            &word_tag_ids,
            &attention_mask,
            &mut Dropout::disabled(),
        )?;
        Ok(Forward {
            encodings,
            word_tags,
            output,
        })
    }

    /// Raw intent logits (before the temperature), one row per text, for calibration.
    pub fn intent_logits(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.run(texts)?.output.intent_logits.to_vec2::<f32>()?)
    }

    /// Sets the intent temperature (calibration) and the word-boundary cost of decoding.
    pub fn set_decoding(&mut self, intent_temperature: f64, boundary_penalty: f64) {
        self.config.intent_temperature = intent_temperature;
        self.config.boundary_penalty = boundary_penalty;
    }

    /// Parses instructions together (padded to the longest); order is kept.
    pub fn parse_batch(&self, texts: &[&str]) -> Result<Vec<Parse>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let Forward {
            encodings,
            word_tags: text_word_tags,
            output,
        } = self.run(texts)?;
        let intent_logits = (output.intent_logits / self.config.intent_temperature)?;
        let intent_probs = candle_nn::ops::softmax_last_dim(&intent_logits)?.to_vec2::<f32>()?;
        let tag_logits = output.tag_logits.to_vec3::<f32>()?;
        let tag_probs = candle_nn::ops::softmax_last_dim(&output.tag_logits)?.to_vec3::<f32>()?;
        let transitions = self.model.transition_scores()?;
        let settings = DecodeSettings {
            transitions: &transitions,
            boundary_penalty: self.config.boundary_penalty as f32,
        };
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
            let positions = 1..=encodings[i].char_indices.len();
            let probabilities = &tag_probs[i][positions.clone()];
            // A CRF adds up logits; without one the tagger's log-probabilities are summed.
            let emissions: Vec<Vec<f32>> = if self.model.has_crf() {
                tag_logits[i][positions].to_vec()
            } else {
                probabilities
                    .iter()
                    .map(|row| row.iter().map(|p| p.max(1e-12).ln()).collect())
                    .collect()
            };
            let position_word_tags: Vec<WordTag> = encodings[i]
                .char_indices
                .iter()
                .filter_map(|&c| text_word_tags[i].get(c).copied())
                .collect();
            let slots = decode_slots(
                &TaggerOutput {
                    text,
                    intent,
                    char_indices: &encodings[i].char_indices,
                    emissions: &emissions,
                    probabilities,
                    word_tags: &position_word_tags,
                },
                &settings,
            );
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

/// Pads rows of ids with `pad` to one length: [b, s] u32.
pub fn pad_ids(rows: &[Vec<u32>], pad: u32, device: &Device) -> Result<Tensor> {
    let seq_len = rows.iter().map(Vec::len).max().unwrap_or(2);
    let mut ids = Vec::with_capacity(rows.len() * seq_len);
    for row in rows {
        ids.extend_from_slice(row);
        ids.extend(std::iter::repeat_n(pad, seq_len - row.len()));
    }
    Ok(Tensor::from_vec(ids, (rows.len(), seq_len), device)?)
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
