//! Training the joint intent + slot model on CPU: seeded initialisation, shuffling and
//! dropout (reproducible runs), AdamW with linear warm-up and decay, random [UNK]
//! substitution so unseen characters have a trained embedding.
//!
//! Kept in the agent crate rather than a separate `train` crate: it needs the model,
//! tokenizer, labels and corpus types and nothing else, and the LoRA trainer that a
//! `train` crate would hold depends on the diffusion models instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::error::{AgentError, Result};
use crate::intent::bert::{BertConfig, Dropout};
use crate::intent::checkpoint::{load_safetensors, save_safetensors};
use crate::intent::corpus::Example;
use crate::intent::crf_fit::{fit_crf, freeze};
use crate::intent::inference::{
    pad_batch, pad_ids, read_config, IntentModel, CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE,
};
use crate::intent::joint::{Batch, JointConfig, JointModel};
use crate::intent::segment::{token_word_tags, word_tags};
use crate::intent::vocab::Vocab;

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Share of all steps spent warming the learning rate up.
    pub warmup: f64,
    pub seed: u64,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate_size: usize,
    pub max_len: usize,
    pub dropout: f64,
    /// Characters seen fewer times are left out of the vocabulary.
    pub min_char_count: usize,
    /// Chance of replacing a character by [UNK] during training.
    pub unk_probability: f64,
    /// Word-boundary (BMES) embeddings from the segmentation as input features.
    pub word_boundaries: bool,
    /// A CRF over the tags.
    pub crf: bool,
    /// A Hugging Face BERT folder (config.json, vocab.txt, model.safetensors) to
    /// fine-tune instead of training an encoder from scratch; one of our model folders
    /// resumes its training (heads included).
    pub pretrained: Option<PathBuf>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 8,
            batch_size: 32,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            warmup: 0.06,
            seed: 20261201,
            hidden_size: 128,
            layers: 3,
            heads: 4,
            intermediate_size: 512,
            max_len: 96,
            dropout: 0.1,
            min_char_count: 1,
            unk_probability: 0.03,
            word_boundaries: true,
            crf: true,
            pretrained: None,
        }
    }
}

impl TrainOptions {
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(AgentError::TrainOption(m));
        // No epochs only refits the decoding of a model of ours (`pretrained`).
        if (self.epochs == 0 && self.pretrained.is_none()) || self.batch_size == 0 {
            return bad(format!(
                "epochs (unless resuming a model) and batch size must be positive, got {} and {}",
                self.epochs, self.batch_size
            ));
        }
        if self.learning_rate.is_nan() || self.learning_rate <= 0.0 {
            return bad(format!(
                "learning rate must be positive, got {}",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) || !(0.0..1.0).contains(&self.unk_probability) {
            return bad("dropout and unk probability must be in [0, 1)".into());
        }
        Ok(())
    }
}

/// Instructions per batch when fitting the CRF on frozen logits.
const CRF_BATCH: usize = 128;
const CRF_LEARNING_RATE: f64 = 0.05;

/// What one epoch did.
#[derive(Debug, Clone)]
pub struct EpochReport {
    pub epoch: usize,
    pub intent_loss: f32,
    pub tag_loss: f32,
    pub seconds: f64,
}

/// A model under training: its variables and the inference wrapper sharing them.
pub struct Trainer {
    pub model: IntentModel,
    varmap: VarMap,
    options: TrainOptions,
    rng: StdRng,
}

struct Prepared {
    ids: Vec<u32>,
    word_tags: Vec<u32>,
    tags: Vec<u32>,
    intent: u32,
}

impl Trainer {
    /// Builds the model: a fresh encoder with a character vocabulary from `examples`,
    /// or the encoder of `options.pretrained` with its own vocabulary.
    pub fn new(examples: &[Example], options: TrainOptions) -> Result<Self> {
        options.validate()?;
        if examples.is_empty() {
            return Err(AgentError::EmptyData);
        }
        let device = Device::Cpu;
        let mut rng = StdRng::seed_from_u64(options.seed);
        let (vocab, bert, pretrained) = match &options.pretrained {
            Some(dir) => {
                let bert: BertConfig = read_bert_config(&dir.join(CONFIG_FILE))?;
                let vocab = Vocab::load(&dir.join(VOCAB_FILE))?;
                let weights = dir.join(WEIGHTS_FILE);
                (
                    vocab,
                    bert,
                    Some(load_safetensors(&weights, &device).map(|t| (weights, t))?),
                )
            }
            None => {
                let vocab = Vocab::from_texts(
                    examples.iter().map(|e| e.text.as_str()),
                    options.min_char_count,
                );
                let bert = BertConfig {
                    vocab_size: vocab.len(),
                    hidden_size: options.hidden_size,
                    num_hidden_layers: options.layers,
                    num_attention_heads: options.heads,
                    intermediate_size: options.intermediate_size,
                    hidden_act: "gelu".into(),
                    hidden_dropout_prob: options.dropout,
                    attention_probs_dropout_prob: options.dropout,
                    max_position_embeddings: options.max_len,
                    type_vocab_size: 2,
                    layer_norm_eps: 1e-12,
                };
                (vocab, bert, None)
            }
        };
        let max_len = options.max_len.min(bert.max_position_embeddings);
        let mut config = JointConfig::new(bert, max_len);
        config.classifier_dropout = options.dropout;
        config.word_boundaries = options.word_boundaries;
        config.crf = options.crf;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let joint = JointModel::new(vb, &config)?;
        initialise(&varmap, &mut rng)?;
        if let Some((path, tensors)) = pretrained {
            load_encoder(&varmap, &tensors, &path)?;
        }
        Ok(Self {
            model: IntentModel::from_parts(joint, vocab, config, device),
            varmap,
            options,
            rng,
        })
    }

    fn prepare(&self, examples: &[Example]) -> Result<Vec<Prepared>> {
        let vocab = self.model.vocab();
        let max_len = self.model.config().max_len;
        examples
            .iter()
            .map(|example| {
                let char_tags = example.char_tags().map_err(|message| AgentError::BadLine {
                    path: PathBuf::from("<training data>"),
                    line: 0,
                    message: format!("{}: {message}", example.text),
                })?;
                let encoding = vocab.encode(&example.text, max_len);
                let mut tags = vec![0u32];
                tags.extend(
                    encoding
                        .char_indices
                        .iter()
                        .map(|&i| char_tags[i].index() as u32),
                );
                tags.push(0);
                let word_tags = token_word_tags(&word_tags(&example.text), &encoding);
                Ok(Prepared {
                    word_tags,
                    ids: encoding.ids,
                    tags,
                    intent: example.intent.index() as u32,
                })
            })
            .collect()
    }

    fn batch(&mut self, items: &[&Prepared]) -> Result<Batch> {
        self.batch_with(items, self.options.unk_probability)
    }

    /// A padded batch with characters replaced by [UNK] at `unk_probability`.
    fn batch_with(&mut self, items: &[&Prepared], unk_probability: f64) -> Result<Batch> {
        let vocab = self.model.vocab();
        let (unk, special) = (vocab.unk_id, [vocab.cls_id, vocab.sep_id]);
        let device = self.model.device().clone();
        let seq_len = items.iter().map(|p| p.ids.len()).max().unwrap_or(2);
        let b = items.len();
        let mut encodings = Vec::with_capacity(b);
        let mut tags = Vec::with_capacity(b * seq_len);
        let mut weights = Vec::with_capacity(b * seq_len);
        for item in items {
            let ids: Vec<u32> = item
                .ids
                .iter()
                .map(|&id| {
                    if !special.contains(&id) && self.rng.gen::<f64>() < unk_probability {
                        unk
                    } else {
                        id
                    }
                })
                .collect();
            let n = ids.len();
            encodings.push(crate::intent::vocab::Encoding {
                ids,
                char_indices: Vec::new(),
            });
            tags.extend_from_slice(&item.tags);
            tags.extend(std::iter::repeat_n(0u32, seq_len - n));
            weights.push(0f32);
            weights.extend(std::iter::repeat_n(1f32, n - 2));
            weights.extend(std::iter::repeat_n(0f32, seq_len - n + 1));
        }
        let (input_ids, attention_mask) = pad_batch(&encodings, vocab.pad_id, &device)?;
        let word_tags: Vec<Vec<u32>> = items.iter().map(|p| p.word_tags.clone()).collect();
        let word_tags = pad_ids(&word_tags, 0, &device)?;
        let intents: Vec<u32> = items.iter().map(|p| p.intent).collect();
        Ok(Batch {
            input_ids,
            attention_mask,
            word_tags,
            intents: Tensor::from_vec(intents, b, &device)?,
            tags: Tensor::from_vec(tags, (b, seq_len), &device)?,
            tag_weights: Tensor::from_vec(weights, (b, seq_len), &device)?,
        })
    }

    /// Trains for `options.epochs` over `examples`, calling `report` after each epoch.
    pub fn train(
        &mut self,
        examples: &[Example],
        report: &mut dyn FnMut(&EpochReport, &Trainer),
    ) -> Result<()> {
        let prepared = self.prepare(examples)?;
        let steps_per_epoch = prepared.len().div_ceil(self.options.batch_size);
        let total_steps = (steps_per_epoch * self.options.epochs).max(1);
        let warmup_steps = ((total_steps as f64 * self.options.warmup) as usize).max(1);
        let params = ParamsAdamW {
            lr: self.options.learning_rate,
            weight_decay: self.options.weight_decay,
            ..Default::default()
        };
        let mut optimizer = AdamW::new(sorted_vars(&self.varmap), params)?;
        let mut order: Vec<usize> = (0..prepared.len()).collect();
        let mut step = 0usize;
        for epoch in 1..=self.options.epochs {
            let started = Instant::now();
            order.shuffle(&mut self.rng);
            // Batches of similar length waste less on padding: sort within windows of
            // 32 batches, then shuffle the batches.
            let window = self.options.batch_size * 32;
            let mut batches: Vec<Vec<usize>> = Vec::with_capacity(steps_per_epoch);
            for group in order.chunks(window) {
                let mut group = group.to_vec();
                group.sort_by_key(|&i| prepared[i].ids.len());
                batches.extend(group.chunks(self.options.batch_size).map(<[usize]>::to_vec));
            }
            batches.shuffle(&mut self.rng);
            let (mut intent_sum, mut tag_sum) = (0f32, 0f32);
            for chunk in &batches {
                let items: Vec<&Prepared> = chunk.iter().map(|&i| &prepared[i]).collect();
                let batch = self.batch(&items)?;
                let scale = if step < warmup_steps {
                    (step + 1) as f64 / warmup_steps as f64
                } else {
                    (total_steps - step) as f64 / (total_steps - warmup_steps).max(1) as f64
                };
                optimizer.set_learning_rate(self.options.learning_rate * scale.max(0.0));
                let mut dropout = Dropout::seeded(StdRng::seed_from_u64(self.rng.gen()));
                let losses = self.model.joint().loss(&batch, &mut dropout)?;
                optimizer.backward_step(&losses.total)?;
                intent_sum += losses.intent;
                tag_sum += losses.tags;
                step += 1;
            }
            let n = steps_per_epoch as f32;
            let epoch_report = EpochReport {
                epoch,
                intent_loss: intent_sum / n,
                tag_loss: tag_sum / n,
                seconds: started.elapsed().as_secs_f64(),
            };
            report(&epoch_report, self);
        }
        Ok(())
    }

    /// The CRF's second stage (`crf_fit.rs`): fits its scores on the trained tagger's
    /// frozen logits over `examples`; returns the mean NLL per character of each pass
    /// (empty for a model without a CRF).
    pub fn fit_transitions(&mut self, examples: &[Example], epochs: usize) -> Result<Vec<f32>> {
        if !self.model.joint().has_crf() || epochs == 0 {
            return Ok(Vec::new());
        }
        let prepared = self.prepare(examples)?;
        let mut order: Vec<usize> = (0..prepared.len()).collect();
        order.sort_by_key(|&i| prepared[i].ids.len());
        let mut frozen = Vec::new();
        for chunk in order.chunks(CRF_BATCH) {
            let items: Vec<&Prepared> = chunk.iter().map(|&i| &prepared[i]).collect();
            let batch = self.batch_with(&items, 0.0)?;
            frozen.push(freeze(self.model.joint(), &batch)?);
        }
        frozen.shuffle(&mut self.rng);
        let vars: Vec<candle_core::Var> = {
            let data = lock(&self.varmap);
            let mut names: Vec<&String> = data.keys().filter(|n| n.starts_with("crf.")).collect();
            names.sort();
            names.into_iter().map(|name| data[name].clone()).collect()
        };
        fit_crf(self.model.joint(), vars, &frozen, epochs, CRF_LEARNING_RATE)
    }

    /// One optimisation step on `examples` as a single batch; returns the loss before it.
    pub fn step(&mut self, examples: &[Example], optimizer: &mut AdamW) -> Result<f32> {
        let prepared = self.prepare(examples)?;
        let items: Vec<&Prepared> = prepared.iter().collect();
        let batch = self.batch(&items)?;
        let losses = self.model.joint().loss(&batch, &mut Dropout::disabled())?;
        optimizer.backward_step(&losses.total)?;
        Ok(losses.intent + losses.tags)
    }

    pub fn optimizer(&self, learning_rate: f64) -> Result<AdamW> {
        Ok(AdamW::new_lr(sorted_vars(&self.varmap), learning_rate)?)
    }

    /// Writes config.json, vocab.txt and model.safetensors (f16 when `half`).
    pub fn save(&self, dir: &Path, half: bool) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| AgentError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let config_path = dir.join(CONFIG_FILE);
        let json = serde_json::to_string_pretty(self.model.config()).map_err(|source| {
            AgentError::Json {
                path: config_path.clone(),
                source,
            }
        })?;
        std::fs::write(&config_path, json + "\n").map_err(|source| AgentError::Write {
            path: config_path,
            source,
        })?;
        self.model.vocab().save(&dir.join(VOCAB_FILE))?;
        let tensors: HashMap<String, Tensor> = lock(&self.varmap)
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
            .collect();
        save_safetensors(&tensors, &dir.join(WEIGHTS_FILE), half)
    }
}

fn read_bert_config(path: &Path) -> Result<BertConfig> {
    let text = std::fs::read_to_string(path).map_err(|source| AgentError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // A model folder of ours nests the encoder config; a Hugging Face one is flat.
    if let Ok(config) = read_config(path) {
        return Ok(config.bert);
    }
    serde_json::from_str(&text).map_err(|source| AgentError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn lock(varmap: &VarMap) -> std::sync::MutexGuard<'_, HashMap<String, candle_core::Var>> {
    varmap
        .data()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn sorted_vars(varmap: &VarMap) -> Vec<candle_core::Var> {
    let data = lock(varmap);
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    names.into_iter().map(|name| data[name].clone()).collect()
}

/// transformers' `BertPreTrainedModel._init_weights`: N(0, 0.02) weights and
/// embeddings, zero biases, unit LayerNorm scales; drawn in name order from `rng`.
fn initialise(varmap: &VarMap, rng: &mut StdRng) -> Result<()> {
    let data = lock(varmap);
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let normal = Normal::new(0f32, 0.02).map_err(AgentError::Initialisation)?;
    for name in names {
        let var = &data[name];
        let shape = var.shape().clone();
        let value = if name.ends_with("LayerNorm.weight") {
            Tensor::ones(&shape, DType::F32, &Device::Cpu)?
        } else if name.ends_with(".bias") {
            Tensor::zeros(&shape, DType::F32, &Device::Cpu)?
        } else {
            let values: Vec<f32> = (0..shape.elem_count())
                .map(|_| normal.sample(rng))
                .collect();
            Tensor::from_vec(values, &shape, &Device::Cpu)?
        };
        var.set(&value)?;
    }
    Ok(())
}

/// Copies every `bert.*` tensor of a checkpoint into the encoder's variables, and the
/// heads too when the checkpoint is one of our models (training resumes).
fn load_encoder(varmap: &VarMap, tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let data = lock(varmap);
    for (name, var) in data.iter() {
        let Some(tensor) = tensors.get(name) else {
            if name.starts_with("bert.") {
                return Err(AgentError::MissingTensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                });
            }
            continue;
        };
        if tensor.dims() != var.dims() {
            return Err(AgentError::TensorShape {
                path: path.to_path_buf(),
                name: name.clone(),
                expected: var.dims().to_vec(),
                actual: tensor.dims().to_vec(),
            });
        }
        var.set(tensor)?;
    }
    Ok(())
}
