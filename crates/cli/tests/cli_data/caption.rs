//! The captioning contract of `huatu caption` (issue 12) on the tiny BLIP fixture
//! (tests/fixtures/blip_tiny): one image → one JSON line `{"caption"}`; a folder → one
//! line per image with `path` and `caption`; captions equal transformers' `generate`
//! (tests/fixtures/blip_tiny_reference/reference.json, made by scripts/fixtures/blip_tiny.py).

use super::{fixture, huatu, stderr, stdout};

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{line}: {error}")))
        .collect()
}

/// The reference caption of image `index` for a prompt and beam count.
fn expected(prompt: Option<&str>, num_beams: u64, index: usize) -> String {
    let path = fixture("blip_tiny_reference/reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{error}"));
    let reference: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}"));
    let runs = reference["runs"].as_array().cloned().unwrap_or_default();
    let run = runs
        .iter()
        .find(|run| run["prompt"].as_str() == prompt && run["num_beams"] == num_beams)
        .unwrap_or_else(|| panic!("no reference run for {prompt:?}, {num_beams}"));
    run["captions"][index]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn caption_prints_transformers_captions() {
    let model = fixture("blip_tiny").display().to_string();
    let wide = fixture("blip_tiny_reference/wide.png")
        .display()
        .to_string();
    let tall = fixture("blip_tiny_reference/tall.png")
        .display()
        .to_string();

    let output = huatu(&[
        "caption",
        "--model",
        &model,
        "--image",
        &wide,
        "--max-tokens",
        "12",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&stdout(&output));
    assert_eq!(lines.len(), 1, "one JSON line");
    assert_eq!(
        lines[0],
        serde_json::json!({ "caption": expected(None, 1, 0) })
    );

    let output = huatu(&[
        "caption",
        "--model",
        &model,
        "--image",
        &tall,
        "--max-tokens",
        "12",
        "--num-beams",
        "3",
        "--prompt",
        "a picture of",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let caption = &json_lines(&stdout(&output))[0]["caption"];
    assert_eq!(
        caption,
        &serde_json::json!(expected(Some("a picture of"), 3, 1))
    );

    // a folder (sorted: tall, wide) and a file, batched
    let folder = fixture("blip_tiny_reference").display().to_string();
    let output = huatu(&[
        "caption",
        "--model",
        &model,
        "--image",
        &folder,
        "--image",
        &wide,
        "--max-tokens",
        "12",
        "--batch-size",
        "2",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&stdout(&output));
    let names: Vec<&str> = lines
        .iter()
        .map(|line| line["path"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].ends_with("tall.png") && names[1].ends_with("wide.png") && names[2] == wide);
    assert_eq!(lines[0]["caption"], serde_json::json!(expected(None, 1, 1)));
    assert_eq!(lines[1]["caption"], serde_json::json!(expected(None, 1, 0)));
    assert_eq!(lines[2]["caption"], lines[1]["caption"]);

    let output = huatu(&["caption", "--model", "/no/such/blip", "--image", &wide]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("/no/such/blip"),
        "{}",
        stderr(&output)
    );
}
