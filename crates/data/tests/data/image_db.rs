//! The image database end to end on the tiny CLIP: add a folder of synthetic images (one
//! broken file, sidecar labels), search by image and text, re-add, remove, reopen.

use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::Device;
use huatu_data::db::ann::{IndexAction, INDEX_FILE};
use huatu_data::db::{embed_query, AddOptions, ImageDatabase, Query, SearchOptions};
use huatu_data::{ClipModel, DataError};
use image::{Rgb, RgbImage};

use crate::fixture;

/// A picture unlike the others: stripes and a colour that depend on `seed`.
fn synthetic_image(seed: u32, width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let wave = ((x * (seed + 1) + y * (seed * 3 + 2)) % 17) as u8 * 15;
        let base = (seed * 53 % 256) as u8;
        Rgb([base.wrapping_add(wave), wave, 255 - base / 2])
    })
}

fn write_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let nested = dir.join("nested/deeper");
    std::fs::create_dir_all(&nested)?;
    let mut paths = Vec::new();
    for seed in 0..6u32 {
        let folder = if seed < 3 {
            dir.to_path_buf()
        } else {
            nested.clone()
        };
        let path = folder.join(format!("image{seed}.png"));
        synthetic_image(seed, 40 + seed * 7, 32 + seed * 3).save(&path)?;
        paths.push(path);
    }
    std::fs::write(dir.join("broken.png"), b"not a png at all")?;
    std::fs::write(dir.join("notes.md"), b"ignored: not an image name")?;
    std::fs::write(dir.join("image0.txt"), "cat, red\nposter")?;
    std::fs::write(
        nested.join("image4.json"),
        r#"{"labels": ["dog"], "caption": "a dog"}"#,
    )?;
    Ok(paths)
}

#[test]
fn add_search_readd_remove() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let images = scratch.path().join("images");
    let paths = write_images(&images)?;
    let db_dir = scratch.path().join("db");
    let model = ClipModel::load(&fixture("clip_tiny"), &Device::Cpu)?;

    let mut database = ImageDatabase::open_or_create(&db_dir, &model)?;
    let options = AddOptions {
        labels: vec!["scenario".into()],
        batch_size: 4,
    };
    let mut updates = Vec::new();
    let report = database.add(
        &model,
        std::slice::from_ref(&images),
        &options,
        |progress| updates.push(*progress),
    )?;
    assert_eq!(report.added, 6, "{report:?}");
    assert_eq!(report.already_present, 0);
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert!(report.skipped[0].path.ends_with("broken.png"));
    assert_eq!(updates.last().map(|progress| progress.done), Some(7));

    // Search by an image returns itself first with score ≈ 1.
    let reopened = ImageDatabase::open(&db_dir)?;
    let search_model = reopened.load_model(&Device::Cpu)?;
    for path in [&paths[1], &paths[4]] {
        let query = embed_query(&search_model, &Query::Image(path.clone()))?;
        let hits = reopened.search(&query, 3, None)?;
        assert_eq!(hits.len(), 3);
        assert_eq!(Path::new(&hits[0].path), std::fs::canonicalize(path)?);
        assert!((hits[0].score - 1.0).abs() < 1e-5, "{}", hits[0].score);
        assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));
    }
    // Labels: the given ones, then the sidecar's; the JSON sidecar's caption.
    let rows = reopened.rows()?;
    let row = |name: &str| rows.iter().find(|row| row.path.ends_with(name)).cloned();
    let first = row("image0.png").ok_or_else(|| anyhow::anyhow!("image0 missing"))?;
    assert_eq!(first.labels, ["scenario", "cat", "red", "poster"]);
    assert_eq!((first.width, first.height), (40, 32));
    let dog = row("image4.png").ok_or_else(|| anyhow::anyhow!("image4 missing"))?;
    assert_eq!(dog.labels, ["scenario", "dog"]);
    assert_eq!(dog.caption.as_deref(), Some("a dog"));

    // Text search: k hits, best first; a floor above every score gives none.
    let text = embed_query(&search_model, &Query::Text("a photo of a cat".into()))?;
    let hits = reopened.search(&text, 10, None)?;
    assert_eq!(hits.len(), 6);
    assert!(reopened.search(&text, 10, Some(1.01))?.is_empty());

    // Re-adding is a no-op, and so is the same content under another name.
    std::fs::copy(&paths[2], scratch.path().join("copy.png"))?;
    let again = database.add(
        &model,
        &[images.clone(), scratch.path().join("copy.png")],
        &AddOptions::default(),
        |_| {},
    )?;
    assert_eq!((again.added, again.already_present), (0, 7), "{again:?}");
    assert_eq!(database.info()?.images, 6);

    // Remove by id prefix and by path.
    let removed = database.remove(&[first.id[..12].to_string(), dog.path.clone()])?;
    assert_eq!(removed.len(), 2);
    assert_eq!(database.info()?.images, 4);
    let query = embed_query(&model, &Query::Image(paths[0].clone()))?;
    let hits = database.search(&query, 10, None)?;
    assert!(hits.iter().all(|hit| hit.id != first.id));
    Ok(())
}

#[test]
fn clear_errors_for_a_missing_database_and_a_wrong_dimension() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let missing = scratch.path().join("nothing");
    let error = ImageDatabase::open(&missing)
        .err()
        .map(|error| error.to_string());
    let error = error.unwrap_or_default();
    assert!(
        error.contains("no image database") && error.contains("nothing"),
        "{error}"
    );

    let model = ClipModel::load(&fixture("clip_tiny"), &Device::Cpu)?;
    let database = ImageDatabase::open_or_create(&scratch.path().join("db"), &model)?;
    match database.search(&[1.0; 5], 3, None) {
        Err(DataError::DimensionMismatch {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (16, 5)),
        other => panic!("expected a dimension mismatch, got {other:?}"),
    }
    assert!(database.search(&[0.25; 16], 3, None)?.is_empty());
    Ok(())
}

#[test]
fn approximate_index_is_kept_current_and_rebuilt_when_lost() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let images = scratch.path().join("images");
    let paths = write_images(&images)?;
    let model = ClipModel::load(&fixture("clip_tiny"), &Device::Cpu)?;
    let mut database = ImageDatabase::open_or_create(&scratch.path().join("db"), &model)?;
    database.add(&model, &paths[..5], &AddOptions::default(), |_| {})?;

    // every search approximate: threshold 0
    let options = SearchOptions {
        ann_threshold: 0,
        ..SearchOptions::top(3)
    };
    let query = embed_query(&model, &Query::Image(paths[2].clone()))?;
    let approximate = database.search_with(&query, &options)?;
    let exact = database.search_with(
        &query,
        &SearchOptions {
            exact: true,
            ..options
        },
    )?;
    assert_eq!(approximate.len(), 3);
    for (left, right) in approximate.iter().zip(&exact) {
        assert_eq!(left.id, right.id);
        assert!((left.score - right.score).abs() < 1e-5);
    }
    assert_eq!(database.info()?.indexed, Some(5));
    assert_eq!(database.build_index()?, IndexAction::Loaded);

    database.add(&model, &paths[5..], &AddOptions::default(), |_| {})?;
    assert_eq!(database.build_index()?, IndexAction::Extended);
    let query = embed_query(&model, &Query::Image(paths[5].clone()))?;
    let hits = database.search_with(&query, &options)?;
    assert_eq!(Path::new(&hits[0].path), std::fs::canonicalize(&paths[5])?);

    database.remove(&[hits[0].id.clone()])?;
    assert_eq!(database.info()?.indexed, None);
    assert_eq!(database.build_index()?, IndexAction::Rebuilt);
    assert!(database
        .search_with(&query, &options)?
        .iter()
        .all(|hit| hit.id != hits[0].id));

    let index_file = database.dir().join(INDEX_FILE);
    std::fs::write(&index_file, b"damaged")?;
    assert_eq!(database.build_index()?, IndexAction::Rebuilt);
    std::fs::remove_file(&index_file)?;
    assert_eq!(database.build_index()?, IndexAction::Rebuilt);
    assert_eq!(database.info()?.indexed, Some(5));
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

#[test]
fn a_different_model_is_refused_and_a_moved_one_followed() -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let paths = write_images(&scratch.path().join("images"))?;
    let db_dir = scratch.path().join("db");
    let original = ClipModel::load(&fixture("clip_tiny"), &Device::Cpu)?;
    let mut database = ImageDatabase::open_or_create(&db_dir, &original)?;
    database.add(&original, &paths[..2], &AddOptions::default(), |_| {})?;

    // same weights and settings elsewhere: accepted, and its new place recorded
    let moved = scratch.path().join("moved_clip");
    copy_dir(&fixture("clip_tiny"), &moved)?;
    let moved_model = ClipModel::load(&moved, &Device::Cpu)?;
    let database = ImageDatabase::open_or_create(&db_dir, &moved_model)?;
    assert_eq!(
        database.model_record()?.path,
        std::fs::canonicalize(&moved)?
    );

    // a changed configuration: refused, naming both
    let changed = scratch.path().join("changed_clip");
    copy_dir(&fixture("clip_tiny"), &changed)?;
    let config = std::fs::read_to_string(changed.join("config.json"))?;
    std::fs::write(
        changed.join("config.json"),
        config.replace("\"layer_norm_eps\": 1e-05", "\"layer_norm_eps\": 1e-06"),
    )?;
    let changed_model = ClipModel::load(&changed, &Device::Cpu)?;
    let error = ImageDatabase::open_or_create(&db_dir, &changed_model)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("different CLIP model") && error.contains("changed_clip"),
        "{error}"
    );

    // the recorded model gone: search names where it was looked for
    std::fs::remove_dir_all(&moved)?;
    let error = ImageDatabase::open(&db_dir)?
        .load_model(&Device::Cpu)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("moved_clip") && error.contains("not found"),
        "{error}"
    );
    Ok(())
}
