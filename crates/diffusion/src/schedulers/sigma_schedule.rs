//! State the sigma-based schedulers share (Euler, Euler ancestral, DPM-Solver++): timesteps,
//! sigmas, the step counter and diffusers' timestep look-ups (`index_for_timestep`,
//! `_init_step_index`, the index choice in `add_noise`), plus the float timestep grid of the
//! Euler schedulers' `set_timesteps`.

use candle_core::Tensor;

use super::config::TimestepSpacing;
use super::noise_schedule::{numpy_arange, numpy_linspace, numpy_round};
use super::sample_ops::divide;
use crate::{Error, Result};

/// What to do when the first timestep handed to `step` is not in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MissingTimestep {
    /// Euler: an error (diffusers raises an IndexError).
    Fail,
    /// DPM-Solver: start at the last step.
    LastIndex,
}

#[derive(Debug, Clone)]
pub(crate) struct SigmaSchedule {
    /// Float32 values, as f64.
    pub timesteps: Vec<f64>,
    /// One more than `timesteps`: the level after the last step comes last.
    pub sigmas: Vec<f32>,
    pub step_index: Option<usize>,
    pub begin_index: Option<usize>,
    pub missing: MissingTimestep,
}

impl SigmaSchedule {
    pub fn new(timesteps: Vec<f64>, sigmas: Vec<f32>, missing: MissingTimestep) -> Self {
        Self {
            timesteps,
            sigmas,
            step_index: None,
            begin_index: None,
            missing,
        }
    }

    /// Where `timestep` is in the schedule, taking the second match when it occurs twice so
    /// that a schedule entered midway (image-to-image) skips no sigma.
    pub fn index_for_timestep(&self, timestep: f64) -> Result<usize> {
        let mut matches = self
            .timesteps
            .iter()
            .enumerate()
            .filter(|(_, &value)| value == timestep)
            .map(|(index, _)| index);
        let first = matches.next();
        match (first, matches.next(), self.missing) {
            (_, Some(second), _) => Ok(second),
            (Some(first), None, _) => Ok(first),
            (None, None, MissingTimestep::LastIndex) => Ok(self.timesteps.len().saturating_sub(1)),
            (None, None, MissingTimestep::Fail) => Err(Error::InvalidRequest(format!(
                "timestep {timestep} is not one of the scheduler's timesteps {:?}",
                self.timesteps
            ))),
        }
    }

    /// The index of the current step: the counter once stepping began, else the begin index or
    /// the position of `timestep` (`_init_step_index`).
    pub fn current_index(&self, timestep: f64) -> Result<usize> {
        match (self.step_index, self.begin_index) {
            (Some(index), _) | (None, Some(index)) => Ok(index),
            (None, None) => self.index_for_timestep(timestep),
        }
    }

    /// The current index, checked to have a next sigma to step to.
    pub fn step_index_for(&self, timestep: f64) -> Result<usize> {
        let index = self.current_index(timestep)?;
        if index + 1 >= self.sigmas.len() {
            return Err(Error::InvalidRequest(format!(
                "step {index} is past the last of the scheduler's {} steps",
                self.timesteps.len()
            )));
        }
        Ok(index)
    }

    /// The index `add_noise` uses: looked up when no begin index is set, else the current step
    /// (inpainting, after the first step) or the begin index (image-to-image).
    pub fn add_noise_index(&self, timestep: f64) -> Result<usize> {
        let index = match (self.begin_index, self.step_index) {
            (None, _) => self.index_for_timestep(timestep)?,
            (Some(_), Some(step_index)) => step_index,
            (Some(begin_index), None) => begin_index,
        };
        if index >= self.sigmas.len() {
            return Err(Error::InvalidRequest(format!("no sigma for step {index}")));
        }
        Ok(index)
    }

    /// `init_noise_sigma` of the Euler schedulers: the largest sigma, or sqrt(sigma² + 1) for
    /// `leading` spacing (float32).
    pub fn init_noise_sigma(&self, spacing: TimestepSpacing) -> f64 {
        let max_sigma = self
            .sigmas
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max_sigma as f64,
            TimestepSpacing::Leading => (max_sigma * max_sigma + 1.0).sqrt() as f64,
        }
    }

    /// `sample / sqrt(sigma² + 1)`, the Euler schedulers' `scale_model_input`.
    pub fn scale_model_input(&self, sample: &Tensor, timestep: f64) -> Result<Tensor> {
        let index = self.current_index(timestep)?;
        let sigma = *self
            .sigmas
            .get(index)
            .ok_or_else(|| Error::InvalidRequest(format!("no sigma for step {index}")))?;
        divide(sample, (sigma * sigma + 1.0).sqrt())
    }
}

/// The float32 timestep grid of `EulerDiscreteScheduler` / `EulerAncestralDiscreteScheduler`
/// `set_timesteps`, descending.
pub(crate) fn euler_timesteps(
    spacing: TimestepSpacing,
    num_train_timesteps: usize,
    num_inference_steps: usize,
    steps_offset: usize,
) -> Vec<f64> {
    let train = num_train_timesteps as f64;
    let values: Vec<f32> = match spacing {
        TimestepSpacing::Linspace => numpy_linspace(0.0, train - 1.0, num_inference_steps)
            .into_iter()
            .rev()
            .map(|t| t as f32)
            .collect(),
        TimestepSpacing::Leading => {
            let ratio = num_train_timesteps / num_inference_steps;
            (0..num_inference_steps)
                .rev()
                .map(|index| (index * ratio) as f32 + steps_offset as f32)
                .collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = train / num_inference_steps as f64;
            numpy_arange(train, 0.0, -ratio)
                .into_iter()
                .map(|t| numpy_round(t) as f32 - 1.0)
                .collect()
        }
    };
    values.into_iter().map(f64::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestep_lookup_prefers_the_second_match() {
        let schedule = SigmaSchedule::new(
            vec![999.0, 500.0, 500.0, 1.0],
            vec![0.0; 5],
            MissingTimestep::Fail,
        );
        assert_eq!(schedule.index_for_timestep(500.0).unwrap(), 2);
        assert_eq!(schedule.index_for_timestep(1.0).unwrap(), 3);
        assert!(schedule.index_for_timestep(2.0).is_err());
        let schedule = SigmaSchedule {
            missing: MissingTimestep::LastIndex,
            ..schedule
        };
        assert_eq!(schedule.index_for_timestep(2.0).unwrap(), 3);
    }

    #[test]
    fn euler_grids() {
        // SDXL (leading, offset 1): 30 steps of 1000 // 30 = 33 start at 958, 10 steps at 901.
        let leading = euler_timesteps(TimestepSpacing::Leading, 1000, 30, 1);
        assert_eq!((leading[0], leading[1], leading[29]), (958.0, 925.0, 1.0));
        assert_eq!(
            euler_timesteps(TimestepSpacing::Leading, 1000, 10, 1)[0],
            901.0
        );
        assert_eq!(
            euler_timesteps(TimestepSpacing::Trailing, 1000, 10, 0),
            vec![999.0, 899.0, 799.0, 699.0, 599.0, 499.0, 399.0, 299.0, 199.0, 99.0]
        );
        let trailing = euler_timesteps(TimestepSpacing::Trailing, 1000, 30, 0);
        assert_eq!(
            (trailing.len(), trailing[0], trailing[1], trailing[29]),
            (30, 999.0, 966.0, 32.0)
        );
        let linspace = euler_timesteps(TimestepSpacing::Linspace, 1000, 4, 0);
        assert_eq!(linspace, vec![999.0, 666.0, 333.0, 0.0]);
        assert_eq!(
            euler_timesteps(TimestepSpacing::Linspace, 1000, 10, 0)[1],
            888.0
        );
    }
}
