//! Hardening of the HTTP side: 401 on every `/v1` route without a key, the open server's
//! Host allowlist and cross-site refusals, the listen-address rule, security headers,
//! slow clients cut off, the connection limit, event channels that do not pile up, and a
//! synchronous client that disconnects cancelling its job.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use huatu_server::ServerConfig;
use serde_json::json;

use crate::common::*;

/// (method as OpenAPI spells it, path, headers, body).
type Route<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>);

const UNKNOWN_JOB: &str = "job_0123456789abcdef01234567";

/// A gauge's value in `/metrics`.
fn gauge(server: &TestServer, name: &str) -> u64 {
    let text = server.get("/metrics").text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
}

#[test]
fn every_v1_route_answers_401_without_a_key() {
    let server = TestServer::start(|config| {
        config.model = None;
        config.api_keys = vec!["sk-guard".into()];
    });
    let (form_type, form) = multipart(&[("prompt", None, b"x")]);
    let image = "a".repeat(64);
    let routes: Vec<Route> = vec![
        (
            "post",
            "/v1/images/generations".into(),
            vec![("Content-Type", "application/json")],
            br#"{"prompt":"a"}"#.to_vec(),
        ),
        (
            "post",
            "/v1/images/edits".into(),
            vec![("Content-Type", form_type.as_str())],
            form.clone(),
        ),
        ("get", format!("/v1/images/{image}"), vec![], vec![]),
        (
            "post",
            "/v1/agent".into(),
            vec![("Content-Type", form_type.as_str())],
            form.clone(),
        ),
        ("get", "/v1/jobs".into(), vec![], vec![]),
        ("get", format!("/v1/jobs/{UNKNOWN_JOB}"), vec![], vec![]),
        ("delete", format!("/v1/jobs/{UNKNOWN_JOB}"), vec![], vec![]),
        (
            "get",
            format!("/v1/jobs/{UNKNOWN_JOB}/events"),
            vec![],
            vec![],
        ),
    ];
    let mut covered = std::collections::BTreeSet::new();
    for (method, path, headers, body) in &routes {
        for authorization in [None, Some("Bearer sk-wrong"), Some("Basic c2stZ3VhcmQ=")] {
            let mut headers = headers.clone();
            headers.extend(authorization.map(|value| ("Authorization", value)));
            let response = request(server.address, &method.to_uppercase(), path, &headers, body);
            response.expect_error(401, "unauthorized");
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer"),
                "{path}"
            );
        }
        let template = path.replace(&image, "{id}").replace(UNKNOWN_JOB, "{id}");
        covered.insert((template, method.to_string()));
    }
    // Every /v1 operation the OpenAPI document lists was tried.
    let openapi = server.get("/openapi.json").json();
    for (path, operations) in openapi["paths"].as_object().unwrap() {
        if !path.starts_with("/v1") {
            continue;
        }
        for method in operations.as_object().unwrap().keys() {
            assert!(
                covered.contains(&(path.clone(), method.clone())),
                "{method} {path} was not checked"
            );
        }
    }
}

#[test]
fn an_open_server_refuses_foreign_hosts_and_cross_site_writes() {
    let server = TestServer::start(|config| {
        config.model = None;
        config.allowed_hosts = vec!["huatu.lan".into()];
        config.cors_origins = vec!["https://app.example".into()]
    });
    let address = server.address;
    let port = address.port();
    let evil_host = format!("evil.example:{port}");
    for path in [
        "/", "/app.js", "/healthz", "/metrics", "/v1/jobs", "/nowhere",
    ] {
        let response = request_to_host(address, "GET", path, &evil_host, &[], b"");
        let message = response.expect_error(403, "host_forbidden");
        assert!(message.contains("--allowed-host"), "{message}");
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "huatu.lan".to_string(),
    ] {
        let response = request_to_host(address, "GET", "/v1/jobs", &host, &[], b"");
        assert_eq!(response.status, 200, "{host}: {}", response.text());
    }

    // A page elsewhere posting a form (no preflight needed) is refused.
    let (form_type, form) = multipart(&[
        ("image", Some("a.png"), &png_bytes(64, 64)),
        ("prompt", None, b"steal a job"),
    ]);
    let cross_site = [
        vec![
            ("Origin", "https://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        vec![("Origin", "https://evil.example")],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Origin", "null")],
    ];
    for headers in &cross_site {
        for path in ["/v1/images/edits", "/v1/agent"] {
            let mut headers = headers.clone();
            headers.push(("Content-Type", form_type.as_str()));
            let response = request(address, "POST", path, &headers, &form);
            let message = response.expect_error(403, "cross_site_forbidden");
            assert!(message.contains("--cors-origin"), "{message}");
        }
    }
    let text_post = request(
        address,
        "POST",
        "/v1/images/generations",
        &[
            ("Origin", "https://evil.example"),
            ("Content-Type", "text/plain"),
        ],
        br#"{"prompt":"a"}"#,
    );
    text_post.expect_error(403, "cross_site_forbidden");
    let cancel = request(
        address,
        "DELETE",
        &format!("/v1/jobs/{UNKNOWN_JOB}"),
        &[("Sec-Fetch-Site", "same-site")],
        b"",
    );
    cancel.expect_error(403, "cross_site_forbidden");

    // The page itself, an allowed origin, and clients that are not browsers get through
    // (to the 503 of a server without a model).
    let own_origin = format!("http://127.0.0.1:{port}");
    for headers in [
        vec![
            ("Origin", own_origin.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        vec![
            ("Origin", "https://app.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        vec![],
    ] {
        let mut headers = headers.clone();
        headers.push(("Content-Type", form_type.as_str()));
        let response = request(address, "POST", "/v1/images/edits", &headers, &form);
        response.expect_error(503, "unavailable");
    }
    // Reading stays open to cross-site GETs of allowed hosts (browsers keep the answer
    // from the page without CORS).
    let read = request(
        address,
        "GET",
        "/healthz",
        &[("Sec-Fetch-Site", "cross-site")],
        b"",
    );
    assert_eq!(read.status, 200);
}

#[test]
fn a_keyed_server_answers_any_host_and_origin_with_the_key() {
    let server = TestServer::start(|config| {
        config.model = None;
        config.api_keys = vec!["sk-k".into()];
    });
    let response = request_to_host(
        server.address,
        "POST",
        "/v1/images/generations",
        "huatu.example",
        &[
            ("Authorization", "Bearer sk-k"),
            ("Origin", "https://elsewhere.example"),
            ("Content-Type", "application/json"),
        ],
        br#"{"prompt":"a","size":"64x64"}"#,
    );
    response.expect_error(503, "unavailable");
}

#[test]
fn every_response_carries_the_security_headers() {
    let server = TestServer::start(|config| config.model = None);
    for path in ["/", "/app.js", "/healthz", "/v1/jobs", "/nowhere"] {
        let response = server.get(path);
        let policy = response
            .header("content-security-policy")
            .unwrap_or_default();
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert!(policy.contains("default-src 'self'"), "{path}: {policy}");
        assert_eq!(response.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            response.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
    }
}

#[test]
fn a_public_address_without_a_key_needs_insecure_public() {
    // the server runs on the runtime's threads while this one makes requests
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(data.path());
    config.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    let refused = runtime.block_on(huatu_server::start(config.clone()));
    let message = refused
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("without an API key") && message.contains("--insecure-public"),
        "{message}"
    );
    config.insecure_public = true;
    let server = runtime.block_on(huatu_server::start(config)).unwrap();
    let port = server.address.port();
    let health = request(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "GET",
        "/healthz",
        &[],
        b"",
    );
    assert_eq!(health.status, 200, "{}", health.text());
    runtime.block_on(server.stop()).unwrap();
}

#[test]
fn slow_headers_and_bodies_are_cut_off() {
    let server = TestServer::start(|config| {
        config.model = None;
        config.header_timeout = Duration::from_secs(1);
        config.body_timeout = Duration::from_secs(1);
    });
    // Slowloris: a header line every 300 ms never finishes the request.
    let started = Instant::now();
    let mut slow = TcpStream::connect(server.address).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let mut closed = false;
    for index in 0..30 {
        std::thread::sleep(Duration::from_millis(300));
        if slow
            .write_all(format!("X-Slow-{index}: 1\r\n").as_bytes())
            .is_err()
        {
            closed = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(3) {
            let mut rest = Vec::new();
            // the server closed (0 bytes or a reset), or answered 408 and closed
            closed = slow.read_to_end(&mut rest).is_ok() || rest.is_empty();
            break;
        }
    }
    assert!(
        closed,
        "a slowloris connection was still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(8));

    // A body that stops arriving: 408.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(server.address).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stalled
        .write_all(
            format!(
                "POST /v1/images/generations HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"prompt\"",
                server.address
            )
            .as_bytes(),
        )
        .unwrap();
    let mut raw = Vec::new();
    let _ = stalled.read_to_end(&mut raw);
    assert!(started.elapsed() < Duration::from_secs(8));
    let response = parse_raw_response(&raw);
    response.expect_error(408, "body_timeout");

    // The server still answers.
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn connections_past_the_limit_wait_for_one_to_close() {
    let server = TestServer::start(|config| {
        config.model = None;
        config.max_connections = 3;
    });
    let address = server.address;
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(address).unwrap())
        .collect();
    // Let the server accept all three.
    std::thread::sleep(Duration::from_millis(300));
    let mut waiting = TcpStream::connect(address).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    waiting
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut first = [0u8; 1];
    assert!(
        waiting.read(&mut first).is_err(),
        "a fourth connection was served while three were open"
    );
    drop(idle);
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut raw = Vec::new();
    waiting.read_to_end(&mut raw).unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(gauge(&server, "huatu_http_connections") <= 3);
}

#[test]
fn unknown_job_streams_and_429s_leave_no_event_channels() {
    let server = TestServer::start(|config| config.queue_capacity = 1);
    let address = server.address;
    for index in 0..40 {
        let id = format!("job_{index:024x}");
        let response = request(address, "GET", &format!("/v1/jobs/{id}/events"), &[], b"");
        response.expect_error(404, "not_found");
    }
    assert_eq!(gauge(&server, "huatu_event_channels"), 0);

    let long = json!({ "prompt": "slow", "size": "64x64", "steps": 150, "async": true });
    let first = server.post_json("/v1/images/generations", &long);
    assert_eq!(first.status, 202, "{}", first.text());
    let id = first.json()["id"].as_str().unwrap().to_string();
    for _ in 0..40 {
        server
            .post_json("/v1/images/generations", &long)
            .expect_error(429, "queue_full");
    }
    // Nobody listens to the accepted job either: no channel at all.
    assert_eq!(gauge(&server, "huatu_event_channels"), 0);
    server.delete(&format!("/v1/jobs/{id}"));
    wait_for(address, &id, Duration::from_secs(60), is_terminal);
    assert_eq!(gauge(&server, "huatu_event_channels"), 0);
    assert_eq!(gauge(&server, "huatu_workers_alive"), 1);
}

/// Sends a synchronous generation on a raw socket and returns the socket (unread).
fn start_sync_generation(address: SocketAddr, prompt: &str) -> TcpStream {
    let body = json!({ "prompt": prompt, "size": "64x64", "steps": 150 }).to_string();
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/images/generations HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    stream
}

/// The id of the newest job with this prompt, once it has the status wanted.
fn job_with_prompt(server: &TestServer, prompt: &str, status: &str) -> String {
    let started = Instant::now();
    loop {
        let jobs = server.get("/v1/jobs").json();
        let found = jobs["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|job| job["request"]["prompt"] == prompt && job["status"] == status);
        if let Some(job) = found {
            return job["id"].as_str().unwrap().to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {status} job for {prompt}: {jobs}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_synchronous_client_that_disconnects_cancels_its_job() {
    let server = TestServer::start(|_| {});
    let address = server.address;
    // Running: stopped at its next step once the client is gone.
    let client = start_sync_generation(address, "running then abandoned");
    let running = job_with_prompt(&server, "running then abandoned", "running");
    // and a second one queued behind it: cancelled at once
    let queued_client = start_sync_generation(address, "queued then abandoned");
    let queued = job_with_prompt(&server, "queued then abandoned", "queued");
    drop(queued_client);
    let job = wait_for(address, &queued, Duration::from_secs(30), is_terminal);
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(job["started_at"], serde_json::Value::Null);
    drop(client);
    let job = wait_for(address, &running, Duration::from_secs(60), is_terminal);
    assert_eq!(job["status"], "cancelled", "{job}");

    // A client that waits gets its images as before.
    let done = server.post_json(
        "/v1/images/generations",
        &json!({ "prompt": "kept", "size": "64x64", "steps": 2 }),
    );
    assert_eq!(done.status, 200, "{}", done.text());
}

/// A response read from a raw socket (these tests play broken clients): the status
/// line, the headers and the body as sent (never chunked: only JSON errors come back).
fn parse_raw_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("no status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}
