//! Edits (inpainting inside the mask, img2img) and the agent (intent → plan → job).

use std::time::Duration;

use base64::Engine as _;

use crate::common::*;

#[test]
fn edits_inpaint_inside_the_mask_and_img2img_without_one() {
    let server = TestServer::start(|config| config.max_dimension = 128);
    let address = server.address;
    let image = png_bytes(64, 64);
    let mask = mask_png(64, 64, (16, 16, 24, 24));
    let send = |parts: &[(&str, Option<&str>, &[u8])]| {
        let (content_type, body) = multipart(parts);
        request(
            address,
            "POST",
            "/v1/images/edits",
            &[("Content-Type", content_type.as_str())],
            &body,
        )
    };
    let inpainted = send(&[
        ("image", Some("a.png"), &image),
        ("mask", Some("m.png"), &mask),
        ("prompt", None, b"a red square"),
        ("steps", None, b"3"),
        ("seed", None, b"1"),
    ]);
    assert_eq!(inpainted.status, 200, "{}", inpainted.text());
    let body = inpainted.json();
    let png = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(png_size(&png), (64, 64));
    let pixels = png_pixels(&png);
    // Outside the mask every pixel is the original's (grey 128); inside, new ones.
    let at = |x: usize, y: usize| &pixels[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3];
    assert_eq!(at(0, 0), [128, 128, 128]);
    assert_eq!(at(63, 63), [128, 128, 128]);
    assert!((16..40)
        .flat_map(|y| (16..40).map(move |x| (x, y)))
        .any(|(x, y)| at(x, y) != [128, 128, 128]));
    let job = &body["huatu"]["job"];
    assert_eq!(job["kind"], "edit");
    // The inputs are stored by content hash too.
    let input = job["request"]["image"].as_str().unwrap();
    assert!(server
        .data
        .path()
        .join("blobs")
        .join(&input[..2])
        .join(input)
        .is_file());

    let whole = send(&[
        ("image", Some("a.png"), &image),
        ("prompt", None, b"watercolour"),
        ("steps", None, b"4"),
        ("strength", None, b"0.5"),
        ("async", None, b"true"),
    ]);
    assert_eq!(whole.status, 202, "{}", whole.text());
    let id = whole.json()["id"].as_str().unwrap().to_string();
    let events = sse_events(address, &id, &[]);
    assert_eq!(
        events.last().map(|(name, _)| name.as_str()),
        Some("done"),
        "{events:?}"
    );
    // Strength 0.5 of 4 steps runs 2.
    assert!(
        events
            .iter()
            .any(|(name, data)| name == "step" && data["total"] == 2),
        "{events:?}"
    );

    let (small_mask, empty_mask) = (
        mask_png(32, 64, (0, 0, 8, 8)),
        mask_png(64, 64, (0, 0, 0, 0)),
    );
    let (wide, odd) = (png_bytes(256, 64), png_bytes(68, 64));
    type Parts<'a> = Vec<(&'a str, Option<&'a str>, &'a [u8])>;
    let bad: Vec<(Parts, &str)> = vec![
        (vec![("prompt", None, b"sky")], "image is required"),
        (vec![("image", Some("a.png"), &image)], "prompt is required"),
        (
            vec![("image", Some("a.txt"), b"hello"), ("prompt", None, b"x")],
            "not an image",
        ),
        (
            vec![
                ("image", Some("a.png"), &image),
                ("mask", Some("m.png"), &small_mask),
                ("prompt", None, b"x"),
            ],
            "mask must be the size of image",
        ),
        (
            vec![
                ("image", Some("a.png"), &image),
                ("mask", Some("m.png"), &empty_mask),
                ("prompt", None, b"x"),
            ],
            "marks nothing to edit",
        ),
        (
            vec![("image", Some("a.png"), &wide), ("prompt", None, b"x")],
            "256×64",
        ),
        (
            vec![("image", Some("a.png"), &odd), ("prompt", None, b"x")],
            "multiples of 8",
        ),
        (
            vec![
                ("image", Some("a.png"), &image),
                ("prompt", None, b"x"),
                ("size", None, b"128x128"),
            ],
            "edits keep the original's size",
        ),
        (
            vec![
                ("image", Some("a.png"), &image),
                ("prompt", None, b"x"),
                ("strength", None, b"0"),
            ],
            "strength must be within (0, 1]",
        ),
        (
            vec![
                ("image", Some("a.png"), &image),
                ("prompt", None, b"x"),
                ("steps", None, b"many"),
            ],
            "steps must be a whole number",
        ),
        (
            vec![
                ("image", Some("a.png"), &image),
                ("prompt", None, b"x"),
                ("colour", None, b"red"),
            ],
            "unknown field `colour`",
        ),
        (
            vec![
                ("image", Some("a.png"), &image),
                ("prompt", None, b"x"),
                ("loras", None, b"poster"),
            ],
            "loras must be a JSON list",
        ),
    ];
    for (parts, expected) in bad {
        let message = send(&parts).expect_error(400, "invalid_request");
        assert!(message.contains(expected), "`{message}` lacks `{expected}`");
    }
    let plain = request(
        address,
        "POST",
        "/v1/images/edits",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    plain.expect_error(400, "invalid_multipart");
}

#[test]
fn agent_understands_plans_and_queues_the_job() {
    let server = TestServer::start(|config| {
        config.intent_model = Some(workspace_root().join("models/intent"))
    });
    let address = server.address;
    assert_eq!(server.get("/healthz").json()["agent"], true);
    let image = png_bytes(64, 64);
    let send = |parts: &[(&str, Option<&str>, &[u8])]| {
        let (content_type, body) = multipart(parts);
        request(
            address,
            "POST",
            "/v1/agent",
            &[("Content-Type", content_type.as_str())],
            &body,
        )
    };
    let small = [
        ("size", None, &b"64x64"[..]),
        ("steps", None, &b"2"[..]),
        ("seed", None, &b"3"[..]),
    ];

    let mut parts = vec![("instruction", None, "请帮我生成一张元宵祝福图".as_bytes())];
    parts.extend_from_slice(&small);
    let response = send(&parts);
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    assert!(
        answer["intent"]
            .as_str()
            .unwrap_or_default()
            .starts_with("generate."),
        "{answer}"
    );
    assert_eq!(answer["plan"]["pipeline"], "text2img", "{answer}");
    assert!(
        answer["plan"]["chain"]
            .as_array()
            .is_some_and(|chain| !chain.is_empty()),
        "{answer}"
    );
    // Notes name files relative to the data directory, never the server's own paths.
    let data_dir = server.data.path().display().to_string();
    assert!(!answer.to_string().contains(&data_dir), "{answer}");
    let id = answer["job"]["id"].as_str().expect("a job").to_string();
    let job = wait_for(address, &id, Duration::from_secs(60), is_terminal);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["kind"], "agent", "{job}");
    assert_eq!(job["request"]["plan"]["width"], 64);
    assert_eq!(job["request"]["plan"]["steps"], 2);
    assert_eq!(job["request"]["instruction"], "请帮我生成一张元宵祝福图");

    // Not an image request: a reply, no job.
    let answer = send(&[("instruction", None, "帮我写一首诗".as_bytes())]).json();
    assert!(answer["reply"].is_string(), "{answer}");
    assert!(answer["job"].is_null(), "{answer}");

    // A text edit inside the drawn region.
    let region = br#"{"x": 32, "y": 16, "width": 64, "height": 32}"#;
    let mut parts = vec![
        ("instruction", None, "把天空换成晚霞".as_bytes()),
        ("original", Some("a.png"), &image[..]),
        ("region", None, &region[..]),
    ];
    parts.extend_from_slice(&small);
    let answer = send(&parts).json();
    assert!(
        answer["intent"]
            .as_str()
            .unwrap_or_default()
            .starts_with("edit."),
        "{answer}"
    );
    if answer["intent"] == "edit.instruct" {
        // No InstructPix2Pix model loaded: the instruction runs as an inpainting prompt.
        let id = answer["job"]["id"].as_str().expect("a job").to_string();
        let job = wait_for(address, &id, Duration::from_secs(60), is_terminal);
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["kind"], "edit");
        assert!(job["request"]["mask"].is_string(), "{job}");
        assert!(
            answer["notes"].to_string().contains("--instruct-model"),
            "{answer}"
        );
    }

    // A region edit without a ControlNet: planned, said why it is not run, no job.
    let mut parts = vec![
        ("instruction", None, "把这个logo放到图片右下角".as_bytes()),
        ("original", Some("a.png"), &image[..]),
        ("condition", Some("logo.png"), &image[..]),
    ];
    parts.extend_from_slice(&small);
    let answer = send(&parts).json();
    if answer["intent"] == "edit.reference" {
        assert_eq!(answer["plan"]["pipeline"], "controlnet-inpaint", "{answer}");
        assert!(answer["job"].is_null(), "{answer}");
        assert!(
            answer["reply"]
                .as_str()
                .unwrap_or_default()
                .contains("ControlNet"),
            "{answer}"
        );
    }

    // An original whose sides are not multiples of 8 is edited as its centered crop, and
    // the drawn region moves with it.
    let odd = png_bytes(100, 70);
    let mut parts = vec![
        ("instruction", None, "把天空换成晚霞".as_bytes()),
        ("original", Some("odd.png"), &odd[..]),
        (
            "region",
            None,
            &br#"{"x": 50, "y": 20, "width": 100, "height": 40}"#[..],
        ),
    ];
    parts.extend_from_slice(&small);
    let answer = send(&parts).json();
    assert!(
        answer["notes"].to_string().contains("centered 96×64 crop"),
        "{answer}"
    );
    let id = answer["job"]["id"].as_str().expect("a job");
    let job = wait_for(address, id, Duration::from_secs(60), is_terminal);
    assert_eq!(job["status"], "succeeded", "{job}");
    let result = job["images"][0]["id"].as_str().expect("an image");
    let png = request(address, "GET", &format!("/v1/images/{result}"), &[], b"").body;
    assert_eq!(png_size(&png), (96, 64));

    let message = send(&[("original", Some("a.png"), &image)]).expect_error(400, "invalid_request");
    assert!(message.contains("instruction is required"), "{message}");
    let region = br#"{"x": 60, "y": 60, "width": 40, "height": 40}"#;
    let message = send(&[
        ("instruction", None, "把天空换成晚霞".as_bytes()),
        ("original", Some("a.png"), &image),
        ("region", None, region),
    ])
    .expect_error(400, "invalid_request");
    assert!(message.contains("must lie inside the 64×64"), "{message}");
    let message = send(&[
        ("instruction", None, "画猫".as_bytes()),
        ("steps", None, b"0"),
    ])
    .expect_error(400, "invalid_request");
    assert!(message.contains("steps must be"), "{message}");
    let message = send(&[
        ("instruction", None, "画猫".as_bytes()),
        ("mood", None, b"happy"),
    ])
    .expect_error(400, "invalid_request");
    assert!(message.contains("unknown field `mood`"), "{message}");
}

#[test]
fn agent_without_an_intent_model_answers_503() {
    let server = TestServer::start(|_| {});
    let (content_type, body) = multipart(&[("instruction", None, "画一只猫".as_bytes())]);
    let response = request(
        server.address,
        "POST",
        "/v1/agent",
        &[("Content-Type", content_type.as_str())],
        &body,
    );
    assert!(response
        .expect_error(503, "unavailable")
        .contains("--intent-model"));
}

/// A picture with edges (a bright square on dark), so Canny has something to find.
fn square_png(width: u32, height: u32) -> Vec<u8> {
    let pixels: Vec<u8> = (0..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .flat_map(|(x, y)| {
            let inside = (width / 4..3 * width / 4).contains(&x)
                && (height / 4..3 * height / 4).contains(&y);
            if inside {
                [230u8, 40, 40]
            } else {
                [20, 20, 60]
            }
        })
        .collect();
    rgb_png(width, height, &pixels)
}

#[test]
fn agent_runs_text_edits_and_region_edits_with_the_loaded_models() {
    let fixtures = workspace_root().join("tests/fixtures");
    let server = TestServer::start(|config| {
        config.intent_model = Some(workspace_root().join("models/intent"));
        config.instruct_model = Some(fixtures.join("sdxl_tiny_instruct_pix2pix"));
        config.controlnet = Some(fixtures.join("controlnet_tiny"));
    });
    let address = server.address;
    let health = server.get("/healthz").json();
    assert_eq!(health["models"]["instruct_pix2pix"], true, "{health}");
    assert_eq!(health["models"]["controlnet"], true, "{health}");
    assert_eq!(health["models"]["upscaler"], false, "{health}");
    let send = |parts: &[(&str, Option<&str>, &[u8])]| {
        let (content_type, body) = multipart(parts);
        let response = request(
            address,
            "POST",
            "/v1/agent",
            &[("Content-Type", content_type.as_str())],
            &body,
        );
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    };
    let original = png_bytes(64, 64);
    let result_of = |answer: &serde_json::Value| {
        let id = answer["job"]["id"].as_str().expect("a job").to_string();
        let job = wait_for(address, &id, Duration::from_secs(120), is_terminal);
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["kind"], "agent", "{job}");
        let image = job["images"][0]["id"]
            .as_str()
            .expect("an image")
            .to_string();
        let png = request(address, "GET", &format!("/v1/images/{image}"), &[], b"").body;
        assert_eq!(png_size(&png), (64, 64));
        (job, png_pixels(&png))
    };
    let at =
        |pixels: &[u8], x: usize, y: usize| pixels[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3].to_vec();

    // A text edit inside the drawn region runs InstructPix2Pix; outside it nothing changes.
    let answer = send(&[
        ("instruction", None, "把天空换成晚霞".as_bytes()),
        ("original", Some("a.png"), &original),
        (
            "region",
            None,
            br#"{"x": 32, "y": 16, "width": 64, "height": 32}"#,
        ),
        ("steps", None, b"2"),
        ("seed", None, b"5"),
    ]);
    assert_eq!(answer["intent"], "edit.instruct", "{answer}");
    assert_eq!(answer["plan"]["pipeline"], "instruct-pix2pix", "{answer}");
    assert_eq!(answer["plan"]["width"], 64, "{answer}");
    assert_eq!(answer["plan"]["steps"], 2, "{answer}");
    assert!(
        !answer["notes"].to_string().contains("--instruct-model"),
        "{answer}"
    );
    let (job, pixels) = result_of(&answer);
    assert_eq!(
        job["request"]["plan"]["pipeline"], "instruct-pix2pix",
        "{job}"
    );
    assert!(job["request"]["mask"].is_string(), "{job}");
    assert!((32..64).all(|y| (0..64).all(|x| at(&pixels, x, y) == [128, 128, 128])));
    assert!((0..32).any(|y| (0..64).any(|x| at(&pixels, x, y) != [128, 128, 128])));

    // A region edit puts the supplied image into the named corner with the ControlNet.
    let answer = send(&[
        ("instruction", None, "把这个logo放到图片右下角".as_bytes()),
        ("original", Some("a.png"), &original),
        ("condition", Some("logo.png"), &square_png(48, 48)),
        ("steps", None, b"2"),
        ("seed", None, b"6"),
    ]);
    assert_eq!(answer["intent"], "edit.reference", "{answer}");
    assert_eq!(answer["plan"]["pipeline"], "controlnet-inpaint", "{answer}");
    let (job, pixels) = result_of(&answer);
    assert_eq!(job["progress"]["total"], 2, "{job}");
    // The right-bottom box is x, y in [35, 61) of 64; the top-left quarter is untouched.
    assert!((0..32).all(|y| (0..32).all(|x| at(&pixels, x, y) == [128, 128, 128])));
    assert!((36..60).any(|y| (36..60).any(|x| at(&pixels, x, y) != [128, 128, 128])));
}

#[test]
fn agent_jobs_use_the_prompt_model_given_at_start() {
    // The tiny random Qwen2's answer is no usable prompt: the plan says so and keeps the
    // offline writer's prompt.
    let server = TestServer::start(|config| {
        config.intent_model = Some(workspace_root().join("models/intent"));
        config.prompt_model = Some(workspace_root().join("tests/fixtures/qwen2_tiny"));
    });
    let (content_type, body) = multipart(&[
        ("instruction", None, "画一只戴草帽的熊猫，水墨风".as_bytes()),
        ("size", None, &b"64x64"[..]),
        ("steps", None, &b"2"[..]),
    ]);
    let response = request(
        server.address,
        "POST",
        "/v1/agent",
        &[("Content-Type", content_type.as_str())],
        &body,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    let notes = answer["notes"].to_string();
    assert!(
        notes.contains("local model") && notes.contains("offline writer"),
        "{answer}"
    );
    assert!(
        answer["plan"]["prompt"]
            .as_str()
            .is_some_and(|prompt| prompt.contains("panda")),
        "{answer}"
    );
}

#[test]
fn a_missing_prompt_model_is_one_startup_error_naming_it() {
    let missing = workspace_root().join("tests/fixtures/no_such_prompt_model");
    let error = match huatu_server::agent_jobs::AgentPlanner::load(
        &workspace_root().join("models/intent"),
        Some(&missing),
    ) {
        Ok(_) => panic!("a missing prompt model loaded"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("no_such_prompt_model"), "{error}");
}
