//! `huatu dataset build` end to end on the tiny CLIP, BLIP and SDXL fixtures (issue 12):
//! 40 synthetic images in a database, a dataset from 2 examples, and `huatu train lora`
//! training on the folder it wrote.

use std::path::{Path, PathBuf};

use super::{fixture, huatu, stderr, stdout, temp_dir};

/// A deterministic picture: one of three colour families, a gradient and speckle that
/// depend on `index`.
fn synthetic_image(index: u32) -> image::RgbImage {
    let (width, height) = [(48, 32), (32, 48), (40, 40)][(index % 3) as usize];
    let base = [[200u32, 40, 40], [40, 180, 60], [40, 60, 200]][(index % 3) as usize];
    let mut state = u64::from(index) * 0x9E37_79B9_7F4A_7C15 + 1;
    image::RgbImage::from_fn(width, height, |x, y| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let noise = (state >> 59) as u32;
        image::Rgb([
            ((base[0] + x * 3 * (index % 5) + noise) % 256) as u8,
            ((base[1] + y * 2 * (index % 7)) % 256) as u8,
            ((base[2] + (x + y) * (index % 4)) % 256) as u8,
        ])
    })
}

fn write_images(dir: &Path, range: std::ops::Range<u32>) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap_or_else(|error| panic!("{error}"));
    range
        .map(|index| {
            let path = dir.join(format!("img{index:02}.png"));
            synthetic_image(index)
                .save(&path)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            path
        })
        .collect()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|error| panic!("{error}: {text}"))
}

fn read_json(path: &Path) -> serde_json::Value {
    json(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn dataset_build_makes_a_folder_train_lora_accepts() {
    let dir = temp_dir("dataset-build");
    write_images(&dir.join("library"), 0..40);
    let examples = write_images(&dir.join("examples"), 40..42);
    let db = dir.join("db").display().to_string();
    let clip = fixture("clip_tiny").display().to_string();
    let blip = fixture("blip_tiny").display().to_string();
    let library = dir.join("library").display().to_string();
    let added = huatu(&["db", "add", "--db", &db, "--model", &clip, &library]);
    assert!(added.status.success(), "{}", stderr(&added));

    let out = dir.join("set");
    let out_arg = out.display().to_string();
    let (example_a, example_b) = (
        examples[0].display().to_string(),
        examples[1].display().to_string(),
    );
    let build = |extra: &[&str]| {
        let mut args = vec![
            "dataset",
            "build",
            "--db",
            &db,
            "--examples",
            &example_a,
            &example_b,
            "--trigger",
            "htset",
            "--size",
            "64x64",
            "--fit",
            "center-crop",
        ];
        args.extend_from_slice(extra);
        huatu(&args)
    };
    let built = build(&[
        "--take",
        "10",
        "--duplicate-threshold",
        "0.9999",
        "--caption-model",
        &blip,
        "--out",
        &out_arg,
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    let summary = json(&stdout(&built));
    assert_eq!(summary["images"], 12, "{summary}");
    assert_eq!(summary["from_examples"], 2, "{summary}");
    assert_eq!(summary["from_database"], 10, "{summary}");

    // kohya's layout and diffusers' metadata.jsonl, in the same order, same prompts
    let metadata = std::fs::read_to_string(out.join("metadata.jsonl")).expect("metadata.jsonl");
    let lines: Vec<serde_json::Value> = metadata.lines().map(json).collect();
    assert_eq!(lines.len(), 12);
    let mut last_score = f64::INFINITY;
    for (index, line) in lines.iter().enumerate() {
        let name = line["file_name"].as_str().expect("file_name");
        let text = line["text"].as_str().expect("text");
        assert!(text.starts_with("htset"), "{line}");
        let image = image::open(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((image.width(), image.height()), (64, 64), "{name}");
        let stem = name.strip_suffix(".png").expect("a png");
        let caption = std::fs::read_to_string(out.join(format!("{stem}.txt"))).expect("txt");
        assert_eq!(caption, text);
        if index < 2 {
            assert_eq!(line["origin"], "example", "{line}");
        } else {
            assert_eq!(line["origin"], "database", "{line}");
            let score = line["score"].as_f64().expect("score");
            assert!(
                score <= last_score,
                "best first: {score} after {last_score}"
            );
            last_score = score;
        }
    }
    let report = read_json(&out.join("report.json"));
    assert_eq!(report["queries"].as_array().map(Vec::len), Some(2));
    assert!(report["images"][2]["caption"].is_string(), "{report}");

    // the folder trains
    let lora = dir.join("set.safetensors");
    let trained = huatu(&[
        "train",
        "lora",
        "--model",
        &fixture("sdxl_tiny").display().to_string(),
        "--data",
        &out_arg,
        "--out",
        &lora.display().to_string(),
        "--resolution",
        "64",
        "--rank",
        "2",
        "--steps",
        "2",
    ]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    assert!(lora.is_file());

    // an existing dataset is never overwritten
    let again = build(&["--take", "3", "--out", &out_arg]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("metadata.jsonl")).expect("kept"),
        metadata
    );

    // more than the distinct images there are: near-duplicates dropped with their
    // reason, the examples' captions search too, and the shortfall is reported
    let wide = dir.join("wide");
    let built = build(&[
        "--take",
        "30",
        "--describe",
        "一只红色的猫",
        "--caption-model",
        &blip,
        "--out",
        &wide.display().to_string(),
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    let summary = json(&stdout(&built));
    let report = read_json(&wide.join("report.json"));
    assert!(summary["shortfall"].as_u64() > Some(0), "{summary}");
    assert_eq!(
        summary["from_database"].as_u64().unwrap_or(0) + summary["shortfall"].as_u64().unwrap_or(0),
        30
    );
    assert_eq!(
        report["caption_search"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    // 2 examples, the description, 2 captions
    assert_eq!(
        report["queries"].as_array().map(Vec::len),
        Some(5),
        "{report}"
    );
    let dropped = report["dropped"].as_array().expect("dropped");
    assert!(!dropped.is_empty());
    assert!(dropped.iter().all(|d| d["reason"]
        .as_str()
        .is_some_and(|r| r.contains("near-duplicate"))));
    assert!(
        stderr(&built).contains("searching for"),
        "{}",
        stderr(&built)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dataset_build_names_what_is_missing() {
    let dir = temp_dir("dataset-missing");
    let out = dir.join("set").display().to_string();
    let missing = dir.join("no-db").display().to_string();
    let output = huatu(&[
        "dataset",
        "build",
        "--db",
        &missing,
        "--describe",
        "a cat",
        "--take",
        "3",
        "--trigger",
        "htx",
        "--size",
        "64x64",
        "--out",
        &out,
    ]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no image database"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.join("set").exists());
    let no_query = huatu(&[
        "dataset",
        "build",
        "--db",
        &missing,
        "--take",
        "3",
        "--trigger",
        "htx",
        "--size",
        "64x64",
        "--out",
        &out,
    ]);
    assert!(!no_query.status.success());
    assert!(
        stderr(&no_query).contains("--describe"),
        "{}",
        stderr(&no_query)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A chat-completions server on 127.0.0.1 that answers `count` requests: every third
/// with HTTP 500, the others with `reply`; returns the port and the request bodies.
pub(super) fn chat_server(
    count: usize,
    reply: &'static str,
) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let server = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for number in 0..count {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("read");
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).expect("body");
            bodies.push(String::from_utf8_lossy(&body).into_owned());
            let response = if number % 3 == 2 {
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nbusy".to_string()
            } else {
                let json = serde_json::json!({"choices": [{"message": {"content": reply}}]});
                let json = json.to_string();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                    json.len()
                )
            };
            reader
                .into_inner()
                .write_all(response.as_bytes())
                .expect("write");
        }
        bodies
    });
    (port, server)
}

#[test]
fn dataset_build_asks_the_configured_llm_and_falls_back_to_the_template() {
    let dir = temp_dir("dataset-llm");
    write_images(&dir.join("library"), 0..12);
    let examples = write_images(&dir.join("examples"), 40..42);
    let db = dir.join("db").display().to_string();
    let added = huatu(&[
        "db",
        "add",
        "--db",
        &db,
        "--model",
        &fixture("clip_tiny").display().to_string(),
        &dir.join("library").display().to_string(),
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let (port, server) = chat_server(6, "a small red square, flat colour");
    let scenes = dir.join("scenes.toml");
    std::fs::write(
        &scenes,
        format!("[prompt]\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"local\"\n"),
    )
    .expect("scenes.toml");
    let out = dir.join("set");
    let built = huatu(&[
        "dataset",
        "build",
        "--db",
        &db,
        "--examples",
        &examples[0].display().to_string(),
        &examples[1].display().to_string(),
        "--take",
        "4",
        "--duplicate-threshold",
        "1",
        "--trigger",
        "htset",
        "--scene",
        "poster",
        "--scenes",
        &scenes.display().to_string(),
        "--size",
        "64x64",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    let bodies = server.join().expect("server");
    assert_eq!(bodies.len(), 6);
    let request = json(&bodies[0]);
    let asked = request["messages"][1]["content"].as_str().unwrap_or("");
    assert!(asked.contains("htset"), "{asked}");
    // the poster scene's style words reach the LLM (its general purpose wording: a
    // training set mixes purposes)
    assert!(asked.contains("poster design, bold composition"), "{asked}");
    let report = read_json(&out.join("report.json"));
    assert_eq!(
        report["prompt_fallbacks"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    let prompts: Vec<String> = report["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|image| image["prompt"].as_str().unwrap_or("").to_string())
        .collect();
    for (index, prompt) in prompts.iter().enumerate() {
        if index % 3 == 2 {
            // the template: trigger, (no caption without BLIP), the scene's words
            assert!(
                prompt.starts_with("htset, poster design, bold composition"),
                "{prompt}"
            );
        } else {
            assert_eq!(prompt, "htset, a small red square, flat colour");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a Chinese-CLIP database the Chinese description searches as it is written.
#[test]
fn a_chinese_clip_database_reads_the_description_directly() {
    let dir = temp_dir("dataset-chinese");
    write_images(&dir.join("library"), 0..6);
    let db = dir.join("db").display().to_string();
    let added = huatu(&[
        "db",
        "add",
        "--db",
        &db,
        "--model",
        &fixture("chinese_clip_tiny").display().to_string(),
        &dir.join("library").display().to_string(),
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let out = dir.join("set");
    let built = huatu(&[
        "dataset",
        "build",
        "--db",
        &db,
        "--describe",
        "一只红色的猫",
        "--take",
        "3",
        "--duplicate-threshold",
        "1",
        "--trigger",
        "htcat",
        "--size",
        "32x32",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    assert!(
        !stderr(&built).contains("searching for"),
        "{}",
        stderr(&built)
    );
    let report = read_json(&out.join("report.json"));
    assert_eq!(
        report["queries"][0]["query"],
        "description \"一只红色的猫\""
    );
    assert_eq!(report["from_database"], 3);
    let _ = std::fs::remove_dir_all(&dir);
}
