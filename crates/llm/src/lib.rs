//! A local instruction-tuned language model run in-process on candle: the Qwen2, Qwen2.5
//! and Qwen3 decoders of transformers (`Qwen2ForCausalLM`, `Qwen3ForCausalLM`), loaded from
//! a transformers folder (config.json, *.safetensors, tokenizer.json) or a GGUF file in
//! llama.cpp's layout (f32/f16 or quantized matrices, with tokenizer.json beside it), with a
//! KV cache, greedy or seeded sampling and Qwen's ChatML prompt. huatu's prompt writer uses
//! it to turn an instruction into an SDXL prompt without a network.

pub mod chat;
pub mod config;
pub mod error;
pub mod generate;
pub mod model;
pub mod weights;

pub use chat::{ChatMessage, Role};
pub use config::{Family, QwenConfig};
pub use error::{LlmError, Result};
pub use generate::{Completion, Sampling};
pub use model::{KvCache, QwenModel};
pub use weights::LocalLlm;
