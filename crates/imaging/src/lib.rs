//! `huatu-imaging`: the pixel-level half of huatu (DESIGN.md parts 2 and 4). It knows
//! nothing of models, the agent or the CLI.
//!
//! - [`fit`]: preprocessing to a target size keeping the aspect ratio (pad with the mean
//!   colour, center or seeded random crop) and [`buckets`], SDXL's aspect-ratio buckets;
//!   the report carries SDXL's micro-conditioning values.
//! - [`enhance`]: the image quality optimization cluster: classical steps, the
//!   Real-ESRGAN upscale step, presets and per-scenario defaults.
//! - [`resize`]: Lanczos3 resampling through `fast_image_resize`.
//! - [`sr`]: Real-ESRGAN super-resolution (RRDBNet, SRVGGNetCompact) on candle, tiled.
//! - [`io`]: reading and writing files with errors that name them; PNGs with text chunks.
//! - [`crop`]: the centered crop to multiples of 8 (SDXL's VAE factor).
//! - [`edit`]: region-edit inputs: region → mask, Canny edges, the control-image canvas.

pub mod buckets;
pub mod crop;
pub mod edit;
pub mod enhance;
pub mod error;
pub mod fit;
pub mod io;
mod names;
pub mod resize;
pub mod size;
pub mod sr;

pub use crop::center_crop_to_multiple;
pub use enhance::preset::{enhancer_steps, enhancer_upscales, Preset, Scenario};
pub use enhance::{enhance, format_steps, Step, StepKind};
pub use error::{ImagingError, Result};
pub use fit::{fit, keyed_seed, FitMode, FitOptions, FitReport, Fitted, TargetSize};
/// The one pixel-buffer type of huatu: every crate passes `image`'s 8-bit buffers.
pub use image::{GrayImage, RgbImage};
pub use resize::ResizeFilter;
pub use size::{Size, MAX_SIDE};
pub use sr::{TileOptions, Upscaler};
