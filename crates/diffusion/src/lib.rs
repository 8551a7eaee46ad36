//! huatu-diffusion: Stable Diffusion XL on candle, faithful to Hugging Face diffusers.
//!
//! Layout mirrors diffusers: `models/` (one file per architecture or part),
//! `schedulers/` (one file per algorithm), `pipelines/` (one file per task),
//! `loading/` (diffusers folders and single-file checkpoints) and `tokenizer/`
//! (CLIP byte-level BPE, as transformers' `CLIPTokenizer`).

pub mod device;
pub mod error;
pub mod loading;
pub mod lora;
pub mod models;
pub mod pipelines;
pub mod schedulers;
pub mod tokenizer;

pub use error::{Error, Result};
