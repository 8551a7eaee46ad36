//! Durability and retention against real servers: one server per data directory (its
//! lock), clear start-up errors for a damaged, newer or read-only data directory, old
//! databases upgraded, unreadable stored requests failed instead of blocking the queue,
//! uploads of refused requests never stored, a full disk failing the job (never `done`)
//! while the server keeps working, and finished jobs evicted with their blobs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(120);

/// Stored blobs under `<data>/blobs` (the `tmp/` folder not counted).
fn blob_files(data: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(shards) = std::fs::read_dir(data.join("blobs")) else {
        return files;
    };
    for shard in shards.flatten() {
        if shard.file_name() == "tmp" || !shard.path().is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(shard.path()).unwrap().flatten() {
            files.push(entry.path());
        }
    }
    files.sort();
    files
}

fn tmp_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("blobs/tmp"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// The real binary over `data` with `args`, expected to refuse to start: its stderr.
fn refused_start(data: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_huatu-server"))
        .arg("--data")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("HUATU_LOG", "error")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty(), "it never listened");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// A tmpfs mounted over `dir` while alive (needs root or CAP_SYS_ADMIN).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Self {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn generate(server: &TestServer, steps: u64) -> Response {
    server.post_json(
        "/v1/images/generations",
        &json!({ "prompt": "durable", "size": "64x64", "steps": steps, "seed": 1, "response_format": "url" }),
    )
}

fn edit_form(image: &[u8], extra: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![
        ("image", Some("a.png"), image),
        ("prompt", None, b"repaint"),
        ("steps", None, b"2"),
    ];
    parts.extend_from_slice(extra);
    multipart(&parts)
}

fn post_edit(server: &TestServer, image: &[u8], extra: &[(&str, Option<&str>, &[u8])]) -> Response {
    let (content_type, body) = edit_form(image, extra);
    request(
        server.address,
        "POST",
        "/v1/images/edits",
        &[("Content-Type", content_type.as_str())],
        &body,
    )
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let server = TestServer::start(|_| {});
    let data = server.data.path().to_path_buf();

    // In the same process (a second `start`) and as a second process (the binary).
    let second = server
        .runtime
        .block_on(huatu_server::start(huatu_server::ServerConfig::new(&data)));
    let message = second
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("another huatu server is using the data directory"),
        "{message}"
    );
    let stderr = refused_start(&data, &[]);
    assert!(
        stderr.contains("another huatu server is using the data directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("(process {})", std::process::id())),
        "{stderr}"
    );
    // The first one goes on undisturbed.
    assert_eq!(generate(&server, 2).status, 200);

    // Once it has stopped, the directory is free again.
    let data = server.stop();
    let again = TestServer::start_in(data, |_| {});
    assert_eq!(again.get("/healthz").status, 200);
}

#[test]
fn a_damaged_or_newer_database_gives_one_clear_error_at_start() {
    let data = tempfile::tempdir().unwrap();
    let database = data.path().join("jobs.sqlite3");
    std::fs::write(&database, vec![0x42u8; 16384]).unwrap();
    let stderr = refused_start(data.path(), &[]);
    assert!(stderr.starts_with("error: the job database "), "{stderr}");
    assert!(
        stderr.contains("is damaged or is not a SQLite database"),
        "{stderr}"
    );
    assert!(stderr.contains("move it aside"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    std::fs::remove_file(&database).unwrap();
    {
        let connection = rusqlite::Connection::open(&database).unwrap();
        connection
            .execute_batch("CREATE TABLE jobs (seq INTEGER); PRAGMA user_version = 9;")
            .unwrap();
    }
    let stderr = refused_start(data.path(), &[]);
    assert!(
        stderr.contains("has layout version 9, newer than this huatu reads"),
        "{stderr}"
    );
}

#[test]
fn a_read_only_data_directory_gives_one_clear_error_at_start() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data");
    // Root ignores permissions: a read-only mount says it for everyone; without the
    // right to mount, a directory without write permission does (for non-root).
    let _mount = match Tmpfs::mount(&dir, "size=1m,ro") {
        Some(mount) => Some(mount),
        None if is_root() => {
            eprintln!("skipped: as root without the right to mount, nothing is read-only");
            return;
        }
        None => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            None
        }
    };
    let stderr = refused_start(&dir, &[]);
    assert!(
        stderr.starts_with(&format!(
            "error: the data directory {} is not writable",
            dir.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("Read-only file system") || stderr.contains("Permission denied"),
        "{stderr}"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn an_old_database_is_upgraded_and_an_unreadable_request_fails_without_blocking_the_queue() {
    let data = tempfile::tempdir().unwrap();
    {
        // The first release's layout, with a queued job as it stored them, a job stored
        // by a (future) version whose requests this one cannot read, and damaged JSON.
        let connection = rusqlite::Connection::open(data.path().join("jobs.sqlite3")).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE jobs (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                    kind TEXT NOT NULL, spec TEXT NOT NULL, status TEXT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
                    images TEXT NOT NULL DEFAULT '[]', created_at REAL NOT NULL,
                    started_at REAL, finished_at REAL);
                 CREATE INDEX jobs_by_status ON jobs (status, seq);",
            )
            .unwrap();
        let spec = json!({
            "kind": "generation", "prompt": "from the first release", "negative_prompt": null,
            "width": 64, "height": 64, "steps": 2, "guidance": 5.0, "scheduler": null,
            "seed": 3, "n": 1, "loras": []
        });
        for (id, spec) in [
            (
                "job_000000000000000000000001",
                "{\"kind\":\"generation\",\"prompt\":".to_string(),
            ),
            ("job_000000000000000000000002", spec.to_string()),
        ] {
            connection
                .execute(
                    "INSERT INTO jobs (id, kind, spec, status, created_at) VALUES (?1, 'generation', ?2, 'queued', 1.0)",
                    rusqlite::params![id, spec],
                )
                .unwrap();
        }
    }
    let server = TestServer::start_in(data, |_| {});
    let broken = wait_for(
        server.address,
        "job_000000000000000000000001",
        LIMIT,
        is_terminal,
    );
    assert_eq!(broken["status"], "failed", "{broken}");
    assert!(
        broken["error"]
            .as_str()
            .unwrap_or_default()
            .contains("stored request cannot be read"),
        "{broken}"
    );
    let old = wait_for(
        server.address,
        "job_000000000000000000000002",
        LIMIT,
        is_terminal,
    );
    assert_eq!(old["status"], "succeeded", "{old}");

    // A row stored with another request schema version fails with the reason too.
    let data = server.stop();
    {
        let connection = rusqlite::Connection::open(data.path().join("jobs.sqlite3")).unwrap();
        connection
            .execute(
                "INSERT INTO jobs (id, kind, spec, spec_version, status, created_at) VALUES ('job_000000000000000000000003', 'generation', '{}', 2, 'queued', 2.0)",
                [],
            )
            .unwrap();
    }
    let server = TestServer::start_in(data, |_| {});
    let newer = wait_for(
        server.address,
        "job_000000000000000000000003",
        LIMIT,
        is_terminal,
    );
    assert_eq!(newer["status"], "failed", "{newer}");
    assert!(
        newer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("schema version 2; this server reads version 1"),
        "{newer}"
    );
    // The queue goes on.
    assert_eq!(generate(&server, 2).status, 200);
}

#[test]
fn uploads_of_refused_requests_are_never_stored() {
    // 503: no model loaded.
    let server = TestServer::start(|config| config.model = None);
    let response = post_edit(&server, &png_bytes(64, 64), &[]);
    response.expect_error(503, "unavailable");
    assert!(blob_files(server.data.path()).is_empty());
    drop(server);

    // 429: the queue is full.
    let server = TestServer::start(|config| {
        config.queue_capacity = 1;
        config.intent_model = Some(workspace_root().join("models/intent"));
    });
    let long = server.post_json(
        "/v1/images/generations",
        &json!({ "prompt": "long", "size": "64x64", "steps": 150, "async": true }),
    );
    assert_eq!(long.status, 202, "{}", long.text());
    let long = long.json()["id"].as_str().unwrap().to_string();
    for round in 0..5u8 {
        let image = rgb_png(64, 64, &vec![round; 64 * 64 * 3]);
        let response = post_edit(&server, &image, &[]);
        response.expect_error(429, "queue_full");
        let (content_type, body) = multipart(&[
            ("instruction", None, "把天空换成晚霞".as_bytes()),
            ("original", Some("a.png"), &image),
            ("steps", None, b"2"),
        ]);
        let response = request(
            server.address,
            "POST",
            "/v1/agent",
            &[("Content-Type", content_type.as_str())],
            &body,
        );
        response.expect_error(429, "queue_full");
    }
    assert!(
        blob_files(server.data.path()).is_empty(),
        "{:?}",
        blob_files(server.data.path())
    );
    assert_eq!(tmp_files(server.data.path()), 0);
    assert!(matches!(
        server.delete(&format!("/v1/jobs/{long}")).status,
        200 | 202
    ));
    wait_for(server.address, &long, LIMIT, is_terminal);

    // Accepted: the inputs are stored and the job runs on them.
    let response = post_edit(&server, &png_bytes(64, 64), &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    let job = &response.json()["huatu"]["job"];
    let input = job["request"]["image"].as_str().unwrap();
    assert!(blob_files(server.data.path())
        .iter()
        .any(|path| path.ends_with(input)));
}

/// Fills the file system of `dir` to the last byte; the filler is `dir/filler`.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        if file
            .write_all(&chunk)
            .and_then(|()| file.sync_all())
            .is_err()
        {
            break;
        }
    }
    // Single bytes into the last partial page.
    while file.write_all(&[0]).and_then(|()| file.sync_all()).is_ok() {}
}

/// A failed write of results fails the job with the reason (never `succeeded`, never
/// left `running`), leaves no partial file, and the server goes on once there is room.
fn assert_write_failure_handled(server: &TestServer, expected: &str) {
    let data = server.data.path().to_path_buf();
    let before = blob_files(&data);
    // Steps the earlier jobs did not use: a new picture, so a write is needed (the same
    // picture again is already stored and needs none).
    let response = generate(server, 5);
    let message = response.expect_error(500, "job_failed");
    assert!(message.contains(expected), "{message}");
    let data_text = data.display().to_string();
    assert!(
        !message.contains(&data_text),
        "a server path leaked: {message}"
    );
    let jobs = server.get("/v1/jobs?limit=1").json();
    let job = &jobs["data"][0];
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap_or_default().contains(expected),
        "{job}"
    );
    assert_eq!(blob_files(&data), before, "no result was kept");
    assert_eq!(tmp_files(&data), 0, "no partial write was left");

    // An upload that cannot be stored: 507 (or 500) and its job failed, not queued.
    let response = post_edit(server, &rgb_png(64, 64, &vec![7; 64 * 64 * 3]), &[]);
    assert!(matches!(response.status, 500 | 507), "{}", response.text());
    if response.status == 507 {
        response.expect_error(507, "storage_full");
    }
    let jobs = server.get("/v1/jobs?limit=1").json();
    let job = &jobs["data"][0];
    assert_eq!(job["kind"], "edit", "{job}");
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap_or_default()
            .contains("the uploaded images could not be stored"),
        "{job}"
    );
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn a_full_disk_fails_the_job_and_the_server_keeps_working() {
    let data = tempfile::tempdir().unwrap();
    // The blob store on a 1 MiB tmpfs (the database stays on the ordinary disk).
    let Some(mount) = Tmpfs::mount(&data.path().join("blobs"), "size=1m") else {
        eprintln!(
            "skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN); see the next test"
        );
        return;
    };
    let server = TestServer::start_in(data, |_| {});
    assert_eq!(generate(&server, 2).status, 200, "a job fits first");

    fill(&server.data.path().join("blobs"));
    assert_write_failure_handled(&server, "the data directory is full");

    std::fs::remove_file(server.data.path().join("blobs/filler")).unwrap();
    let response = generate(&server, 3);
    assert_eq!(response.status, 200, "{}", response.text());
    let data = server.stop();
    drop(mount);
    drop(data);
}

#[test]
fn a_failed_result_write_fails_the_job_and_the_server_keeps_working() {
    // Without a small file system: the blobs' temporary folder replaced by a file makes
    // every blob write fail ("Not a directory"), for any user.
    let server = TestServer::start(|_| {});
    assert_eq!(generate(&server, 2).status, 200);
    let tmp = server.data.path().join("blobs/tmp");
    std::fs::remove_dir(&tmp).unwrap();
    std::fs::write(&tmp, b"in the way").unwrap();
    // (tmp_files counts nothing while tmp is a file.)
    assert_write_failure_handled(&server, "the data directory cannot be written");
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    let response = generate(&server, 3);
    assert_eq!(response.status, 200, "{}", response.text());
}

#[test]
fn a_failed_job_does_not_show_the_servers_paths() {
    let server = TestServer::start(|_| {});
    let loras = server.data.path().join("loras");
    std::fs::write(
        loras.join("broken.safetensors"),
        b"\x10\0\0\0\0\0\0\0not json",
    )
    .unwrap();
    let response = server.post_json(
        "/v1/images/generations",
        &json!({ "prompt": "p", "size": "64x64", "steps": 2, "loras": [{"name": "broken"}] }),
    );
    let text = response.text();
    assert!(response.status >= 400, "{text}");
    let data = server.data.path();
    for form in [data.to_path_buf(), data.canonicalize().unwrap()] {
        assert!(!text.contains(&form.display().to_string()), "{text}");
    }
    let model = tiny_model().canonicalize().unwrap();
    assert!(!text.contains(&model.display().to_string()), "{text}");
    // The file is still named, relative to the data directory.
    assert!(
        !text.contains("loras/") || text.contains("<data>/loras/broken.safetensors"),
        "{text}"
    );
}

#[test]
fn finished_jobs_are_evicted_with_their_blobs_after_keep_results() {
    let server = TestServer::start(|config| {
        config.keep_results = Some(Duration::from_secs(2));
        config.retention_interval = Duration::from_millis(200);
    });
    let data = server.data.path().to_path_buf();
    let response = post_edit(&server, &png_bytes(64, 64), &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    let job = response.json()["huatu"]["job"].clone();
    let id = job["id"].as_str().unwrap().to_string();
    let result = job["images"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(blob_files(&data).len(), 2, "the input and the result");

    let started = std::time::Instant::now();
    while server.get(&format!("/v1/jobs/{id}")).status == 200 {
        assert!(started.elapsed() < Duration::from_secs(30), "never evicted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
    server
        .get(&format!("/v1/jobs/{id}"))
        .expect_error(404, "not_found");
    server
        .get(&format!("/v1/images/{result}"))
        .expect_error(404, "not_found");
    assert!(blob_files(&data).is_empty(), "{:?}", blob_files(&data));
    let metrics = server.get("/metrics").text();
    assert!(metrics.contains("huatu_jobs_evicted_total 1"), "{metrics}");
    assert!(metrics.contains("huatu_blobs_removed_total 2"), "{metrics}");
}

#[test]
fn over_max_store_the_oldest_finished_jobs_go_first() {
    let server = TestServer::start(|_| {});
    let ids: Vec<(String, String)> = (0..3)
        .map(|seed| {
            let response = server.post_json(
                "/v1/images/generations",
                &json!({ "prompt": "keep", "size": "64x64", "steps": 2, "seed": seed, "response_format": "url" }),
            );
            assert_eq!(response.status, 200, "{}", response.text());
            let job = response.json()["huatu"]["job"].clone();
            (
                job["id"].as_str().unwrap().to_string(),
                job["images"][0]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let size = |image: &str| {
        let path = server
            .data
            .path()
            .join("blobs")
            .join(&image[..2])
            .join(image);
        std::fs::metadata(path).unwrap().len()
    };
    // Room for the two newest results: the sweep at the next start evicts the oldest.
    let room = size(&ids[1].1) + size(&ids[2].1);
    let data = server.stop();
    let server = TestServer::start_in(data, |config| config.max_store_bytes = Some(room));
    server
        .get(&format!("/v1/jobs/{}", ids[0].0))
        .expect_error(404, "not_found");
    for (id, image) in &ids[1..] {
        assert_eq!(server.get(&format!("/v1/jobs/{id}")).status, 200);
        assert_eq!(server.get(&format!("/v1/images/{image}")).status, 200);
    }
    assert_eq!(blob_files(server.data.path()).len(), 2);
}

#[test]
fn leftovers_of_a_crash_are_removed_at_start() {
    let server = TestServer::start(|_| {});
    let data = server.stop();
    let blobs = data.path().join("blobs");
    std::fs::write(blobs.join("tmp/half-written.123"), b"partial").unwrap();
    // A blob no job references (an upload of a crashed request).
    let orphan = "ab".to_string() + &"c".repeat(62);
    std::fs::create_dir_all(blobs.join("ab")).unwrap();
    std::fs::write(blobs.join("ab").join(&orphan), b"orphan").unwrap();
    let server = TestServer::start_in(data, |_| {});
    assert_eq!(tmp_files(server.data.path()), 0);
    assert!(blob_files(server.data.path()).is_empty());
}
