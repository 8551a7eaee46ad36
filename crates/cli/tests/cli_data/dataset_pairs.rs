//! `huatu edit-pair` and `huatu dataset instruct-pix2pix` on the tiny SDXL and CLIP
//! fixtures (issue 13): a pair from two captions; captions → template edits → pairs over
//! seeds → CLIP filter (some pairs dropped) → the 5-tuple folder → 5 training steps →
//! `huatu edit --instruction` with the result; a re-run resumes.

use super::{fixture, huatu, stderr, stdout, temp_dir};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|error| panic!("{error}: {text}"))
}

#[test]
fn edit_pair_writes_both_images() {
    let dir = temp_dir("edit-pair");
    let (a, b) = (dir.join("a.png"), dir.join("b.png"));
    let output = huatu(&[
        "edit-pair",
        "--model",
        &fixture("sdxl_tiny").display().to_string(),
        "--caption",
        "a red cat",
        "--edited-caption",
        "a blue cat",
        "--p",
        "0.5",
        "--seed",
        "3",
        "--steps",
        "4",
        "--out-original",
        &a.display().to_string(),
        "--out-edited",
        &b.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let line = json(&stdout(&output));
    assert_eq!(line["p"], 0.5);
    let (original, edited) = (
        image::open(&a).expect("a.png"),
        image::open(&b).expect("b.png"),
    );
    assert_eq!((original.width(), original.height()), (64, 64));
    assert_ne!(original.to_rgb8().into_raw(), edited.to_rgb8().into_raw());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn instruct_pix2pix_dataset_filters_writes_five_tuples_and_resumes() {
    let dir = temp_dir("dataset-ip2p");
    let captions = dir.join("captions.txt");
    std::fs::write(&captions, "a red cat on a sofa\na house in summer\n").expect("captions");
    let out = dir.join("pairs");
    let run = |dir_threshold: &str| {
        huatu(&[
            "dataset",
            "instruct-pix2pix",
            "--model",
            &fixture("sdxl_tiny").display().to_string(),
            "--clip",
            &fixture("clip_tiny").display().to_string(),
            "--captions",
            &captions.display().to_string(),
            "--samples",
            "3",
            "--keep",
            "2",
            "--width",
            "64",
            "--height",
            "64",
            "--steps",
            "4",
            "--clip-dir-threshold",
            dir_threshold,
            "--out",
            &out.display().to_string(),
        ])
    };
    let first = run("0.1");
    assert!(first.status.success(), "{}", stderr(&first));
    let summary = json(&stdout(&first));
    assert_eq!(summary["pairs_tried"], 6, "{summary}");
    let passed = summary["pairs_passed"].as_u64().expect("passed");
    let kept = summary["pairs_kept"].as_u64().expect("kept");
    assert!(
        passed > 0 && passed < 6,
        "some pairs pass and some are dropped: {summary}"
    );
    assert!(kept <= passed.min(4));
    assert_eq!(
        summary["rejections"]["direction"].as_u64(),
        Some(6 - passed),
        "{summary}"
    );

    let metadata = std::fs::read_to_string(out.join("metadata.jsonl")).expect("metadata.jsonl");
    let lines: Vec<serde_json::Value> = metadata.lines().map(json).collect();
    assert_eq!(lines.len() as u64, kept);
    for line in &lines {
        for key in ["input_image", "edited_image"] {
            let name = line[key].as_str().expect(key);
            let image = image::open(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((image.width(), image.height()), (64, 64));
        }
        assert!(line["edit_prompt"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(line["edit_prompt_zh"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
        assert_ne!(line["original_caption"], line["edited_caption"]);
        assert!(
            line["clip"]["sim_direction"].as_f64() >= Some(0.1),
            "{line}"
        );
    }

    // the folder trains an edit model (5 LoRA steps) that `huatu edit --instruction` runs
    let model = dir.join("edit-model");
    let trained = huatu(&[
        "train",
        "instruct-pix2pix",
        "--model",
        &fixture("sdxl_tiny").display().to_string(),
        "--data",
        &out.display().to_string(),
        "--out",
        &model.display().to_string(),
        "--rank",
        "2",
        "--resolution",
        "64",
        "--steps",
        "5",
    ]);
    assert!(trained.status.success(), "{}", stderr(&trained));
    let edited = dir.join("edited.png");
    let first_input = out.join(lines[0]["input_image"].as_str().expect("input"));
    let edit = huatu(&[
        "edit",
        "--model",
        &model.display().to_string(),
        "--image",
        &first_input.display().to_string(),
        "--instruction",
        lines[0]["edit_prompt"].as_str().expect("instruction"),
        "--steps",
        "3",
        "--out",
        &edited.display().to_string(),
    ]);
    assert!(edit.status.success(), "{}", stderr(&edit));
    assert!(image::open(&edited).is_ok());

    // a second run resumes: nothing is generated again
    let again = run("0.1");
    assert!(again.status.success(), "{}", stderr(&again));
    let summary = json(&stdout(&again));
    assert_eq!(summary["resumed"], 2, "{summary}");
    assert_eq!(
        std::fs::read_to_string(out.join("metadata.jsonl")).expect("kept"),
        metadata
    );
    // other settings on the same folder are refused
    let other = run("0.3");
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains("other settings"),
        "{}",
        stderr(&other)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn instruct_pix2pix_edits_come_from_the_configured_llm_with_templates_as_fallback() {
    let dir = temp_dir("dataset-ip2p-llm");
    let captions = dir.join("captions.jsonl");
    std::fs::write(
        &captions,
        "{\"caption\": \"a red cat on a sofa\"}\n{\"text\": \"a dog\"}\n{\"caption\": \"a house in summer\"}\n",
    )
    .expect("captions");
    let reply = r#"{"instruction": "give it a crown", "instruction_zh": "给它戴上王冠", "edited_caption": "a cat wearing a crown"}"#;
    // the third request is answered with HTTP 500: that caption gets a template edit
    let (port, server) = super::dataset::chat_server(3, reply);
    let scenes = dir.join("scenes.toml");
    std::fs::write(
        &scenes,
        format!("[prompt]\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"local\"\n"),
    )
    .expect("scenes.toml");
    let out = dir.join("pairs");
    let output = huatu(&[
        "dataset",
        "instruct-pix2pix",
        "--model",
        &fixture("sdxl_tiny").display().to_string(),
        "--clip",
        &fixture("clip_tiny").display().to_string(),
        "--captions",
        &captions.display().to_string(),
        "--scenes",
        &scenes.display().to_string(),
        "--samples",
        "1",
        "--keep",
        "1",
        "--clip-threshold=-1",
        "--clip-dir-threshold=-1",
        "--clip-img-threshold=-1",
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "2",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let bodies = server.join().expect("server");
    assert!(bodies[0].contains("a red cat on a sofa"), "{}", bodies[0]);
    let metadata = std::fs::read_to_string(out.join("metadata.jsonl")).expect("metadata");
    let lines: Vec<serde_json::Value> = metadata.lines().map(json).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["edit_prompt"], "give it a crown");
    assert_eq!(lines[0]["edit_prompt_zh"], "给它戴上王冠");
    assert_eq!(lines[1]["edited_caption"], "a cat wearing a crown");
    assert_ne!(lines[2]["edit_prompt"], "give it a crown");
    assert!(lines[2]["edited_caption"]
        .as_str()
        .is_some_and(|caption| caption.contains("house")));
    assert!(
        stderr(&output).contains("using a template"),
        "{}",
        stderr(&output)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
