//! `huatu plan`, `chat --dry-run` and `eval prompts`: the plan without the SDXL model.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use super::{stderr, stdout, temp_dir};

/// Runs the binary with no SDXL model anywhere, so a plan that tried to load one fails.
fn huatu_without_model(args: &[&str], input: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_huatu"))
        .args(args)
        .env("HUATU_MODEL", "/nonexistent/huatu-sdxl")
        .env_remove("HUATU_PROMPT_MODEL")
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("huatu-cli-no-config"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run huatu: {error}"));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(input.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("huatu output")
}

#[test]
fn plan_prints_the_chain_without_the_sdxl_model() {
    let output = huatu_without_model(&["plan", "请帮我生成一张元宵祝福图"], None);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for needle in [
        "intent: generate.poster",
        "scene: poster",
        "prompt: ",
        "negative_prompt: ",
        "size: 832x1216",
        "steps: 30",
        "lora: ",
        "enhancer: poster",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let dry = huatu_without_model(&["chat", "--dry-run", "请帮我生成一张元宵祝福图"], None);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(stdout(&dry), text, "chat --dry-run prints what plan prints");
}

#[test]
fn plan_jsonl_writes_one_object_per_line() {
    let input =
        "{\"text\": \"画一只在月球上的猫\"}\n\n{\"text\": \"你好\", \"intent\": \"other\"}\n";
    let output = huatu_without_model(&["plan", "--jsonl"], Some(input));
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["intent"], "generate.free");
    assert_eq!(lines[0]["scene"], "free");
    assert!(lines[0]["prompt"].as_str().expect("prompt").contains("cat"));
    assert!(lines[0]["negative_prompt"].as_str().is_some());
    assert_eq!(lines[1]["intent"], "other");
    assert!(lines[1]["scene"].is_null());
    assert_eq!(lines[1]["prompt"], "");
    let bad = huatu_without_model(&["plan", "--jsonl"], Some("{\"txt\": 1}\n"));
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("no string field `text`"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn eval_prompts_scores_coverage_forbidden_words_and_negatives() {
    let dir = temp_dir("eval-prompts");
    let data = dir.join("concepts.jsonl");
    std::fs::write(
        &data,
        "{\"text\": \"画一只在月球上的猫\", \"intent\": \"generate.free\", \"concepts\": [[\"cat\"], [\"moon\"], [\"zzz-never\"]], \"forbidden\": [\"festive\"], \"negatives\": []}\n",
    )
    .expect("write data");
    let output = huatu_without_model(
        &["eval", "prompts", "--data", &data.display().to_string()],
        None,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for needle in [
        "instructions: 1",
        "concept coverage: 0.667 (2 of 3)",
        "forbidden words in prompts: 0",
        "negatives in the negative prompt: 0 of 0",
        "ms per instruction",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
}

#[test]
fn a_prompt_model_whose_answer_is_unusable_leaves_the_offline_prompt() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/qwen2_tiny")
        .display()
        .to_string();
    let instruction = "画一只戴草帽的熊猫在竹林里钓鱼，水墨风";
    let offline = huatu_without_model(&["plan", instruction], None);
    let with_model = huatu_without_model(&["plan", "--prompt-model", &model, instruction], None);
    assert!(with_model.status.success(), "{}", stderr(&with_model));
    let text = stdout(&with_model);
    // The tiny random model answers noise: refused, so the offline prompt stays, and a
    // note says so.
    let prompt_lines = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| line.starts_with("prompt: ") || line.starts_with("negative_prompt: "))
            .map(String::from)
            .collect()
    };
    assert_eq!(prompt_lines(&text), prompt_lines(&stdout(&offline)));
    assert!(
        text.contains("gave no usable prompt") && text.contains("offline writer"),
        "{text}"
    );
    let missing = huatu_without_model(
        &["plan", "--prompt-model", "/nonexistent/qwen", instruction],
        None,
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("prompt model"),
        "{}",
        stderr(&missing)
    );
}
