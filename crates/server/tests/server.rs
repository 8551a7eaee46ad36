//! End-to-end tests of the service against real servers on 127.0.0.1 with the tiny SDXL
//! fixture: every endpoint, bad inputs of each kind, auth, CORS, cancel, a full queue,
//! edits, and restarts (graceful, and killed mid-queue) over the same data directory.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::json;

fn small(prompt: &str) -> serde_json::Value {
    json!({ "prompt": prompt, "size": "64x64", "steps": 2, "seed": 7 })
}

#[test]
fn generates_synchronously_as_b64_and_url_and_serves_the_image() {
    let server = TestServer::start(|_| {});
    let response = server.post_json("/v1/images/generations", &small("a cat"));
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert!(body["created"].as_i64().unwrap_or(0) > 0);
    let b64 = body["data"][0]["b64_json"].as_str().expect("b64_json");
    let png = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(png_size(&png), (64, 64));
    let job = &body["huatu"]["job"];
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["progress"], json!({ "step": 2, "total": 2 }));

    // The same seed and settings give the same picture, so the same content id.
    let mut request = small("a cat");
    request["response_format"] = json!("url");
    let response = server.post_json("/v1/images/generations", &request);
    assert_eq!(response.status, 200, "{}", response.text());
    let url = response.json()["data"][0]["url"].as_str().expect("url").to_string();
    let image_id = job["images"][0]["id"].as_str().unwrap();
    assert!(url.starts_with(&format!("http://{}/v1/images/", server.address)), "{url}");
    assert!(url.ends_with(image_id), "{url} vs {image_id}");
    let path = url.split_once(&server.address.to_string()).unwrap().1;
    let image = server.get(path);
    assert_eq!(image.status, 200);
    assert_eq!(image.header("content-type"), Some("image/png"));
    assert_eq!(image.body, png);
    // Stored by content hash under --data.
    let stored = server.data.path().join("blobs").join(&image_id[..2]).join(image_id);
    assert!(stored.is_file(), "{}", stored.display());

    let jobs = server.get("/v1/jobs?limit=10").json();
    assert_eq!(jobs["data"].as_array().map(Vec::len), Some(2));
    let one = server.get(&format!("/v1/jobs/{}", job["id"].as_str().unwrap())).json();
    assert_eq!(one["request"]["prompt"], "a cat");
    assert_eq!(one["attempts"], 1);
}

#[test]
fn async_job_streams_queued_steps_and_done() {
    let server = TestServer::start(|_| {});
    let mut request = small("两只猫");
    request["n"] = json!(2);
    request["steps"] = json!(3);
    request["async"] = json!(true);
    request["scheduler"] = json!("ddim");
    let response = server.post_json("/v1/images/generations", &request);
    assert_eq!(response.status, 202, "{}", response.text());
    let job = response.json();
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(response.header("location"), Some(format!("/v1/jobs/{id}").as_str()));
    let events = sse_events(server.address, &id, &[]);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.last(), Some(&"done"), "{events:?}");
    assert!(matches!(names[0], "queued" | "running" | "step" | "done"), "{names:?}");
    let steps: Vec<u64> = events.iter().filter(|(name, _)| name == "step").filter_map(|(_, data)| data["step"].as_u64()).collect();
    assert!(steps.windows(2).all(|pair| pair[0] < pair[1]), "{steps:?}");
    for (name, data) in &events {
        if name == "step" {
            assert_eq!(data["total"], 6);
        }
    }
    let done = &events.last().unwrap().1;
    assert_eq!(done["images"].as_array().map(Vec::len), Some(2));
    // A finished job's stream answers its end at once.
    let again = sse_events(server.address, &id, &[]);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0, "done");
    let final_job = server.get(&format!("/v1/jobs/{id}")).json();
    assert_eq!(final_job["status"], "succeeded");
    assert_eq!(final_job["request"]["scheduler"], "ddim");
}

#[test]
fn every_bad_input_gets_a_clear_json_error() {
    let server = TestServer::start(|config| {
        config.max_upload_bytes = 64 << 10;
        config.max_dimension = 256;
    });
    std::fs::write(server.data.path().join("loras/real.safetensors"), b"").unwrap();
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (json!({ "size": "64x64" }), "prompt is required"),
        (json!({ "prompt": "   " }), "prompt is required"),
        (json!({ "prompt": "x".repeat(4001) }), "at most 4000 characters"),
        (json!({ "prompt": "a", "negative_prompt": "x".repeat(4001) }), "negative_prompt may have at most"),
        (json!({ "prompt": "a", "n": 0 }), "n must be from 1 to 8, got 0"),
        (json!({ "prompt": "a", "n": 9 }), "n must be from 1 to 8, got 9"),
        (json!({ "prompt": "a", "size": "65x64" }), "multiples of 8"),
        (json!({ "prompt": "a", "size": "512x512" }), "from 64 to 256"),
        (json!({ "prompt": "a", "size": "big" }), "WIDTHxHEIGHT"),
        (json!({ "prompt": "a", "steps": 0 }), "steps must be from 1 to 150, got 0"),
        (json!({ "prompt": "a", "steps": 151 }), "steps must be from 1 to 150"),
        (json!({ "prompt": "a", "guidance": -1 }), "guidance must be a number from 0 to 30"),
        (json!({ "prompt": "a", "guidance": 31 }), "guidance must be a number from 0 to 30"),
        (json!({ "prompt": "a", "scheduler": "plms" }), "unknown scheduler `plms`"),
        (json!({ "prompt": "a", "response_format": "png" }), "response_format must be `b64_json` or `url`"),
        (json!({ "prompt": "a", "stepz": 3 }), "unknown field `stepz`"),
        (json!({ "prompt": "a", "n": "two" }), "n: invalid type"),
        (json!({ "prompt": "a", "seed": -1 }), "seed: invalid value"),
        (json!({ "prompt": "a", "loras": [{ "name": "../../etc/passwd" }] }), "LoRA name `../../etc/passwd` is not valid"),
        (json!({ "prompt": "a", "loras": [{ "name": "missing" }] }), "unknown LoRA `missing`"),
        (json!({ "prompt": "a", "loras": [{ "name": "real", "scale": 100 }] }), "scale must be from -4 to 4"),
        (json!({ "prompt": "a", "loras": [{ "name": "real", "weight": 1 }] }), "unknown field `weight`"),
    ];
    for (body, expected) in cases {
        let response = server.post_json("/v1/images/generations", &body);
        let message = response.expect_error(400, "invalid_request");
        assert!(message.contains(expected), "{body}: `{message}` lacks `{expected}`");
    }
    let address = server.address;
    let json_type = [("Content-Type", "application/json")];
    request(address, "POST", "/v1/images/generations", &json_type, b"{\"prompt\": ").expect_error(400, "invalid_json");
    request(address, "POST", "/v1/images/generations", &[], b"{\"prompt\": \"a\"}").expect_error(415, "unsupported_media_type");
    let huge = json!({ "prompt": "a", "user": "x".repeat(100 << 10) }).to_string();
    request(address, "POST", "/v1/images/generations", &json_type, huge.as_bytes()).expect_error(413, "payload_too_large");

    for path in [
        "/v1/jobs/job_000000000000000000000000",
        "/v1/jobs/..%2F..%2Fetc%2Fpasswd",
        "/v1/jobs/not-a-job/events",
        "/v1/images/0000000000000000000000000000000000000000000000000000000000000000",
        "/v1/images/..%2F..%2Fjobs.sqlite3",
        "/v1/images/jobs.sqlite3",
        "/nothing/here",
    ] {
        server.get(path).expect_error(404, "not_found");
    }
    server.delete("/v1/jobs/job_000000000000000000000000").expect_error(404, "not_found");
    server.get("/v1/images/generations").expect_error(405, "method_not_allowed");
    server.get("/v1/jobs?limit=0").expect_error(400, "invalid_request");
    server.get("/v1/jobs?offset=3").expect_error(400, "invalid_request");
}

#[test]
fn api_keys_guard_the_api_but_not_probes_or_the_page() {
    let server = TestServer::start(|config| config.api_keys = vec!["sk-test-1".into(), "sk-test-2".into()]);
    let address = server.address;
    let body = small("a cat").to_string();
    let json_type = ("Content-Type", "application/json");
    let missing = request(address, "POST", "/v1/images/generations", &[json_type], body.as_bytes());
    assert!(missing.expect_error(401, "unauthorized").contains("Bearer"));
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let wrong = request(address, "POST", "/v1/images/generations", &[json_type, ("Authorization", "Bearer sk-nope")], body.as_bytes());
    wrong.expect_error(401, "unauthorized");
    server.get("/v1/jobs").expect_error(401, "unauthorized");
    let right = request(address, "POST", "/v1/images/generations", &[json_type, ("Authorization", "Bearer sk-test-2")], body.as_bytes());
    assert_eq!(right.status, 200, "{}", right.text());
    let listed = request(address, "GET", "/v1/jobs", &[("Authorization", "Bearer sk-test-1")], b"");
    assert_eq!(listed.status, 200);
    let id = listed.json()["data"][0]["id"].as_str().unwrap().to_string();
    let events = sse_events(address, &id, &[("Authorization", "Bearer sk-test-1")]);
    assert_eq!(events.last().map(|(name, _)| name.as_str()), Some("done"));
    for open in ["/healthz", "/metrics", "/openapi.json", "/"] {
        assert_eq!(server.get(open).status, 200, "{open}");
    }
    assert_eq!(server.get("/healthz").json()["auth"], true);
}

#[test]
fn cancels_queued_and_running_jobs() {
    let server = TestServer::start(|_| {});
    let long = json!({ "prompt": "slow", "size": "64x64", "steps": 150, "async": true });
    let first = server.post_json("/v1/images/generations", &long).json()["id"].as_str().unwrap().to_string();
    let second = server.post_json("/v1/images/generations", &long).json()["id"].as_str().unwrap().to_string();
    let address = server.address;
    let first_events = {
        let id = first.clone();
        std::thread::spawn(move || sse_events(address, &id, &[]))
    };
    // The second waits behind the first: cancelled at once.
    let cancelled = server.delete(&format!("/v1/jobs/{second}"));
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    assert_eq!(cancelled.json()["status"], "cancelled");
    server.delete(&format!("/v1/jobs/{second}")).expect_error(409, "conflict");
    // The first is stopped at its next step.
    wait_for(address, &first, Duration::from_secs(30), |job| job["progress"]["step"].as_u64().unwrap_or(0) >= 1);
    let stopping = server.delete(&format!("/v1/jobs/{first}"));
    assert_eq!(stopping.status, 202, "{}", stopping.text());
    assert_eq!(stopping.json()["cancel_requested"], true);
    let job = wait_for(address, &first, Duration::from_secs(30), is_terminal);
    assert_eq!(job["status"], "cancelled");
    let events = first_events.join().unwrap();
    assert_eq!(events.last().map(|(name, _)| name.as_str()), Some("cancelled"), "{events:?}");
    assert!(events.iter().any(|(name, _)| name == "step"));
    // Cancelling a synchronous request's job answers that request with 409.
    let metrics = server.get("/metrics").text();
    assert!(metrics.contains("huatu_jobs_cancelled_total 2"), "{metrics}");
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let server = TestServer::start(|config| config.queue_capacity = 2);
    let long = json!({ "prompt": "slow", "size": "64x64", "steps": 150, "async": true });
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let response = server.post_json("/v1/images/generations", &long);
            assert_eq!(response.status, 202, "{}", response.text());
            response.json()["id"].as_str().unwrap().to_string()
        })
        .collect();
    let full = server.post_json("/v1/images/generations", &long);
    assert!(full.expect_error(429, "queue_full").contains("2 jobs"));
    let retry: u64 = full.header("retry-after").and_then(|value| value.parse().ok()).expect("Retry-After");
    assert!(retry >= 1);
    assert!(server.get("/metrics").text().contains("huatu_jobs_rejected_total 1"));
    for id in &ids {
        let status = server.delete(&format!("/v1/jobs/{id}")).status;
        assert!(status == 200 || status == 202, "{status}");
    }
    for id in &ids {
        wait_for(server.address, id, Duration::from_secs(30), is_terminal);
    }
    // Room again.
    let response = server.post_json("/v1/images/generations", &small("again"));
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn edits_inpaint_inside_the_mask_and_img2img_without_one() {
    let server = TestServer::start(|config| config.max_dimension = 128);
    let address = server.address;
    let image = png_bytes(64, 64);
    let mask = mask_png(64, 64, (16, 16, 24, 24));
    let send = |parts: &[(&str, Option<&str>, &[u8])]| {
        let (content_type, body) = multipart(parts);
        request(address, "POST", "/v1/images/edits", &[("Content-Type", content_type.as_str())], &body)
    };
    let inpainted = send(&[("image", Some("a.png"), &image), ("mask", Some("m.png"), &mask), ("prompt", None, b"a red square"), ("steps", None, b"3"), ("seed", None, b"1")]);
    assert_eq!(inpainted.status, 200, "{}", inpainted.text());
    let body = inpainted.json();
    let png = base64::engine::general_purpose::STANDARD.decode(body["data"][0]["b64_json"].as_str().unwrap()).unwrap();
    assert_eq!(png_size(&png), (64, 64));
    let pixels = png_pixels(&png);
    // Outside the mask every pixel is the original's (grey 128); inside, new ones.
    let at = |x: usize, y: usize| &pixels[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3];
    assert_eq!(at(0, 0), [128, 128, 128]);
    assert_eq!(at(63, 63), [128, 128, 128]);
    assert!((16..40).flat_map(|y| (16..40).map(move |x| (x, y))).any(|(x, y)| at(x, y) != [128, 128, 128]));
    let job = &body["huatu"]["job"];
    assert_eq!(job["kind"], "edit");
    // The inputs are stored by content hash too.
    let input = job["request"]["image"].as_str().unwrap();
    assert!(server.data.path().join("blobs").join(&input[..2]).join(input).is_file());

    let whole = send(&[("image", Some("a.png"), &image), ("prompt", None, b"watercolour"), ("steps", None, b"4"), ("strength", None, b"0.5"), ("async", None, b"true")]);
    assert_eq!(whole.status, 202, "{}", whole.text());
    let id = whole.json()["id"].as_str().unwrap().to_string();
    let events = sse_events(address, &id, &[]);
    assert_eq!(events.last().map(|(name, _)| name.as_str()), Some("done"), "{events:?}");
    // Strength 0.5 of 4 steps runs 2.
    assert!(events.iter().any(|(name, data)| name == "step" && data["total"] == 2), "{events:?}");

    let (small_mask, empty_mask) = (mask_png(32, 64, (0, 0, 8, 8)), mask_png(64, 64, (0, 0, 0, 0)));
    let (wide, odd) = (png_bytes(256, 64), png_bytes(68, 64));
    let bad: Vec<(Vec<(&str, Option<&str>, &[u8])>, &str)> = vec![
        (vec![("prompt", None, b"sky")], "image is required"),
        (vec![("image", Some("a.png"), &image)], "prompt is required"),
        (vec![("image", Some("a.txt"), b"hello"), ("prompt", None, b"x")], "not an image"),
        (vec![("image", Some("a.png"), &image), ("mask", Some("m.png"), &small_mask), ("prompt", None, b"x")], "mask must be the size of image"),
        (vec![("image", Some("a.png"), &image), ("mask", Some("m.png"), &empty_mask), ("prompt", None, b"x")], "marks nothing to edit"),
        (vec![("image", Some("a.png"), &wide), ("prompt", None, b"x")], "256×64"),
        (vec![("image", Some("a.png"), &odd), ("prompt", None, b"x")], "multiples of 8"),
        (vec![("image", Some("a.png"), &image), ("prompt", None, b"x"), ("size", None, b"128x128")], "edits keep the original's size"),
        (vec![("image", Some("a.png"), &image), ("prompt", None, b"x"), ("strength", None, b"0")], "strength must be within (0, 1]"),
        (vec![("image", Some("a.png"), &image), ("prompt", None, b"x"), ("steps", None, b"many")], "steps must be a whole number"),
        (vec![("image", Some("a.png"), &image), ("prompt", None, b"x"), ("colour", None, b"red")], "unknown field `colour`"),
        (vec![("image", Some("a.png"), &image), ("prompt", None, b"x"), ("loras", None, b"poster")], "loras must be a JSON list"),
    ];
    for (parts, expected) in bad {
        let message = send(&parts).expect_error(400, "invalid_request");
        assert!(message.contains(expected), "`{message}` lacks `{expected}`");
    }
    let plain = request(address, "POST", "/v1/images/edits", &[("Content-Type", "application/json")], b"{}");
    plain.expect_error(400, "invalid_multipart");
}

#[test]
fn agent_checks_its_inputs_then_says_it_is_not_built() {
    let server = TestServer::start(|_| {});
    let address = server.address;
    let image = png_bytes(64, 64);
    let send = |parts: &[(&str, Option<&str>, &[u8])]| {
        let (content_type, body) = multipart(parts);
        request(address, "POST", "/v1/agent", &[("Content-Type", content_type.as_str())], &body)
    };
    let message = send(&[("original", Some("a.png"), &image)]).expect_error(400, "invalid_request");
    assert!(message.contains("instruction is required"), "{message}");
    let region = br#"{"x": 60, "y": 60, "width": 40, "height": 40}"#;
    let message = send(&[("instruction", None, "把天空换成晚霞".as_bytes()), ("original", Some("a.png"), &image), ("region", None, region)])
        .expect_error(400, "invalid_request");
    assert!(message.contains("must lie inside the 64×64"), "{message}");
    let region = br#"{"x": 32, "y": 32, "width": 20, "height": 10}"#;
    let agent = send(&[("instruction", None, "把这个logo放到右下角".as_bytes()), ("original", Some("a.png"), &image), ("condition", Some("c.png"), &image), ("region", None, region)]);
    assert!(agent.expect_error(501, "not_implemented").contains("agent is not built yet"));
}

#[test]
fn probes_documents_page_and_cors() {
    let server = TestServer::start(|config| config.cors_origins = vec!["https://app.example".into()]);
    let health = server.get("/healthz").json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["model_loaded"], true);
    server.post_json("/v1/images/generations", &small("for metrics"));
    let metrics = server.get("/metrics");
    assert!(metrics.header("content-type").unwrap_or_default().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    for name in ["huatu_http_requests_total{class=\"2xx\"}", "huatu_http_request_duration_seconds_bucket", "huatu_jobs{status=\"succeeded\"} 1", "huatu_images_total 1", "huatu_denoising_steps_total 2", "huatu_model_loaded 1"] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    let openapi = server.get("/openapi.json").json();
    assert!(openapi["openapi"].as_str().unwrap_or_default().starts_with("3."));
    for path in ["/v1/images/generations", "/v1/images/edits", "/v1/images/{id}", "/v1/agent", "/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/events", "/healthz", "/metrics"] {
        assert!(openapi["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    let page = server.get("/");
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.text().contains("画图"));
    assert!(server.get("/app.js").text().contains("/v1/jobs/"));
    assert_eq!(server.get("/style.css").status, 200);

    let address = server.address;
    let preflight = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")];
    let allowed = request(address, "OPTIONS", "/v1/images/generations", &preflight, b"");
    assert_eq!(allowed.status, 204);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://app.example"));
    assert!(allowed.header("access-control-allow-headers").unwrap_or_default().contains("authorization"));
    let refused = request(address, "OPTIONS", "/v1/images/generations", &[("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")], b"");
    refused.expect_error(403, "cors_forbidden");
    let simple = request(address, "GET", "/healthz", &[("Origin", "https://evil.example")], b"");
    assert_eq!(simple.header("access-control-allow-origin"), None);
}

#[test]
fn without_a_model_generation_answers_503() {
    let server = TestServer::start(|config| config.model = None);
    assert_eq!(server.get("/healthz").json()["model_loaded"], false);
    server.post_json("/v1/images/generations", &small("a")).expect_error(503, "unavailable");
}

#[test]
fn a_graceful_restart_keeps_queued_jobs_and_runs_them() {
    let server = TestServer::start(|_| {});
    let long = json!({ "prompt": "slow", "size": "64x64", "steps": 60, "async": true });
    let ids: Vec<String> =
        (0..3).map(|_| server.post_json("/v1/images/generations", &long).json()["id"].as_str().unwrap().to_string()).collect();
    wait_for(server.address, &ids[0], Duration::from_secs(30), |job| job["status"] == "running");
    let data = server.stop();
    let server = TestServer::start_in(data, |_| {});
    for id in &ids {
        let job = wait_for(server.address, id, Duration::from_secs(60), is_terminal);
        assert_eq!(job["status"], "succeeded", "{job}");
        // A graceful stop is not a crash: the interrupted run does not count.
        assert_eq!(job["attempts"], 1, "{job}");
    }
}

/// The real binary, killed (SIGKILL) mid-queue and started again over the same data.
struct Process {
    child: std::process::Child,
    address: std::net::SocketAddr,
}

impl Process {
    fn start(data: &std::path::Path) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_huatu-server"))
            .arg("--model")
            .arg(tiny_model())
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .env("HUATU_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
        let address = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line}")).parse().unwrap();
        Self { child, address }
    }

    fn submit(&self, steps: u64) -> String {
        let body = json!({ "prompt": "durable", "size": "64x64", "steps": steps, "async": true }).to_string();
        let response = request(self.address, "POST", "/v1/images/generations", &[("Content-Type", "application/json")], body.as_bytes());
        assert_eq!(response.status, 202, "{}", response.text());
        response.json()["id"].as_str().unwrap().to_string()
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn running_with_steps(job: &serde_json::Value) -> bool {
    job["status"] == "running" && job["progress"]["step"].as_u64().unwrap_or(0) >= 1
}

#[test]
fn a_killed_server_loses_no_job_and_retries_an_interrupted_one_once() {
    let data = tempfile::tempdir().unwrap();
    let limit = Duration::from_secs(90);

    // Killed mid-queue: every accepted job completes after the restart.
    let server = Process::start(data.path());
    let ids: Vec<String> = (0..4).map(|_| server.submit(40)).collect();
    wait_for(server.address, &ids[0], limit, running_with_steps);
    server.kill();
    let server = Process::start(data.path());
    for (index, id) in ids.iter().enumerate() {
        let job = wait_for(server.address, id, limit, is_terminal);
        assert_eq!(job["status"], "succeeded", "{job}");
        let expected_attempts = if index == 0 { 2 } else { 1 };
        assert_eq!(job["attempts"], expected_attempts, "{job}");
    }

    // Killed twice while the same job runs: it fails with the reason, the rest run.
    let doomed = server.submit(150);
    let after = server.submit(2);
    wait_for(server.address, &doomed, limit, running_with_steps);
    server.kill();
    let server = Process::start(data.path());
    wait_for(server.address, &doomed, limit, |job| running_with_steps(job) && job["attempts"] == 2);
    server.kill();
    let server = Process::start(data.path());
    let job = wait_for(server.address, &doomed, limit, is_terminal);
    assert_eq!(job["status"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap_or_default().contains("twice"), "{job}");
    let events = sse_events(server.address, &doomed, &[]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "failed");
    let job = wait_for(server.address, &after, limit, is_terminal);
    assert_eq!(job["status"], "succeeded", "{job}");
    let all = request(server.address, "GET", "/v1/jobs?limit=200", &[], b"").json();
    assert_eq!(all["data"].as_array().map(Vec::len), Some(6), "no job vanished");
    server.kill();
}
