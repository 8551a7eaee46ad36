//! Bounded work per job. A job's cost is its denoising work in megapixel-steps: every
//! image's pixels (in units of 1024×1024) times the denoising steps it runs, summed over
//! the job's images. One number covers text-to-image, edits (whose strength cuts the
//! schedule) and agent plans alike, so `--max-megapixel-steps` caps all three; the worker's
//! `--max-job-secs` (see `engine`) catches whatever the cost cannot foresee (a slow device,
//! an upscaling enhancer).

use axum::http::StatusCode;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::jobs::JobSpec;

/// Pixels in one "megapixel" of the cost: a 1024×1024 image, SDXL's native size.
const MEGAPIXEL: f64 = (1 << 20) as f64;

/// What one job asks of a worker: `images` × `steps` at `width`×`height`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobCost {
    pub images: usize,
    /// Denoising steps one image runs.
    pub steps: usize,
    pub width: usize,
    pub height: usize,
}

impl JobCost {
    pub fn of(spec: &JobSpec) -> Self {
        match spec {
            JobSpec::Generation(spec) => Self {
                images: spec.sampling.n,
                steps: spec.sampling.steps,
                width: spec.width,
                height: spec.height,
            },
            JobSpec::Edit(spec) => Self {
                images: spec.sampling.n,
                steps: spec.steps_run(),
                width: spec.width,
                height: spec.height,
            },
            // A plan's edits run at the original's size, which the plan carries.
            JobSpec::Agent(spec) => Self {
                images: spec.images(),
                steps: spec.plan.steps,
                width: spec.plan.width,
                height: spec.plan.height,
            },
            // A row this version cannot read never runs.
            JobSpec::Unreadable { .. } => Self {
                images: 0,
                steps: 0,
                width: 0,
                height: 0,
            },
        }
    }

    /// images × steps × width·height / 1024².
    pub fn megapixel_steps(&self) -> f64 {
        self.images as f64 * self.steps as f64 * (self.width as f64 * self.height as f64)
            / MEGAPIXEL
    }
}

/// Refuses a job whose cost is over the server's `--max-megapixel-steps` with a 400 that
/// states the rule, the job's numbers and what to lower.
pub fn check_job_cost(spec: &JobSpec, config: &ServerConfig) -> Result<(), ApiError> {
    let cost = JobCost::of(spec);
    let megapixel_steps = cost.megapixel_steps();
    let limit = config.max_megapixel_steps;
    if megapixel_steps <= limit {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "job_too_large",
        format!(
            "this job is {} megapixel-steps ({} image(s) × {} step(s) × {}×{} \
             pixels, counting 1024×1024 as one megapixel), over this server's limit of {} \
             (--max-megapixel-steps); ask for fewer images, fewer steps or a smaller size",
            format_amount(megapixel_steps),
            cost.images,
            cost.steps,
            cost.width,
            cost.height,
            format_amount(limit),
        ),
    ))
}

/// Whole numbers from 100 on, else up to three decimals: 4800, 20, 0.117.
fn format_amount(amount: f64) -> String {
    if amount >= 100.0 {
        return format!("{amount:.0}");
    }
    let text = format!("{amount:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{EditSpec, GenerationSpec, SamplingSpec};

    fn generation(n: usize, steps: usize, side: usize) -> JobSpec {
        JobSpec::Generation(GenerationSpec {
            sampling: SamplingSpec {
                prompt: "a cat".into(),
                negative_prompt: None,
                steps,
                guidance: 5.0,
                scheduler: None,
                seed: 0,
                n,
                loras: Vec::new(),
            },
            width: side,
            height: side,
        })
    }

    #[test]
    fn cost_is_images_times_steps_times_megapixels() {
        assert_eq!(JobCost::of(&generation(1, 1, 1024)).megapixel_steps(), 1.0);
        assert_eq!(
            JobCost::of(&generation(8, 150, 2048)).megapixel_steps(),
            4800.0
        );
        let edit = JobSpec::Edit(EditSpec {
            sampling: SamplingSpec {
                prompt: "x".into(),
                negative_prompt: None,
                steps: 40,
                guidance: 5.0,
                scheduler: None,
                seed: 0,
                n: 2,
                loras: Vec::new(),
            },
            image: "i".into(),
            mask: None,
            width: 512,
            height: 1024,
            strength: 0.5,
        });
        // strength 0.5 runs 20 of the 40 steps; 512×1024 is half a megapixel.
        assert_eq!(JobCost::of(&edit).megapixel_steps(), 20.0);
    }

    #[test]
    fn the_default_allows_ordinary_jobs_and_refuses_the_largest() {
        let config = ServerConfig::new("unused");
        assert_eq!(
            config.max_megapixel_steps,
            crate::config::DEFAULT_MAX_MEGAPIXEL_STEPS
        );
        for allowed in [generation(4, 30, 1024), generation(1, 30, 2048)] {
            assert!(check_job_cost(&allowed, &config).is_ok());
        }
        let error = check_job_cost(&generation(8, 150, 2048), &config)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("4800 megapixel-steps"), "{error}");
        assert!(
            error.contains("8 image(s) × 150 step(s) × 2048×2048"),
            "{error}"
        );
        assert!(
            error.contains("limit of 120 (--max-megapixel-steps)"),
            "{error}"
        );
        assert!(check_job_cost(&generation(5, 30, 1024), &config).is_err());
    }
}
