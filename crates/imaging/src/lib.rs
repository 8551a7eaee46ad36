//! `huatu-imaging`: the pixel-level half of huatu (DESIGN.md parts 2 and 4). It knows
//! nothing of models, the agent or the CLI.
//!
//! - [`fit`]: preprocessing to a target size keeping the aspect ratio (pad with the mean
//!   colour, center or seeded random crop) and [`buckets`], SDXL's aspect-ratio buckets;
//!   the report carries SDXL's micro-conditioning values.
//! - [`resize`]: Lanczos3 resampling through `fast_image_resize`.
//! - [`sr`]: Real-ESRGAN super-resolution (RRDBNet, SRVGGNetCompact) on candle, tiled.
//! - [`io`]: reading and writing files with errors that name them.

pub mod buckets;
pub mod error;
pub mod fit;
pub mod io;
pub mod resize;
pub mod sr;

pub use error::{ImagingError, Result};
pub use fit::{fit, FitMode, FitOptions, FitReport, Fitted, Size, TargetSize};
pub use resize::ResizeFilter;
pub use sr::{TileOptions, Upscaler};
