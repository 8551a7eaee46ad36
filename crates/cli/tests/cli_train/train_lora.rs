//! `huatu train lora` end to end: the exact reproducibility command of the training issue
//! against diffusers' reference run (scripts/fixtures/train_lora_tiny.py), a trained
//! adapter plugged into a scene and used by `chat` with its trigger word, and one clear
//! error for each kind of bad training input.

use std::path::{Path, PathBuf};

use super::{copy_dir, fixture, huatu, model, stderr, temp_dir};

fn train_fixture(path: &str) -> String {
    fixture("train_lora_tiny").join(path).display().to_string()
}

/// The command outside checks run (issue: "This exact command must work").
fn contract_args(out: &Path, log: &Path) -> Vec<String> {
    let fixture = model();
    [
        "train",
        "lora",
        "--model",
        &fixture,
        "--data",
        &train_fixture("data"),
        "--out",
        &out.display().to_string(),
        "--format",
        "diffusers",
        "--rank",
        "4",
        "--alpha",
        "4",
        "--targets",
        "attn",
        "--init-lora",
        &train_fixture("init_lora.safetensors"),
        "--noise",
        &train_fixture("noise.safetensors"),
        "--resolution",
        "64",
        "--batch-size",
        "2",
        "--steps",
        "3",
        "--lr",
        "0.001",
        "--optimizer",
        "adamw",
        "--weight-decay",
        "0.01",
        "--max-grad-norm",
        "1.0",
        "--lr-scheduler",
        "constant",
        "--log",
        &log.display().to_string(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect()
}

fn run(args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    huatu(&args)
}

#[test]
fn the_contract_command_reproduces_diffusers_losses() {
    let dir = temp_dir("train-contract");
    let (out, log) = (dir.join("lora.safetensors"), dir.join("log.jsonl"));
    let output = run(&contract_args(&out, &log));
    assert!(output.status.success(), "{}", stderr(&output));
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(train_fixture("eps/expected.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    let reference: Vec<f64> = expected["losses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_f64())
        .collect();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_default())
        .collect();
    assert_eq!(lines.len(), 3, "one log line per optimizer step");
    assert_eq!(reference.len(), 3);
    for (index, (line, reference)) in lines.iter().zip(&reference).enumerate() {
        assert_eq!(line["step"].as_u64(), Some(index as u64 + 1));
        assert_eq!(line["lr"].as_f64(), Some(0.001));
        let loss = line["loss"].as_f64().unwrap_or(f64::NAN);
        assert!(
            (loss - reference).abs() / reference < 1e-3,
            "step {index}: loss {loss} vs diffusers {reference}"
        );
    }
    let info = huatu(&["lora", "info", &out.display().to_string()]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        text.contains("format: diffusers")
            && text.contains("unet 136")
            && text.contains("ranks: 4"),
        "{text}"
    );
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    assert_eq!(
        leftovers.len(),
        2,
        "only the adapter and the log: {leftovers:?}"
    );
}

#[test]
fn a_trained_lora_plugs_into_its_scene_with_the_trigger_word() {
    let dir = temp_dir("train-scene");
    let lora_dir = dir.join("lora");
    let output = huatu(&[
        "train",
        "lora",
        "--model",
        &model(),
        "--data",
        &train_fixture("data"),
        "--out",
        &lora_dir.join("poster.safetensors").display().to_string(),
        "--rank",
        "4",
        "--steps",
        "2",
        "--resolution",
        "64",
        "--trigger",
        "htposter",
        "--lr",
        "0.001",
        "--flip",
        "--fit",
        "random-crop",
        "--seed",
        "3",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let info = huatu(&[
        "lora",
        "info",
        &lora_dir.join("poster.safetensors").display().to_string(),
    ]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        text.contains("format: kohya") && text.contains("trigger word: htposter"),
        "{text}"
    );
    let picture = dir.join("poster.png");
    let chat = huatu(&[
        "chat",
        "请帮我生成一张元宵祝福图",
        "--lora-dir",
        &lora_dir.display().to_string(),
        "--size",
        "64x64",
        "--steps",
        "2",
        "--seed",
        "1",
        "--out",
        &picture.display().to_string(),
    ]);
    let plan = String::from_utf8_lossy(&chat.stdout);
    assert!(chat.status.success(), "{}", stderr(&chat));
    assert!(plan.contains("prompt: htposter, "), "{plan}");
    assert!(plan.contains("poster.safetensors ×0.8"), "{plan}");
    assert!(picture.is_file());
}

fn expect_training_error(extra: &[&str], data: &Path, needle: &str) {
    let dir = temp_dir("train-error");
    let out = dir.join("never.safetensors");
    let mut args: Vec<String> = [
        "train",
        "lora",
        "--model",
        &model(),
        "--data",
        &data.display().to_string(),
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    args.extend(["--out".into(), out.display().to_string()]);
    if !extra.contains(&"--steps") {
        args.extend(["--steps".into(), "1".into()]);
    }
    if !extra.contains(&"--resolution") {
        args.extend(["--resolution".into(), "64".into()]);
    }
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let output = run(&args);
    let message = stderr(&output);
    assert!(!output.status.success(), "expected a failure for {extra:?}");
    assert!(
        message.contains(needle),
        "expected `{needle}` in: {message}"
    );
    assert!(!message.contains("panicked"), "{message}");
    assert!(!out.exists(), "nothing is written on failure");
}

#[test]
fn bad_training_input_gets_one_clear_error_each() {
    let data = fixture("train_lora_tiny").join("data");
    let empty = temp_dir("train-empty");
    expect_training_error(&[], &empty, "no images");
    expect_training_error(&[], &empty.join("missing"), "is not a folder");
    expect_training_error(&["--rank", "0"], &data, "the LoRA rank must be at least 1");
    expect_training_error(&["--resolution", "60"], &data, "multiple of 8");
    expect_training_error(&["--targets", "conv"], &data, "LoCon");
    let noise = train_fixture("noise.safetensors");
    expect_training_error(
        &["--noise", &noise, "--batch-size", "2", "--steps", "4"],
        &data,
        "needs 4",
    );
    let init = train_fixture("init_lora.safetensors");
    expect_training_error(
        &["--init-lora", &init, "--rank", "8"],
        &data,
        "rank 4 (expected 8",
    );
    expect_training_error(
        &["--init-lora", &init, "--alpha", "2", "--rank", "4"],
        &data,
        "alpha 4",
    );

    // A model folder without its VAE.
    let no_vae = temp_dir("train-no-vae");
    copy_dir(&PathBuf::from(model()), &no_vae);
    let _ = std::fs::remove_dir_all(no_vae.join("vae"));
    let dir = temp_dir("train-no-vae-out");
    let output = huatu(&[
        "train",
        "lora",
        "--model",
        &no_vae.display().to_string(),
        "--data",
        &data.display().to_string(),
        "--out",
        &dir.join("x.safetensors").display().to_string(),
        "--resolution",
        "64",
        "--steps",
        "1",
    ]);
    assert!(
        !output.status.success() && stderr(&output).contains("vae"),
        "{}",
        stderr(&output)
    );

    // Unreadable images are skipped, counted and listed; images without captions are said.
    let mixed = temp_dir("train-mixed");
    copy_dir(&data, &mixed);
    std::fs::write(mixed.join("broken.png"), b"not a png").unwrap_or_default();
    let _ = std::fs::remove_file(mixed.join("03.txt"));
    let out = mixed.join("out.safetensors");
    let output = huatu(&[
        "train",
        "lora",
        "--model",
        &model(),
        "--data",
        &mixed.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--resolution",
        "64",
        "--steps",
        "1",
        "--trigger",
        "hta",
    ]);
    let message = stderr(&output);
    assert!(output.status.success(), "{message}");
    assert!(
        message.contains("skipped 1 unreadable images") && message.contains("broken.png"),
        "{message}"
    );
    assert!(
        message.contains("1 images have no caption") && message.contains("`hta`"),
        "{message}"
    );
    assert!(out.is_file());
}

#[test]
fn long_runs_save_snapshots_samples_and_a_state_to_resume() {
    let dir = temp_dir("train-long");
    let out = dir.join("style.safetensors");
    let common = [
        "train",
        "lora",
        "--model",
        &model(),
        "--data",
        &train_fixture("data"),
        "--out",
        &out.display().to_string(),
        "--rank",
        "4",
        "--resolution",
        "64",
        "--lr",
        "0.001",
        "--gradient-checkpointing",
    ]
    .map(String::from);
    let mut first = common.to_vec();
    first.extend(
        [
            "--steps",
            "2",
            "--save-every",
            "1",
            "--sample-every",
            "2",
            "--sample-prompt",
            "a cat",
            "--sample-steps",
            "2",
        ]
        .map(String::from),
    );
    let output = run(&first);
    assert!(output.status.success(), "{}", stderr(&output));
    for name in [
        "style-step000001.safetensors",
        "style-step000002.safetensors",
        "style.state.safetensors",
    ] {
        assert!(
            dir.join(name).is_file(),
            "{name} missing: {}",
            stderr(&output)
        );
    }
    assert!(dir.join("style-samples/step000002-0.png").is_file());
    assert!(stderr(&output).contains("wrote"), "{}", stderr(&output));

    let log = dir.join("log.jsonl");
    let mut second = common.to_vec();
    second.extend(
        [
            "--steps",
            "3",
            "--resume",
            &dir.join("style.state.safetensors").display().to_string(),
            "--log",
        ]
        .map(String::from),
    );
    second.push(log.display().to_string());
    let output = run(&second);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("resuming at step 2"),
        "{}",
        stderr(&output)
    );
    let steps: Vec<u64> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()?["step"].as_u64())
        .collect();
    assert_eq!(steps, vec![3]);
}
