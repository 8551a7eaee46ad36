//! End-to-end tests of the `huatu` binary (one test binary, to save link time): `generate`
//! on the tiny SDXL fixture (tests/fixtures/sdxl_tiny) with and without LoRA adapters, its
//! outputs, `lora info`, one clear error for each kind of bad input, and the scale-out
//! cluster on PostgreSQL (cli_scale/).
// Test code: a failed expectation is the failure the test reports.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "cli_data/caption.rs"]
mod caption;
#[path = "cli_scale/cluster.rs"]
mod cluster;
#[path = "cli_data/data.rs"]
mod data;
#[path = "cli_data/dataset.rs"]
mod dataset;
#[path = "cli_data/dataset_pairs.rs"]
mod dataset_pairs;
#[path = "cli_scale/http.rs"]
mod http;
#[path = "cli_plan/plan.rs"]
mod plan;
#[path = "cli_train/train_ip2p.rs"]
mod train_ip2p;
#[path = "cli_train/train_lora.rs"]
mod train_lora;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");

fn fixture(path: &str) -> PathBuf {
    Path::new(FIXTURES).join(path)
}

/// Runs the binary with the tiny model as `$HUATU_MODEL` and no config file, so a
/// developer's own settings never reach a test.
fn huatu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_huatu"))
        .args(args)
        .env("HUATU_MODEL", fixture("sdxl_tiny"))
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("huatu-cli-no-config"),
        )
        .output()
        .unwrap_or_else(|error| panic!("cannot run huatu: {error}"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("huatu-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    dir
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Decodes an RGB PNG; returns its pixels and text chunks.
fn read_png(path: &Path) -> (Vec<u8>, Vec<(String, String)>) {
    let file =
        std::fs::File::open(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .expect("png header");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("png frame");
    pixels.truncate(info.buffer_size());
    let chunks = reader
        .info()
        .utf8_text
        .iter()
        .map(|chunk| (chunk.keyword.clone(), chunk.get_text().unwrap_or_default()))
        .collect();
    (pixels, chunks)
}

fn model() -> String {
    fixture("sdxl_tiny").display().to_string()
}

#[test]
fn generate_with_injected_latents_reproduces_the_diffusers_picture() {
    // The `euler_negative` case of sdxl_tiny_reference/pipeline/cases.json.
    let dir = temp_dir("latents");
    let latents_in = dir.join("latents_in.safetensors");
    let reference = candle_core::safetensors::load(
        fixture("sdxl_tiny_reference/pipeline/euler_negative.safetensors"),
        &candle_core::Device::Cpu,
    )
    .expect("reference");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("latents", reference["latents_in"].clone())]),
        &latents_in,
    )
    .expect("write latents");
    let out = dir.join("cat.png");
    let saved = dir.join("final.safetensors");
    let output = huatu(&[
        "generate",
        "--model",
        &model(),
        "--prompt",
        "a photo of a cat",
        "--negative-prompt",
        "blurry, low quality",
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "5",
        "--guidance",
        "5",
        "--scheduler",
        "euler",
        "--latents",
        &latents_in.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--save-latents",
        &saved.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        out.display().to_string()
    );

    let (pixels, chunks) = read_png(&out);
    let (expected, _) = read_png(&fixture("sdxl_tiny_reference/pipeline/euler_negative.png"));
    let worst = pixels
        .iter()
        .zip(&expected)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(255);
    assert!(worst <= 1, "png differs from diffusers by {worst} levels");

    let settings = chunks
        .iter()
        .find(|(key, _)| key == "huatu")
        .map(|(_, text)| text.clone())
        .expect("huatu chunk");
    let settings: serde_json::Value = serde_json::from_str(&settings).expect("settings JSON");
    assert_eq!(settings["prompt"], "a photo of a cat");
    assert_eq!(settings["scheduler"], "euler");
    assert_eq!(settings["steps"], 5);
    assert!(chunks
        .iter()
        .any(|(key, text)| key == "parameters" && text.contains("Negative prompt: blurry")));

    let final_latents =
        candle_core::safetensors::load(&saved, &candle_core::Device::Cpu).expect("saved latents");
    let difference = (&final_latents["latents"] - &reference["latents_out"])
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .expect("difference");
    assert!(difference < 2e-4, "saved latents differ by {difference}");
}

#[test]
fn several_images_get_numbered_files_and_distinct_seeds() {
    let dir = temp_dir("batch");
    let out = dir.join("img.png");
    let output = huatu(&[
        "generate",
        "--model",
        &model(),
        "--prompt",
        "a red house",
        "--steps",
        "2",
        "--seed",
        "7",
        "--num-images",
        "2",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (first, _) = read_png(&dir.join("img-1.png"));
    let (second, _) = read_png(&dir.join("img-2.png"));
    assert_ne!(first, second, "seeds 7 and 8 gave the same picture");

    // The same seed again gives the same picture.
    let again = dir.join("again.png");
    let output = huatu(&[
        "generate",
        "--model",
        &model(),
        "--prompt",
        "a red house",
        "--steps",
        "2",
        "--seed",
        "7",
        "--out",
        &again.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(read_png(&again).0, first);
}

fn expect_error(args: &[&str], needle: &str) {
    let output = huatu(args);
    assert!(!output.status.success(), "huatu {args:?} should fail");
    let message = stderr(&output);
    assert!(
        message.contains(needle),
        "expected `{needle}` in:\n{message}"
    );
    assert!(
        !message.contains("panicked"),
        "panic instead of an error:\n{message}"
    );
}

#[test]
fn bad_input_gets_one_clear_error_each() {
    let dir = temp_dir("errors");
    let out = dir.join("x.png").display().to_string();
    let model = model();

    expect_error(
        &[
            "generate",
            "--model",
            "/nonexistent/sdxl",
            "--prompt",
            "x",
            "--out",
            &out,
        ],
        "/nonexistent/sdxl",
    );
    expect_error(
        &[
            "generate", "--model", &model, "--prompt", "x", "--width", "100", "--height", "64",
            "--out", &out,
        ],
        "multiples of 8, got 100×64",
    );
    expect_error(
        &[
            "generate",
            "--model",
            &model,
            "--prompt",
            "x",
            "--scheduler",
            "plms",
            "--out",
            &out,
        ],
        "plms",
    );
    expect_error(
        &[
            "generate", "--model", &model, "--config", &model, "--prompt", "x", "--out", &out,
        ],
        "--config is for single-file",
    );

    let not_latents = dir.join("bad.safetensors");
    std::fs::write(&not_latents, b"not a safetensors file").expect("write");
    expect_error(
        &[
            "generate",
            "--model",
            &model,
            "--prompt",
            "x",
            "--latents",
            &not_latents.display().to_string(),
            "--out",
            &out,
        ],
        "bad.safetensors",
    );

    // A model folder without its UNet weights names what is missing and where.
    let broken = dir.join("broken");
    copy_dir(&fixture("sdxl_tiny"), &broken);
    std::fs::remove_file(broken.join("unet/diffusion_pytorch_model.safetensors")).expect("remove");
    expect_error(
        &[
            "generate",
            "--model",
            &broken.display().to_string(),
            "--prompt",
            "x",
            "--out",
            &out,
        ],
        "broken/unet",
    );
    assert!(!Path::new(&out).exists(), "a failed run wrote an image");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn write_latents_from(reference: &str, dir: &Path) -> PathBuf {
    let tensors = candle_core::safetensors::load(fixture(reference), &candle_core::Device::Cpu)
        .expect("reference");
    let path = dir.join("latents_in.safetensors");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("latents", tensors["latents_in"].clone())]),
        &path,
    )
    .expect("write latents");
    path
}

#[test]
fn generate_with_two_loras_matches_diffusers() {
    // The `kohya_uniform_0.7_peft_0.4` case of tests/fixtures/lora_tiny/cases.json.
    let dir = temp_dir("lora");
    let latents = write_latents_from("lora_tiny/kohya_uniform_0.7_peft_0.4.safetensors", &dir);
    let out = dir.join("lora.png");
    let kohya = format!(
        "{}:0.7",
        fixture("lora_tiny/kohya_uniform.safetensors").display()
    );
    let peft = format!("{}:0.4", fixture("lora_tiny/peft.safetensors").display());
    let output = huatu(&[
        "generate",
        "--model",
        &model(),
        "--prompt",
        "hta_style, a cat wearing a hat",
        "--negative-prompt",
        "blurry",
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "4",
        "--guidance",
        "5",
        "--scheduler",
        "euler",
        "--latents",
        &latents.display().to_string(),
        "--lora",
        &kohya,
        "--lora",
        &peft,
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (pixels, chunks) = read_png(&out);
    let (expected, _) = read_png(&fixture("lora_tiny/kohya_uniform_0.7_peft_0.4.png"));
    let worst = pixels
        .iter()
        .zip(&expected)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(255);
    assert!(worst <= 1, "png differs from diffusers by {worst} levels");
    let parameters = chunks
        .iter()
        .find(|(key, _)| key == "parameters")
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    assert!(
        parameters.contains("<lora:kohya_uniform:0.7> <lora:peft:0.4>"),
        "{parameters}"
    );
}

#[test]
fn a_lora_for_another_model_is_refused_unless_partial_is_allowed() {
    let dir = temp_dir("lora-partial");
    let foreign = dir.join("foreign.safetensors");
    let device = candle_core::Device::Cpu;
    let zeros = |shape: &[usize]| {
        candle_core::Tensor::zeros(shape, candle_core::DType::F32, &device).expect("zeros")
    };
    let tensors = std::collections::HashMap::from([
        (
            "lora_unet_input_blocks_99_1_proj_in.lora_down.weight",
            zeros(&[2, 8]),
        ),
        (
            "lora_unet_input_blocks_99_1_proj_in.lora_up.weight",
            zeros(&[8, 2]),
        ),
    ]);
    candle_core::safetensors::save(&tensors, &foreign).expect("write");
    let out = dir.join("x.png").display().to_string();
    let lora = foreign.display().to_string();
    let args = [
        "generate",
        "--model",
        &model(),
        "--prompt",
        "x",
        "--steps",
        "1",
        "--lora",
        &lora,
        "--out",
        &out,
    ];
    expect_error(&args, "input_blocks_99_1_proj_in");
    let mut partial = args.to_vec();
    partial.push("--lora-allow-partial");
    let output = huatu(&partial);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("warning: LoRA module matches no layer"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn lora_info_shows_the_trigger_word_and_what_the_file_changes() {
    let output = huatu(&[
        "lora",
        "info",
        &fixture("lora_tiny/kohya.safetensors").display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "format: kohya",
        "modules: text_encoder 18, text_encoder_2 18, unet 226 (convolution: 34)",
        "ranks: 2, 4",
        "trigger word: hta_style",
        "training tags: hta_style (10), poster (7), red lantern (3)",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    expect_error(
        &["lora", "info", "/nonexistent.safetensors"],
        "/nonexistent.safetensors",
    );
}

fn edit_reference(name: &str) -> String {
    fixture(&format!("edit_tiny_reference/{name}"))
        .display()
        .to_string()
}

fn noise_file(case: &str, dir: &Path) -> String {
    let tensors = candle_core::safetensors::load(
        fixture(&format!("edit_tiny_reference/{case}.safetensors")),
        &candle_core::Device::Cpu,
    )
    .expect("reference");
    let path = dir.join(format!("{case}-noise.safetensors"));
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("latents", tensors["noise"].clone())]),
        &path,
    )
    .expect("write noise");
    path.display().to_string()
}

fn max_level_difference(a: &[u8], b: &[u8]) -> u8 {
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(255)
}

#[test]
fn edit_with_an_instruction_matches_diffusers_instruct_pix2pix() {
    let dir = temp_dir("edit-ip2p");
    let out = dir.join("winter.png");
    let output = huatu(&[
        "edit",
        "--model",
        &fixture("sdxl_tiny_instruct_pix2pix").display().to_string(),
        "--image",
        &edit_reference("image.png"),
        "--instruction",
        "make it look like winter",
        "--negative-prompt",
        "blurry",
        "--image-guidance",
        "1.5",
        "--steps",
        "5",
        "--guidance",
        "5",
        "--scheduler",
        "euler",
        "--latents",
        &noise_file("instruct_pix2pix", &dir),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (pixels, chunks) = read_png(&out);
    let (expected, _) = read_png(&fixture("edit_tiny_reference/instruct_pix2pix.png"));
    assert!(max_level_difference(&pixels, &expected) <= 1);
    assert!(chunks
        .iter()
        .any(|(key, text)| key == "huatu" && text.contains("\"mode\":\"instruct-pix2pix\"")));
}

#[test]
fn region_edit_with_a_controlnet_matches_diffusers_inside_and_keeps_the_outside() {
    let dir = temp_dir("edit-controlnet");
    let out = dir.join("logo.png");
    // the fixture's mask is the box 24,16 – 56,48
    let output = huatu(&[
        "edit",
        "--model",
        &model(),
        "--image",
        &edit_reference("image.png"),
        "--box",
        "24,16,56,48",
        "--prompt",
        "a golden logo",
        "--negative-prompt",
        "blurry",
        "--strength",
        "1.0",
        "--controlnet",
        &fixture("controlnet_tiny").display().to_string(),
        "--controlnet-scale",
        "0.8",
        "--control-end",
        "0.8",
        "--control-image",
        &edit_reference("control.png"),
        "--steps",
        "5",
        "--scheduler",
        "euler",
        "--latents",
        &noise_file("controlnet_inpaint", &dir),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (pixels, _) = read_png(&out);
    let (expected, _) = read_png(&fixture("edit_tiny_reference/controlnet_inpaint.png"));
    let (original, _) = read_png(&fixture("edit_tiny_reference/image.png"));
    for y in 0..64 {
        for x in 0..64 {
            let i = (y * 64 + x) * 3;
            let inside = (24..56).contains(&x) && (16..48).contains(&y);
            let reference = if inside { &expected } else { &original };
            let worst = max_level_difference(&pixels[i..i + 3], &reference[i..i + 3]);
            assert!(
                worst <= if inside { 1 } else { 0 },
                "pixel ({x}, {y}) off by {worst}"
            );
        }
    }
}

#[test]
fn a_condition_image_without_text_runs_guess_mode_in_the_region() {
    let dir = temp_dir("edit-guess");
    let out = dir.join("guess.png");
    let control = dir.join("control.png");
    let output = huatu(&[
        "edit",
        "--model",
        &model(),
        "--image",
        &edit_reference("image.png"),
        "--region",
        "0.5,0.5,0.5,0.5",
        "--controlnet",
        &fixture("controlnet_tiny").display().to_string(),
        "--condition-image",
        &edit_reference("control.png"),
        "--steps",
        "2",
        "--seed",
        "3",
        "--save-control",
        &control.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("guess mode"),
        "{}",
        stderr(&output)
    );
    let (canvas, _) = read_png(&control);
    for y in 0..64 {
        for x in 0..64 {
            if !((16..48).contains(&x) && (16..48).contains(&y)) {
                assert_eq!(
                    &canvas[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3],
                    &[0, 0, 0],
                    "control outside the region"
                );
            }
        }
    }
    assert!(canvas.contains(&255), "no edges in the control image");
}

#[test]
fn bad_edit_requests_get_one_clear_error_each() {
    let dir = temp_dir("edit-errors");
    let out = dir.join("x.png").display().to_string();
    let image = edit_reference("image.png");
    let model = model();
    expect_error(
        &[
            "edit",
            "--model",
            &model,
            "--image",
            &image,
            "--region",
            "60,32,40,40",
            "--prompt",
            "x",
            "--out",
            &out,
        ],
        "reaches outside the 64×64 image",
    );
    expect_error(
        &[
            "edit",
            "--model",
            &model,
            "--image",
            &image,
            "--instruction",
            "make it red",
            "--out",
            &out,
        ],
        "needs an 8-channel UNet",
    );
    expect_error(
        &["edit", "--model", &model, "--image", &image, "--out", &out],
        "nothing to do",
    );
    let odd = dir.join("odd.png");
    image::RgbImage::new(30, 20).save(&odd).expect("write");
    expect_error(
        &[
            "edit",
            "--model",
            &model,
            "--image",
            &odd.display().to_string(),
            "--prompt",
            "x",
            "--out",
            &out,
        ],
        "multiples of 8",
    );
    expect_error(
        &[
            "edit",
            "--model",
            &model,
            "--image",
            "/nonexistent.png",
            "--prompt",
            "x",
            "--out",
            &out,
        ],
        "/nonexistent.png",
    );
    // options the chosen mode would ignore are refused, not dropped
    expect_error(
        &[
            "edit",
            "--model",
            &model,
            "--image",
            &image,
            "--prompt",
            "x",
            "--image-guidance",
            "2",
            "--out",
            &out,
        ],
        "--instruction",
    );
    expect_error(
        &[
            "edit",
            "--model",
            &model,
            "--image",
            &image,
            "--box",
            "0,0,8,8",
            "--prompt",
            "x",
            "--controlnet-scale",
            "0.5",
            "--out",
            &out,
        ],
        "--controlnet",
    );
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn chat_understands_plans_and_makes_the_picture() {
    let dir = temp_dir("chat");
    let out = dir.join("poster.png");
    let output = huatu(&[
        "chat",
        "请帮我生成一张元宵祝福图",
        "--size",
        "64x64",
        "--steps",
        "2",
        "--seed",
        "1",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for needle in [
        "intent: generate.poster",
        "scene: poster",
        "prompt: ",
        "text2img",
        "enhancer: ",
        "output: ",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let (pixels, chunks) = read_png(&out);
    assert_eq!(pixels.len(), 64 * 64 * 3);
    assert!(chunks
        .iter()
        .any(|(key, text)| key == "huatu" && text.contains("\"intent\":\"generate.poster\"")));
}

#[test]
fn the_sdxl_model_comes_from_the_flag_the_environment_or_the_config_file() {
    let dir = temp_dir("model-lookup");
    let out = dir.join("poster.png");
    let chat = |config_home: &Path| {
        Command::new(env!("CARGO_BIN_EXE_huatu"))
            .args([
                "chat",
                "请帮我生成一张元宵祝福图",
                "--size",
                "64x64",
                "--steps",
                "1",
            ])
            .args(["--seed", "1", "--out", &out.display().to_string()])
            .env_remove("HUATU_MODEL")
            .env("XDG_CONFIG_HOME", config_home)
            .output()
            .unwrap_or_else(|error| panic!("cannot run huatu: {error}"))
    };
    let config = |name: &str, text: &str| {
        let home = dir.join(name);
        std::fs::create_dir_all(home.join("huatu")).unwrap();
        std::fs::write(home.join("huatu/config.toml"), text).unwrap();
        home
    };

    let output = chat(&dir.join("none"));
    let message = stderr(&output);
    assert!(!output.status.success(), "ran without a model");
    for needle in [
        "no SDXL model given",
        "--model",
        "HUATU_MODEL",
        "huatu/config.toml",
    ] {
        assert!(
            message.contains(needle),
            "`{needle}` missing from:\n{message}"
        );
    }

    let home = config("good", &format!("model = {:?}\n", model()));
    let output = chat(&home);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(out.is_file());

    let home = config("misspelt", &format!("modle = {:?}\n", model()));
    let output = chat(&home);
    assert!(
        !output.status.success() && stderr(&output).contains("unknown field `modle`"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn chat_puts_the_supplied_logo_into_the_named_corner_and_nowhere_else() {
    let dir = temp_dir("chat-reference");
    let out = dir.join("logo.png");
    let output = huatu(&[
        "chat",
        "把这个logo放到右下角",
        "--image",
        &edit_reference("image.png"),
        "--condition-image",
        &edit_reference("control.png"),
        "--controlnet",
        &fixture("controlnet_tiny").display().to_string(),
        "--steps",
        "2",
        "--seed",
        "1",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("controlnet-inpaint"),
        "{}",
        stdout(&output)
    );
    let (pixels, _) = read_png(&out);
    let (original, _) = read_png(&fixture("edit_tiny_reference/image.png"));
    // 右下角 is the box 0.55–0.95 of each side: columns and rows 35..61 of 64
    let mut changed_inside = false;
    for y in 0..64 {
        for x in 0..64 {
            let i = (y * 64 + x) * 3;
            let inside = (35..61).contains(&x) && (35..61).contains(&y);
            if inside {
                changed_inside |= pixels[i..i + 3] != original[i..i + 3];
            } else {
                assert_eq!(
                    pixels[i..i + 3],
                    original[i..i + 3],
                    "pixel ({x}, {y}) outside the corner changed"
                );
            }
        }
    }
    assert!(changed_inside, "nothing was put into the corner");
}

#[test]
fn chat_edits_by_instruction_asks_for_missing_images_and_declines_chit_chat() {
    let dir = temp_dir("chat-instruct");
    let out = dir.join("sunset.png");
    let output = huatu(&[
        "chat",
        "把天空换成晚霞",
        "--image",
        &edit_reference("image.png"),
        "--instruct-model",
        &fixture("sdxl_tiny_instruct_pix2pix").display().to_string(),
        "--steps",
        "2",
        "--seed",
        "1",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("instruct-pix2pix"),
        "{}",
        stdout(&output)
    );
    assert!(out.is_file());

    let output = huatu(&["chat", "把天空换成晚霞"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("请上传要编辑的图片"),
        "{}",
        stdout(&output)
    );

    let output = huatu(&["chat", "你好"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("reply: "), "{}", stdout(&output));
}

#[test]
fn only_the_masked_area_is_worked_on_and_pasted_back() {
    let dir = temp_dir("edit-only-masked");
    let out = dir.join("patch.png");
    let output = huatu(&[
        "edit",
        "--model",
        &model(),
        "--image",
        &edit_reference("image.png"),
        "--box",
        "8,8,24,20",
        "--prompt",
        "a red apple",
        "--only-masked",
        "--mask-padding",
        "4",
        "--steps",
        "2",
        "--seed",
        "5",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("only the masked area: "),
        "{}",
        stderr(&output)
    );
    let (pixels, _) = read_png(&out);
    let (original, _) = read_png(&fixture("edit_tiny_reference/image.png"));
    let mut changed = false;
    for y in 0..64 {
        for x in 0..64 {
            let i = (y * 64 + x) * 3;
            if (8..24).contains(&x) && (8..20).contains(&y) {
                changed |= pixels[i..i + 3] != original[i..i + 3];
            } else {
                assert_eq!(
                    pixels[i..i + 3],
                    original[i..i + 3],
                    "pixel ({x}, {y}) outside the box changed"
                );
            }
        }
    }
    assert!(changed, "the box was not repainted");
}

#[test]
fn train_intent_weighs_repeated_data_and_scores_every_dev_set() {
    let dir = temp_dir("train-intent");
    let dev = Path::new(FIXTURES).join("../../data/intents/dev.jsonl");
    let text = std::fs::read_to_string(&dev).expect("dev set");
    let small = dir.join("small.jsonl");
    std::fs::write(&small, text.lines().take(24).collect::<Vec<_>>().join("\n")).expect("write");
    let out = dir.join("model");
    let weighted = format!("{}*3", small.display());
    let (small, out_text) = (small.display().to_string(), out.display().to_string());
    let output = huatu(&[
        "train",
        "intent",
        "--data",
        &weighted,
        "--data",
        &small,
        "--dev",
        &small,
        "--dev",
        &small,
        "--epochs",
        "1",
        "--hidden-size",
        "32",
        "--layers",
        "1",
        "--heads",
        "2",
        "--intermediate-size",
        "64",
        "--out",
        &out_text,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("counted 3 times") && log.contains("training on 96 instructions"),
        "{log}"
    );
    assert_eq!(log.matches("intent accuracy").count(), 2, "{log}");
    assert!(["config.json", "vocab.txt", "model.safetensors"]
        .iter()
        .all(|file| out.join(file).is_file()));
    let bad = huatu(&[
        "train",
        "intent",
        "--data",
        &format!("{small}*0"),
        "--out",
        &out_text,
    ]);
    assert!(
        !bad.status.success() && stderr(&bad).contains("whole number ≥ 1"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn chat_with_a_box_changes_only_inside_it() {
    let dir = temp_dir("chat-box");
    let out = dir.join("boxed.png");
    let output = huatu(&[
        "chat",
        "把天空换成晚霞",
        "--image",
        &edit_reference("image.png"),
        "--box",
        "0,0,64,24",
        "--instruct-model",
        &fixture("sdxl_tiny_instruct_pix2pix").display().to_string(),
        "--steps",
        "2",
        "--seed",
        "1",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("region: box (0, 0)–(64, 24)"),
        "{}",
        stdout(&output)
    );
    let (pixels, _) = read_png(&out);
    let (original, _) = read_png(&fixture("edit_tiny_reference/image.png"));
    let row = |y: usize| (y * 64 * 3, (y + 1) * 64 * 3);
    let (start, end) = (row(24).0, row(63).1);
    assert_eq!(
        pixels[start..end],
        original[start..end],
        "rows below the box changed"
    );
    assert_ne!(
        pixels[..row(21).1],
        original[..row(21).1],
        "nothing changed inside the box"
    );
    let output = huatu(&["chat", "把天空换成晚霞", "--box", "0,0,8,8"]);
    assert!(
        !output.status.success() && stderr(&output).contains("--image"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_device_and_precision_are_chosen_by_flag_or_environment() {
    let dir = temp_dir("device");
    let out = dir.join("x.png").display().to_string();
    let model = model();
    let small = [
        "generate", "--model", &model, "--prompt", "x", "--steps", "2", "--width", "64",
        "--height", "64", "--seed", "1", "--out", &out,
    ];
    if !cfg!(feature = "cuda") {
        let mut args = small.to_vec();
        args.extend(["--device", "cuda:1"]);
        expect_error(&args, "built without CUDA");
    }

    let output = Command::new(env!("CARGO_BIN_EXE_huatu"))
        .args(small)
        .env("HUATU_DEVICE", "tpu")
        .output()
        .unwrap_or_else(|error| panic!("cannot run huatu: {error}"));
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("HUATU_DEVICE: unknown device `tpu`"),
        "{}",
        stderr(&output)
    );

    // `auto` on a CPU build is the CPU in f32, and the PNG says which precision ran.
    let output = huatu(&small);
    assert!(output.status.success(), "{}", stderr(&output));
    let settings = read_png(Path::new(&out))
        .1
        .into_iter()
        .find(|(key, _)| key == "huatu")
        .map(|(_, value)| value)
        .unwrap_or_default();
    if !cfg!(feature = "cuda") {
        assert!(settings.contains("\"dtype\":\"f32\""), "{settings}");
    }

    // Half precision on the CPU: weights held in bf16/f16 — the picture stays within a few
    // levels of the f32 one. f16 widens its weights and computes in f32 (2 levels); bf16
    // multiplies in bf16 on CPUs with AVX-512 BF16, activations rounded to bf16 as in
    // PyTorch's bf16 autocast (3 levels seen on this tiny model; 4 allowed).
    let full = read_png(Path::new(&out)).0;
    for half in ["bf16", "f16"] {
        let mut args = small.to_vec();
        args.extend(["--device", "cpu", "--dtype", half]);
        let output = huatu(&args);
        assert!(output.status.success(), "{}", stderr(&output));
        let (pixels, chunks) = read_png(Path::new(&out));
        let settings = chunks
            .into_iter()
            .find(|(key, _)| key == "huatu")
            .map(|(_, value)| value)
            .unwrap_or_default();
        assert!(
            settings.contains(&format!("\"weight_dtype\":\"{half}\"")),
            "{settings}"
        );
        let worst = max_level_difference(&full, &pixels);
        let allowed = if half == "bf16" { 4 } else { 2 };
        assert!(worst <= allowed, "{half} weights: {worst} levels from f32");
    }
}

#[test]
fn parse_uses_the_built_in_intent_model_unless_given_a_folder() {
    let instruction = "帮我画一张春节促销海报，16:9";
    let elsewhere = temp_dir("parse-elsewhere");
    let built_in = Command::new(env!("CARGO_BIN_EXE_huatu"))
        .args(["parse", instruction])
        .current_dir(&elsewhere)
        .env_remove("HUATU_INTENT_MODEL")
        .output()
        .unwrap_or_else(|error| panic!("cannot run huatu: {error}"));
    assert!(built_in.status.success(), "{}", stderr(&built_in));
    let folder = fixture("../../models/intent").display().to_string();
    let from_folder = huatu(&["parse", "--intent-model", &folder, instruction]);
    assert!(from_folder.status.success(), "{}", stderr(&from_folder));
    assert_eq!(built_in.stdout, from_folder.stdout);
    assert!(String::from_utf8_lossy(&built_in.stdout).contains("\"intent\":\"generate.poster\""));
}

#[test]
fn a_bad_intent_model_folder_is_one_clear_error() {
    let missing = temp_dir("no-intent-model").join("absent");
    let missing = missing.display().to_string();
    expect_error(
        &["parse", "--model", &missing, "画一只猫"],
        "lacks config.json",
    );
    expect_error(
        &["chat", "--intent-model", &missing, "画一只猫"],
        "lacks config.json",
    );
}
