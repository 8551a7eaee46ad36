//! The joint intent + slot model: a BERT encoder, an intent classifier on the pooled
//! first token (as transformers' `BertForSequenceClassification`) and a BIO tagger on
//! every character (as `BertForTokenClassification`), trained with the sum of both
//! cross-entropies.

use candle_core::{Tensor, D};
use candle_nn::{Linear, Module, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::intent::bert::{BertConfig, BertModel, Dropout};
use crate::intent::labels::{Intent, Tag};

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
}

fn default_head_dropout() -> f64 {
    0.1
}

impl JointConfig {
    pub fn new(bert: BertConfig, max_len: usize) -> Self {
        Self {
            bert,
            max_len,
            intents: Intent::ALL.iter().map(|i| i.to_string()).collect(),
            tags: Tag::all().iter().map(|t| t.to_string()).collect(),
            classifier_dropout: default_head_dropout(),
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
        Ok(())
    }
}

pub struct JointModel {
    bert: BertModel,
    intent_classifier: Linear,
    slot_classifier: Linear,
    classifier_dropout: f64,
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
        })
    }

    pub fn bert(&self) -> &BertModel {
        &self.bert
    }

    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        dropout: &mut Dropout,
    ) -> Result<JointOutput> {
        let encoded = self.bert.forward(input_ids, attention_mask, dropout)?;
        let pooled = dropout.apply(&encoded.pooler_output, self.classifier_dropout)?;
        let states = dropout.apply(&encoded.last_hidden_state, self.classifier_dropout)?;
        Ok(JointOutput {
            intent_logits: self.intent_classifier.forward(&pooled)?,
            tag_logits: self.slot_classifier.forward(&states)?,
        })
    }

    pub fn loss(&self, batch: &Batch, dropout: &mut Dropout) -> Result<Losses> {
        let output = self.forward(&batch.input_ids, &batch.attention_mask, dropout)?;
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
