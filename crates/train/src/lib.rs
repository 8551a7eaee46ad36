//! huatu-train: LoRA training for SDXL on huatu-diffusion's models, faithful to diffusers'
//! `train_text_to_image_lora_sdxl.py` (see `../shared/TRAINING.md`): the dataset
//! (`dataset`), the trainable adapters (`lora_params`) and their files (`lora_save`), the
//! forward noising (`noising`), torch's AdamW and clipping (`optimizer`), gradient checkpointing (`checkpointing`), saved run states (`checkpoint`), learning-rate
//! schedules (`lr_schedule`), the text conditioning (`text_conditioning`), the settings every
//! run has (`training_settings`) and a LoRA run's (`lora_request`), what a run reports (`observer`) and the loop (`trainer`); InstructPix2Pix fine-tuning (`instruct_pix2pix`, diffusers'
//! `train_instruct_pix2pix_sdxl.py`).

pub mod adapters;
pub mod checkpoint;
pub mod checkpointing;
pub mod dataset;
pub mod error;
pub mod instruct_pix2pix;
pub mod latent_cache;
pub mod lora_params;
pub mod lora_request;
pub mod lora_save;
pub mod lr_schedule;
pub mod noising;
pub mod observer;
pub mod optimizer;
pub mod text_conditioning;
pub mod trainer;
mod training_images;
mod training_loop;
pub mod training_settings;

pub use error::{Error, Result};
