//! The training images as a run uses them: decoded, fitted to their training size and,
//! when the pixels are the same every epoch, encoded with the VAE once (in memory, and on
//! disk with `--cache-latents`); a batch's latents are the posterior mean when replaying
//! and a posterior sample otherwise.

use std::time::Instant;

use candle_core::{DType, Tensor};
use huatu_diffusion::loading::SdxlComponents;
use huatu_imaging::{FitReport, Size};

use crate::dataset::{self, Scan};
use crate::latent_cache::LatentCache;
use crate::lora_request::{images_are_fixed, LoraTrainingRequest};
use crate::observer::TrainingObserver;
use crate::{Error, Result};

/// The image set as the run uses it.
pub(crate) struct TrainingImages {
    pub entries: Vec<dataset::ImageEntry>,
    pub sizes: Vec<Size>,
    /// Cached when the images are the same every epoch: (latent mean, std, fit report).
    pub cached: Vec<Option<(Tensor, Tensor, FitReport)>>,
}

pub(crate) fn load_images(
    components: &SdxlComponents,
    request: &LoraTrainingRequest,
    scan: &mut Scan,
    observer: &mut dyn TrainingObserver,
) -> Result<TrainingImages> {
    let fixed = images_are_fixed(request);
    let mut entries = Vec::new();
    let mut sizes = Vec::new();
    let mut cached = Vec::new();
    let started = Instant::now();
    let mut disk_cache = request.training.cache_latents.then(|| {
        let settings = format!(
            "model {} vae {:?} resolution {} buckets {} fit {}",
            request.training.model_id,
            components.vae_config,
            request.image.resolution,
            request.image.buckets,
            request.image.fit
        );
        LatentCache::open(&request.data, settings)
    });
    let mut from_disk = 0;
    for entry in std::mem::take(&mut scan.entries) {
        if let Some(hit) = disk_cache
            .as_ref()
            .and_then(|cache| cache.get(&entry.path, &components.device))
        {
            sizes.push(hit.2.target_size);
            cached.push(Some(hit));
            entries.push(entry);
            from_disk += 1;
            continue;
        }
        match dataset::prepare_image(&entry.path, &request.image, None) {
            Ok(prepared) => {
                sizes.push(prepared.report.target_size);
                cached.push(if fixed {
                    let (mean, std) = encode_latents(components, &[prepared.pixels])?;
                    let latents = (mean, std, prepared.report);
                    if let Some(cache) = disk_cache.as_mut() {
                        cache.insert(&entry.path, &latents)?;
                    }
                    Some(latents)
                } else {
                    None
                });
                entries.push(entry);
            }
            Err(error) => scan
                .unreadable
                .push((entry.path.clone(), error.to_string())),
        }
    }
    scan.entries = entries.clone();
    scan.uncaptioned = entries
        .iter()
        .filter(|entry| entry.caption.is_none())
        .map(|entry| entry.path.clone())
        .collect();
    if !scan.unreadable.is_empty() {
        let listed: Vec<String> = scan
            .unreadable
            .iter()
            .map(|(path, why)| format!("  {}: {why}", path.display()))
            .collect();
        observer.message(&format!(
            "skipped {} unreadable images:\n{}",
            scan.unreadable.len(),
            listed.join("\n")
        ));
    }
    if entries.is_empty() {
        return Err(Error::Dataset {
            path: request.data.clone(),
            message: "no readable image is left".into(),
        });
    }
    if let Some(cache) = &disk_cache {
        cache.save()?;
    }
    if fixed {
        let reused = if from_disk > 0 {
            format!(" ({from_disk} from the latent cache)")
        } else {
            String::new()
        };
        observer.message(&format!(
            "encoded {} images with the VAE in {:.1}s{reused}",
            entries.len() - from_disk,
            started.elapsed().as_secs_f64()
        ));
    }
    Ok(TrainingImages {
        entries,
        sizes,
        cached,
    })
}

/// VAE posterior mean and std × scaling factor for images of one size: [b, 4, h/8, w/8].
fn encode_latents(
    components: &SdxlComponents,
    pixels: &[image::RgbImage],
) -> Result<(Tensor, Tensor)> {
    let device = &components.device;
    let tensors = pixels
        .iter()
        .map(|image| dataset::pixels_to_tensor(image, device))
        .collect::<Result<Vec<_>>>()?;
    let batch = Tensor::stack(&tensors, 0)?.to_dtype(components.vae_dtype)?;
    let distribution = components.vae.encode(&batch)?;
    let scale = components.vae_config.scaling_factor;
    let mean = (distribution.mode().to_dtype(DType::F32)? * scale)?;
    let std = (distribution.std()?.to_dtype(DType::F32)? * scale)?;
    Ok((mean, std))
}

/// The batch's latents: the posterior mean when replaying, a posterior sample otherwise
/// (as the script's `latent_dist.sample()`), and each image's fit report.
pub(crate) fn batch_latents(
    components: &SdxlComponents,
    request: &LoraTrainingRequest,
    images: &TrainingImages,
    batch: &[usize],
    rng: &mut rand::rngs::StdRng,
) -> Result<(Tensor, Vec<FitReport>)> {
    let mut means = Vec::with_capacity(batch.len());
    let mut stds = Vec::with_capacity(batch.len());
    let mut reports = Vec::with_capacity(batch.len());
    for &index in batch {
        match &images.cached[index] {
            Some((mean, std, report)) => {
                means.push(mean.clone());
                stds.push(std.clone());
                reports.push(*report);
            }
            None => {
                let prepared =
                    dataset::prepare_image(&images.entries[index].path, &request.image, Some(rng))?;
                let (mean, std) = encode_latents(components, &[prepared.pixels])?;
                means.push(mean);
                stds.push(std);
                reports.push(prepared.report);
            }
        }
    }
    let mean = Tensor::cat(&means, 0)?;
    if request.replaying() {
        return Ok((mean, reports));
    }
    let std = Tensor::cat(&stds, 0)?;
    let count = mean.elem_count();
    let values: Vec<f32> = (0..count)
        .map(|_| rand_distr::Distribution::sample(&rand_distr::StandardNormal, rng))
        .collect();
    let epsilon = Tensor::from_vec(values, mean.shape(), mean.device())?;
    Ok(((mean + (std * epsilon)?)?, reports))
}
