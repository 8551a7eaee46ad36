//! Reading encoder weights from Hugging Face BERT checkpoints and our own model files.
//!
//! Hugging Face files come in several spellings: `BertModel` saves names without a
//! prefix, `BertFor*` heads under `bert.`, and old TensorFlow-converted checkpoints
//! (bert-base-chinese among them) call LayerNorm parameters `gamma`/`beta`. Everything
//! is brought to `bert.<transformers name>`; pre-training heads (`cls.*`) are dropped.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{AgentError, Result};

/// The canonical name of a checkpoint tensor, or `None` for tensors we do not use.
pub fn canonical_name(name: &str) -> Option<String> {
    if name.starts_with("cls.") || name.ends_with("position_ids") {
        return None;
    }
    let name = name
        .strip_suffix("LayerNorm.gamma")
        .map(|stem| format!("{stem}LayerNorm.weight"))
        .or_else(|| {
            name.strip_suffix("LayerNorm.beta")
                .map(|stem| format!("{stem}LayerNorm.bias"))
        })
        .unwrap_or_else(|| name.to_string());
    let encoder_part = ["embeddings.", "encoder.", "pooler."]
        .iter()
        .any(|prefix| name.starts_with(prefix));
    Some(if encoder_part {
        format!("bert.{name}")
    } else {
        name
    })
}

/// Loads a safetensors file as f32 tensors under canonical names.
pub fn load_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(AgentError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    canonical_f32(candle_core::safetensors::load(path, device)?)
}

/// Loads safetensors bytes (an embedded model) as f32 tensors under canonical names.
pub fn load_safetensors_bytes(bytes: &[u8], device: &Device) -> Result<HashMap<String, Tensor>> {
    canonical_f32(candle_core::safetensors::load_buffer(bytes, device)?)
}

fn canonical_f32(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, tensor) in tensors {
        if let Some(canonical) = canonical_name(&name) {
            out.insert(canonical, tensor.to_dtype(DType::F32)?);
        }
    }
    Ok(out)
}

/// Writes tensors as safetensors, in f16 when `half` (our committed weights), else f32.
pub fn save_safetensors(tensors: &HashMap<String, Tensor>, path: &Path, half: bool) -> Result<()> {
    let dtype = if half { DType::F16 } else { DType::F32 };
    let converted = tensors
        .iter()
        .map(|(name, tensor)| Ok((name.clone(), tensor.to_dtype(dtype)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    candle_core::safetensors::save(&converted, path).map_err(|error| match error {
        candle_core::Error::Io(source) => AgentError::Write {
            path: path.to_path_buf(),
            source,
        },
        other => AgentError::Candle(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_spellings_become_canonical() {
        assert_eq!(
            canonical_name("embeddings.LayerNorm.gamma").as_deref(),
            Some("bert.embeddings.LayerNorm.weight")
        );
        assert_eq!(
            canonical_name("bert.encoder.layer.0.output.LayerNorm.beta").as_deref(),
            Some("bert.encoder.layer.0.output.LayerNorm.bias")
        );
        assert_eq!(
            canonical_name("encoder.layer.1.attention.self.query.weight").as_deref(),
            Some("bert.encoder.layer.1.attention.self.query.weight")
        );
        assert_eq!(canonical_name("cls.predictions.bias"), None);
        assert_eq!(canonical_name("bert.embeddings.position_ids"), None);
        assert_eq!(
            canonical_name("intent_classifier.weight").as_deref(),
            Some("intent_classifier.weight")
        );
    }
}
