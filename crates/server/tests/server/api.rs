//! Generation (sync, async, SSE), probes, documents, the page, CORS, auth, no model.

use base64::Engine as _;
use serde_json::json;

use crate::common::*;

pub fn small(prompt: &str) -> serde_json::Value {
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
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(png_size(&png), (64, 64));
    let job = &body["huatu"]["job"];
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["progress"], json!({ "step": 2, "total": 2 }));

    // The same seed and settings give the same picture, so the same content id.
    let mut request = small("a cat");
    request["response_format"] = json!("url");
    let response = server.post_json("/v1/images/generations", &request);
    assert_eq!(response.status, 200, "{}", response.text());
    let url = response.json()["data"][0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    let image_id = job["images"][0]["id"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("http://{}/v1/images/", server.address)),
        "{url}"
    );
    assert!(url.ends_with(image_id), "{url} vs {image_id}");
    let path = url.split_once(&server.address.to_string()).unwrap().1;
    let image = server.get(path);
    assert_eq!(image.status, 200);
    assert_eq!(image.header("content-type"), Some("image/png"));
    assert_eq!(image.body, png);
    // Stored by content hash under --data.
    let stored = server
        .data
        .path()
        .join("blobs")
        .join(&image_id[..2])
        .join(image_id);
    assert!(stored.is_file(), "{}", stored.display());

    let jobs = server.get("/v1/jobs?limit=10").json();
    assert_eq!(jobs["data"].as_array().map(Vec::len), Some(2));
    let one = server
        .get(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()))
        .json();
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
    assert_eq!(
        response.header("location"),
        Some(format!("/v1/jobs/{id}").as_str())
    );
    let events = sse_events(server.address, &id, &[]);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.last(), Some(&"done"), "{events:?}");
    assert!(
        matches!(names[0], "queued" | "running" | "step" | "done"),
        "{names:?}"
    );
    let steps: Vec<u64> = events
        .iter()
        .filter(|(name, _)| name == "step")
        .filter_map(|(_, data)| data["step"].as_u64())
        .collect();
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
fn api_keys_guard_the_api_but_not_probes_or_the_page() {
    let server =
        TestServer::start(|config| config.api_keys = vec!["sk-test-1".into(), "sk-test-2".into()]);
    let address = server.address;
    let body = small("a cat").to_string();
    let json_type = ("Content-Type", "application/json");
    let missing = request(
        address,
        "POST",
        "/v1/images/generations",
        &[json_type],
        body.as_bytes(),
    );
    assert!(missing.expect_error(401, "unauthorized").contains("Bearer"));
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let wrong = request(
        address,
        "POST",
        "/v1/images/generations",
        &[json_type, ("Authorization", "Bearer sk-nope")],
        body.as_bytes(),
    );
    wrong.expect_error(401, "unauthorized");
    server.get("/v1/jobs").expect_error(401, "unauthorized");
    let right = request(
        address,
        "POST",
        "/v1/images/generations",
        &[json_type, ("Authorization", "Bearer sk-test-2")],
        body.as_bytes(),
    );
    assert_eq!(right.status, 200, "{}", right.text());
    let listed = request(
        address,
        "GET",
        "/v1/jobs",
        &[("Authorization", "Bearer sk-test-1")],
        b"",
    );
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
fn probes_documents_page_and_cors() {
    let server =
        TestServer::start(|config| config.cors_origins = vec!["https://app.example".into()]);
    let health = server.get("/healthz").json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["model_loaded"], true);
    server.post_json("/v1/images/generations", &small("for metrics"));
    let metrics = server.get("/metrics");
    assert!(metrics
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain; version=0.0.4"));
    let text = metrics.text();
    for name in [
        "huatu_http_requests_total{class=\"2xx\"}",
        "huatu_http_request_duration_seconds_bucket",
        "huatu_jobs{status=\"succeeded\"} 1",
        "huatu_images_total 1",
        "huatu_denoising_steps_total 2",
        "huatu_model_loaded 1",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    let openapi = server.get("/openapi.json").json();
    assert!(openapi["openapi"]
        .as_str()
        .unwrap_or_default()
        .starts_with("3."));
    for path in [
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/images/{id}",
        "/v1/agent",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/healthz",
        "/metrics",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    let page = server.get("/");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text().contains("画图"));
    assert!(server.get("/app.js").text().contains("/v1/jobs/"));
    assert_eq!(server.get("/style.css").status, 200);

    let address = server.address;
    let preflight = [
        ("Origin", "https://app.example"),
        ("Access-Control-Request-Method", "POST"),
    ];
    let allowed = request(
        address,
        "OPTIONS",
        "/v1/images/generations",
        &preflight,
        b"",
    );
    assert_eq!(allowed.status, 204);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(allowed
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .contains("authorization"));
    let refused = request(
        address,
        "OPTIONS",
        "/v1/images/generations",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    refused.expect_error(403, "cors_forbidden");
    let simple = request(
        address,
        "GET",
        "/healthz",
        &[("Origin", "https://evil.example")],
        b"",
    );
    assert_eq!(simple.header("access-control-allow-origin"), None);
}

#[test]
fn without_a_model_generation_answers_503() {
    let server = TestServer::start(|config| config.model = None);
    assert_eq!(server.get("/healthz").json()["model_loaded"], false);
    server
        .post_json("/v1/images/generations", &small("a"))
        .expect_error(503, "unavailable");
}
