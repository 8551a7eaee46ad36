//! The S3 blob store against a real S3-compatible server (moto, started by
//! scripts/with_s3.sh): content-addressed round trips under a prefix, deletion only past
//! the grace period and never of pinned or referenced blobs, one clear error at open for
//! a missing bucket or an unreachable endpoint, a server whose job input and result
//! live in the bucket, and put/get timings beside the directory store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use huatu_server::blobs::{content_hash, BlobStoreError, Blobs, S3Location};
use huatu_server::error::one_line_chain;
use serde_json::json;

use crate::common::s3::{endpoint, fresh_bucket, object_exists, put_object};
use crate::common::*;

const LIMIT: Duration = Duration::from_secs(120);
const HOUR: Duration = Duration::from_secs(3600);

fn open(location: &S3Location, grace: Duration) -> (Arc<Blobs>, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let blobs = Blobs::open_s3(location, cache.path(), grace)
        .unwrap_or_else(|error| panic!("{}", one_line_chain(&error)));
    (Arc::new(blobs), cache)
}

#[test]
fn s3_blobs_round_trip_by_content_hash_under_the_prefix() {
    let Some(location) = fresh_bucket("roundtrip", "team/a/") else {
        return;
    };
    let (blobs, cache) = open(&location, HOUR);
    let id = blobs.put(b"hello").unwrap();
    assert_eq!(
        id,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert!(object_exists(&location, &format!("team/a/2c/{id}")));
    assert_eq!(blobs.get(&id).unwrap(), Some(b"hello".to_vec()));
    assert_eq!(
        blobs.put(b"hello").unwrap(),
        id,
        "stored again: the same blob"
    );
    assert!(blobs.wait_until_present(&id, Duration::ZERO));
    assert_eq!(blobs.get("../../etc/passwd").unwrap(), None);
    let unknown = content_hash(b"never stored");
    assert_eq!(blobs.get(&unknown).unwrap(), None);
    assert!(!blobs.wait_until_present(&unknown, Duration::from_millis(100)));

    // Objects of other shapes in the bucket are not blobs.
    put_object(&location, "team/a/notes.txt", b"not a blob");
    put_object(
        &location,
        &format!("team/a/00/{id}"),
        b"a blob in the wrong shard",
    );
    assert_eq!(blobs.list().unwrap(), vec![(id.clone(), 5)]);

    // A local copy for code that reads paths, gone when dropped.
    let copy = blobs.local_file(&id, Duration::ZERO).unwrap().unwrap();
    assert!(copy.path().starts_with(cache.path()));
    assert_eq!(std::fs::read(copy.path()).unwrap(), b"hello");
    let path = copy.path().to_path_buf();
    drop(copy);
    assert!(!path.exists());
    assert!(blobs
        .local_file(&unknown, Duration::ZERO)
        .unwrap()
        .is_none());
}

#[test]
fn s3_blobs_are_deleted_only_past_the_grace_period_unpinned_and_unreferenced() {
    let Some(location) = fresh_bucket("grace", "") else {
        return;
    };
    // Last-Modified has whole seconds: a two-second grace, waited out with margin.
    let (blobs, _cache) = open(&location, Duration::from_secs(2));
    let loose = blobs.put(b"loose").unwrap();
    let kept = blobs.put(b"kept").unwrap();
    let refreshed = blobs.put(b"refreshed").unwrap();
    let (pinned, pins) = blobs.put_pinned(b"pinned").unwrap();
    let all = [
        loose.as_str(),
        kept.as_str(),
        refreshed.as_str(),
        pinned.as_str(),
    ];
    let removed = blobs.remove_unreferenced(all, |id| id == kept).unwrap();
    assert_eq!(removed.files, 0, "every blob is younger than the grace");

    std::thread::sleep(Duration::from_millis(3200));
    // Stored again (another job made the same bytes): young again.
    blobs.put(b"refreshed").unwrap();
    let removed = blobs.remove_unreferenced(all, |id| id == kept).unwrap();
    assert_eq!((removed.files, removed.bytes), (1, 5));
    assert_eq!(blobs.get(&loose).unwrap(), None);
    for id in [&kept, &refreshed, &pinned] {
        assert!(blobs.get(id).unwrap().is_some());
    }
    drop(pins);
    let removed = blobs.remove_unreferenced(all, |id| id == kept).unwrap();
    assert_eq!(removed.files, 1, "unpinned now");
    assert_eq!(blobs.get(&pinned).unwrap(), None);
    let mut left: Vec<String> = blobs
        .list()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    left.sort();
    let mut expected = vec![kept, refreshed];
    expected.sort();
    assert_eq!(left, expected);
}

#[test]
fn a_missing_bucket_is_one_clear_error_at_open() {
    let Some(endpoint) = endpoint("missing_bucket") else {
        return;
    };
    let location = S3Location::at(&endpoint, "huatu-no-such-bucket", "blobs");
    let cache = tempfile::tempdir().unwrap();
    let error = Blobs::open_s3(&location, cache.path(), HOUR).err().unwrap();
    assert!(
        matches!(error, BlobStoreError::NoBucket { .. }),
        "{error:?}"
    );
    let text = one_line_chain(&error);
    assert!(text.contains("huatu-no-such-bucket"), "{text}");
    assert!(text.contains(&endpoint), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn an_unreachable_endpoint_is_one_clear_error_at_open_within_seconds() {
    // Needs only the test credentials (else the client would ask an instance-metadata
    // service for some): the same guard as the other S3 tests.
    if endpoint("unreachable").is_none() {
        return;
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let location = S3Location::at(&endpoint, "huatu-unreachable", "");
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let error = Blobs::open_s3(&location, cache.path(), HOUR).err().unwrap();
    let took = started.elapsed();
    let text = one_line_chain(&error);
    assert!(took < Duration::from_secs(30), "took {took:?}: {text}");
    assert!(text.contains(&endpoint), "{text}");
    assert!(text.contains("huatu-unreachable"), "{text}");
}

#[test]
fn a_server_keeps_a_jobs_input_and_result_in_the_s3_bucket() {
    let Some(location) = fresh_bucket("server", "huatu") else {
        return;
    };
    let in_bucket = location.clone();
    let server = TestServer::start(move |config| {
        config.blob_store = Some(in_bucket);
        config.max_dimension = 128;
    });
    let image = png_bytes(64, 64);
    let (content_type, body) = multipart(&[
        ("image", Some("a.png"), &image),
        ("prompt", None, b"watercolour"),
        ("steps", None, b"2"),
        ("seed", None, b"3"),
        ("response_format", None, b"url"),
    ]);
    let response = request(
        server.address,
        "POST",
        "/v1/images/edits",
        &[("Content-Type", content_type.as_str())],
        &body,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let answer = response.json();
    let job_id = answer["huatu"]["job"]["id"].as_str().unwrap().to_string();
    let job = wait_for(server.address, &job_id, LIMIT, is_terminal);
    assert_eq!(job["status"], "succeeded", "{job}");
    let input = job["request"]["image"].as_str().unwrap().to_string();
    let result = job["images"][0]["id"]
        .as_str()
        .or_else(|| job["images"][0].as_str())
        .map(String::from)
        .unwrap_or_else(|| panic!("no image in {job}"));
    for id in [&input, &result] {
        assert!(object_exists(&location, &location.key(id)), "{id}");
    }
    assert_eq!(
        std::fs::read_dir(server.data.path().join("blobs"))
            .map(|entries| entries.count())
            .unwrap_or(0),
        0,
        "nothing is stored in the data directory"
    );
    let png = server.get(&format!("/v1/images/{result}"));
    assert_eq!(png.status, 200);
    assert_eq!(png_size(&png.body), (64, 64));
    let b64 = server.post_json(
        "/v1/images/generations",
        &json!({ "prompt": "a red square", "size": "64x64", "steps": 1, "seed": 1 }),
    );
    assert_eq!(b64.status, 200, "{}", b64.text());
    assert!(b64.json()["data"][0]["b64_json"].as_str().is_some());
}

/// Not a check: put and get timings of a 1 MB PNG (incompressible pixels) on moto and
/// on the directory store, printed with --nocapture.
#[test]
fn s3_and_directory_put_get_timings_for_a_1_mb_png() {
    let Some(location) = fresh_bucket("timings", "bench") else {
        return;
    };
    let (s3, _cache) = open(&location, HOUR);
    let directory = tempfile::tempdir().unwrap();
    let local = Blobs::open(&directory.path().join("blobs")).unwrap();
    let side = 592;
    let noise: Vec<u8> = (0..side * side * 3).map(|_| rand::random::<u8>()).collect();
    const ROUNDS: usize = 10;
    // A different image each round: a content-addressed store skips what it has.
    let images: Vec<Vec<u8>> = (0..ROUNDS)
        .map(|round| {
            let mut pixels = noise.clone();
            pixels[0] = round as u8;
            rgb_png(side as u32, side as u32, &pixels)
        })
        .collect();
    let size = images[0].len();
    for (name, blobs) in [("moto S3", &*s3), ("directory", &local)] {
        let started = Instant::now();
        let ids: Vec<String> = images.iter().map(|png| blobs.put(png).unwrap()).collect();
        let put = started.elapsed() / ROUNDS as u32;
        let started = Instant::now();
        for id in &ids {
            assert_eq!(blobs.get(id).unwrap().map(|bytes| bytes.len()), Some(size));
        }
        let get = started.elapsed() / ROUNDS as u32;
        let rate = |took: Duration| size as f64 / 1e6 / took.as_secs_f64();
        eprintln!(
            "TIMING {name}: {size} B PNG, put {:.1} ms ({:.0} MB/s), get {:.1} ms ({:.0} MB/s), mean of {ROUNDS}",
            put.as_secs_f64() * 1e3,
            rate(put),
            get.as_secs_f64() * 1e3,
            rate(get)
        );
    }
}

/// Beyond one machine: an API node and a worker node on one PostgreSQL queue with data
/// directories of their own, sharing nothing but the bucket. The upload the API node
/// stores is the worker's input; the worker's result is what the API node serves.
#[test]
fn an_api_node_and_a_worker_node_share_only_the_bucket() {
    let Some(url) = crate::common::postgres::fresh_database("s3_nodes") else {
        return;
    };
    let Some(location) = fresh_bucket("nodes", "cluster") else {
        return;
    };
    let (worker_url, worker_bucket) = (url.clone(), location.clone());
    let worker = TestServer::start(move |config| {
        config.database = Some(worker_url);
        config.blob_store = Some(worker_bucket);
        config.lease = Duration::from_secs(3);
        config.worker_name = Some("s3-worker".into());
        config.max_dimension = 128;
    });
    let api_bucket = location.clone();
    let api = TestServer::start(move |config| {
        config.database = Some(url);
        config.run_workers = false;
        config.blob_store = Some(api_bucket);
        config.max_dimension = 128;
    });
    let image = png_bytes(64, 64);
    let (content_type, body) = multipart(&[
        ("image", Some("a.png"), &image),
        ("prompt", None, b"ink"),
        ("steps", None, b"2"),
        ("seed", None, b"5"),
        ("response_format", None, b"url"),
    ]);
    let response = request(
        api.address,
        "POST",
        "/v1/images/edits",
        &[("Content-Type", content_type.as_str())],
        &body,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let job_id = response.json()["huatu"]["job"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let job = wait_for(api.address, &job_id, LIMIT, is_terminal);
    assert_eq!(job["status"], "succeeded", "{job}");
    let result = job["images"][0]["id"].as_str().unwrap().to_string();
    assert!(object_exists(&location, &location.key(&result)));
    let png = api.get(&format!("/v1/images/{result}"));
    assert_eq!(png.status, 200, "the API node reads the worker's result");
    assert_eq!(png_size(&png.body), (64, 64));
    for node in [&api, &worker] {
        let stored = std::fs::read_dir(node.data.path().join("blobs"))
            .map(|entries| entries.count())
            .unwrap_or(0);
        assert_eq!(stored, 0, "no blob in {}", node.data.path().display());
    }
}

/// The agent's pipelines read their images from paths: with a bucket, the worker makes
/// local copies of the inputs for the job and removes them after.
#[test]
fn an_agent_edit_reads_local_copies_of_its_inputs_from_the_bucket() {
    let Some(location) = fresh_bucket("agent", "") else {
        return;
    };
    let fixtures = workspace_root().join("tests/fixtures");
    let in_bucket = location.clone();
    let server = TestServer::start(move |config| {
        config.blob_store = Some(in_bucket);
        config.intent_model = Some(workspace_root().join("models/intent"));
        config.instruct_model = Some(fixtures.join("sdxl_tiny_instruct_pix2pix"));
    });
    let original = png_bytes(64, 64);
    let (content_type, body) = multipart(&[
        ("instruction", None, "把天空换成晚霞".as_bytes()),
        ("original", Some("a.png"), &original),
        ("steps", None, b"2"),
        ("seed", None, b"5"),
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
    assert_eq!(answer["intent"], "edit.instruct", "{answer}");
    let job_id = answer["job"]["id"].as_str().unwrap().to_string();
    let job = wait_for(server.address, &job_id, LIMIT, is_terminal);
    assert_eq!(job["status"], "succeeded", "{job}");
    let input = job["request"]["image"].as_str().unwrap().to_string();
    let result = job["images"][0]["id"].as_str().unwrap().to_string();
    for id in [&input, &result] {
        assert!(object_exists(&location, &location.key(id)), "{id}");
    }
    let copies = std::fs::read_dir(server.data.path().join("blob-cache"))
        .unwrap()
        .count();
    assert_eq!(copies, 0, "the job's local copies are removed after it");
}
