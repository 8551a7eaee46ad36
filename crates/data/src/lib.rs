//! `huatu-data`: training-data preparation (DESIGN.md part 2).
//!
//! - [`bert`]: the BERT layers, encoder and WordPiece tokenizer BLIP and Chinese-CLIP share.
//! - [`blip`]: transformers' `BlipForConditionalGeneration` and `BlipProcessor` on candle:
//!   image captions (greedy or beam search, optional prompt) equal to `generate`'s.
//! - [`clip`]: transformers' `CLIPModel` and `CLIPProcessor` on candle: L2-normalised image
//!   and text embeddings equal to `get_image_features` / `get_text_features`; the same
//!   for `ChineseCLIPModel` folders (BERT text tower), so Chinese text searches directly.
//! - [`dataset`]: `dataset build`, the whole chain from example images to a training folder
//!   (search, deduplicate, fit, caption, prompt, write with a report).
//! - [`db`]: the image database (SQLite rows: id, path, labels, caption, size, embedding),
//!   exact cosine-similarity search over it and, for large ones, an 8-bit scan with exact
//!   re-ranking.
//! - [`instruct_pix2pix`]: InstructPix2Pix training data — Prompt-to-Prompt pairs per caption
//!   and edit, InstructPix2Pix's CLIP filter, the 5-tuple dataset folder (resumable).
//! - [`pil_resample`]: Pillow's resampling and alpha compositing, integer for integer, as
//!   transformers' image processors run them.

pub mod bert;
pub mod blip;
pub mod clip;
pub mod dataset;
pub mod db;
pub mod error;
pub mod instruct_pix2pix;
pub mod pil_resample;

pub use blip::{BlipForConditionalGeneration, Caption, CaptionOptions};
pub use clip::{ClipConfig, ClipModel};
pub use db::{AddOptions, AddReport, ImageDatabase, Query, SearchHit};
pub use error::{DataError, Result};
