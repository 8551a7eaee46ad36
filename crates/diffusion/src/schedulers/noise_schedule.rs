//! Noise-schedule arithmetic shared by the schedulers, at diffusers' precision.
//!
//! diffusers keeps betas and `alphas_cumprod` as float32 torch tensors (`torch.linspace`,
//! `torch.cumprod`, whose CPU kernel accumulates in float64), builds timestep grids and
//! interpolates sigmas in numpy float64, then casts timesteps and sigmas to float32. The
//! functions here round at the same points so schedules match to the last bit or two.
//! References: `betas_for_alpha_bar`, `rescale_zero_terminal_snr`, `_sigma_to_t`,
//! `_convert_to_karras`, `_convert_to_exponential` in diffusers/schedulers/scheduling_*.py.

use super::config::{BetaSchedule, SchedulerConfig};
use crate::{Error, Result};

/// float32 betas of the training schedule.
pub(crate) fn betas(config: &SchedulerConfig) -> Result<Vec<f32>> {
    let count = config.num_train_timesteps;
    if count < 2 {
        return Err(Error::Config(format!(
            "num_train_timesteps must be at least 2, got {count}"
        )));
    }
    let betas = if let Some(trained) = &config.trained_betas {
        if trained.len() != count {
            return Err(Error::Config(format!(
                "trained_betas has {} values but num_train_timesteps is {count}",
                trained.len()
            )));
        }
        trained.iter().map(|&beta| beta as f32).collect()
    } else {
        match config.beta_schedule {
            BetaSchedule::Linear => torch_linspace_f32(config.beta_start, config.beta_end, count),
            BetaSchedule::ScaledLinear => {
                torch_linspace_f32(config.beta_start.sqrt(), config.beta_end.sqrt(), count)
                    .into_iter()
                    .map(|root| root * root)
                    .collect()
            }
            BetaSchedule::SquaredcosCapV2 => betas_for_alpha_bar(count, 0.999),
        }
    };
    Ok(if config.rescale_betas_zero_snr {
        rescale_zero_terminal_snr(&betas)
    } else {
        betas
    })
}

/// `torch.linspace(start, end, steps, dtype=torch.float32)` on CPU (its scalar path: the first
/// half counts up from `start`, the second half down from `end`).
fn torch_linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start as f32];
    }
    let (start, end) = (start as f32, end as f32);
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|index| {
            if index < halfway {
                start + step * index as f32
            } else {
                end - step * (steps - index - 1) as f32
            }
        })
        .collect()
}

/// Glide's cosine schedule (`squaredcos_cap_v2`), computed in float64 then cast.
fn betas_for_alpha_bar(count: usize, max_beta: f64) -> Vec<f32> {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powi(2)
    };
    (0..count)
        .map(|index| {
            let t1 = index as f64 / count as f64;
            let t2 = (index + 1) as f64 / count as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta) as f32
        })
        .collect()
}

/// `torch.cumprod` of float32 values on CPU: float64 accumulator, each output rounded.
fn cumulative_product(values: &[f32]) -> Vec<f32> {
    let mut accumulator = 1.0f64;
    values
        .iter()
        .map(|&value| {
            accumulator *= value as f64;
            accumulator as f32
        })
        .collect()
}

/// Zero terminal SNR (https://huggingface.co/papers/2305.08891, algorithm 1), in float32.
fn rescale_zero_terminal_snr(betas: &[f32]) -> Vec<f32> {
    let alphas: Vec<f32> = betas.iter().map(|&beta| 1.0 - beta).collect();
    let mut roots: Vec<f32> = cumulative_product(&alphas)
        .into_iter()
        .map(f32::sqrt)
        .collect();
    let first = roots[0];
    let last = roots[roots.len() - 1];
    let factor = first / (first - last);
    for root in roots.iter_mut() {
        *root = (*root - last) * factor;
    }
    let bars: Vec<f32> = roots.iter().map(|root| root * root).collect();
    let mut rescaled = Vec::with_capacity(bars.len());
    rescaled.push(1.0 - bars[0]);
    rescaled.extend(bars.windows(2).map(|pair| 1.0 - pair[1] / pair[0]));
    rescaled
}

/// `alphas_cumprod` (float32) from the config's betas.
pub fn alphas_cumprod(config: &SchedulerConfig) -> Result<Vec<f32>> {
    let alphas: Vec<f32> = betas(config)?.into_iter().map(|beta| 1.0 - beta).collect();
    Ok(cumulative_product(&alphas))
}

/// The k-diffusion schedulers' `alphas_cumprod`: with zero terminal SNR the last value is set
/// to 2^-24 so the first sigma stays finite.
pub(crate) fn alphas_cumprod_for_sigmas(config: &SchedulerConfig) -> Result<Vec<f32>> {
    let mut alphas_cumprod = alphas_cumprod(config)?;
    if config.rescale_betas_zero_snr {
        if let Some(last) = alphas_cumprod.last_mut() {
            *last = 2f32.powi(-24);
        }
    }
    Ok(alphas_cumprod)
}

/// `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5` in float32, ascending in t.
pub(crate) fn training_sigmas(alphas_cumprod: &[f32]) -> Vec<f32> {
    alphas_cumprod
        .iter()
        .map(|&alpha| sigma_from_alpha_cumprod(alpha))
        .collect()
}

pub(crate) fn sigma_from_alpha_cumprod(alpha_cumprod: f32) -> f32 {
    ((1.0 - alpha_cumprod) / alpha_cumprod).sqrt()
}

/// `np.arange(start, stop, step)` for floats: numpy fills `start + i * delta` with
/// `delta = (start + step) - start`.
pub(crate) fn numpy_arange(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let length = ((stop - start) / step).ceil();
    if length.is_nan() || length <= 0.0 {
        return Vec::new();
    }
    let length = length as usize;
    let second = start + step;
    let delta = second - start;
    (0..length)
        .map(|index| match index {
            0 => start,
            1 => second,
            _ => start + index as f64 * delta,
        })
        .collect()
}

/// `np.linspace(start, stop, num)` (float64, endpoint included).
pub(crate) fn numpy_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut values: Vec<f64> = (0..num).map(|index| index as f64 * step + start).collect();
    if let Some(last) = values.last_mut() {
        *last = stop;
    }
    values
}

/// `np.round`: halves go to the even neighbour.
pub(crate) fn numpy_round(value: f64) -> f64 {
    value.round_ties_even()
}

/// `np.interp(x, np.arange(len(values)), values)`.
pub(crate) fn interpolate(x: f64, values: &[f32]) -> f64 {
    let last = values.len() - 1;
    if x.is_nan() {
        return x;
    }
    if x <= 0.0 {
        return values[0] as f64;
    }
    if x >= last as f64 {
        return values[last] as f64;
    }
    let below = x.floor() as usize;
    if below as f64 == x {
        return values[below] as f64;
    }
    let slope = values[below + 1] as f64 - values[below] as f64;
    slope * (x - below as f64) + values[below] as f64
}

/// `np.log` of float32 sigmas (float32 results).
pub(crate) fn log_sigmas(sigmas: &[f32]) -> Vec<f32> {
    sigmas.iter().map(|sigma| sigma.ln()).collect()
}

/// `_sigma_to_t`: the fractional training timestep whose log-sigma is `sigma`'s, by linear
/// interpolation in log space (float64, with the float32 differences numpy computes).
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // Index of the last log-sigma at or below ours (0 when there is none), capped so that a
    // higher neighbour exists: numpy's `cumsum(dists >= 0).argmax()`.
    let at_or_below = log_sigmas
        .iter()
        .rposition(|&value| log_sigma - value as f64 >= 0.0)
        .unwrap_or(0);
    let low_index = at_or_below.min(log_sigmas.len() - 2);
    let high_index = low_index + 1;
    let low = log_sigmas[low_index];
    let high = log_sigmas[high_index];
    let weight = ((low as f64 - log_sigma) / (low - high) as f64).clamp(0.0, 1.0);
    (1.0 - weight) * low_index as f64 + weight * high_index as f64
}

/// The sigma range for Karras/exponential schedules: the config's `sigma_min`/`sigma_max`
/// when given, else the last and first of `sigmas` (descending).
fn sigma_range(sigmas: &[f64], config: &SchedulerConfig) -> (f64, f64) {
    let sigma_min = config.sigma_min.unwrap_or(sigmas[sigmas.len() - 1]);
    let sigma_max = config.sigma_max.unwrap_or(sigmas[0]);
    (sigma_min, sigma_max)
}

/// Karras et al. (2022) noise levels, rho = 7 (`_convert_to_karras`).
pub(crate) fn karras_sigmas(sigmas: &[f64], count: usize, config: &SchedulerConfig) -> Vec<f64> {
    let (sigma_min, sigma_max) = sigma_range(sigmas, config);
    let rho = 7.0;
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    numpy_linspace(0.0, 1.0, count)
        .into_iter()
        .map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(rho))
        .collect()
}

/// Log-uniform noise levels (`_convert_to_exponential`).
pub(crate) fn exponential_sigmas(
    sigmas: &[f64],
    count: usize,
    config: &SchedulerConfig,
) -> Vec<f64> {
    let (sigma_min, sigma_max) = sigma_range(sigmas, config);
    numpy_linspace(sigma_max.ln(), sigma_min.ln(), count)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// Checks `1 <= num_inference_steps <= num_train_timesteps`.
pub(crate) fn check_step_count(num_inference_steps: usize, config: &SchedulerConfig) -> Result<()> {
    if num_inference_steps == 0 || num_inference_steps > config.num_train_timesteps {
        return Err(Error::InvalidRequest(format!(
            "num_inference_steps must be between 1 and {} (the model's training timesteps), got {num_inference_steps}",
            config.num_train_timesteps
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_helpers() {
        assert_eq!(
            numpy_arange(1000.0, 0.0, -250.0),
            vec![1000.0, 750.0, 500.0, 250.0]
        );
        assert_eq!(numpy_arange(1000.0, 0.0, -1000.0 / 3.0).len(), 3);
        assert_eq!(
            numpy_linspace(0.0, 999.0, 4),
            vec![0.0, 333.0, 666.0, 999.0]
        );
        assert_eq!(numpy_round(0.5), 0.0);
        assert_eq!(numpy_round(1.5), 2.0);
        assert_eq!(numpy_round(2.5), 2.0);
        let values = [1.0f32, 3.0, 7.0];
        assert_eq!(interpolate(0.5, &values), 2.0);
        assert_eq!(interpolate(1.0, &values), 3.0);
        assert_eq!(interpolate(-1.0, &values), 1.0);
        assert_eq!(interpolate(5.0, &values), 7.0);
    }

    #[test]
    fn sdxl_training_sigmas() {
        let config = SchedulerConfig {
            beta_schedule: BetaSchedule::ScaledLinear,
            beta_start: 0.00085,
            beta_end: 0.012,
            ..SchedulerConfig::default()
        };
        let sigmas = training_sigmas(&alphas_cumprod(&config).unwrap());
        // The well-known SD/SDXL sigma range.
        assert!((sigmas[0] - 0.029168).abs() < 1e-5, "{}", sigmas[0]);
        assert!((sigmas[999] - 14.614642).abs() < 1e-4, "{}", sigmas[999]);
        let logs = log_sigmas(&sigmas);
        assert!((sigma_to_t(sigmas[500] as f64, &logs) - 500.0).abs() < 1e-4);
        assert_eq!(sigma_to_t(100.0, &logs), 999.0);
        assert_eq!(sigma_to_t(1e-3, &logs), 0.0);
    }

    #[test]
    fn zero_terminal_snr_ends_at_zero() {
        let config = SchedulerConfig {
            rescale_betas_zero_snr: true,
            ..SchedulerConfig::default()
        };
        let alphas_cumprod = alphas_cumprod(&config).unwrap();
        assert_eq!(alphas_cumprod[999], 0.0);
        assert_eq!(
            alphas_cumprod_for_sigmas(&config).unwrap()[999],
            2f32.powi(-24)
        );
    }
}
