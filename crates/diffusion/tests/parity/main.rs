//! The diffusion crate's parity and behaviour tests, one test binary (link time on two
//! cores): each module mirrors a diffusers or transformers reference on the tiny fixtures
//! of tests/fixtures (made by scripts/fixtures/).

mod common;

mod clip_text_parity;
mod edit_pair_parity;
mod edit_parity;
mod lora_parity;
mod lora_rollback;
mod pipeline_parity;
mod scheduler_parity;
mod tokenizer_parity;
mod vae_parity;
