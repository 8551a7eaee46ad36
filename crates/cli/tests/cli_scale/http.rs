//! A minimal HTTP/1.1 client on std's TcpStream for the cluster test (one request per
//! connection), an SSE reader that tells a finished stream from a broken one, and the
//! cluster's processes: PostgreSQL through `psql`, `huatu serve` and `huatu worker`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// (status, body), or None when the node cannot be reached or the answer broke off.
pub fn request(address: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// What an SSE stream showed before it ended.
#[derive(Debug, Default)]
pub struct Stream {
    pub events: Vec<String>,
    /// The terminal event (done, failed or cancelled), if one came.
    pub terminal: Option<String>,
}

/// Follows `/v1/jobs/{id}/events` until a terminal event or until the stream breaks;
/// `on_first` runs after the first event.
pub fn follow(address: SocketAddr, id: &str, mut on_first: impl FnMut()) -> Option<Stream> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .ok()?;
    let head = format!(
        "GET /v1/jobs/{id}/events HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).ok()?;
    let mut seen = Stream::default();
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let Some(name) = line.strip_prefix("event:") else {
            continue;
        };
        let name = name.trim().to_string();
        if seen.events.is_empty() {
            on_first();
        }
        seen.events.push(name.clone());
        if matches!(name.as_str(), "done" | "failed" | "cancelled") {
            seen.terminal = Some(name);
            break;
        }
    }
    Some(seen)
}

/// Runs SQL with psql (unaligned, tuples only) and returns its output lines.
pub fn psql(url: &str, sql: &str) -> Vec<String> {
    let output = Command::new("psql")
        .args([
            url,
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .unwrap_or_else(|error| panic!("cannot run psql: {error}"));
    assert!(
        output.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect()
}

/// Starts `huatu ARGS` with stderr in `log` and waits for its first stdout line.
pub fn spawn(args: &[&str], log: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_huatu"))
        .args(args)
        .env("HUATU_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(
        !line.is_empty(),
        "huatu {args:?} stopped: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    (child, line.trim().to_string())
}

/// Sends `signal` (KILL, STOP, CONT) to a process.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
