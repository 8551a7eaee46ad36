//! Conditioning dropout as diffusers' `train_instruct_pix2pix_sdxl.py` computes it: one u
//! per sample (its `torch.rand(bsz, generator=generator)`, here replayed from `--noise`'s
//! `dropout_random` or drawn from a generator of its own); u < 2p → the prompt embeds of
//! the empty prompt (`null_conditioning`; the pooled embeds stay), p ≤ u < 3p → the
//! original image's latents × 0. The comparisons are in f32, as torch's on f32 draws.

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

use super::InstructPix2PixTrainingRequest;
use crate::{Error, Result};

/// Conditioning dropout draws: replayed rows of `dropout_random` or a seeded generator.
pub(crate) enum DropoutDraws {
    Replay(Tensor),
    Seeded(Box<rand::rngs::StdRng>),
}

impl DropoutDraws {
    pub(crate) fn new(
        request: &InstructPix2PixTrainingRequest,
        forward_passes: usize,
    ) -> Result<Self> {
        let Some(path) = &request.noise_file else {
            return Ok(Self::Seeded(Box::new(rand::rngs::StdRng::seed_from_u64(
                request.training.seed ^ 0x6970_3270, // "ip2p": its own stream, as the script's generator
            ))));
        };
        let bad = |message: String| Error::BadFile {
            path: path.clone(),
            message,
        };
        let mut tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|error| bad(format!("not a readable safetensors file: {error}")))?;
        let Some(draws) = tensors.remove("dropout_random") else {
            if request.conditioning_dropout_prob.is_some() {
                return Err(bad("has no `dropout_random` [steps, batch] f32, which conditioning dropout needs when the noise is given".into()));
            }
            return Ok(Self::Replay(Tensor::zeros(
                (0, 0),
                DType::F32,
                &Device::Cpu,
            )?));
        };
        if draws.rank() != 2
            || draws.dtype() != DType::F32
            || draws.dims()[0] < forward_passes
            || draws.dims()[1] != request.training.batch_size
        {
            return Err(bad(format!(
                "`dropout_random` must be f32 [≥ {forward_passes}, {}], got {:?} {:?}",
                request.training.batch_size,
                draws.dtype(),
                draws.dims()
            )));
        }
        Ok(Self::Replay(draws))
    }

    /// One u per sample for forward pass `index`.
    pub(crate) fn draw(&mut self, index: usize, batch: usize) -> Result<Vec<f32>> {
        match self {
            Self::Replay(draws) => Ok(draws.get(index)?.to_vec1::<f32>()?),
            Self::Seeded(rng) => Ok((0..batch).map(|_| rng.gen::<f32>()).collect()),
        }
    }
}

/// The batch's conditioning after dropout with probability `p` and draws `draws`:
/// `prompt_embeds` [b, 77, d] (rows → `null_embeds` [1, 77, d]) and `original_latents`
/// [b, 4, h, w] (samples × 0).
pub(crate) fn apply(
    p: f64,
    draws: &[f32],
    prompt_embeds: &Tensor,
    null_embeds: &Tensor,
    original_latents: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let p = p as f32;
    let rows = draws
        .iter()
        .enumerate()
        .map(|(row, &u)| {
            if u < 2.0 * p {
                Ok(null_embeds.clone())
            } else {
                prompt_embeds.narrow(0, row, 1)
            }
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let keep: Vec<f32> = draws
        .iter()
        .map(|&u| 1.0 - f32::from(u8::from(u >= p && u < 3.0 * p)))
        .collect();
    let keep = Tensor::from_vec(keep, (draws.len(), 1, 1, 1), original_latents.device())?;
    Ok((
        Tensor::cat(&rows, 0)?,
        original_latents.broadcast_mul(&keep)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// u = 0.05: text only; 0.15: both; 0.25: image only; 0.5: neither (p = 0.1).
    #[test]
    fn each_range_of_the_draw_drops_what_the_script_drops() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let embeds = Tensor::ones((4, 2, 3), DType::F32, &device)?;
        let null = Tensor::zeros((1, 2, 3), DType::F32, &device)?;
        let latents = Tensor::ones((4, 4, 1, 1), DType::F32, &device)?;
        let (embeds, latents) = apply(0.1, &[0.05, 0.15, 0.25, 0.5], &embeds, &null, &latents)?;
        let text: Vec<f32> = embeds.mean((1, 2))?.to_vec1()?;
        let image: Vec<f32> = latents.mean((1, 2, 3))?.to_vec1()?;
        assert_eq!(text, [0.0, 0.0, 1.0, 1.0]);
        assert_eq!(image, [1.0, 0.0, 0.0, 1.0]);
        Ok(())
    }
}
