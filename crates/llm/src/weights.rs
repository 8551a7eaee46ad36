//! Loading a model: a transformers folder (config.json, one or several *.safetensors, any
//! float dtype, computed in f32) or a GGUF file in llama.cpp's layout (quantized matrices
//! stay quantized; norms, biases and the embedding are read as f32), with the tokenizer from
//! tokenizer.json (in the folder, or beside the GGUF file).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Tensor};
use tokenizers::Tokenizer;

use crate::config::QwenConfig;
use crate::error::{LlmError, Result};
use crate::model::{Attention, DecoderLayer, Linear, Mlp, QwenModel};

/// A model ready to answer: the decoder and its tokenizer.
pub struct LocalLlm {
    pub model: QwenModel,
    pub tokenizer: Tokenizer,
    /// What was loaded (for messages and cache keys).
    pub path: PathBuf,
}

impl std::fmt::Debug for LocalLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLlm")
            .field("path", &self.path)
            .field("config", &self.model.config)
            .finish_non_exhaustive()
    }
}

impl LocalLlm {
    /// Loads a transformers folder or a `.gguf` file.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let (model, tokenizer_path) = if path.is_dir() {
            (load_folder(path, device)?, path.join("tokenizer.json"))
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            let beside = path
                .parent()
                .unwrap_or(Path::new("."))
                .join("tokenizer.json");
            (load_gguf(path, device)?, beside)
        } else if path.exists() {
            return Err(LlmError::BadModel {
                path: path.to_path_buf(),
                message: "expected a transformers model folder or a .gguf file".into(),
            });
        } else {
            return Err(LlmError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        };
        let tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|error| LlmError::Tokenizer {
                path: tokenizer_path.clone(),
                message: error.to_string(),
            })?;
        Ok(Self {
            model,
            tokenizer,
            path: path.to_path_buf(),
        })
    }
}

/// Where tensors come from, by their transformers names.
enum Source {
    Safetensors {
        path: PathBuf,
        tensors: HashMap<String, Tensor>,
    },
    Gguf {
        path: PathBuf,
        content: gguf_file::Content,
        file: File,
        device: Device,
    },
}

impl Source {
    fn path(&self) -> &Path {
        match self {
            Source::Safetensors { path, .. } | Source::Gguf { path, .. } => path,
        }
    }

    fn has(&self, name: &str) -> bool {
        match self {
            Source::Safetensors { tensors, .. } => tensors.contains_key(name),
            Source::Gguf { content, .. } => content.tensor_infos.contains_key(&gguf_name(name)),
        }
    }

    fn missing(&self, name: &str) -> LlmError {
        LlmError::MissingWeight {
            path: self.path().to_path_buf(),
            name: match self {
                Source::Safetensors { .. } => name.to_string(),
                Source::Gguf { .. } => gguf_name(name),
            },
        }
    }

    fn check_shape(&self, name: &str, actual: &[usize], expected: &[usize]) -> Result<()> {
        if actual != expected {
            return Err(LlmError::WeightShape {
                path: self.path().to_path_buf(),
                name: name.to_string(),
                expected: expected.to_vec(),
                actual: actual.to_vec(),
            });
        }
        Ok(())
    }

    /// A vector or matrix as f32.
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let tensor = match self {
            // Taken out of the map: the file's copy (bf16, say) is freed once converted.
            Source::Safetensors { tensors, .. } => match tensors.remove(name) {
                Some(tensor) => tensor.to_dtype(DType::F32)?,
                None => return Err(self.missing(name)),
            },
            Source::Gguf {
                content,
                file,
                device,
                ..
            } => {
                let key = gguf_name(name);
                if !content.tensor_infos.contains_key(&key) {
                    return Err(self.missing(name));
                }
                content.tensor(file, &key, device)?.dequantize(device)?
            }
        };
        self.check_shape(name, tensor.dims(), shape)?;
        Ok(tensor)
    }

    /// A [out, in] matrix for `x Wᵀ`, quantized when the file holds it so.
    fn matrix(&mut self, name: &str, shape: [usize; 2]) -> Result<QMatMul> {
        match self {
            Source::Safetensors { .. } => Ok(QMatMul::Tensor(self.tensor(name, &shape)?)),
            Source::Gguf {
                content,
                file,
                device,
                ..
            } => {
                let key = gguf_name(name);
                if !content.tensor_infos.contains_key(&key) {
                    return Err(self.missing(name));
                }
                let qtensor = content.tensor(file, &key, device)?;
                self.check_shape(name, qtensor.shape().dims(), &shape)?;
                Ok(QMatMul::from_qtensor(qtensor)?)
            }
        }
    }

    fn linear(&mut self, name: &str, out: usize, input: usize, bias: bool) -> Result<Linear> {
        let weight = self.matrix(&format!("{name}.weight"), [out, input])?;
        let bias = if bias {
            Some(self.tensor(&format!("{name}.bias"), &[out])?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

/// llama.cpp's tensor names for transformers' Qwen names.
fn gguf_name(name: &str) -> String {
    let fixed = match name {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return fixed.to_string();
    }
    let Some(rest) = name.strip_prefix("model.layers.") else {
        return name.to_string();
    };
    let Some((layer, part)) = rest.split_once('.') else {
        return name.to_string();
    };
    let parts = [
        ("self_attn.q_proj.", "attn_q."),
        ("self_attn.k_proj.", "attn_k."),
        ("self_attn.v_proj.", "attn_v."),
        ("self_attn.o_proj.", "attn_output."),
        ("self_attn.q_norm.", "attn_q_norm."),
        ("self_attn.k_norm.", "attn_k_norm."),
        ("mlp.gate_proj.", "ffn_gate."),
        ("mlp.up_proj.", "ffn_up."),
        ("mlp.down_proj.", "ffn_down."),
        ("input_layernorm.", "attn_norm."),
        ("post_attention_layernorm.", "ffn_norm."),
    ];
    for (hf, gg) in parts {
        if let Some(kind) = part.strip_prefix(hf) {
            return format!("blk.{layer}.{gg}{kind}");
        }
    }
    name.to_string()
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> LlmError + '_ {
    move |source| LlmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn load_folder(dir: &Path, device: &Device) -> Result<QwenModel> {
    let config = QwenConfig::from_json_file(&dir.join("config.json"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_error(dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LlmError::BadModel {
            path: dir.to_path_buf(),
            message: "has no .safetensors weights".into(),
        });
    }
    let mut tensors = HashMap::new();
    for file in &files {
        tensors.extend(candle_core::safetensors::load(file, device)?);
    }
    let mut source = Source::Safetensors {
        path: dir.to_path_buf(),
        tensors,
    };
    build(config, &mut source, device)
}

fn load_gguf(path: &Path, device: &Device) -> Result<QwenModel> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let content = gguf_file::Content::read(&mut file).map_err(|error| LlmError::BadModel {
        path: path.to_path_buf(),
        message: format!("not a readable GGUF file: {error}"),
    })?;
    let mut config = QwenConfig::from_gguf(path, &content.metadata)?;
    let embedding = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| LlmError::MissingWeight {
            path: path.to_path_buf(),
            name: "token_embd.weight".into(),
        })?;
    config.vocab_size = embedding.shape.dims().first().copied().unwrap_or(0);
    config.tie_word_embeddings = !content.tensor_infos.contains_key("output.weight");
    config.attention_bias = content.tensor_infos.contains_key("blk.0.attn_q.bias");
    config.check().map_err(|message| LlmError::BadModel {
        path: path.to_path_buf(),
        message,
    })?;
    let mut source = Source::Gguf {
        path: path.to_path_buf(),
        content,
        file,
        device: device.clone(),
    };
    build(config, &mut source, device)
}

fn build(config: QwenConfig, source: &mut Source, device: &Device) -> Result<QwenModel> {
    let hidden = config.hidden_size;
    let head_dim = config.head_dim;
    let q_out = config.num_attention_heads * head_dim;
    let kv_out = config.num_key_value_heads * head_dim;
    let embed_tokens = source.tensor("model.embed_tokens.weight", &[config.vocab_size, hidden])?;
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let prefix = format!("model.layers.{i}");
        let bias = config.attention_bias;
        let norm = |source: &mut Source, name: &str, size: usize| {
            source.tensor(&format!("{prefix}.{name}.weight"), &[size])
        };
        let qk_norm = config.family.has_qk_norm();
        let self_attn = Attention {
            q_proj: source.linear(&format!("{prefix}.self_attn.q_proj"), q_out, hidden, bias)?,
            k_proj: source.linear(&format!("{prefix}.self_attn.k_proj"), kv_out, hidden, bias)?,
            v_proj: source.linear(&format!("{prefix}.self_attn.v_proj"), kv_out, hidden, bias)?,
            o_proj: source.linear(&format!("{prefix}.self_attn.o_proj"), hidden, q_out, false)?,
            q_norm: if qk_norm {
                Some(norm(source, "self_attn.q_norm", head_dim)?)
            } else {
                None
            },
            k_norm: if qk_norm {
                Some(norm(source, "self_attn.k_norm", head_dim)?)
            } else {
                None
            },
        };
        let inter = config.intermediate_size;
        let mlp = Mlp {
            gate_proj: source.linear(&format!("{prefix}.mlp.gate_proj"), inter, hidden, false)?,
            up_proj: source.linear(&format!("{prefix}.mlp.up_proj"), inter, hidden, false)?,
            down_proj: source.linear(&format!("{prefix}.mlp.down_proj"), hidden, inter, false)?,
        };
        layers.push(DecoderLayer {
            input_layernorm: norm(source, "input_layernorm", hidden)?,
            self_attn,
            post_attention_layernorm: norm(source, "post_attention_layernorm", hidden)?,
            mlp,
        });
    }
    let norm = source.tensor("model.norm.weight", &[hidden])?;
    let lm_head = if !config.tie_word_embeddings || source.has("lm_head.weight") {
        source.matrix("lm_head.weight", [config.vocab_size, hidden])?
    } else {
        match source {
            // Tied: the embedding as the file holds it (quantized in a GGUF file).
            Source::Gguf { .. } => {
                source.matrix("model.embed_tokens.weight", [config.vocab_size, hidden])?
            }
            Source::Safetensors { .. } => QMatMul::Tensor(embed_tokens.clone()),
        }
    };
    QwenModel::new(config, embed_tokens, layers, norm, lm_head, device)
}
