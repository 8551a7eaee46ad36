//! Parity of the schedulers with diffusers, on the references scripts/fixtures/sdxl_tiny.py
//! writes to tests/fixtures/sdxl_tiny_reference/schedulers/<case>.safetensors.
//!
//! Each case mirrors `X.from_config(sdxl_scheduler_config, **overrides)` then
//! `set_timesteps(n)`; the stepped cases run diffusers' loop (`scale_model_input`, then
//! `step(model_output_i, t, sample).prev_sample` fed back as the next sample) on the recorded
//! model outputs, and `add_noise` is checked on a fresh scheduler. The metadata holds the
//! source config, the overrides, the resolved config and the step count.
//!
//! Tolerances: timesteps exact; sigmas and `init_noise_sigma` 1e-6 relative; tensors
//! max |ours - theirs| <= 1e-5 * max |theirs|, with our own output fed to the next step.
//! What remains is float32 rounding of the schedule scalars: torch's CPU `sqrt` and
//! vectorised `linspace` are not correctly rounded, so a sigma or coefficient can differ in
//! its last bit (measured: under 1e-6 of the tensor's scale after 25 steps).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use candle_core::{DType, Device, Tensor};
use huatu_diffusion::schedulers::{
    DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler, NoiseSource, SchedulerConfig, SchedulerKind,
};

const SCHEDULERS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/sdxl_tiny_reference/schedulers"
);

struct Case {
    name: String,
    tensors: HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
}

impl Case {
    fn load(name: &str) -> anyhow::Result<Self> {
        let path = Path::new(SCHEDULERS).join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
        Ok(Self {
            name: name.to_string(),
            tensors,
            metadata,
        })
    }

    fn tensor(&self, key: &str) -> anyhow::Result<&Tensor> {
        self.tensors
            .get(key)
            .with_context(|| format!("{}: no tensor `{key}`", self.name))
    }

    fn values(&self, key: &str) -> anyhow::Result<Vec<f64>> {
        Ok(self
            .tensor(key)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?)
    }

    fn meta(&self, key: &str) -> anyhow::Result<&str> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("{}: no metadata `{key}`", self.name))
    }

    fn num_inference_steps(&self) -> anyhow::Result<usize> {
        Ok(self.meta("num_inference_steps")?.parse()?)
    }

    fn overrides(&self) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        match serde_json::from_str(self.meta("overrides")?)? {
            serde_json::Value::Object(map) => Ok(map),
            other => bail!("{}: overrides are not an object: {other}", self.name),
        }
    }

    /// The kind diffusers' class and overrides amount to.
    fn kind(&self) -> anyhow::Result<SchedulerKind> {
        let karras =
            self.overrides()?.get("use_karras_sigmas") == Some(&serde_json::Value::Bool(true));
        Ok(match (self.meta("class")?, karras) {
            ("DPMSolverMultistepScheduler", true) => SchedulerKind::DpmPlusPlus2MKarras,
            (class, _) => SchedulerKind::from_class_name(class)
                .with_context(|| format!("unexpected class {class}"))?,
        })
    }

    /// The source config with the case's overrides applied (what `from_config` receives).
    fn config(&self) -> anyhow::Result<SchedulerConfig> {
        let mut source: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(self.meta("source_config")?)?;
        source.extend(self.overrides()?);
        Ok(SchedulerConfig::from_json(
            &serde_json::Value::Object(source).to_string(),
        )?)
    }
}

fn case_names() -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(SCHEDULERS).with_context(|| format!("listing {SCHEDULERS}"))? {
        let path: PathBuf = entry?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "safetensors")
        {
            names.extend(
                path.file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned()),
            );
        }
    }
    names.sort();
    Ok(names)
}

/// The sigmas of the concrete scheduler (None for DDIM, which has none).
fn sigmas(
    kind: SchedulerKind,
    config: &SchedulerConfig,
    steps: usize,
) -> anyhow::Result<Option<Vec<f32>>> {
    let config = kind.config_for(config);
    Ok(match kind {
        SchedulerKind::Euler => Some(
            EulerDiscreteScheduler::new(&config, steps)?
                .sigmas()
                .to_vec(),
        ),
        SchedulerKind::EulerAncestral => Some(
            EulerAncestralDiscreteScheduler::new(&config, steps)?
                .sigmas()
                .to_vec(),
        ),
        SchedulerKind::Ddim => {
            DDIMScheduler::new(&config, steps)?;
            None
        }
        SchedulerKind::DpmPlusPlus2M | SchedulerKind::DpmPlusPlus2MKarras => Some(
            DPMSolverMultistepScheduler::new(&config, steps)?
                .sigmas()
                .to_vec(),
        ),
    })
}

const TOLERANCE: f64 = 1e-5;

/// max |ours - theirs| / max |theirs|.
fn relative_error(ours: &Tensor, theirs: &Tensor) -> anyhow::Result<f64> {
    ensure!(
        ours.dims() == theirs.dims(),
        "shape {:?} vs {:?}",
        ours.dims(),
        theirs.dims()
    );
    let ours = ours.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    let theirs = theirs
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let scale = theirs
        .iter()
        .fold(0.0f64, |max, value| max.max(value.abs()))
        .max(f64::MIN_POSITIVE);
    Ok(ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / scale)
}

fn check_case(case: &Case) -> anyhow::Result<String> {
    let kind = case.kind()?;
    let steps = case.num_inference_steps()?;
    let config = case.config()?;
    let mut scheduler = kind.build(&config, steps)?;

    // The resolved config diffusers reports (with its `-Infinity`) must give the same schedule.
    let resolved = SchedulerConfig::from_json(case.meta("config")?)?;
    ensure!(
        kind.build(&resolved, steps)?.timesteps() == scheduler.timesteps(),
        "resolved config differs"
    );

    let expected_timesteps = case.values("timesteps")?;
    ensure!(
        scheduler.timesteps() == expected_timesteps.as_slice(),
        "timesteps {:?} != {expected_timesteps:?}",
        scheduler.timesteps()
    );
    let mut report = format!("{kind}, {steps} steps");

    if case.tensors.contains_key("sigmas") {
        let ours = sigmas(kind, &config, steps)?.context("no sigmas")?;
        let theirs = case.values("sigmas")?;
        ensure!(
            ours.len() == theirs.len(),
            "{} sigmas, expected {}",
            ours.len(),
            theirs.len()
        );
        for (index, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            ensure!(
                ((*a as f64) - b).abs() <= 1e-6 * b.abs(),
                "sigma {index}: {a} != {b}"
            );
        }
    }
    let init_noise_sigma = case.values("init_noise_sigma")?[0];
    ensure!(
        (scheduler.init_noise_sigma() - init_noise_sigma).abs() <= 1e-6 * init_noise_sigma,
        "init_noise_sigma {} != {init_noise_sigma}",
        scheduler.init_noise_sigma()
    );

    if case.meta("steps_recorded")? == "true" {
        let mut sample = case.tensor("sample_0")?.clone();
        let mut worst: f64 = 0.0;
        let mut noise = NoiseSource::new(0);
        for (index, timestep) in scheduler.timesteps().to_vec().into_iter().enumerate() {
            let scaled = scheduler.scale_model_input(&sample, timestep)?;
            let scaled_error = relative_error(&scaled, case.tensor(&format!("scaled_{index}"))?)?;
            ensure!(
                scaled_error <= TOLERANCE,
                "step {index}: scale_model_input off by {scaled_error:e}"
            );
            let model_output = case.tensor(&format!("model_output_{index}"))?;
            sample = scheduler.step(model_output, timestep, &sample, &mut noise)?;
            let step_error = relative_error(&sample, case.tensor(&format!("prev_{index}"))?)?;
            ensure!(
                step_error <= TOLERANCE,
                "step {index} (t = {timestep}): prev_sample off by {step_error:e}"
            );
            worst = worst.max(scaled_error).max(step_error);
        }
        report += &format!(", steps within {worst:.1e}");
    }

    let fresh = kind.build(&config, steps)?;
    let timestep = case.values("add_noise_timestep")?[0];
    let noised = fresh.add_noise(
        case.tensor("add_noise_original")?,
        case.tensor("add_noise_noise")?,
        timestep,
    )?;
    let noise_error = relative_error(&noised, case.tensor("add_noise_out")?)?;
    ensure!(noise_error <= TOLERANCE, "add_noise off by {noise_error:e}");
    Ok(report + &format!(", add_noise within {noise_error:.1e}"))
}

#[test]
fn schedulers_match_diffusers() -> anyhow::Result<()> {
    let names = case_names()?;
    ensure!(
        names.len() >= 10,
        "expected the 10 scheduler cases, found {names:?}"
    );
    let mut failures = Vec::new();
    for name in names {
        let case = Case::load(&name)?;
        match check_case(&case) {
            Ok(report) => eprintln!("{name}: ok ({report})"),
            Err(error) => failures.push(format!("{name}: {error:#}")),
        }
    }
    ensure!(
        failures.is_empty(),
        "scheduler parity failures:\n{}",
        failures.join("\n")
    );
    Ok(())
}
