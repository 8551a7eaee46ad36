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
            "unknown scheduler `plms`",
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
