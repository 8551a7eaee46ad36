//! Which files `db add` reads: files named on the command line as they are, folders
//! recursively (images by extension, in sorted order, symlinked folders not followed), and
//! the labels of each image from a sidecar file beside it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{DataError, Result};

/// Extensions a folder walk picks up (the formats huatu decodes).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// The files to add: each input file itself, each input folder's images (recursively).
/// A path that does not exist is an error naming it.
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let metadata = std::fs::metadata(input).map_err(|source| DataError::Io {
            path: input.clone(),
            source,
        })?;
        if metadata.is_dir() {
            walk(input, &mut files)?;
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let io_error = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io_error)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io_error)?;
    entries.sort();
    for path in entries {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            walk(&path, files)?;
        } else if is_image_name(&path) && (metadata.is_file() || path.is_file()) {
            files.push(path);
        }
    }
    Ok(())
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            IMAGE_EXTENSIONS
                .iter()
                .any(|known| extension.eq_ignore_ascii_case(known))
        })
}

/// Labels and caption from a sidecar beside the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sidecar {
    pub labels: Vec<String>,
    pub caption: Option<String>,
}

/// Reads `NAME.json` or `NAME.txt` (NAME = the image's name without its extension, or with
/// it: `cat.png.json`). JSON: `{"labels": [...], "caption": "..."}` (or `"tags"`, or a bare
/// array of labels); text: labels separated by commas or new lines, as kohya-style tag
/// files are. No sidecar gives no labels; an unreadable one is an error naming it.
pub fn read_sidecar(image: &Path) -> Result<Sidecar> {
    for extension in ["json", "txt"] {
        for candidate in sidecar_candidates(image, extension) {
            if !candidate.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&candidate).map_err(|source| DataError::Io {
                path: candidate.clone(),
                source,
            })?;
            return if extension == "json" {
                parse_json_sidecar(&text).map_err(|source| DataError::Json {
                    path: candidate,
                    what: "an image sidecar (labels, caption)",
                    source,
                })
            } else {
                Ok(Sidecar {
                    labels: split_labels(&text),
                    caption: None,
                })
            };
        }
    }
    Ok(Sidecar::default())
}

fn sidecar_candidates(image: &Path, extension: &str) -> Vec<PathBuf> {
    let mut candidates = vec![image.with_extension(extension)];
    if let Some(name) = image.file_name() {
        let mut with_extension = name.to_os_string();
        with_extension.push(".");
        with_extension.push(extension);
        candidates.push(image.with_file_name(with_extension));
    }
    candidates
}

fn parse_json_sidecar(text: &str) -> std::result::Result<Sidecar, serde_json::Error> {
    let value: Value = serde_json::from_str(text)?;
    let strings = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|label| !label.is_empty())
                .map(str::to_string)
                .collect(),
            Some(Value::String(text)) => split_labels(text),
            _ => Vec::new(),
        }
    };
    Ok(match &value {
        Value::Array(_) => Sidecar {
            labels: strings(Some(&value)),
            caption: None,
        },
        _ => Sidecar {
            labels: strings(value.get("labels").or_else(|| value.get("tags"))),
            caption: value
                .get("caption")
                .and_then(Value::as_str)
                .map(str::to_string),
        },
    })
}

/// Labels separated by commas or new lines, trimmed, empty ones dropped.
pub fn split_labels(text: &str) -> Vec<String> {
    text.split([',', '\n', '，'])
        .map(str::trim)
        .filter(|label| !label.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_split_on_commas_and_lines() {
        assert_eq!(
            split_labels("cat, red ,\n poster，春节\n\n"),
            ["cat", "red", "poster", "春节"]
        );
    }

    #[test]
    fn json_sidecars_take_labels_tags_or_an_array() {
        let sidecar = parse_json_sidecar(r#"{"labels": ["a", " b "], "caption": "x"}"#).unwrap();
        assert_eq!(sidecar.labels, ["a", "b"]);
        assert_eq!(sidecar.caption.as_deref(), Some("x"));
        assert_eq!(
            parse_json_sidecar(r#"{"tags": "a, b"}"#).unwrap().labels,
            ["a", "b"]
        );
        assert_eq!(parse_json_sidecar(r#"["c"]"#).unwrap().labels, ["c"]);
    }
}
