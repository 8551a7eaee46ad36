//! The joint intent + slot model: a BERT encoder, an intent classifier on the pooled
//! first token (as transformers' `BertForSequenceClassification`) and a BIO tagger on
//! every character (as `BertForTokenClassification`), trained with the sum of both
//! cross-entropies. Optionally (both on in the committed model) word-boundary (BMES)
//! embeddings from the segmentation are added to the character embeddings, and a CRF
//! over the tags scores tag sequences; it is fitted after the encoder on its frozen
//! logits (`crf_fit.rs`), which keeps training within its time on two CPU cores.

use candle_core::{Tensor, D};
use candle_nn::{Embedding, Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::intent::bert::{BertConfig, BertModel, Dropout};
use crate::intent::crf::{Crf, TransitionScores};
use crate::intent::labels::{Intent, Tag};
use crate::intent::segment::WordTag;

/// `config.json` of a trained intent model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointConfig {
    pub bert: BertConfig,
    /// Longest input in tokens, [CLS] and [SEP] included.
    pub max_len: usize,
    /// Intent labels in classifier order (checked against `Intent::ALL`).
    pub intents: Vec<String>,
    /// Tag labels in tagger order (checked against `Tag::all()`).
    pub tags: Vec<String>,
    /// Dropout before both heads.
    #[serde(default = "default_head_dropout")]
    pub classifier_dropout: f64,
    /// Word-boundary (BMES) embeddings added to the character embeddings.
    #[serde(default)]
    pub word_boundaries: bool,
    /// A CRF over the tags (transition scores trained with the model).
    #[serde(default)]
    pub crf: bool,
    /// Decoding: cost of a slot span starting or ending inside a dictionary word.
    #[serde(default)]
    pub boundary_penalty: f64,
    /// Intent logits are divided by this before the softmax (temperature scaling, fitted
    /// on the dev sets after training so confidences are calibrated).
    #[serde(default = "default_temperature")]
    pub intent_temperature: f64,
}

fn default_head_dropout() -> f64 {
    0.1
}

fn default_temperature() -> f64 {
    1.0
}

impl JointConfig {
    pub fn new(bert: BertConfig, max_len: usize) -> Self {
        Self {
            bert,
            max_len,
            intents: Intent::ALL.iter().map(|i| i.to_string()).collect(),
            tags: Tag::all().iter().map(|t| t.to_string()).collect(),
            classifier_dropout: default_head_dropout(),
            word_boundaries: false,
            crf: false,
            boundary_penalty: 0.0,
            intent_temperature: default_temperature(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.bert.validate()?;
        let intents: Vec<String> = Intent::ALL.iter().map(|i| i.to_string()).collect();
        let tags: Vec<String> = Tag::all().iter().map(|t| t.to_string()).collect();
        if self.intents != intents {
            return Err(AgentError::Config(format!(
                "intents must be {intents:?}, got {:?}",
                self.intents
            )));
        }
        if self.tags != tags {
            return Err(AgentError::Config(format!(
                "tags must be {tags:?}, got {:?}",
                self.tags
            )));
        }
        if self.max_len < 3 || self.max_len > self.bert.max_position_embeddings {
            return Err(AgentError::Config(format!(
                "max_len must be between 3 and max_position_embeddings ({}), got {}",
                self.bert.max_position_embeddings, self.max_len
            )));
        }
        let temperature_ok = self.intent_temperature.is_finite() && self.intent_temperature > 0.0;
        let penalty_ok = self.boundary_penalty.is_finite() && self.boundary_penalty >= 0.0;
        if !temperature_ok || !penalty_ok {
            return Err(AgentError::Config(format!(
                "intent_temperature must be positive and boundary_penalty not negative, got {} and {}",
                self.intent_temperature, self.boundary_penalty
            )));
        }
        Ok(())
    }
}

pub struct JointModel {
    bert: BertModel,
    intent_classifier: Linear,
    slot_classifier: Linear,
    classifier_dropout: f64,
    word_boundary_embeddings: Option<Embedding>,
    crf: Option<Crf>,
}

/// Logits of both heads.
pub struct JointOutput {
    /// [b, intents]
    pub intent_logits: Tensor,
    /// [b, s, tags]
    pub tag_logits: Tensor,
}

/// One training batch, already padded.
pub struct Batch {
    /// [b, s] u32
    pub input_ids: Tensor,
    /// [b, s] f32, 1 for real tokens
    pub attention_mask: Tensor,
    /// [b, s] u32: `WordTag` indices, 0 on special tokens and padding
    pub word_tags: Tensor,
    /// [b] u32
    pub intents: Tensor,
    /// [b, s] u32 (0 where `tag_weights` is 0)
    pub tags: Tensor,
    /// [b, s] f32: 1 on characters, 0 on [CLS], [SEP] and padding
    pub tag_weights: Tensor,
}

/// The two parts of the training loss.
pub struct Losses {
    pub total: Tensor,
    pub intent: f32,
    pub tags: f32,
}

impl JointModel {
    pub fn new(vb: VarBuilder, config: &JointConfig) -> Result<Self> {
        config.validate()?;
        let hidden = config.bert.hidden_size;
        Ok(Self {
            bert: BertModel::new(vb.pp("bert"), &config.bert)?,
            intent_classifier: candle_nn::linear(
                hidden,
                Intent::ALL.len(),
                vb.pp("intent_classifier"),
            )?,
            slot_classifier: candle_nn::linear(hidden, Tag::COUNT, vb.pp("slot_classifier"))?,
            classifier_dropout: config.classifier_dropout,
            word_boundary_embeddings: if config.word_boundaries {
                Some(candle_nn::embedding(
                    WordTag::TABLE_SIZE,
                    hidden,
                    vb.pp("word_boundary_embeddings"),
                )?)
            } else {
                None
            },
            crf: if config.crf {
                Some(Crf::new(vb.pp("crf"), Tag::COUNT)?)
            } else {
                None
            },
        })
    }

    /// The CRF's scores, or no preference between tags for a model without one.
    pub fn transition_scores(&self) -> Result<TransitionScores> {
        match &self.crf {
            Some(crf) => crf.scores(),
            None => Ok(TransitionScores::uniform(Tag::COUNT)),
        }
    }

    pub fn has_crf(&self) -> bool {
        self.crf.is_some()
    }

    pub fn crf(&self) -> Option<&Crf> {
        self.crf.as_ref()
    }

    pub fn bert(&self) -> &BertModel {
        &self.bert
    }

    /// `word_tags` ([b, s] u32) is used when the model has word-boundary embeddings.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        word_tags: &Tensor,
        attention_mask: &Tensor,
        dropout: &mut Dropout,
    ) -> Result<JointOutput> {
        let extra = match &self.word_boundary_embeddings {
            Some(table) => Some(table.forward(word_tags)?), // [b, s, h]
            None => None,
        };
        let encoded = self.bert.forward_with_extra_embeddings(
            input_ids,
            extra.as_ref(),
            attention_mask,
            dropout,
        )?;
        let pooled = dropout.apply(&encoded.pooler_output, self.classifier_dropout)?;
        let states = dropout.apply(&encoded.last_hidden_state, self.classifier_dropout)?;
        Ok(JointOutput {
            intent_logits: self.intent_classifier.forward(&pooled)?,
            tag_logits: self.slot_classifier.forward(&states)?,
        })
    }

    pub fn loss(&self, batch: &Batch, dropout: &mut Dropout) -> Result<Losses> {
        let output = self.forward(
            &batch.input_ids,
            &batch.word_tags,
            &batch.attention_mask,
            dropout,
        )?;
        let intent_loss = candle_nn::loss::cross_entropy(&output.intent_logits, &batch.intents)?;
        let (b, s, t) = output.tag_logits.dims3()?;
        let log_probs =
            candle_nn::ops::log_softmax(&output.tag_logits.reshape((b * s, t))?, D::Minus1)?;
        let picked = log_probs
            .gather(&batch.tags.reshape((b * s, 1))?, 1)?
            .squeeze(1)?; // [b*s]
        let weights = batch.tag_weights.reshape(b * s)?;
        let count = weights.sum_all()?.to_scalar::<f32>()?.max(1.0);
        let tag_loss = ((picked * &weights)?.sum_all()?.neg()? / count as f64)?;
        let intent_value = intent_loss.to_scalar::<f32>()?;
        let tag_value = tag_loss.to_scalar::<f32>()?;
        Ok(Losses {
            total: (intent_loss + tag_loss)?,
            intent: intent_value,
            tags: tag_value,
        })
    }
}
