//! Parity of `train_lora` with diffusers' `train_text_to_image_lora_sdxl.py` on the tiny
//! SDXL (mirrors the reference loop in scripts/fixtures/train_lora_tiny.py: diffusers +
//! peft, torch AdamW, clip_grad_norm_, constant LR). Per-step losses within 1e-3 relative,
//! the LoRA update (trained − initial) within 1e-2 relative of PyTorch's, per module.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use huatu_diffusion::loading::{LoadOptions, ModelSource, SdxlComponents};
use huatu_diffusion::lora::LoraFile;
use huatu_diffusion::schedulers::PredictionType;
use huatu_imaging::FitMode;
use huatu_train::dataset::{CaptionOptions, ImageOptions};
use huatu_train::lora_params::LoraTargets;
use huatu_train::lora_save::SaveFormat;
use huatu_train::lr_schedule::LrScheduleKind;
use huatu_train::optimizer::AdamWConfig;
use huatu_train::trainer::{train_lora, LoraTrainingRequest, StepRecord, TrainingObserver};
use huatu_train::training_settings::TrainingSettings;

use crate::common::{fixture, relative_difference};

#[derive(Default)]
struct Recorder {
    records: Vec<StepRecord>,
}

impl TrainingObserver for Recorder {
    fn message(&mut self, _text: &str) {}
    fn step(&mut self, record: &StepRecord, _total: usize) -> huatu_train::Result<()> {
        self.records.push(record.clone());
        Ok(())
    }
}

fn contract_request() -> LoraTrainingRequest {
    let root = fixture("train_lora_tiny");
    LoraTrainingRequest {
        data: root.join("data"),
        rank: 4,
        alpha: 4.0,
        targets: LoraTargets::Attn,
        init_lora: Some(root.join("init_lora.safetensors")),
        noise_file: Some(root.join("noise.safetensors")),
        image: ImageOptions {
            resolution: 64,
            buckets: false,
            fit: FitMode::CenterCrop,
            flip: false,
        },
        captions: CaptionOptions::default(),
        repeats: 1,
        train_text_encoder: false,
        text_encoder_lr: None,
        snr_gamma: None,
        noise_offset: 0.0,
        format: SaveFormat::Diffusers,
        training: TrainingSettings {
            batch_size: 2,
            gradient_accumulation: 1,
            steps: 3,
            learning_rate: 1e-3,
            adamw: AdamWConfig {
                weight_decay: 0.01,
                ..AdamWConfig::default()
            },
            max_grad_norm: Some(1.0),
            gradient_checkpointing: false,
            lr_schedule: LrScheduleKind::Constant,
            warmup_steps: 0,
            prediction_type: None,
            seed: 0,
            resume: None,
            state_path: None,
            save_every: None,
            cache_latents: false,
            model_id: "sdxl_tiny".into(),
        },
    }
}

fn load_model() -> anyhow::Result<SdxlComponents> {
    let source = ModelSource::from_path(&fixture("sdxl_tiny"))?;
    Ok(SdxlComponents::load(
        &source,
        LoadOptions::default(),
        &Device::Cpu,
    )?)
}

/// (component, module) → (down, up)
fn modules(file: &LoraFile) -> BTreeMap<String, (Tensor, Tensor)> {
    file.modules
        .iter()
        .map(|module| {
            (
                format!(
                    "{:?}.{}",
                    module.component,
                    module.name.trim_start_matches("text_model.")
                ),
                (module.down.clone(), module.up.clone()),
            )
        })
        .collect()
}

fn check_case(case: &str, request: LoraTrainingRequest) -> anyhow::Result<()> {
    let root = fixture("train_lora_tiny");
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        root.join(case).join("expected.json"),
    )?)?;
    let mut components = load_model()?;
    let mut recorder = Recorder::default();
    let outcome = train_lora(&mut components, &request, &mut recorder)?;

    let losses: Vec<f64> = recorder.records.iter().map(|record| record.loss).collect();
    let reference_losses: Vec<f64> = expected["losses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    assert_eq!(losses.len(), reference_losses.len(), "{case}: steps");
    for (step, (ours, reference)) in losses.iter().zip(&reference_losses).enumerate() {
        let relative = (ours - reference).abs() / reference.abs();
        assert!(
            relative < 1e-3,
            "{case} step {step}: loss {ours} vs diffusers {reference} ({relative:.2e} relative)"
        );
    }
    let reference_norms: Vec<f64> = expected["grad_norms"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    for (record, reference) in recorder.records.iter().zip(&reference_norms) {
        assert!(
            (record.grad_norm - reference).abs() / reference < 1e-2,
            "{case}: grad norm {} vs {reference}",
            record.grad_norm
        );
    }

    let init = modules(&LoraFile::read(
        request
            .init_lora
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("no init"))?,
    )?);
    let reference = modules(&LoraFile::read(
        &root.join(case).join("expected.safetensors"),
    )?);
    let trained: BTreeMap<String, (Tensor, Tensor)> = outcome
        .params
        .layers
        .iter()
        .map(|layer| {
            (
                format!(
                    "{:?}.{}",
                    layer.component,
                    layer.name.trim_start_matches("text_model.")
                ),
                (layer.down.as_tensor().clone(), layer.up.as_tensor().clone()),
            )
        })
        .collect();
    assert_eq!(
        trained.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>(),
        "{case}: trained modules"
    );
    let mut worst = (0f64, String::new());
    for (name, (down, up)) in &trained {
        let (init_down, init_up) = &init[name];
        let (reference_down, reference_up) = &reference[name];
        for (ours, initial, theirs, part) in [
            (down, init_down, reference_down, "down"),
            (up, init_up, reference_up, "up"),
        ] {
            let relative = relative_difference(&(ours - initial)?, &(theirs - initial)?)?;
            if relative > worst.0 {
                worst = (relative, format!("{name} {part}"));
            }
        }
    }
    eprintln!(
        "{case}: losses {losses:?}, worst update difference {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 < 1e-2,
        "{case}: LoRA update differs from diffusers by {:.2e} relative at {}",
        worst.0,
        worst.1
    );
    Ok(())
}

#[test]
fn unet_lora_epsilon_matches_diffusers() -> anyhow::Result<()> {
    check_case("eps", contract_request())
}

#[test]
fn v_prediction_matches_diffusers() -> anyhow::Result<()> {
    check_case(
        "vpred",
        LoraTrainingRequest {
            training: TrainingSettings {
                prediction_type: Some(PredictionType::VPrediction),
                ..contract_request().training
            },
            ..contract_request()
        },
    )
}

#[test]
fn min_snr_weighting_matches_diffusers() -> anyhow::Result<()> {
    check_case(
        "min_snr",
        LoraTrainingRequest {
            snr_gamma: Some(5.0),
            ..contract_request()
        },
    )
}

#[test]
fn gradient_clipping_matches_diffusers() -> anyhow::Result<()> {
    check_case(
        "clip",
        LoraTrainingRequest {
            training: TrainingSettings {
                max_grad_norm: Some(0.04),
                ..contract_request().training
            },
            ..contract_request()
        },
    )
}

#[test]
fn text_encoder_lora_matches_diffusers() -> anyhow::Result<()> {
    let init = fixture("train_lora_tiny").join("init_lora_te.safetensors");
    check_case(
        "text_encoder",
        LoraTrainingRequest {
            train_text_encoder: true,
            init_lora: Some(init),
            ..contract_request()
        },
    )
}

/// Recomputing block activations in the backward pass gives the plain backward's
/// gradients, so the same losses and updates as diffusers (the UNet and text-encoder cases).
#[test]
fn gradient_checkpointing_matches_diffusers() -> anyhow::Result<()> {
    check_case(
        "eps",
        LoraTrainingRequest {
            training: TrainingSettings {
                gradient_checkpointing: true,
                ..contract_request().training
            },
            ..contract_request()
        },
    )?;
    let init = fixture("train_lora_tiny").join("init_lora_te.safetensors");
    check_case(
        "text_encoder",
        LoraTrainingRequest {
            train_text_encoder: true,
            init_lora: Some(init),
            training: TrainingSettings {
                gradient_checkpointing: true,
                ..contract_request().training
            },
            ..contract_request()
        },
    )
}

/// With every linear layer adapted (the time embedding's too) and a random init, the
/// checkpointed backward trains the same adapters as the plain one.
#[test]
fn gradient_checkpointing_equals_the_plain_backward_on_all_linear_layers() -> anyhow::Result<()> {
    let request = LoraTrainingRequest {
        targets: LoraTargets::AllLinear,
        init_lora: None,
        training: TrainingSettings {
            steps: 2,
            seed: 7,
            ..contract_request().training
        },
        ..contract_request()
    };
    let mut plain_model = load_model()?;
    let plain = train_lora(&mut plain_model, &request, &mut Recorder::default())?;
    let mut checkpointed_model = load_model()?;
    let checkpointed = train_lora(
        &mut checkpointed_model,
        &LoraTrainingRequest {
            training: TrainingSettings {
                gradient_checkpointing: true,
                ..request.training.clone()
            },
            ..request.clone()
        },
        &mut Recorder::default(),
    )?;
    let init = huatu_train::trainer::build_params(&mut load_model()?, &request)?;
    assert!(plain
        .params
        .layers
        .iter()
        .any(|layer| layer.name.starts_with("time_embedding.")));
    let mut worst = 0f64;
    for ((a, b), start) in plain
        .params
        .layers
        .iter()
        .zip(&checkpointed.params.layers)
        .zip(&init.layers)
    {
        assert_eq!(a.name, b.name);
        for (x, y, x0) in [(&a.down, &b.down, &start.down), (&a.up, &b.up, &start.up)] {
            let update = (x.as_tensor() - x0.as_tensor())?;
            if update.abs()?.max_all()?.to_scalar::<f32>()? > 0.0 {
                worst = worst.max(relative_difference(
                    &(y.as_tensor() - x0.as_tensor())?,
                    &update,
                )?);
            }
        }
    }
    assert!(
        worst < 1e-2,
        "checkpointed updates differ from the plain ones by {worst:.2e} relative"
    );
    Ok(())
}

/// A run stopped after step 2 and resumed from its saved state ends where the whole run
/// ends: same losses, same adapters (the replayed order and AdamW's moments continue).
#[test]
fn a_resumed_run_continues_exactly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.safetensors");
    let mut whole_recorder = Recorder::default();
    let whole = train_lora(&mut load_model()?, &contract_request(), &mut whole_recorder)?;
    let first = LoraTrainingRequest {
        training: TrainingSettings {
            steps: 2,
            state_path: Some(state.clone()),
            save_every: Some(1),
            ..contract_request().training
        },
        ..contract_request()
    };
    train_lora(&mut load_model()?, &first, &mut Recorder::default())?;
    let mut rest_recorder = Recorder::default();
    let rest = LoraTrainingRequest {
        training: TrainingSettings {
            resume: Some(state.clone()),
            ..contract_request().training
        },
        ..contract_request()
    };
    let resumed = train_lora(&mut load_model()?, &rest, &mut rest_recorder)?;
    assert_eq!(rest_recorder.records.len(), 1);
    assert_eq!(rest_recorder.records[0].step, 3);
    assert_eq!(
        rest_recorder.records[0].loss,
        whole_recorder.records[2].loss
    );
    for (a, b) in whole.params.layers.iter().zip(&resumed.params.layers) {
        assert_eq!(
            a.up.as_tensor().to_vec2::<f32>()?,
            b.up.as_tensor().to_vec2::<f32>()?,
            "{}",
            a.name
        );
        assert_eq!(
            a.down.as_tensor().to_vec2::<f32>()?,
            b.down.as_tensor().to_vec2::<f32>()?,
            "{}",
            a.name
        );
    }
    // A state from another rank is refused, naming what differs.
    let other = LoraTrainingRequest {
        rank: 8,
        alpha: 8.0,
        init_lora: None,
        training: TrainingSettings {
            resume: Some(state),
            ..contract_request().training
        },
        ..contract_request()
    };
    let error = train_lora(&mut load_model()?, &other, &mut Recorder::default())
        .err()
        .map(|e| e.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("does not fit this run") && e.contains("rank: 4")),
        "{error:?}"
    );
    Ok(())
}

/// Asks to stop after its first step, as Ctrl-C does.
struct StopAfterOne(usize);

impl TrainingObserver for StopAfterOne {
    fn message(&mut self, _text: &str) {}
    fn step(&mut self, _record: &StepRecord, _total: usize) -> huatu_train::Result<()> {
        self.0 += 1;
        Ok(())
    }
    fn should_stop(&self) -> bool {
        self.0 >= 1
    }
}

#[test]
fn a_stopped_run_keeps_what_it_trained_and_its_state() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("state.safetensors");
    let request = LoraTrainingRequest {
        training: TrainingSettings {
            state_path: Some(state.clone()),
            ..contract_request().training
        },
        ..contract_request()
    };
    let outcome = train_lora(&mut load_model()?, &request, &mut StopAfterOne(0))?;
    assert!(outcome.stopped_early);
    assert_eq!(outcome.steps_done, 1);
    assert!(state.is_file(), "a stop writes the run's state");
    let mut recorder = Recorder::default();
    train_lora(
        &mut load_model()?,
        &LoraTrainingRequest {
            training: TrainingSettings {
                resume: Some(state),
                ..contract_request().training
            },
            ..contract_request()
        },
        &mut recorder,
    )?;
    assert_eq!(
        recorder
            .records
            .iter()
            .map(|record| record.step)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    Ok(())
}

/// `--cache-latents` writes the latents beside the data once; a second run reads them and
/// trains exactly as without the cache.
#[test]
fn cached_latents_train_the_same() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for entry in std::fs::read_dir(fixture("train_lora_tiny").join("data"))? {
        let path = entry?.path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap_or_default()))?;
    }
    let request = LoraTrainingRequest {
        data: dir.path().to_path_buf(),
        training: TrainingSettings {
            cache_latents: true,
            ..contract_request().training
        },
        ..contract_request()
    };
    let mut plain = Recorder::default();
    train_lora(
        &mut load_model()?,
        &LoraTrainingRequest {
            training: TrainingSettings {
                cache_latents: false,
                ..request.training.clone()
            },
            ..request.clone()
        },
        &mut plain,
    )?;
    let mut first = Recorder::default();
    train_lora(&mut load_model()?, &request, &mut first)?;
    assert!(dir
        .path()
        .join(".huatu-cache/latents.safetensors")
        .is_file());
    #[derive(Default)]
    struct Messages(Vec<String>, Recorder);
    impl TrainingObserver for Messages {
        fn message(&mut self, text: &str) {
            self.0.push(text.to_string());
        }
        fn step(&mut self, record: &StepRecord, total: usize) -> huatu_train::Result<()> {
            self.1.step(record, total)
        }
    }
    let mut second = Messages::default();
    train_lora(&mut load_model()?, &request, &mut second)?;
    assert!(
        second
            .0
            .iter()
            .any(|m| m.contains("(4 from the latent cache)")),
        "{:?}",
        second.0
    );
    let losses = |r: &Recorder| {
        r.records
            .iter()
            .map(|record| record.loss)
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&first), losses(&plain));
    assert_eq!(losses(&second.1), losses(&plain));
    Ok(())
}
