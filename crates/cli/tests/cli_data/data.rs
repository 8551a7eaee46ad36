//! The data-preparation contract of `huatu embed` and `huatu db` (DESIGN.md, issue 12) on
//! the tiny CLIP fixture (tests/fixtures/clip_tiny): one JSON line of a normalised
//! embedding, then add / search / info / remove / export on a database folder.

use super::{fixture, huatu, stderr, stdout, temp_dir};

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{line}: {error}")))
        .collect()
}

fn embedding(args: &[&str]) -> Vec<f64> {
    let output = huatu(args);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&stdout(&output));
    assert_eq!(lines.len(), 1, "one JSON line");
    lines[0]["embedding"]
        .as_array()
        .map(|values| {
            values
                .iter()
                .filter_map(serde_json::Value::as_f64)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn embed_prints_one_normalised_embedding() {
    let model = fixture("clip_tiny").display().to_string();
    let image = fixture("clip_tiny_reference/wide.png")
        .display()
        .to_string();
    for args in [
        ["embed", "--model", &model, "--image", &image],
        ["embed", "--model", &model, "--text", "a photo of a cat"],
    ] {
        let vector = embedding(&args);
        assert_eq!(vector.len(), 16);
        let norm = vector.iter().map(|value| value * value).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    let output = huatu(&["embed", "--model", "/no/such/clip", "--text", "x"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("/no/such/clip"),
        "{}",
        stderr(&output)
    );
}

// mirrors ChineseCLIPModel.get_text_features(**processor(text=["一只猫"])) then x / |x|
// (tests/fixtures/chinese_clip_tiny, scripts/fixtures/chinese_clip_tiny.py): a
// Chinese-CLIP folder works with `huatu embed` as it is. Tolerance 1e-5 per value.
#[test]
fn embed_reads_a_chinese_clip_folder() {
    let model = fixture("chinese_clip_tiny").display().to_string();
    let vector = embedding(&["embed", "--model", &model, "--text", "一只猫"]);
    let reference = candle_core::safetensors::load(
        fixture("chinese_clip_tiny_reference/reference.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let expected: Vec<f64> = reference["text0.text_embeds"]
        .flatten_all()
        .and_then(|row| row.to_vec1::<f32>())
        .unwrap_or_else(|error| panic!("{error}"))
        .into_iter()
        .map(f64::from)
        .collect();
    let norm = expected
        .iter()
        .map(|value| value * value)
        .sum::<f64>()
        .sqrt();
    assert_eq!(vector.len(), expected.len());
    for (value, expected) in vector.iter().zip(&expected) {
        assert!((value - expected / norm).abs() < 1e-5, "{vector:?}");
    }
}

#[test]
fn db_add_search_info_remove_export() {
    let dir = temp_dir("db");
    let db = dir.join("db").display().to_string();
    let model = fixture("clip_tiny").display().to_string();
    let images = fixture("clip_tiny_reference").display().to_string();
    let bad = dir.join("bad.png");
    std::fs::write(&bad, b"not an image").unwrap_or_else(|error| panic!("{error}"));
    let bad = bad.display().to_string();

    let output = huatu(&[
        "db", "add", "--db", &db, "--model", &model, &images, &bad, "--labels", "tiny",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let log = stderr(&output);
    assert!(
        log.contains("added 3") && log.contains("skipped 1") && log.contains("bad.png"),
        "{log}"
    );
    assert!(log.contains("images/s"), "{log}");
    let again = huatu(&["db", "add", "--db", &db, "--model", &model, &images]);
    assert!(
        stderr(&again).contains("added 0, already present 3"),
        "{}",
        stderr(&again)
    );

    let query = fixture("clip_tiny_reference/tall_alpha.png")
        .display()
        .to_string();
    let output_image_search = huatu(&["db", "search", "--db", &db, "--image", &query, "-k", "2"]);
    let output = &output_image_search;
    assert!(output.status.success(), "{}", stderr(output));
    let hits = json_lines(&stdout(output));
    assert_eq!(hits.len(), 2);
    assert!(hits[0]["path"]
        .as_str()
        .unwrap_or_default()
        .ends_with("tall_alpha.png"));
    assert!((hits[0]["score"].as_f64().unwrap_or_default() - 1.0).abs() < 1e-5);
    assert!(hits[0]["score"].as_f64() >= hits[1]["score"].as_f64());
    assert_eq!(hits[0]["labels"], serde_json::json!(["tiny"]));
    let id = hits[0]["id"].as_str().unwrap_or_default().to_string();

    let output = huatu(&[
        "db",
        "search",
        "--db",
        &db,
        "--text",
        "a photo of a cat",
        "-k",
        "5",
    ]);
    assert_eq!(json_lines(&stdout(&output)).len(), 3, "{}", stderr(&output));
    let output = huatu(&[
        "db",
        "search",
        "--db",
        &db,
        "--text",
        "a cat",
        "-k",
        "5",
        "--min-score",
        "1.5",
    ]);
    assert!(output.status.success() && stdout(&output).is_empty());

    let exact = huatu(&[
        "db", "search", "--db", &db, "--image", &query, "-k", "2", "--exact",
    ]);
    assert_eq!(
        stdout(&exact),
        stdout(&output_image_search),
        "small databases search exactly"
    );
    let output = huatu(&["db", "index", "--db", &db]);
    assert!(
        output.status.success() && stderr(&output).contains("3 images indexed"),
        "{}",
        stderr(&output)
    );
    let info = json_lines(&stdout(&huatu(&["db", "info", "--db", &db])));
    assert_eq!(info[0]["indexed"], 3);
    assert_eq!(info[0]["images"], 3);
    assert_eq!(info[0]["model"]["dimension"], 16);

    let output = huatu(&["db", "remove", "--db", &db, &id]);
    assert_eq!(json_lines(&stdout(&output)).len(), 1, "{}", stderr(&output));
    let export = dir.join("rows.jsonl");
    let output = huatu(&[
        "db",
        "export",
        "--db",
        &db,
        "--vectors",
        "--out",
        &export.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let rows = json_lines(&std::fs::read_to_string(&export).unwrap_or_default());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["embedding"].as_array().map(Vec::len), Some(16));

    let output = huatu(&[
        "db",
        "search",
        "--db",
        &dir.join("missing").display().to_string(),
        "--text",
        "x",
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no image database"),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
