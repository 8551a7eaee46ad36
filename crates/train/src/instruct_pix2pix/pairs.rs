//! The edit pairs of an InstructPix2Pix dataset folder, as `huatu dataset
//! instruct-pix2pix` writes it (and diffusers' script reads it with its default columns):
//! `metadata.jsonl`, one object per line with `input_image` and `edited_image` (file names
//! in the folder) and `edit_prompt` (the instruction); other keys (`original_caption`,
//! `edited_caption`) are ignored. Each image is fitted to the square training size (the
//! project's center crop, which is the script's resize when the image is already square)
//! and encoded once with the VAE: posterior mean and standard deviation, unscaled (kept on
//! disk in `DATA/.huatu-cache/` with `--cache-latents`, see `latent_cache`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use huatu_diffusion::loading::SdxlComponents;
use huatu_imaging::FitMode;

use crate::dataset::{self, ImageOptions};
use crate::latent_cache::LatentCache;
use crate::{Error, Result};

/// One line of `metadata.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct EditPair {
    pub input_image: PathBuf,
    pub edited_image: PathBuf,
    pub edit_prompt: String,
}

#[derive(serde::Deserialize)]
struct Line {
    input_image: String,
    edited_image: String,
    edit_prompt: String,
}

/// The pairs of `folder/metadata.jsonl` in line order; a bad line is an error naming it.
pub fn read_pairs(folder: &Path) -> Result<Vec<EditPair>> {
    let path = folder.join("metadata.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    let mut pairs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).map_err(|error| Error::Dataset {
            path: path.clone(),
            message: format!(
                "line {}: {error} (each line needs input_image, edited_image and edit_prompt)",
                index + 1
            ),
        })?;
        let pair = EditPair {
            input_image: folder.join(&parsed.input_image),
            edited_image: folder.join(&parsed.edited_image),
            edit_prompt: parsed.edit_prompt,
        };
        for image in [&pair.input_image, &pair.edited_image] {
            if !image.is_file() {
                return Err(Error::Dataset {
                    path: path.clone(),
                    message: format!("line {}: no image {}", index + 1, image.display()),
                });
            }
        }
        pairs.push(pair);
    }
    if pairs.is_empty() {
        return Err(Error::Dataset {
            path,
            message: "no edit pair".into(),
        });
    }
    Ok(pairs)
}

/// A pair's VAE posteriors, unscaled: (mean, std) of the edited and of the input image,
/// each [1, 4, h/8, w/8] f32.
#[derive(Debug, Clone)]
pub struct EncodedPair {
    pub edited: (Tensor, Tensor),
    pub input: (Tensor, Tensor),
    /// Both images mirrored left–right (`--flip`, the script's `--random_flip`, which flips
    /// the two together): (edited, input), encoded once as well.
    pub mirrored: Option<((Tensor, Tensor), (Tensor, Tensor))>,
}

/// The VAE posterior (mean, std) of fitted pixels, unscaled: [1, 4, h/8, w/8] each.
fn encode_pixels(
    components: &SdxlComponents,
    pixels: &image::RgbImage,
) -> Result<(Tensor, Tensor)> {
    let pixels = dataset::pixels_to_tensor(pixels, &components.device)?
        .unsqueeze(0)?
        .to_dtype(components.vae_dtype)?; // [1, 3, h, w]
    let distribution = components.vae.encode(&pixels)?;
    Ok((
        distribution.mode().to_dtype(DType::F32)?,
        distribution.std()?.to_dtype(DType::F32)?,
    ))
}

/// The image fitted as training uses it, mirrored left–right, encoded.
fn encode_mirrored(
    components: &SdxlComponents,
    path: &Path,
    options: &ImageOptions,
) -> Result<(Tensor, Tensor)> {
    let mut pixels = dataset::prepare_image(path, options, None)?.pixels;
    image::imageops::flip_horizontal_in_place(&mut pixels);
    encode_pixels(components, &pixels)
}

/// Fits and encodes one image: its posterior (mean, std), unscaled, or the cached one.
fn encode_image(
    components: &SdxlComponents,
    path: &Path,
    options: &ImageOptions,
    cache: Option<&mut LatentCache>,
    from_cache: &mut usize,
) -> Result<(Tensor, Tensor)> {
    if let Some(hit) = cache
        .as_deref()
        .and_then(|cache| cache.get(path, &components.device))
    {
        *from_cache += 1;
        return Ok((hit.0, hit.1));
    }
    let prepared = dataset::prepare_image(path, options, None)?;
    let (mean, std) = encode_pixels(components, &prepared.pixels)?;
    if let Some(cache) = cache {
        cache.insert(path, &(mean.clone(), std.clone(), prepared.report))?;
    }
    Ok((mean, std))
}

/// Fits and encodes every pair once (the pixels are the same every epoch), taking what
/// `cache` (`--cache-latents`) holds, and with `mirror` the mirrored pair too (not cached);
/// returns the pairs and how many images came from the cache.
pub fn encode_pairs(
    components: &SdxlComponents,
    pairs: &[EditPair],
    resolution: u32,
    mirror: bool,
    mut cache: Option<&mut LatentCache>,
) -> Result<(Vec<EncodedPair>, usize)> {
    let options = ImageOptions {
        resolution,
        buckets: false,
        fit: FitMode::CenterCrop,
        flip: false,
    };
    let mut from_cache = 0;
    let mut encoded = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let edited = encode_image(
            components,
            &pair.edited_image,
            &options,
            cache.as_deref_mut(),
            &mut from_cache,
        )?;
        let input = encode_image(
            components,
            &pair.input_image,
            &options,
            cache.as_deref_mut(),
            &mut from_cache,
        )?;
        let mirrored = if mirror {
            Some((
                encode_mirrored(components, &pair.edited_image, &options)?,
                encode_mirrored(components, &pair.input_image, &options)?,
            ))
        } else {
            None
        };
        encoded.push(EncodedPair {
            edited,
            input,
            mirrored,
        });
    }
    Ok((encoded, from_cache))
}

/// The mean (`epsilon` `None`) or a posterior sample mean + std · ε.
pub fn posterior(
    (mean, std): &(Tensor, Tensor),
    epsilon: Option<&mut rand::rngs::StdRng>,
) -> Result<Tensor> {
    match epsilon {
        None => Ok(mean.clone()),
        Some(rng) => {
            let values: Vec<f32> = (0..mean.elem_count())
                .map(|_| rand_distr::Distribution::sample(&rand_distr::StandardNormal, rng))
                .collect();
            let noise = Tensor::from_vec(values, mean.shape(), mean.device())?;
            Ok((mean + (std * noise)?)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_lines_become_pairs_and_bad_lines_are_named() -> anyhow::Result<()> {
        let folder = tempfile::tempdir()?;
        for name in ["a.png", "b.png"] {
            std::fs::write(folder.path().join(name), b"")?;
        }
        std::fs::write(
            folder.path().join("metadata.jsonl"),
            "{\"input_image\": \"a.png\", \"edit_prompt\": \"make it red\", \"edited_image\": \"b.png\", \"original_caption\": \"x\"}\n\n",
        )?;
        let pairs = read_pairs(folder.path())?;
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].edit_prompt, "make it red");
        assert_eq!(pairs[0].edited_image, folder.path().join("b.png"));
        std::fs::write(
            folder.path().join("metadata.jsonl"),
            "{\"input_image\": \"a.png\", \"edited_image\": \"b.png\"}\n",
        )?;
        let message = read_pairs(folder.path())
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("line 1") && message.contains("edit_prompt"),
            "{message}"
        );
        Ok(())
    }
}
