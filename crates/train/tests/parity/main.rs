//! The train crate's parity tests, one test binary (link time on two cores): LoRA and
//! InstructPix2Pix training against diffusers' training scripts on the tiny SDXL.

mod common;
mod train_ip2p_parity;
mod train_lora_parity;
