//! LoRA adapters: one base model, a plug-in per scenario. `file` reads kohya and
//! diffusers/peft files, `names` finds the layer each module changes, `apply` merges a set
//! of adapters (each with its own scale) into the loaded model and takes them out again,
//! and `info` summarises a file's metadata (training tags, trigger word).

pub mod apply;
pub mod file;
pub mod info;
mod names;

pub use apply::{ActiveLoras, LoraReport, UnmatchedModules};
pub use file::{LoraFile, LoraFormat, LoraModule};
pub use info::LoraInfo;
