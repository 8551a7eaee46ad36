//! DPM-Solver++ multistep (https://huggingface.co/papers/2211.01095) as diffusers'
//! `DPMSolverMultistepScheduler` (schedulers/scheduling_dpmsolver_multistep.py) with
//! `algorithm_type="dpmsolver++"`: data-prediction updates of order 1 to 3, `midpoint` or
//! `heun` second-order solver, lower-order warm-up and final steps, Karras or exponential
//! sigmas. The SDE variants and the deprecated noise-prediction `dpmsolver` are not ported.

use candle_core::{DType, Tensor};

use super::config::{
    BetaSchedule, FinalSigmasType, PredictionType, SchedulerConfig, TimestepSpacing,
};
use super::noise::NoiseSource;
use super::noise_schedule::{
    alphas_cumprod_for_sigmas, check_step_count, exponential_sigmas, interpolate, karras_sigmas,
    log_sigmas, numpy_arange, numpy_linspace, numpy_round, sigma_from_alpha_cumprod, sigma_to_t,
    training_sigmas,
};
use super::sample_ops::{divide, scale, threshold_sample};
use super::sigma_schedule::{MissingTimestep, SigmaSchedule};
use super::Scheduler;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SolverType {
    Midpoint,
    Heun,
}

#[derive(Debug, Clone)]
pub struct DPMSolverMultistepScheduler {
    config: SchedulerConfig,
    solver_type: SolverType,
    alphas_cumprod: Vec<f32>,
    schedule: SigmaSchedule,
    /// The last `solver_order` data predictions (x0), oldest first.
    model_outputs: Vec<Option<Tensor>>,
    lower_order_nums: usize,
}

impl DPMSolverMultistepScheduler {
    /// `DPMSolverMultistepScheduler.from_config(config)` then `set_timesteps(num_inference_steps)`.
    pub fn new(config: &SchedulerConfig, num_inference_steps: usize) -> Result<Self> {
        let solver_type = check_supported(config)?;
        let mut scheduler = Self {
            config: config.clone(),
            solver_type,
            alphas_cumprod: alphas_cumprod_for_sigmas(config)?,
            schedule: SigmaSchedule::new(Vec::new(), Vec::new(), MissingTimestep::LastIndex),
            model_outputs: Vec::new(),
            lower_order_nums: 0,
        };
        scheduler.set_timesteps(num_inference_steps)?;
        Ok(scheduler)
    }

    /// Recomputes timesteps and sigmas for `num_inference_steps` and resets the solver state.
    pub fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        let config = &self.config;
        check_step_count(num_inference_steps, config)?;
        let train = config.num_train_timesteps;
        let last_timestep = train - self.clipped_index();
        let mut timesteps: Vec<f64> = match config.timestep_spacing_or(TimestepSpacing::Linspace) {
            TimestepSpacing::Linspace => {
                numpy_linspace(0.0, last_timestep as f64 - 1.0, num_inference_steps + 1)
                    .into_iter()
                    .rev()
                    .take(num_inference_steps)
                    .map(numpy_round)
                    .collect()
            }
            TimestepSpacing::Leading => {
                let ratio = last_timestep / (num_inference_steps + 1);
                (1..=num_inference_steps)
                    .rev()
                    .map(|index| (index * ratio + config.steps_offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = train as f64 / num_inference_steps as f64;
                numpy_arange(last_timestep as f64, 0.0, -ratio)
                    .into_iter()
                    .map(|t| numpy_round(t) - 1.0)
                    .collect()
            }
        };
        let training = training_sigmas(&self.alphas_cumprod);
        let mut sigmas: Vec<f64> = if config.use_karras_sigmas || config.use_exponential_sigmas {
            let descending: Vec<f64> = training.iter().rev().map(|&sigma| sigma as f64).collect();
            let sigmas = if config.use_karras_sigmas {
                karras_sigmas(&descending, num_inference_steps, config)
            } else {
                exponential_sigmas(&descending, num_inference_steps, config)
            };
            let log_sigmas = log_sigmas(&training);
            let round =
                config.use_karras_sigmas && config.beta_schedule != BetaSchedule::SquaredcosCapV2;
            timesteps = sigmas
                .iter()
                .map(|&sigma| {
                    let timestep = sigma_to_t(sigma, &log_sigmas);
                    // Rounded, or truncated by the cast to int64.
                    if round {
                        numpy_round(timestep)
                    } else {
                        timestep.trunc()
                    }
                })
                .collect();
            sigmas
        } else {
            timesteps
                .iter()
                .map(|&timestep| interpolate(timestep, &training))
                .collect()
        };
        sigmas.push(match config.final_sigmas_type {
            FinalSigmasType::SigmaMin => sigma_from_alpha_cumprod(self.alphas_cumprod[0]) as f64,
            FinalSigmasType::Zero => 0.0,
        });
        let sigmas = sigmas.into_iter().map(|sigma| sigma as f32).collect();
        self.schedule = SigmaSchedule::new(timesteps, sigmas, MissingTimestep::LastIndex);
        self.model_outputs = vec![None; config.solver_order];
        self.lower_order_nums = 0;
        Ok(())
    }

    /// How many of the noisiest training steps `lambda_min_clipped` removes (diffusers'
    /// `searchsorted` over the ascending log-SNRs).
    fn clipped_index(&self) -> usize {
        let Some(lambda_min) = self.config.lambda_min_clipped else {
            return 0;
        };
        let lambdas = self.alphas_cumprod.iter().rev().map(|&alpha_cumprod| {
            let (alpha, sigma) = (alpha_cumprod.sqrt(), (1.0 - alpha_cumprod).sqrt());
            alpha.ln() - sigma.ln()
        });
        lambdas
            .take_while(|&lambda| (lambda as f64) < lambda_min)
            .count()
    }

    /// The noise levels, one per timestep plus the final one (`scheduler.sigmas`).
    pub fn sigmas(&self) -> &[f32] {
        &self.schedule.sigmas
    }

    /// The step counter (`scheduler.step_index`): `None` before the first step.
    pub fn step_index(&self) -> Option<usize> {
        self.schedule.step_index
    }

    /// `convert_model_output`: the model's prediction as a data prediction x0.
    fn convert_model_output(
        &self,
        model_output: &Tensor,
        sample: &Tensor,
        index: usize,
    ) -> Result<Tensor> {
        let (alpha_t, sigma_t) = alpha_sigma(self.schedule.sigmas[index]);
        let x0 = match self.config.prediction_type {
            PredictionType::Epsilon => divide(&(sample - scale(model_output, sigma_t)?)?, alpha_t)?,
            PredictionType::Sample => model_output.clone(),
            PredictionType::VPrediction => {
                (scale(sample, alpha_t)? - scale(model_output, sigma_t)?)?
            }
        };
        if self.config.thresholding {
            return threshold_sample(
                &x0,
                self.config.dynamic_thresholding_ratio,
                self.config.sample_max_value,
            );
        }
        Ok(x0)
    }

    /// (alpha_t, sigma_t, lambda_t) at schedule position `index`.
    fn levels(&self, index: usize) -> (f32, f32, f32) {
        let (alpha, sigma) = alpha_sigma(self.schedule.sigmas[index]);
        (alpha, sigma, alpha.ln() - sigma.ln())
    }

    fn first_order_update(&self, x0: &Tensor, sample: &Tensor, index: usize) -> Result<Tensor> {
        let (alpha_t, sigma_t, lambda_t) = self.levels(index + 1);
        let (_, sigma_s, lambda_s) = self.levels(index);
        let h = lambda_t - lambda_s;
        Ok((scale(sample, sigma_t / sigma_s)? - scale(x0, alpha_t * ((-h).exp() - 1.0))?)?)
    }

    fn second_order_update(
        &self,
        outputs: [&Tensor; 2],
        sample: &Tensor,
        index: usize,
    ) -> Result<Tensor> {
        let [m1, m0] = outputs;
        let (alpha_t, sigma_t, lambda_t) = self.levels(index + 1);
        let (_, sigma_s0, lambda_s0) = self.levels(index);
        let (_, _, lambda_s1) = self.levels(index - 1);
        let (h, h_0) = (lambda_t - lambda_s0, lambda_s0 - lambda_s1);
        let r0 = h_0 / h;
        let d1 = scale(&(m0 - m1)?, 1.0 / r0)?;
        let decay = alpha_t * ((-h).exp() - 1.0);
        let x_t = (scale(sample, sigma_t / sigma_s0)? - scale(m0, decay)?)?;
        Ok(match self.solver_type {
            SolverType::Midpoint => (x_t - scale(&d1, 0.5 * decay)?)?,
            SolverType::Heun => (x_t + scale(&d1, alpha_t * (((-h).exp() - 1.0) / h + 1.0))?)?,
        })
    }

    fn third_order_update(
        &self,
        outputs: [&Tensor; 3],
        sample: &Tensor,
        index: usize,
    ) -> Result<Tensor> {
        let [m2, m1, m0] = outputs;
        let (alpha_t, sigma_t, lambda_t) = self.levels(index + 1);
        let (_, sigma_s0, lambda_s0) = self.levels(index);
        let (_, _, lambda_s1) = self.levels(index - 1);
        let (_, _, lambda_s2) = self.levels(index - 2);
        let (h, h_0, h_1) = (
            lambda_t - lambda_s0,
            lambda_s0 - lambda_s1,
            lambda_s1 - lambda_s2,
        );
        let (r0, r1) = (h_0 / h, h_1 / h);
        let d1_0 = scale(&(m0 - m1)?, 1.0 / r0)?;
        let d1_1 = scale(&(m1 - m2)?, 1.0 / r1)?;
        let d1_difference = (&d1_0 - &d1_1)?;
        let d1 = (&d1_0 + scale(&d1_difference, r0 / (r0 + r1))?)?;
        let d2 = scale(&d1_difference, 1.0 / (r0 + r1))?;
        let exp_minus_h = (-h).exp();
        let x_t = (scale(sample, sigma_t / sigma_s0)? - scale(m0, alpha_t * (exp_minus_h - 1.0))?)?;
        let x_t = (x_t + scale(&d1, alpha_t * ((exp_minus_h - 1.0) / h + 1.0))?)?;
        Ok((x_t - scale(&d2, alpha_t * ((exp_minus_h - 1.0 + h) / (h * h) - 0.5))?)?)
    }
}

/// `_sigma_to_alpha_sigma_t`: alpha_t = 1 / sqrt(sigma² + 1), sigma_t = sigma * alpha_t.
fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

fn check_supported(config: &SchedulerConfig) -> Result<SolverType> {
    let unsupported = |what: String| {
        Err(Error::Config(format!(
            "DPMSolverMultistepScheduler: {what} is not supported"
        )))
    };
    match config.algorithm_type.as_str() {
        // diffusers maps "deis" to dpmsolver++.
        "dpmsolver++" | "deis" => {}
        other => {
            return unsupported(format!(
                "algorithm_type {other:?} (only \"dpmsolver++\" is ported)"
            ))
        }
    }
    let solver_type = match config.solver_type.as_str() {
        // diffusers maps the DEIS/UniPC solver types to midpoint.
        "midpoint" | "logrho" | "bh1" | "bh2" => SolverType::Midpoint,
        "heun" => SolverType::Heun,
        other => return unsupported(format!("solver_type {other:?}")),
    };
    if !(1..=3).contains(&config.solver_order) {
        return unsupported(format!("solver_order {}", config.solver_order));
    }
    let choices = [
        config.use_karras_sigmas,
        config.use_exponential_sigmas,
        config.use_beta_sigmas,
    ];
    if choices.into_iter().filter(|&chosen| chosen).count() > 1 {
        return Err(Error::Config(
            "only one of use_karras_sigmas, use_exponential_sigmas and use_beta_sigmas can be set"
                .to_string(),
        ));
    }
    for (set, name) in [
        (config.use_beta_sigmas, "use_beta_sigmas"),
        (config.use_lu_lambdas, "use_lu_lambdas"),
        (config.use_flow_sigmas, "use_flow_sigmas"),
    ] {
        if set {
            return unsupported(name.to_string());
        }
    }
    // With learned variance the model's epsilon is its first 3 channels (DeepFloyd IF).
    if let (Some(variance_type @ ("learned" | "learned_range")), PredictionType::Epsilon) =
        (config.variance_type.as_deref(), config.prediction_type)
    {
        return unsupported(format!("variance_type {variance_type:?}"));
    }
    Ok(solver_type)
}

impl Scheduler for DPMSolverMultistepScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.schedule.timesteps
    }

    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    fn scale_model_input(&self, sample: &Tensor, _timestep: f64) -> Result<Tensor> {
        Ok(sample.clone())
    }

    /// Computes in f32, returns `model_output`'s dtype.
    fn step(
        &mut self,
        model_output: &Tensor,
        timestep: f64,
        sample: &Tensor,
        _noise: &mut NoiseSource,
    ) -> Result<Tensor> {
        let index = self.schedule.step_index_for(timestep)?;
        let count = self.schedule.timesteps.len();
        let config = &self.config;
        let order = config.solver_order;
        let few_steps = config.lower_order_final && count < 15;
        let lower_order_final = index == count - 1
            && (config.euler_at_final
                || few_steps
                || config.final_sigmas_type == FinalSigmasType::Zero);
        let lower_order_second = index + 2 == count && few_steps;

        let output_dtype = model_output.dtype();
        let sample = sample.to_dtype(DType::F32)?;
        let x0 = self.convert_model_output(&model_output.to_dtype(DType::F32)?, &sample, index)?;
        self.model_outputs.remove(0);
        self.model_outputs.push(Some(x0.clone()));

        let history = |back: usize| -> Result<&Tensor> {
            self.model_outputs
                .iter()
                .rev()
                .nth(back)
                .and_then(Option::as_ref)
                .ok_or_else(|| {
                    Error::InvalidRequest(
                        "DPM-Solver history is missing a model output".to_string(),
                    )
                })
        };
        let prev_sample = if order == 1 || self.lower_order_nums < 1 || lower_order_final {
            self.first_order_update(&x0, &sample, index)?
        } else if order == 2 || self.lower_order_nums < 2 || lower_order_second {
            self.second_order_update([history(1)?, history(0)?], &sample, index)?
        } else {
            self.third_order_update([history(2)?, history(1)?, history(0)?], &sample, index)?
        };
        if self.lower_order_nums < order {
            self.lower_order_nums += 1;
        }
        self.schedule.step_index = Some(index + 1);
        Ok(prev_sample.to_dtype(output_dtype)?)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, timestep: f64) -> Result<Tensor> {
        let (alpha_t, sigma_t) =
            alpha_sigma(self.schedule.sigmas[self.schedule.add_noise_index(timestep)?]);
        Ok((scale(original, alpha_t)? + scale(noise, sigma_t)?)?)
    }

    fn set_begin_index(&mut self, begin_index: usize) {
        self.schedule.begin_index = Some(begin_index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdxl() -> SchedulerConfig {
        SchedulerConfig {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            timestep_spacing: Some(TimestepSpacing::Leading),
            steps_offset: 1,
            ..SchedulerConfig::default()
        }
    }

    #[test]
    fn leading_spacing_uses_one_more_interval() {
        // ratio = 1000 // 11 = 90: 900, 810, ..., 90, plus the offset.
        let scheduler = DPMSolverMultistepScheduler::new(&sdxl(), 10).unwrap();
        assert_eq!(scheduler.timesteps()[0], 901.0);
        assert_eq!(scheduler.timesteps()[9], 91.0);
        assert_eq!(scheduler.sigmas().len(), 11);
        assert_eq!(scheduler.sigmas()[10], 0.0);
        let linspace = DPMSolverMultistepScheduler::new(&SchedulerConfig::default(), 4).unwrap();
        // np.linspace(0, 999, 5).round()[::-1][:-1]
        assert_eq!(linspace.timesteps(), &[999.0, 749.0, 500.0, 250.0]);
    }

    #[test]
    fn karras_timesteps_are_integers_spanning_the_training_range() {
        let config = SchedulerConfig {
            use_karras_sigmas: true,
            ..sdxl()
        };
        let scheduler = DPMSolverMultistepScheduler::new(&config, 10).unwrap();
        // diffusers' values
        assert_eq!(
            scheduler.timesteps(),
            &[999.0, 916.0, 815.0, 687.0, 523.0, 327.0, 146.0, 41.0, 7.0, 0.0]
        );
    }

    #[test]
    fn unsupported_options_are_reported() {
        let config = SchedulerConfig {
            algorithm_type: "sde-dpmsolver++".to_string(),
            ..sdxl()
        };
        assert!(matches!(
            DPMSolverMultistepScheduler::new(&config, 10),
            Err(Error::Config(_))
        ));
    }
}
