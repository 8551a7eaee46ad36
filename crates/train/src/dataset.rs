//! Training images and captions as kohya's sd-scripts and diffusers' imagefolder lay them
//! out: a folder of images with a caption `.txt` beside each, or a `metadata.jsonl` with
//! `file_name` and `text`. `--trigger` goes first in every caption, `--repeats` counts
//! each image several times per epoch; images are fitted (aspect ratio kept) to one
//! square resolution as diffusers' script does, or to the nearest SDXL aspect-ratio
//! bucket scaled to that resolution's area, with the micro-conditioning SDXL was trained
//! with recorded per image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use huatu_imaging::{FitMode, FitOptions, FitReport, ResizeFilter, Size, TargetSize};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::{Error, Result};

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "webp", "bmp", "gif"];

/// One training image as found on disk.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    pub path: PathBuf,
    /// The caption as written (without trigger); `None` when the image has none.
    pub caption: Option<String>,
}

/// What scanning the folder found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub entries: Vec<ImageEntry>,
    /// Images that could not be decoded, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Images without a caption (they get the trigger word only).
    pub uncaptioned: Vec<PathBuf>,
}

/// Finds the images and captions in `folder`, in file-name order.
pub fn scan_folder(folder: &Path) -> Result<Scan> {
    let dataset_error = |message: String| Error::Dataset {
        path: folder.to_path_buf(),
        message,
    };
    if !folder.is_dir() {
        return Err(dataset_error("is not a folder".into()));
    }
    let metadata = folder.join("metadata.jsonl");
    let mut entries = if metadata.is_file() {
        read_metadata(folder, &metadata)?
    } else {
        read_sidecars(folder)?
    };
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    if entries.is_empty() {
        return Err(dataset_error(format!(
            "no images ({}) found; put images with a caption .txt beside each, or a metadata.jsonl",
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    let uncaptioned = entries
        .iter()
        .filter(|entry| entry.caption.is_none())
        .map(|entry| entry.path.clone())
        .collect();
    Ok(Scan {
        entries,
        unreadable: Vec::new(),
        uncaptioned,
    })
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            IMAGE_EXTENSIONS
                .iter()
                .any(|known| extension.eq_ignore_ascii_case(known))
        })
}

fn read_sidecars(folder: &Path) -> Result<Vec<ImageEntry>> {
    let read_error = |source| Error::Read {
        path: folder.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for item in std::fs::read_dir(folder).map_err(read_error)? {
        let path = item.map_err(read_error)?.path();
        if !path.is_file() || !is_image(&path) {
            continue;
        }
        let caption_path = path.with_extension("txt");
        let caption = if caption_path.is_file() {
            let text = std::fs::read_to_string(&caption_path).map_err(|source| Error::Read {
                path: caption_path.clone(),
                source,
            })?;
            Some(text.trim().to_string()).filter(|text| !text.is_empty())
        } else {
            None
        };
        entries.push(ImageEntry { path, caption });
    }
    Ok(entries)
}

fn read_metadata(folder: &Path, metadata: &Path) -> Result<Vec<ImageEntry>> {
    let text = std::fs::read_to_string(metadata).map_err(|source| Error::Read {
        path: metadata.to_path_buf(),
        source,
    })?;
    let mut entries = Vec::new();
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
    {
        let bad = |message: String| Error::BadFile {
            path: metadata.to_path_buf(),
            message: format!("line {}: {message}", number + 1),
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|error| bad(error.to_string()))?;
        let file_name = value
            .get("file_name")
            .and_then(|name| name.as_str())
            .ok_or_else(|| bad("needs a string `file_name`".into()))?;
        let caption = value
            .get("text")
            .and_then(|text| text.as_str())
            .map(str::trim)
            .filter(|text| !text.is_empty());
        entries.push(ImageEntry {
            path: folder.join(file_name),
            caption: caption.map(str::to_string),
        });
    }
    Ok(entries)
}

/// How captions are built.
#[derive(Debug, Clone, Default)]
pub struct CaptionOptions {
    /// Put first in every caption; the caption of an uncaptioned image.
    pub trigger: Option<String>,
    /// Probability of training on an empty caption (the trigger stays when set).
    pub dropout: f64,
    /// Shuffle the comma-separated tags after the trigger word each time.
    pub shuffle: bool,
}

impl CaptionOptions {
    /// The caption an image is trained with this time.
    pub fn caption(&self, written: Option<&str>, rng: Option<&mut rand::rngs::StdRng>) -> String {
        let mut tags: Vec<String> = written
            .map(|text| {
                text.split(',')
                    .map(|tag| tag.trim().to_string())
                    .filter(|tag| !tag.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(trigger) = &self.trigger {
            tags.retain(|tag| tag != trigger);
        }
        if let Some(rng) = rng {
            if self.dropout > 0.0 && rng.gen::<f64>() < self.dropout {
                tags.clear();
            } else if self.shuffle {
                tags.shuffle(rng);
            }
        }
        let mut parts = Vec::with_capacity(tags.len() + 1);
        parts.extend(self.trigger.clone());
        parts.extend(tags);
        parts.join(", ")
    }
}

/// How images become training pixels.
#[derive(Debug, Clone, Copy)]
pub struct ImageOptions {
    /// The side of the square training size, or the bucket area's side with `buckets`.
    pub resolution: u32,
    pub buckets: bool,
    /// Center or random crop (pad also works: the image's mean colour fills the rest).
    pub fit: FitMode,
    pub flip: bool,
}

/// The size an image of `original` size trains at: the square, or the SDXL bucket of the
/// nearest aspect ratio scaled to `resolution²` pixels (sides multiples of 64 at 1024,
/// kept multiples of 8 when scaled).
pub fn training_size(original: Size, options: &ImageOptions) -> Size {
    if !options.buckets {
        return Size::new(options.resolution, options.resolution);
    }
    let bucket = huatu_imaging::buckets::nearest_sdxl_bucket(original.width, original.height);
    let scale = f64::from(options.resolution) / 1024.0;
    let side = |value: u32| (((f64::from(value) * scale) / 8.0).round().max(1.0) as u32) * 8;
    Size::new(side(bucket.width), side(bucket.height))
}

/// One image ready for the VAE.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    pub pixels: RgbImage,
    pub report: FitReport,
    pub flipped: bool,
}

/// Decodes and fits one image; `rng` (random crop offset, flip) is `None` for a
/// deterministic run (center crop, no flip).
pub fn prepare_image(
    path: &Path,
    options: &ImageOptions,
    rng: Option<&mut rand::rngs::StdRng>,
) -> Result<PreparedImage> {
    let image = huatu_imaging::io::load_image(path)?;
    let target = training_size(Size::new(image.width(), image.height()), options);
    let (mode, seed, flip) = match rng {
        Some(rng) => (
            options.fit,
            rng.gen::<u64>(),
            options.flip && rng.gen::<bool>(),
        ),
        None => (
            if options.fit == FitMode::RandomCrop {
                FitMode::CenterCrop
            } else {
                options.fit
            },
            0,
            false,
        ),
    };
    let fitted = huatu_imaging::fit(
        &image,
        &FitOptions {
            target: TargetSize::Exact(target),
            mode,
            filter: ResizeFilter::Lanczos3,
            seed,
        },
    )?;
    let mut pixels = fitted.image;
    if flip {
        image::imageops::flip_horizontal_in_place(&mut pixels);
    }
    Ok(PreparedImage {
        pixels,
        report: fitted.report,
        flipped: flip,
    })
}

/// `[c, h, w]` values in [-1, 1] (`x / 127.5 − 1`), as the script's `Normalize([0.5], [0.5])`.
pub fn pixels_to_tensor(
    pixels: &RgbImage,
    device: &candle_core::Device,
) -> Result<candle_core::Tensor> {
    let (width, height) = pixels.dimensions();
    let (width, height) = (width as usize, height as usize);
    let mut planar = vec![0f32; 3 * width * height];
    for (index, pixel) in pixels.pixels().enumerate() {
        for channel in 0..3 {
            planar[channel * width * height + index] = f32::from(pixel.0[channel]) / 127.5 - 1.0;
        }
    }
    Ok(candle_core::Tensor::from_vec(
        planar,
        (3, height, width),
        device,
    )?)
}

/// Every image × repeats, grouped into batches of one training size each: in order for a
/// deterministic run; shuffled within sizes and then across batches otherwise (kohya's
/// bucket sampler). `sizes[i]` is image i's training size.
pub fn epoch_batches(
    sizes: &[Size],
    repeats: usize,
    batch_size: usize,
    rng: Option<&mut rand::rngs::StdRng>,
) -> Vec<Vec<usize>> {
    let mut by_size: BTreeMap<(u32, u32), Vec<usize>> = BTreeMap::new();
    for (index, size) in sizes.iter().enumerate() {
        for _ in 0..repeats {
            by_size
                .entry((size.width, size.height))
                .or_default()
                .push(index);
        }
    }
    match rng {
        None => by_size
            .into_values()
            .flat_map(|items| {
                items
                    .chunks(batch_size)
                    .map(<[usize]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect(),
        Some(rng) => {
            let mut batches = Vec::new();
            for mut items in by_size.into_values() {
                items.shuffle(rng);
                batches.extend(items.chunks(batch_size).map(<[usize]>::to_vec));
            }
            batches.shuffle(rng);
            batches
        }
    }
}

/// sd-scripts' `ss_tag_frequency`: per dataset folder, how often each tag occurs.
pub fn tag_frequency(folder_name: &str, captions: &[String]) -> serde_json::Value {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for caption in captions {
        for tag in caption
            .split(',')
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
        {
            *counts.entry(tag.to_string()).or_default() += 1;
        }
    }
    serde_json::json!({ folder_name: counts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn trigger_goes_first_and_dropout_keeps_it() {
        let options = CaptionOptions {
            trigger: Some("hta".into()),
            dropout: 1.0,
            shuffle: false,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            options.caption(Some("a cat, hta, red"), None),
            "hta, a cat, red"
        );
        assert_eq!(options.caption(Some("a cat"), Some(&mut rng)), "hta");
        assert_eq!(options.caption(None, None), "hta");
    }

    #[test]
    fn deterministic_batches_follow_file_order_within_sizes() {
        let sizes = vec![Size::new(64, 64); 4];
        assert_eq!(
            epoch_batches(&sizes, 1, 2, None),
            vec![vec![0, 1], vec![2, 3]]
        );
        assert_eq!(
            epoch_batches(&sizes[..2], 2, 3, None),
            vec![vec![0, 0, 1], vec![1]]
        );
        let mixed = vec![Size::new(64, 64), Size::new(64, 128), Size::new(64, 64)];
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let batches = epoch_batches(&mixed, 1, 2, Some(&mut rng));
        assert!(batches
            .iter()
            .all(|batch| batch.iter().all(|&i| mixed[i] == mixed[batch[0]])));
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 3);
    }

    #[test]
    fn buckets_scale_with_the_resolution() {
        let options = ImageOptions {
            resolution: 512,
            buckets: true,
            fit: FitMode::CenterCrop,
            flip: false,
        };
        let size = training_size(Size::new(1600, 900), &options);
        assert_eq!((size.width % 8, size.height % 8), (0, 0));
        assert!(size.width > size.height);
        let square = ImageOptions {
            buckets: false,
            ..options
        };
        assert_eq!(
            training_size(Size::new(1600, 900), &square),
            Size::new(512, 512)
        );
    }
}
