//! Model architectures, one file per part, named and keyed as in diffusers.

pub mod attention;
pub mod embeddings;
pub mod transformer_2d;
pub mod unet_2d_condition;
pub mod unet_blocks;
