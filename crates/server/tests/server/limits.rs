//! Bounded work and model safety: the per-job cost limit (`--max-megapixel-steps`), the
//! wall-clock limit (`--max-job-secs`), and LoRA switches that fail (a corrupt file, a
//! merge that overflows, a job that panics) leaving the next job equal to the base model.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use candle_core::{Device, Tensor};
use serde_json::json;

use crate::common::*;

fn generation(steps: usize, extra: serde_json::Value) -> serde_json::Value {
    let mut request =
        json!({ "prompt": "a festive poster", "size": "64x64", "steps": steps, "seed": 11 });
    if let (Some(request), Some(extra)) = (request.as_object_mut(), extra.as_object()) {
        request.extend(extra.clone());
    }
    request
}

#[test]
fn a_job_over_the_cost_limit_is_refused_before_it_is_queued() {
    // 64×64 is 1/256 megapixel: 10 steps cost 0.039, 30 steps 0.117.
    let server = TestServer::start(|config| config.max_megapixel_steps = 0.05);
    let message = server
        .post_json("/v1/images/generations", &generation(30, json!({})))
        .expect_error(400, "job_too_large");
    assert!(
        message.contains("0.117 megapixel-steps (1 image(s) × 30 step(s) × 64×64 pixels")
            && message.contains("over this server's limit of 0.05 (--max-megapixel-steps)"),
        "{message}"
    );
    // n multiplies the cost.
    let message = server
        .post_json("/v1/images/generations", &generation(10, json!({ "n": 2 })))
        .expect_error(400, "job_too_large");
    assert!(message.contains("2 image(s) × 10 step(s)"), "{message}");
    let health = server.get("/healthz").json();
    assert_eq!(health["limits"]["max_megapixel_steps"], 0.05, "{health}");
    // Nothing was queued.
    let jobs = server.get("/v1/jobs").json();
    assert_eq!(jobs["data"].as_array().map(Vec::len), Some(0), "{jobs}");

    let response = server.post_json("/v1/images/generations", &generation(10, json!({})));
    assert_eq!(response.status, 200, "{}", response.text());

    // Edits count the steps their strength runs: 30 steps × 0.5 = 15 steps, 0.059.
    let png = png_bytes(64, 64);
    let (content_type, body) = multipart(&[
        ("image", Some("original.png"), &png),
        ("prompt", None, b"a red lantern"),
        ("steps", None, b"30"),
        ("strength", None, b"0.5"),
    ]);
    let response = request(
        server.address,
        "POST",
        "/v1/images/edits",
        &[("Content-Type", &content_type)],
        &body,
    );
    let message = response.expect_error(400, "job_too_large");
    assert!(message.contains("15 step(s) × 64×64"), "{message}");
}

#[test]
fn a_job_over_its_time_ends_failed_and_the_next_job_runs() {
    let server = TestServer::start(|config| config.max_job = Duration::from_millis(300));
    let response = server.post_json(
        "/v1/images/generations",
        // 8 × 150 steps: far longer than 0.3 s on any machine, even the tiny model.
        &generation(150, json!({ "async": true, "n": 8 })),
    );
    assert_eq!(response.status, 202, "{}", response.text());
    let id = response.json()["id"].as_str().unwrap().to_string();
    let job = wait_for(server.address, &id, Duration::from_secs(120), is_terminal);
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("ran longer than 0.3 s") && error.contains("--max-job-secs"),
        "{error}"
    );
    assert_eq!(
        job["images"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{job}"
    );
    // The clock starts again for every job.
    let response = server.post_json("/v1/images/generations", &generation(1, json!({})));
    assert_eq!(response.status, 200, "{}", response.text());
}

/// The pixels of a synchronous generation's first image, or the error body.
fn pixels(server: &TestServer, loras: serde_json::Value) -> Result<Vec<u8>, String> {
    let response = server.post_json(
        "/v1/images/generations",
        &generation(3, json!({ "loras": loras })),
    );
    if response.status != 200 {
        return Err(response.text());
    }
    let b64 = response.json()["data"][0]["b64_json"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    Ok(png_pixels(&png))
}

fn fixture_lora() -> std::path::PathBuf {
    workspace_root().join("tests/fixtures/lora_tiny/kohya.safetensors")
}

/// The kohya fixture with one second-text-encoder module's factors × 1e25: each factor
/// finite (the file passes its checks), their product past f32. Weights are written UNet
/// first, so the merge fails after most of the set is in.
fn write_overflowing_lora(path: &Path) {
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(fixture_lora(), &Device::Cpu).unwrap();
    let prefix = "lora_te2_text_model_encoder_layers_1_self_attn_v_proj";
    for part in ["lora_up.weight", "lora_down.weight"] {
        let key = format!("{prefix}.{part}");
        let tensor = tensors.get(&key).unwrap_or_else(|| panic!("no {key}"));
        let huge = (tensor * 1e25).unwrap();
        tensors.insert(key, huge);
    }
    candle_core::safetensors::save(&tensors, path).unwrap();
}

#[test]
fn a_corrupt_lora_leaves_the_next_job_equal_to_the_base_model() {
    let server = TestServer::start(|_| {});
    let loras = server.data.path().join("loras");
    std::fs::create_dir_all(&loras).unwrap();
    std::fs::copy(fixture_lora(), loras.join("good.safetensors")).unwrap();
    write_overflowing_lora(&loras.join("overflow.safetensors"));
    let good_bytes = std::fs::read(fixture_lora()).unwrap();
    std::fs::write(
        loras.join("truncated.safetensors"),
        &good_bytes[..good_bytes.len() / 2],
    )
    .unwrap();

    let base = pixels(&server, json!([])).unwrap();
    let good = pixels(&server, json!([{ "name": "good" }])).unwrap();
    assert_ne!(good, base, "the LoRA changed nothing");

    // From the good set to one whose merge overflows midway: refused, base model back.
    let error = pixels(&server, json!([{ "name": "overflow" }])).unwrap_err();
    assert!(error.contains("NaN or infinite"), "{error}");
    assert_eq!(pixels(&server, json!([])).unwrap(), base);

    // A truncated file fails to read; nothing is merged from it.
    pixels(&server, json!([{ "name": "good" }])).unwrap();
    let error = pixels(&server, json!([{ "name": "truncated" }])).unwrap_err();
    assert!(error.contains("job_failed"), "{error}");
    assert_eq!(pixels(&server, json!([])).unwrap(), base);

    // Straight from a failed switch to the good set: the same picture as before.
    pixels(&server, json!([{ "name": "overflow" }])).unwrap_err();
    assert_eq!(pixels(&server, json!([{ "name": "good" }])).unwrap(), good);
}

#[test]
fn a_job_that_panics_leaves_the_next_job_equal_to_the_base_model() {
    use huatu_diffusion::pipelines::Progress;
    use huatu_server::job_runner::{GenerateError, JobRunner};
    use huatu_server::jobs::{GenerationSpec, LoraSpec, SamplingSpec};

    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("loras")).unwrap();
    std::fs::copy(fixture_lora(), data.path().join("loras/good.safetensors")).unwrap();
    let mut config = huatu_server::ServerConfig::new(data.path());
    config.model = Some(tiny_model());
    let mut engine = JobRunner::load(&config, &tiny_model(), &Device::Cpu).unwrap();
    let spec = |loras: Vec<LoraSpec>| GenerationSpec {
        sampling: SamplingSpec {
            prompt: "a festive poster".into(),
            negative_prompt: None,
            steps: 3,
            guidance: 5.0,
            scheduler: None,
            seed: 11,
            n: 1,
            loras,
        },
        width: 64,
        height: 64,
    };
    let good = vec![LoraSpec {
        name: "good".into(),
        scale: 1.0,
    }];
    let mut quiet = |_: Progress| -> huatu_diffusion::Result<()> { Ok(()) };
    let mut run = |engine: &mut JobRunner, loras: Vec<LoraSpec>| {
        engine.start_job();
        match engine.generate(&spec(loras), 0, &mut quiet) {
            Ok(image) => image,
            Err(GenerateError::Failed(reason)) => panic!("{reason}"),
            Err(GenerateError::Cancelled) => panic!("cancelled"),
        }
    };
    let base = run(&mut engine, Vec::new());

    // A job with the LoRA merged panics mid-denoising, as the worker's catch_unwind sees it.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.start_job();
        let mut explode = |progress: Progress| -> huatu_diffusion::Result<()> {
            if let Progress::Step { .. } = progress {
                panic!("a step panicked");
            }
            Ok(())
        };
        let _ = engine.generate(&spec(good.clone()), 0, &mut explode);
    }));
    assert!(panicked.is_err());
    let after = run(&mut engine, Vec::new());
    assert_eq!(after, base, "the next job differs from the base model");
}
