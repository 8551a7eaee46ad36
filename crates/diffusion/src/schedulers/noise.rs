//! Seeded standard-normal noise for initial latents and stochastic schedulers (the role of
//! diffusers' `torch.Generator` + `randn_tensor`). Deterministic for a seed; the values are
//! not torch's, so runs are reproducible within huatu, not bit-identical to diffusers.

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::Result;

#[derive(Debug, Clone)]
pub struct NoiseSource {
    rng: StdRng,
}

impl NoiseSource {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Standard-normal values drawn as f32 in row-major order, then cast to `dtype`.
    pub fn randn(&mut self, shape: &[usize], device: &Device, dtype: DType) -> Result<Tensor> {
        let count = shape.iter().product();
        let values: Vec<f32> = (0..count)
            .map(|_| self.rng.sample(StandardNormal))
            .collect();
        Ok(Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed() {
        let draw = |seed| {
            NoiseSource::new(seed)
                .randn(&[2, 3, 4], &Device::Cpu, DType::F32)
                .unwrap()
        };
        let first = draw(7).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(
            first,
            draw(7).flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert_ne!(
            first,
            draw(8).flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let mean = first.iter().sum::<f32>() / first.len() as f32;
        assert!(mean.abs() < 1.0);
        let mut source = NoiseSource::new(7);
        let next = source.randn(&[2, 3, 4], &Device::Cpu, DType::F32).unwrap();
        let after = source.randn(&[2, 3, 4], &Device::Cpu, DType::F32).unwrap();
        assert_eq!(next.flatten_all().unwrap().to_vec1::<f32>().unwrap(), first);
        assert_ne!(
            after.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            first
        );
    }
}
