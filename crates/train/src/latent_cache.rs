//! `--cache-latents`: the VAE posterior (mean and std × scaling factor) of every image of a
//! fixed image set (no random crop, no flip), kept on disk beside the data as
//! `.huatu-cache/latents.safetensors`, so a second run (or a resumed one) skips the VAE.
//! An entry is used only when the image file has the same length and modification time
//! and the cache was made with the same model and image settings; anything else is encoded
//! again and the file rewritten (temporary file, then rename).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use huatu_imaging::{FitReport, Size};

use crate::lora_save::write_safetensors_atomically;
use crate::{Error, Result};

const HEADER_KEY: &str = "huatu_latent_cache";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Stamp {
    length: u64,
    modified_nanos: u128,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    path: PathBuf,
    stamp: Stamp,
    /// SDXL micro-conditioning: original h, w, crop top, left, target h, w.
    micro_conditioning: [u32; 6],
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    settings: String,
    entries: Vec<Entry>,
}

/// One image's cached latents.
pub type Cached = (Tensor, Tensor, FitReport);

/// The cache of one data folder.
pub struct LatentCache {
    path: PathBuf,
    settings: String,
    entries: HashMap<PathBuf, (Stamp, Cached)>,
    changed: bool,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    let modified = metadata
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(Stamp {
        length: metadata.len(),
        modified_nanos: modified.as_nanos(),
    })
}

fn report_from(micro: [u32; 6]) -> FitReport {
    let target = Size::new(micro[5], micro[4]);
    FitReport {
        original_size: Size::new(micro[1], micro[0]),
        resized_size: target,
        target_size: target,
        crop_top_left: (micro[2], micro[3]),
        pad_top_left: (0, 0),
        fill: None,
    }
}

impl LatentCache {
    /// The cache of `data`, with what an earlier run left if it was made with `settings`.
    pub fn open(data: &Path, settings: String) -> Self {
        let path = data.join(".huatu-cache").join("latents.safetensors");
        let entries = Self::read(&path, &settings).unwrap_or_default();
        Self {
            path,
            settings,
            entries,
            changed: false,
        }
    }

    fn read(path: &Path, settings: &str) -> Option<HashMap<PathBuf, (Stamp, Cached)>> {
        let bytes = std::fs::read(path).ok()?;
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
        let header: Header =
            serde_json::from_str(metadata.metadata().as_ref()?.get(HEADER_KEY)?).ok()?;
        if header.settings != settings {
            return None;
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).ok()?;
        let mut entries = HashMap::new();
        for (index, entry) in header.entries.into_iter().enumerate() {
            let mean = tensors.get(&format!("{index}.mean"))?.clone();
            let std = tensors.get(&format!("{index}.std"))?.clone();
            entries.insert(
                entry.path,
                (
                    entry.stamp,
                    (mean, std, report_from(entry.micro_conditioning)),
                ),
            );
        }
        Some(entries)
    }

    /// The cached latents of `image` when the file is unchanged.
    pub fn get(&self, image: &Path, device: &Device) -> Option<Cached> {
        let (stamp_then, (mean, std, report)) = self.entries.get(image)?;
        if stamp(image).as_ref() != Some(stamp_then) {
            return None;
        }
        Some((
            mean.to_device(device).ok()?,
            std.to_device(device).ok()?,
            *report,
        ))
    }

    pub fn insert(&mut self, image: &Path, cached: &Cached) -> Result<()> {
        let Some(stamp) = stamp(image) else {
            return Ok(());
        };
        let (mean, std, report) = cached;
        let on_cpu = (
            mean.to_device(&Device::Cpu)?,
            std.to_device(&Device::Cpu)?,
            *report,
        );
        self.entries.insert(image.to_path_buf(), (stamp, on_cpu));
        self.changed = true;
        Ok(())
    }

    /// Writes the cache when anything was added.
    pub fn save(&self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        let mut tensors = Vec::with_capacity(2 * self.entries.len());
        let mut entries = Vec::with_capacity(self.entries.len());
        for (index, (path, (stamp, (mean, std, report)))) in self.entries.iter().enumerate() {
            tensors.push((format!("{index}.mean"), mean.clone()));
            tensors.push((format!("{index}.std"), std.clone()));
            entries.push(Entry {
                path: path.clone(),
                stamp: stamp.clone(),
                micro_conditioning: report.sdxl_micro_conditioning(),
            });
        }
        let header = Header {
            settings: self.settings.clone(),
            entries,
        };
        let json =
            serde_json::to_string(&header).map_err(|error| Error::Setting(error.to_string()))?;
        write_safetensors_atomically(
            tensors,
            HashMap::from([(HEADER_KEY.to_string(), json)]),
            &self.path,
        )
    }
}
