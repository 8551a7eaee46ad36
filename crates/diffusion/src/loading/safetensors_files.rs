//! Finding and memory-mapping the safetensors weight files of one diffusers component
//! (single file, `.fp16` variant, or sharded with an `.index.json`).

use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// Weight file names diffusers and transformers write, in order of preference.
const WEIGHT_NAMES: [&str; 4] = [
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "model.fp16.safetensors",
];

const INDEX_NAMES: [&str; 2] = [
    "diffusion_pytorch_model.safetensors.index.json",
    "model.safetensors.index.json",
];

/// The safetensors files holding one component's weights.
pub fn component_weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    for name in WEIGHT_NAMES {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(vec![path]);
        }
    }
    for name in INDEX_NAMES {
        let path = dir.join(name);
        if path.is_file() {
            return sharded_files(&path);
        }
    }
    let has_pickle = ["diffusion_pytorch_model.bin", "pytorch_model.bin"]
        .iter()
        .any(|name| dir.join(name).is_file());
    Err(Error::MissingModelPart {
        what: if has_pickle {
            "safetensors weights (only PyTorch .bin files were found; convert them to .safetensors)"
                .to_string()
        } else {
            format!("weights ({})", WEIGHT_NAMES.join(" or "))
        },
        path: dir.to_path_buf(),
    })
}

fn sharded_files(index_path: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = read_text(index_path)?;
    let index: Index = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: index_path.to_path_buf(),
        what: "a safetensors shard index",
        source,
    })?;
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let mut files = Vec::with_capacity(index.weight_map.len());
    for (tensor, file) in &index.weight_map {
        if !is_plain_file_name(file) {
            return Err(Error::BadModelFile {
                path: index_path.to_path_buf(),
                message: format!(
                    "tensor `{tensor}` is mapped to {file:?}; shard names must be plain file names \
                     inside the index's folder (no folders, `..` or absolute paths)"
                ),
            });
        }
        files.push(dir.join(file));
    }
    files.sort();
    files.dedup();
    for file in &files {
        if !file.is_file() {
            return Err(Error::MissingModelPart {
                what: "weight shard".into(),
                path: file.clone(),
            });
        }
    }
    Ok(files)
}

/// A name that stays inside its folder when joined to it: one normal path component, no
/// separators of either platform, no drive prefix, not `.`/`..`, no NUL.
pub fn is_plain_file_name(name: &str) -> bool {
    use std::path::Component;
    let mut components = Path::new(name).components();
    matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    ) && !name.contains(['/', '\\', ':', '\0'])
}

pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Memory-maps the files into a VarBuilder that converts each tensor to `dtype` on access.
pub fn mmap_var_builder(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>> {
    Ok(VarBuilder::from_backend(
        mmap_backend(files)?,
        dtype,
        device.clone(),
    ))
}

/// Memory-maps the files (checked first, so a bad one is named) as a weight source.
pub fn mmap_backend(files: &[PathBuf]) -> Result<Box<dyn SimpleBackend>> {
    Ok(Box::new(mmap_safetensors(files)?))
}

/// Memory-maps the files after checking each header; the safetensors crate then checks
/// every tensor's offsets and element count × dtype size against the mapped bytes, so
/// nothing is allocated from a declared size.
pub fn mmap_safetensors(files: &[PathBuf]) -> Result<MmapedSafetensors> {
    for file in files {
        check_header(file)?;
    }
    // SAFETY: the files are mapped read-only; like every safetensors reader we rely on them
    // not being modified while the model is loaded.
    #[expect(unsafe_code, reason = "memory-mapping safetensors files")]
    let mapped = unsafe { MmapedSafetensors::multi(files) };
    let first = files.first().cloned().unwrap_or_default();
    mapped.map_err(|error| Error::BadModelFile {
        path: first,
        message: error.to_string(),
    })
}

/// Reads a safetensors header so that a truncated or foreign file is reported by name.
pub fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let length = file
        .metadata()
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut size = [0u8; 8];
    let bad = |message: &str| Error::BadModelFile {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    file.read_exact(&mut size)
        .map_err(|_| bad("too short to be a safetensors file"))?;
    let header_len = u64::from_le_bytes(size);
    if header_len == 0 || header_len > length.saturating_sub(8) || header_len > 100_000_000 {
        return Err(bad("not a safetensors file (bad header length)"));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|_| bad("truncated safetensors header"))?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| bad("safetensors header is not valid JSON"))?;
    let mut end = 0u64;
    if let Some(entries) = header.as_object() {
        for (name, entry) in entries {
            if name == "__metadata__" {
                continue;
            }
            if let Some(offset) = entry
                .get("data_offsets")
                .and_then(|o| o.get(1))
                .and_then(|o| o.as_u64())
            {
                end = end.max(offset);
            }
        }
    }
    if end.saturating_add(8 + header_len) > length {
        return Err(bad("the file is truncated (tensor data runs past its end)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("huatu-safetensors-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        dir
    }

    /// A safetensors file: `header_len` as declared, then the header and `data`.
    fn file_bytes(header_len: Option<u64>, header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = header_len
            .unwrap_or(header.len() as u64)
            .to_le_bytes()
            .to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn shard_names_must_stay_inside_the_folder() {
        for good in [
            "model-00001-of-00002.safetensors",
            "a b.safetensors",
            "x..y",
        ] {
            assert!(is_plain_file_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x.safetensors",
            "/etc/passwd",
            "sub/x.safetensors",
            "sub\\x.safetensors",
            "C:x.safetensors",
            "x\0y",
        ] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
        let dir = scratch("shards");
        std::fs::write(dir.join("inside.safetensors"), b"").ok();
        for target in [
            "../inside.safetensors",
            "/etc/passwd",
            "sub/inside.safetensors",
        ] {
            let index = format!(
                r#"{{"metadata": {{}}, "weight_map": {{"a": "inside.safetensors", "b": {target:?}}}}}"#
            );
            std::fs::write(dir.join("model.safetensors.index.json"), index).ok();
            let error = component_weight_files(&dir).err().map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("plain file names") && e.contains(target)),
                "{target}: {error:?}"
            );
        }
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "inside.safetensors"}}"#,
        )
        .ok();
        assert_eq!(
            component_weight_files(&dir).ok(),
            Some(vec![dir.join("inside.safetensors")])
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn lying_headers_are_refused_before_allocation() {
        let dir = scratch("headers");
        let tensor = |shape: &str, end: u64| {
            format!(r#"{{"w":{{"dtype":"F32","shape":{shape},"data_offsets":[0,{end}]}}}}"#)
        };
        let cases: [(&str, Vec<u8>); 6] = [
            // 2^62-byte header in a 40-byte file
            ("huge header", file_bytes(Some(1 << 62), "{}", &[0; 24])),
            ("header past the end", file_bytes(Some(1000), "{}", &[])),
            // 2 TiB of declared data in a small file; offsets near u64::MAX must not wrap
            (
                "huge tensor",
                file_bytes(None, &tensor("[1099511627776]", 1 << 42), &[0; 16]),
            ),
            (
                "wrapping end",
                file_bytes(None, &tensor("[1]", u64::MAX - 4), &[0; 4]),
            ),
            // shape whose element count overflows, with offsets the file covers
            (
                "overflowing shape",
                file_bytes(None, &tensor("[4294967296,4294967296,16]", 4), &[0; 4]),
            ),
            // declared element count does not match the stored bytes
            (
                "short data",
                file_bytes(None, &tensor("[1000]", 16), &[0; 16]),
            ),
        ];
        for (what, bytes) in cases {
            let path = dir.join(format!("{}.safetensors", what.replace(' ', "_")));
            std::fs::write(&path, &bytes).ok();
            let error = mmap_safetensors(std::slice::from_ref(&path)).err();
            assert!(
                matches!(&error, Some(Error::BadModelFile { path: p, .. }) if p == &path),
                "{what}: {error:?}"
            );
        }
        // and an honest file maps and reads
        let path = dir.join("honest.safetensors");
        std::fs::write(&path, file_bytes(None, &tensor("[2]", 8), &[0; 8])).ok();
        let loaded = mmap_safetensors(std::slice::from_ref(&path))
            .and_then(|m| Ok(m.load("w", &Device::Cpu)?.dims().to_vec()));
        assert_eq!(loaded.ok(), Some(vec![2]));
        std::fs::remove_dir_all(&dir).ok();
    }
}
