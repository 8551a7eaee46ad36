//! torch's `AdamW` (single-tensor path, as on the CPU) and `clip_grad_norm_`, on f32
//! parameters, operation for operation:
//!
//! ```text
//! p ← p · (1 − lr·wd)
//! m ← m.lerp(g, 1 − β₁)            (m + (1 − β₁)(g − m))
//! v ← v·β₂ + (1 − β₂)·g²
//! p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! Scalars are computed in f64 as Python does and rounded to f32 where torch's kernels do.
//! Moments stay in f32 whatever the parameters' dtype (candle-nn keeps them in the
//! parameter's dtype).

use candle_core::{Tensor, Var};

use crate::Result;

/// AdamW's hyper-parameters (torch's defaults except the learning rate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }
}

/// One parameter's state: its own step count (torch counts per parameter) and moments.
#[derive(Debug, Clone)]
pub struct Moments {
    pub step: u64,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

/// AdamW over a fixed list of parameters, each with its own learning rate group.
#[derive(Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Optimizer steps taken (torch's `state["step"]`).
    pub step: u64,
    pub moments: Vec<Moments>,
}

impl AdamW {
    pub fn new(params: &[Var], config: AdamWConfig) -> Self {
        let moments = params
            .iter()
            .map(|param| {
                let count = param.elem_count();
                Moments {
                    step: 0,
                    exp_avg: vec![0.0; count],
                    exp_avg_sq: vec![0.0; count],
                }
            })
            .collect();
        Self {
            config,
            step: 0,
            moments,
        }
    }

    /// One update of every parameter that has a gradient (`None`: no gradient reached it,
    /// and torch leaves it untouched, weight decay included); `learning_rates[i]` is
    /// parameter i's.
    pub fn step(
        &mut self,
        params: &[Var],
        grads: &[Option<Tensor>],
        learning_rates: &[f64],
    ) -> Result<()> {
        self.step += 1;
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let lerp_weight = (1.0 - beta1) as f32;
        let beta2_f32 = beta2 as f32;
        let one_minus_beta2 = (1.0 - beta2) as f32;
        let eps = eps as f32;
        for (((param, grad), moments), lr) in params
            .iter()
            .zip(grads)
            .zip(&mut self.moments)
            .zip(learning_rates)
        {
            let Some(grad) = grad else { continue };
            moments.step += 1;
            let bias_correction1 = 1.0 - beta1.powi(moments.step as i32);
            let bc2 = (1.0 - beta2.powi(moments.step as i32)).sqrt() as f32;
            let shape = param.shape().clone();
            let mut values = param
                .as_tensor()
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let grad = grad
                .to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let decay = (1.0 - lr * weight_decay) as f32;
            let step_size = -(lr / bias_correction1) as f32;
            for (((p, g), m), v) in values
                .iter_mut()
                .zip(&grad)
                .zip(&mut moments.exp_avg)
                .zip(&mut moments.exp_avg_sq)
            {
                *p *= decay;
                // torch's lerp for a weight below 0.5: self + weight · (end − self).
                *m += lerp_weight * (g - *m);
                *v = *v * beta2_f32 + one_minus_beta2 * g * g;
                let denominator = v.sqrt() / bc2 + eps;
                *p += step_size * (*m / denominator);
            }
            let updated =
                Tensor::from_vec(values, shape, param.device())?.to_dtype(param.dtype())?;
            param.set(&updated)?;
        }
        Ok(())
    }
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)`: the 2-norm of all gradients together
/// (the norm of the per-tensor norms), and every gradient × min(1, max_norm / (total + 1e-6)).
/// Returns the total norm before clipping.
pub fn clip_grad_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let mut squares = 0f32;
    for grad in grads.iter().flatten() {
        let norm = grad
            .to_dtype(candle_core::DType::F32)?
            .sqr()?
            .sum_all()?
            .sqrt()?
            .to_scalar::<f32>()?;
        squares += norm * norm;
    }
    let total = squares.sqrt();
    let coefficient = (max_norm as f32 / (total + 1e-6)).min(1.0);
    for grad in grads.iter_mut().flatten() {
        *grad = (&*grad * coefficient as f64)?;
    }
    Ok(total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two steps on [1, -2] with gradients [0.5, 0.25] then [-1, 2], lr 0.1, wd 0.01: the
    /// values torch 2.x's `AdamW` gives (worked by hand from its update rule, f32).
    #[test]
    fn adamw_follows_torch_update_rule() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let param = Var::from_tensor(&Tensor::new(&[1f32, -2.0], &device)?)?;
        let mut optimizer = AdamW::new(std::slice::from_ref(&param), AdamWConfig::default());
        optimizer.step(
            std::slice::from_ref(&param),
            &[Some(Tensor::new(&[0.5f32, 0.25], &device)?)],
            &[0.1],
        )?;
        // Step 1: m̂ = g, v̂ = g², so p = p(1 − 0.001) − 0.1 · sign(g) (up to ε).
        let first = param.as_tensor().to_vec1::<f32>()?;
        assert!((first[0] - (0.999 - 0.1)).abs() < 1e-6, "{first:?}");
        assert!((first[1] - (-1.998 - 0.1)).abs() < 1e-6, "{first:?}");
        optimizer.step(
            std::slice::from_ref(&param),
            &[Some(Tensor::new(&[-1f32, 2.0], &device)?)],
            &[0.1],
        )?;
        // Step 2 for the first entry: m = 0.9·0.05 − 0.1 = −0.055 → m̂ = −0.055/0.19;
        // v = 0.001·0.25·0.999 + 0.001 = 0.00124975 → v̂ = v / 0.001999.
        let m_hat = -0.055f64 / 0.19;
        let v_hat = (0.25 * 0.001 * 0.999 + 0.001) / (1.0 - 0.999f64.powi(2));
        let expected = 0.899 * 0.999 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
        let second = param.as_tensor().to_vec1::<f32>()?;
        assert!(
            (second[0] as f64 - expected).abs() < 1e-6,
            "{second:?} vs {expected}"
        );
        Ok(())
    }

    /// A parameter no gradient reached is left as it is (no weight decay), as torch does.
    #[test]
    fn parameters_without_gradient_are_untouched() -> anyhow::Result<()> {
        let param = Var::from_tensor(&Tensor::new(&[1f32, -2.0], &Device::Cpu)?)?;
        let mut optimizer = AdamW::new(std::slice::from_ref(&param), AdamWConfig::default());
        optimizer.step(std::slice::from_ref(&param), &[None], &[0.1])?;
        assert_eq!(param.as_tensor().to_vec1::<f32>()?, vec![1.0, -2.0]);
        assert_eq!(optimizer.moments[0].step, 0);
        Ok(())
    }

    #[test]
    fn clipping_scales_all_gradients_by_the_total_norm() -> anyhow::Result<()> {
        let device = Device::Cpu;
        let mut grads = vec![
            Some(Tensor::new(&[3f32], &device)?),
            None,
            Some(Tensor::new(&[4f32], &device)?),
        ];
        let total = clip_grad_norm(&mut grads, 1.0)?;
        assert!((total - 5.0).abs() < 1e-6);
        let scaled: Vec<f32> = grads
            .iter()
            .flatten()
            .map(|g| g.to_vec1::<f32>().map(|v| v[0]))
            .collect::<candle_core::Result<_>>()?;
        assert!(
            (scaled[0] - 0.6).abs() < 1e-6 && (scaled[1] - 0.8).abs() < 1e-6,
            "{scaled:?}"
        );
        let mut small = vec![Some(Tensor::new(&[0.1f32], &device)?)];
        clip_grad_norm(&mut small, 1.0)?;
        let kept = small[0].as_ref().map(|g| g.to_vec1::<f32>()).transpose()?;
        assert_eq!(kept, Some(vec![0.1]));
        Ok(())
    }
}
