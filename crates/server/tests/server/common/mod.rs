//! Test helpers: a real server on 127.0.0.1:0 over a temporary data directory with the
//! tiny SDXL fixture, and an HTTP/1.1 client on hyper.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use huatu_server::{RunningServer, ServerConfig};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub mod postgres;
pub mod s3;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn tiny_model() -> PathBuf {
    workspace_root().join("tests/fixtures/sdxl_tiny")
}

/// The real `huatu-server` binary on the tiny model over `data`, on a free loopback port,
/// with `extra` flags; returns the process and the address it printed.
pub fn spawn_server_binary(
    data: &std::path::Path,
    extra: &[&str],
    log_level: &str,
) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_huatu-server"))
        .arg("--model")
        .arg(tiny_model())
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env("HUATU_LOG", log_level)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    (child, address)
}

pub struct TestServer {
    pub runtime: tokio::runtime::Runtime,
    pub server: Option<RunningServer>,
    pub address: SocketAddr,
    pub data: tempfile::TempDir,
}

impl TestServer {
    /// A server with the tiny model; `adjust` changes the defaults.
    pub fn start(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let data = tempfile::tempdir().unwrap();
        Self::start_in(data, adjust)
    }

    pub fn start_in(data: tempfile::TempDir, adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig::new(data.path());
        config.model = Some(tiny_model());
        adjust(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = runtime.block_on(huatu_server::start(config)).unwrap();
        let address = server.address;
        Self {
            runtime,
            server: Some(server),
            address,
            data,
        }
    }

    /// Stops gracefully and hands back the data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop()).unwrap();
        }
        let data = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data, data)
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.address, "GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        request(
            self.address,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    pub fn delete(&self, path: &str) -> Response {
        request(self.address, "DELETE", path, &[], b"")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = self.runtime.block_on(server.stop());
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts an `{"error": {"code", "message"}}` body with this status and code, and
    /// returns the message.
    pub fn expect_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        let message = body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!message.is_empty(), "{body}");
        message
    }
}

/// One HTTP/1.1 exchange through hyper's client, the body read to its end.
pub fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    request_to_host(address, method, path, &address.to_string(), headers, body)
}

/// One exchange with a chosen `Host` header (`Connection: close`); at most ten minutes.
pub fn request_to_host(
    address: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("connection", "close");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let connection = tokio::spawn(connection);
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let _ = connection.await;
        Response {
            status,
            headers,
            body: body.to_vec(),
        }
    };
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(600), exchange).await })
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within ten minutes"))
}

/// Reads `/v1/jobs/{id}/events` to its end: (event name, data) pairs.
pub fn sse_events(
    address: SocketAddr,
    job_id: &str,
    headers: &[(&str, &str)],
) -> Vec<(String, Value)> {
    let response = request(
        address,
        "GET",
        &format!("/v1/jobs/{job_id}/events"),
        headers,
        b"",
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/event-stream"));
    parse_sse(&response.text())
}

pub fn parse_sse(text: &str) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let mut name = String::from("message");
        let mut data = String::new();
        for line in block.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                name = value.trim().to_string();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.trim());
            }
        }
        if !data.is_empty() {
            events.push((name, serde_json::from_str(&data).unwrap()));
        }
    }
    events
}

/// Polls `GET /v1/jobs/{id}` until `done` says so (or panics after `limit`).
pub fn wait_for(
    address: SocketAddr,
    job_id: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let response = request(address, "GET", &format!("/v1/jobs/{job_id}"), &[], b"");
        if response.status == 200 {
            let job = response.json();
            if done(&job) {
                return job;
            }
        }
        assert!(
            started.elapsed() < limit,
            "job {job_id} did not get there in {limit:?}: {}",
            response.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn is_terminal(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// A multipart/form-data body: (name, filename, bytes) parts.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "huatu-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(filename) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A PNG of `width`×`height` grey pixels.
pub fn png_bytes(width: u32, height: u32) -> Vec<u8> {
    rgb_png(width, height, &vec![128u8; (width * height * 3) as usize])
}

/// RGB pixels (row by row) as PNG bytes.
pub fn rgb_png(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(pixels).unwrap();
    }
    bytes
}

/// (width, height) of PNG bytes.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}

/// A grayscale PNG mask: white inside the rectangle (x, y, width, height), black outside.
pub fn mask_png(width: u32, height: u32, rect: (u32, u32, u32, u32)) -> Vec<u8> {
    let (left, top, rect_width, rect_height) = rect;
    let pixels: Vec<u8> = (0..height)
        .flat_map(|y| (0..width).map(move |x| (x, y)))
        .map(|(x, y)| {
            if x >= left && x < left + rect_width && y >= top && y < top + rect_height {
                255
            } else {
                0
            }
        })
        .collect();
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&pixels).unwrap();
    }
    bytes
}

/// RGB pixels of PNG bytes.
pub fn png_pixels(bytes: &[u8]) -> Vec<u8> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).unwrap();
    buffer.truncate(info.buffer_size());
    buffer
}
