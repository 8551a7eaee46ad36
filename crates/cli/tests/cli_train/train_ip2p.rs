//! `huatu train instruct-pix2pix` end to end: the reproducibility command against diffusers'
//! reference run (scripts/fixtures/train_ip2p_tiny.py), a seeded run whose model folder
//! `huatu edit --instruction` then uses, and one clear error for each kind of bad input.

use std::path::Path;

use super::{copy_dir, fixture, huatu, model, stderr, temp_dir};

fn ip2p_fixture(path: &str) -> String {
    fixture("train_ip2p_tiny").join(path).display().to_string()
}

fn run(args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    huatu(&args)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

/// `huatu edit --instruction` with the trained folder writes a 64×64 image.
fn edit_with(model_dir: &Path, dir: &Path) {
    let out = dir.join("edited.png");
    let output = huatu(&[
        "edit",
        "--model",
        &model_dir.display().to_string(),
        "--image",
        &ip2p_fixture("data/00_input.png"),
        "--instruction",
        "make it sunny",
        "--steps",
        "3",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let image = image::open(&out).unwrap_or_else(|error| panic!("{}: {error}", out.display()));
    assert_eq!((image.width(), image.height()), (64, 64));
}

/// The lora case of the reference run (tests/fixtures/train_ip2p_tiny/lora) as flags.
fn contract_args(out: &Path, log: &Path, steps: &str) -> Vec<String> {
    strings(&[
        "train",
        "instruct-pix2pix",
        "--model",
        &model(),
        "--data",
        &ip2p_fixture("data"),
        "--out",
        &out.display().to_string(),
        "--mode",
        "lora",
        "--rank",
        "4",
        "--init-lora",
        &ip2p_fixture("init_lora.safetensors"),
        "--noise",
        &ip2p_fixture("noise.safetensors"),
        "--conditioning-dropout-prob",
        "0.1",
        "--resolution",
        "64",
        "--batch-size",
        "3",
        "--steps",
        steps,
        "--lr",
        "0.001",
        "--log",
        &log.display().to_string(),
    ])
}

/// The reference's per-step losses from `first` on, against the `--log` lines of `log`.
fn check_logged_losses(log: &Path, first: usize) {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ip2p_fixture("lora/expected.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    let reference: Vec<f64> = expected["losses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_f64)
        .skip(first)
        .collect();
    let logged: Vec<serde_json::Value> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert_eq!(logged.len(), reference.len(), "one log line per step");
    for (line, reference) in logged.iter().zip(&reference) {
        let loss = line["loss"].as_f64().unwrap_or(f64::NAN);
        assert!(
            (loss - reference).abs() / reference < 1e-4,
            "loss {loss} vs diffusers {reference}"
        );
        assert_eq!(line["lr"].as_f64(), Some(0.001));
    }
}

#[test]
fn the_replayed_lora_run_reproduces_diffusers_losses_and_the_model_edits() {
    let dir = temp_dir("train-ip2p-contract");
    let (out, log) = (dir.join("edit-model"), dir.join("log.jsonl"));
    let output = run(&contract_args(&out, &log, "4"));
    assert!(output.status.success(), "{}", stderr(&output));
    check_logged_losses(&log, 0);
    // A diffusers InstructPix2Pix folder: 8-channel UNet config, pipeline class, components.
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("unet/config.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(config["in_channels"].as_u64(), Some(8));
    let index = std::fs::read_to_string(out.join("model_index.json")).unwrap_or_default();
    assert!(
        index.contains("StableDiffusionXLInstructPix2PixPipeline"),
        "{index}"
    );
    for part in [
        "vae",
        "text_encoder",
        "text_encoder_2",
        "tokenizer",
        "tokenizer_2",
        "scheduler",
    ] {
        assert!(out.join(part).is_dir(), "{part}/ missing");
    }
    edit_with(&out, &dir);
}

#[test]
fn a_run_saved_after_two_steps_resumes_to_the_reference_losses() {
    let dir = temp_dir("train-ip2p-resume");
    let (out, log) = (dir.join("edit-model"), dir.join("log.jsonl"));
    // The pairs in a folder of their own: --cache-latents writes beside them.
    let data = dir.join("data");
    copy_dir(&fixture("train_ip2p_tiny/data"), &data);
    let with_data = |mut args: Vec<String>| {
        let at = args.iter().position(|arg| arg == "--data").unwrap_or(0) + 1;
        args[at] = data.display().to_string();
        args.push("--cache-latents".into());
        args
    };
    let mut first = with_data(contract_args(&out, &log, "2"));
    first.extend(strings(&["--save-every", "2"]));
    let output = run(&first);
    assert!(output.status.success(), "{}", stderr(&output));
    let state = dir.join("edit-model.state.safetensors");
    assert!(stderr(&output).contains("continue with --resume") && state.is_file());
    assert!(data.join(".huatu-cache/latents.safetensors").is_file());
    let mut second = with_data(contract_args(&out, &log, "4"));
    second.extend(strings(&["--resume", &state.display().to_string()]));
    let output = run(&second);
    assert!(output.status.success(), "{}", stderr(&output));
    let log_text = stderr(&output);
    assert!(
        log_text.contains("resuming at step 2")
            && log_text.contains("(6 images from the latent cache)"),
        "{log_text}"
    );
    check_logged_losses(&log, 2);
    edit_with(&out, &dir);
}

#[test]
fn three_pairs_five_full_steps_then_edit_with_the_result() {
    let dir = temp_dir("train-ip2p-full");
    let out = dir.join("edit-model");
    let output = run(&strings(&[
        "train",
        "instruct-pix2pix",
        "--model",
        &model(),
        "--data",
        &ip2p_fixture("data"),
        "--out",
        &out.display().to_string(),
        "--mode",
        "full",
        "--conditioning-dropout-prob",
        "0.05",
        "--flip",
        "--resolution",
        "64",
        "--steps",
        "5",
        "--lr",
        "1e-4",
        "--seed",
        "3",
    ]));
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("conv_in widened from 4 to 8")
            && log.contains("trained 5 steps on 3 edit pairs"),
        "{log}"
    );
    edit_with(&out, &dir);

    // Training on from the InstructPix2Pix model just written (no widening this time), with
    // the UNet recomputed stage by stage.
    let again = dir.join("again");
    let output = run(&strings(&[
        "train",
        "instruct-pix2pix",
        "--model",
        &out.display().to_string(),
        "--data",
        &ip2p_fixture("data"),
        "--out",
        &again.display().to_string(),
        "--rank",
        "2",
        "--gradient-checkpointing",
        "--resolution",
        "64",
        "--steps",
        "1",
    ]));
    let log = stderr(&output);
    assert!(output.status.success(), "{log}");
    assert!(!log.contains("widened"), "{log}");
}

#[test]
fn bad_training_input_gives_one_clear_error() {
    let dir = temp_dir("train-ip2p-errors");
    let base = |out: &Path| {
        strings(&[
            "train",
            "instruct-pix2pix",
            "--model",
            &model(),
            "--data",
            &ip2p_fixture("data"),
            "--out",
            &out.display().to_string(),
            "--resolution",
            "64",
            "--steps",
            "1",
        ])
    };
    let expect_error = |args: Vec<String>, needle: &str| {
        let output = run(&args);
        let message = stderr(&output);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(message.contains(needle), "{args:?}: {message}");
    };
    // --out holds something already
    std::fs::write(dir.join("note.txt"), "keep me").unwrap_or_default();
    expect_error(base(&dir), "already exists and is not empty");
    // no metadata.jsonl
    let mut args = base(&dir.join("a"));
    args[5] = fixture("train_lora_tiny/data").display().to_string();
    expect_error(args, "metadata.jsonl");
    // a dropout probability with a noise file that holds no dropout draws
    let mut args = base(&dir.join("b"));
    args.extend(strings(&[
        "--noise",
        &fixture("train_lora_tiny/noise.safetensors")
            .display()
            .to_string(),
        "--conditioning-dropout-prob",
        "0.1",
        "--batch-size",
        "2",
    ]));
    expect_error(args, "dropout_random");
    // a single-file checkpoint: training needs the diffusers folder it copies
    let mut args = base(&dir.join("e"));
    args[3] = fixture("sdxl_tiny.safetensors").display().to_string();
    expect_error(args, "needs the model as a diffusers folder");
    // --mode and --conditioning-dropout-prob out of range
    let mut args = base(&dir.join("c"));
    args.extend(strings(&["--mode", "partial"]));
    expect_error(args, "expected lora or full");
    let mut args = base(&dir.join("d"));
    args.extend(strings(&["--conditioning-dropout-prob", "1.5"]));
    expect_error(args, "must be in [0, 1]");
}
