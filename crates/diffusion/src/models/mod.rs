//! Model architectures, one file per part, named and keyed as in diffusers.

pub mod attention;
pub mod attention_control;
pub mod autoencoder_kl;
pub mod clip_text;
pub mod controlnet;
pub mod embeddings;
pub mod layers;
pub mod linear;
pub mod resnet;
pub mod transformer_2d;
pub mod unet_2d_condition;
pub mod unet_blocks;
pub mod vae_blocks;
pub mod vae_tiling;
