//! Every kind of bad input gets a clear 4xx JSON error; no path leaves --data.

use serde_json::json;

use crate::common::*;

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
        (
            json!({ "prompt": "x".repeat(4001) }),
            "at most 4000 characters",
        ),
        (
            json!({ "prompt": "a", "negative_prompt": "x".repeat(4001) }),
            "negative_prompt may have at most",
        ),
        (
            json!({ "prompt": "a", "n": 0 }),
            "n must be from 1 to 8, got 0",
        ),
        (
            json!({ "prompt": "a", "n": 9 }),
            "n must be from 1 to 8, got 9",
        ),
        (json!({ "prompt": "a", "size": "65x64" }), "multiples of 8"),
        (
            json!({ "prompt": "a", "size": "512x512" }),
            "from 64 to 256",
        ),
        (json!({ "prompt": "a", "size": "big" }), "WIDTHxHEIGHT"),
        (
            json!({ "prompt": "a", "steps": 0 }),
            "steps must be from 1 to 150, got 0",
        ),
        (
            json!({ "prompt": "a", "steps": 151 }),
            "steps must be from 1 to 150",
        ),
        (
            json!({ "prompt": "a", "guidance": -1 }),
            "guidance must be a number from 0 to 30",
        ),
        (
            json!({ "prompt": "a", "guidance": 31 }),
            "guidance must be a number from 0 to 30",
        ),
        (
            json!({ "prompt": "a", "scheduler": "plms" }),
            "unknown scheduler `plms` (expected one of: euler, euler-a, ddim, dpmpp-2m, dpmpp-2m-karras)",
        ),
        (
            json!({ "prompt": "a", "response_format": "png" }),
            "response_format must be `b64_json` or `url`",
        ),
        (
            json!({ "prompt": "a", "stepz": 3 }),
            "unknown field `stepz`",
        ),
        (json!({ "prompt": "a", "n": "two" }), "n: invalid type"),
        (json!({ "prompt": "a", "seed": -1 }), "seed: invalid value"),
        (
            json!({ "prompt": "a", "loras": [{ "name": "../../etc/passwd" }] }),
            "LoRA name `../../etc/passwd` is not valid",
        ),
        (
            json!({ "prompt": "a", "loras": [{ "name": "missing" }] }),
            "unknown LoRA `missing`",
        ),
        (
            json!({ "prompt": "a", "loras": [{ "name": "real", "scale": 100 }] }),
            "scale must be from -4 to 4",
        ),
        (
            json!({ "prompt": "a", "loras": [{ "name": "real", "weight": 1 }] }),
            "unknown field `weight`",
        ),
    ];
    for (body, expected) in cases {
        let response = server.post_json("/v1/images/generations", &body);
        let message = response.expect_error(400, "invalid_request");
        assert!(
            message.contains(expected),
            "{body}: `{message}` lacks `{expected}`"
        );
    }
    let address = server.address;
    let json_type = [("Content-Type", "application/json")];
    request(
        address,
        "POST",
        "/v1/images/generations",
        &json_type,
        b"{\"prompt\": ",
    )
    .expect_error(400, "invalid_json");
    request(
        address,
        "POST",
        "/v1/images/generations",
        &[],
        b"{\"prompt\": \"a\"}",
    )
    .expect_error(415, "unsupported_media_type");
    let huge = json!({ "prompt": "a", "user": "x".repeat(100 << 10) }).to_string();
    request(
        address,
        "POST",
        "/v1/images/generations",
        &json_type,
        huge.as_bytes(),
    )
    .expect_error(413, "payload_too_large");

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
    server
        .delete("/v1/jobs/job_000000000000000000000000")
        .expect_error(404, "not_found");
    server
        .get("/v1/images/generations")
        .expect_error(405, "method_not_allowed");
    server
        .get("/v1/jobs?limit=0")
        .expect_error(400, "invalid_request");
    server
        .get("/v1/jobs?offset=3")
        .expect_error(400, "invalid_request");
}

/// A PNG of about a hundred bytes whose header declares `width`×`height` (65535² is 12 GiB
/// of pixels).
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // The header and the start of one data chunk: a decoder learns the size on reaching
        // the data, long before its end.
        let mut writer = encoder.write_header().unwrap();
        writer
            .write_chunk(png::chunk::IDAT, &[0x78, 0x9c, 0x63, 0, 0])
            .unwrap();
        drop(writer);
    }
    bytes
}

#[test]
fn an_upload_declaring_a_huge_picture_is_refused_from_its_header() {
    let server = TestServer::start(|_| {});
    let bomb = png_declaring(65535, 65535);
    assert!(bytes_are_tiny(&bomb), "{} bytes", bomb.len());
    let (content_type, body) = multipart(&[
        ("image", Some("bomb.png"), &bomb),
        ("prompt", None, b"repaint"),
        ("steps", None, b"2"),
    ]);
    let started = std::time::Instant::now();
    let response = request(
        server.address,
        "POST",
        "/v1/images/edits",
        &[("Content-Type", content_type.as_str())],
        &body,
    );
    // Refused from the header, before any pixel buffer exists: fast, and a 4xx that says why.
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(
        (400..500).contains(&response.status),
        "{}: {}",
        response.status,
        response.text()
    );
    assert!(response.text().contains("65535"), "{}", response.text());
    let jobs = server.get("/v1/jobs").json();
    assert_eq!(jobs["data"].as_array().map(Vec::len), Some(0), "{jobs}");
}

fn bytes_are_tiny(bytes: &[u8]) -> bool {
    bytes.len() < 128
}
