//! PyTorch zip checkpoints (`torch.save` since 1.6) read as untrusted input: a zip of
//! `<name>/data.pkl` (the object tree, see `pickle.rs`) and `<name>/data/<key>` (each
//! storage's raw little-endian bytes, stored uncompressed).
//!
//! Nothing is allocated from a declared size before it is checked against what the file
//! holds: the pickle is read with a cap; a storage's declared element count × dtype size
//! must equal its zip entry's length, which must be stored (not compressed) and so lie
//! inside the file; a tensor's shape, stride and offset must stay inside its storage, and
//! it may not have more elements than its storage (so no broadcast view can expand a
//! small file into a large tensor).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use candle_core::{DType, Device, Tensor};
use zip::CompressionMethod;

use super::pickle::{ObjectId, Pickle, Value};

/// Largest `data.pkl` read (Real-ESRGAN's are a few KB; SDXL's UNet about 400 KB).
const MAX_PICKLE_BYTES: u64 = 16 << 20;
/// Most dimensions of one tensor.
const MAX_RANK: usize = 8;

/// Why a checkpoint was refused.
pub type PthResult<T> = std::result::Result<T, String>;

/// Reads the first state dict of a checkpoint: the dict under the first of `wrappers`
/// found in the top-level dict that holds tensors (`params_ema`, `params` for BasicSR's
/// files), else the top-level dict itself.
pub fn read_state_dict<R: Read + Seek>(
    mut reader: R,
    wrappers: &[&str],
) -> PthResult<HashMap<String, Tensor>> {
    let file_length = reader
        .seek(SeekFrom::End(0))
        .and_then(|length| reader.seek(SeekFrom::Start(0)).map(|_| length))
        .map_err(|error| format!("cannot read the file: {error}"))?;
    let mut archive = zip::ZipArchive::new(reader).map_err(|error| {
        format!("not a PyTorch zip checkpoint ({error}); files saved with `_use_new_zipfile_serialization=False` are not supported")
    })?;
    let pickle_name = find_pickle(&archive)?;
    let prefix = pickle_name
        .strip_suffix("data.pkl")
        .unwrap_or_default()
        .to_string();
    check_byte_order(&mut archive, &prefix)?;
    let pickle_bytes = read_entry(&mut archive, &pickle_name, None, file_length)?;
    let pickle = Pickle::parse(&pickle_bytes).map_err(|error| format!("{pickle_name}: {error}"))?;

    let root = pickle.root();
    let candidates = wrappers
        .iter()
        .filter_map(|key| pickle.dict_get(root, key))
        .chain(std::iter::once(root));
    let mut storages = Storages {
        archive,
        prefix,
        file_length,
        loaded: HashMap::new(),
    };
    for candidate in candidates {
        let Some(entries) = pickle.as_dict(candidate) else {
            continue;
        };
        let mut tensors = HashMap::new();
        for &(key, value) in entries {
            let Some(info) = tensor_info(&pickle, value, 0)? else {
                continue;
            };
            let name = pickle
                .as_str(key)
                .ok_or("a tensor's key in the state dict is not a string")?;
            let tensor = storages
                .tensor(&info)
                .map_err(|error| format!("tensor `{name}`: {error}"))?;
            tensors.insert(name.to_string(), tensor);
        }
        if !tensors.is_empty() {
            return Ok(tensors);
        }
    }
    Err("the checkpoint holds no tensors (no state dict at its top level or under params_ema/params)".to_string())
}

/// The one `data.pkl` of the archive.
fn find_pickle<R: Read + Seek>(archive: &zip::ZipArchive<R>) -> PthResult<String> {
    let mut found = None;
    for name in archive.file_names() {
        let Ok(name) = name else { continue };
        let is_pickle = name == "data.pkl"
            || name
                .strip_suffix("/data.pkl")
                .is_some_and(|dir| !dir.is_empty() && !dir.contains('/'));
        if is_pickle {
            if found.is_some() {
                return Err("the archive holds more than one data.pkl".to_string());
            }
            found = Some(name.into_owned());
        }
    }
    found.ok_or_else(|| "the archive has no data.pkl: not a PyTorch checkpoint".to_string())
}

fn check_byte_order<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    prefix: &str,
) -> PthResult<()> {
    let name = format!("{prefix}byteorder");
    if archive.index_for_name(&name).is_none() {
        return Ok(()); // files older than PyTorch 1.10 are little-endian and do not say so
    }
    let mut entry = archive
        .by_name(&name)
        .map_err(|error| format!("{name}: {error}"))?;
    let mut text = Vec::new();
    entry
        .by_ref()
        .take(16)
        .read_to_end(&mut text)
        .map_err(|error| format!("{name}: {error}"))?;
    if text.trim_ascii() != b"little" {
        return Err(format!(
            "the checkpoint's byte order is {:?}; only little-endian files are supported",
            String::from_utf8_lossy(&text)
        ));
    }
    Ok(())
}

/// Reads one stored entry in full. `expected` (when given) must be its exact length.
fn read_entry<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    expected: Option<u64>,
    file_length: u64,
) -> PthResult<Vec<u8>> {
    let entry = archive
        .by_name(name)
        .map_err(|error| format!("{name}: {error}"))?;
    if entry.compression() != CompressionMethod::Stored {
        return Err(format!(
            "{name} is compressed ({:?}); PyTorch stores checkpoint entries uncompressed",
            entry.compression()
        ));
    }
    let size = entry.size();
    let limit = match expected {
        Some(expected) if expected != size => {
            return Err(format!(
                "{name} holds {size} bytes but the checkpoint declares {expected}"
            ))
        }
        Some(expected) => expected,
        None if size > MAX_PICKLE_BYTES => {
            return Err(format!(
                "{name} is {size} bytes; at most {MAX_PICKLE_BYTES} are read"
            ))
        }
        None => size,
    };
    if limit > file_length {
        return Err(format!(
            "{name} declares {limit} bytes, more than the whole file ({file_length})"
        ));
    }
    // `limit` is at most the file's length, and the buffer only grows as bytes arrive
    let mut bytes = Vec::with_capacity(usize::try_from(limit).unwrap_or(0));
    entry
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|error| format!("{name}: {error}"))?;
    if bytes.len() as u64 != limit {
        return Err(format!(
            "{name} is truncated: {} of {limit} bytes",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// What `_rebuild_tensor_v2(storage, offset, size, stride, …)` describes.
#[derive(Debug)]
struct TensorInfo {
    key: String,
    dtype: DType,
    storage_elements: usize,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// The tensor a state-dict value rebuilds, `None` for values that are not tensors.
fn tensor_info(pickle: &Pickle, value: ObjectId, depth: usize) -> PthResult<Option<TensorInfo>> {
    let Some(Value::Reduce { callable, args }) = pickle.get(value) else {
        return Ok(None);
    };
    let (callable, args) = (*callable, *args);
    let arguments = |what: &str, at_least: usize| -> PthResult<&[ObjectId]> {
        pickle
            .as_tuple(args)
            .filter(|items| items.len() >= at_least)
            .ok_or_else(|| format!("{what} needs a tuple of at least {at_least} arguments"))
    };
    if depth < 3
        && (pickle.is_global(callable, "torch._utils", "_rebuild_parameter")
            || pickle.is_global(callable, "torch._utils", "_rebuild_parameter_with_state"))
    {
        let items = arguments("_rebuild_parameter", 1)?;
        return tensor_info(pickle, items[0], depth + 1);
    }
    let args = if pickle.is_global(callable, "torch._tensor", "_rebuild_from_type_v2") {
        // (function, type, args, state)
        let items = arguments("_rebuild_from_type_v2", 3)?;
        if !pickle.is_global(items[0], "torch._utils", "_rebuild_tensor_v2") {
            return Ok(None);
        }
        items[2]
    } else if pickle.is_global(callable, "torch._utils", "_rebuild_tensor_v2") {
        args
    } else {
        return Ok(None);
    };
    let items = pickle
        .as_tuple(args)
        .filter(|items| items.len() >= 4)
        .ok_or("_rebuild_tensor_v2 needs (storage, offset, size, stride, …)")?;
    let Some(Value::PersistentId(storage)) = pickle.get(items[0]) else {
        return Err("a tensor's storage is not a persistent id".to_string());
    };
    // ("storage", torch.XStorage, key, location, element count)
    let storage = pickle
        .as_tuple(*storage)
        .filter(|storage| storage.len() >= 5 && pickle.as_str(storage[0]) == Some("storage"))
        .ok_or("a storage reference is not ('storage', type, key, location, size)")?;
    let Some(Value::Global { module, name }) = pickle.get(storage[1]) else {
        return Err("a storage's type is not a class".to_string());
    };
    let dtype = match (module.as_str(), name.as_str()) {
        ("torch", "FloatStorage") => DType::F32,
        ("torch", "DoubleStorage") => DType::F64,
        ("torch", "HalfStorage") => DType::F16,
        ("torch", "BFloat16Storage") => DType::BF16,
        ("torch", "ByteStorage") => DType::U8,
        ("torch", "LongStorage") => DType::I64,
        _ => return Err(format!("storage type {module}.{name} is not supported")),
    };
    let key = pickle
        .as_str(storage[2])
        .filter(|key| {
            !key.is_empty()
                && key.len() <= 64
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .ok_or("a storage key is not a plain name")?
        .to_string();
    let storage_elements = count(pickle, storage[4], "storage size")?;
    let offset = count(pickle, items[1], "storage offset")?;
    let shape = counts(pickle, items[2], "size")?;
    let stride = counts(pickle, items[3], "stride")?;
    if shape.len() != stride.len() {
        return Err(format!(
            "size {shape:?} and stride {stride:?} have different ranks"
        ));
    }
    Ok(Some(TensorInfo {
        key,
        dtype,
        storage_elements,
        offset,
        shape,
        stride,
    }))
}

fn count(pickle: &Pickle, id: ObjectId, what: &str) -> PthResult<usize> {
    pickle
        .as_int(id)
        .and_then(|value| usize::try_from(value).ok())
        .ok_or_else(|| format!("the {what} is not a non-negative integer"))
}

fn counts(pickle: &Pickle, id: ObjectId, what: &str) -> PthResult<Vec<usize>> {
    let items = pickle
        .as_tuple(id)
        .ok_or_else(|| format!("the {what} is not a tuple"))?;
    if items.len() > MAX_RANK {
        return Err(format!(
            "the {what} has {} dimensions; at most {MAX_RANK} are supported",
            items.len()
        ));
    }
    items
        .iter()
        .map(|&item| count(pickle, item, what))
        .collect()
}

/// Storage bytes, each read once (several tensors may view one storage).
struct Storages<R> {
    archive: zip::ZipArchive<R>,
    prefix: String,
    file_length: u64,
    loaded: HashMap<String, (DType, Vec<u8>)>,
}

impl<R: Read + Seek> Storages<R> {
    fn tensor(&mut self, info: &TensorInfo) -> PthResult<Tensor> {
        let element = info.dtype.size_in_bytes();
        let declared = info
            .storage_elements
            .checked_mul(element)
            .ok_or("the storage size overflows")?;
        if !self.loaded.contains_key(&info.key) {
            let name = format!("{}data/{}", self.prefix, info.key);
            let bytes = read_entry(
                &mut self.archive,
                &name,
                Some(declared as u64),
                self.file_length,
            )?;
            self.loaded.insert(info.key.clone(), (info.dtype, bytes));
        }
        let Some((dtype, bytes)) = self.loaded.get(&info.key) else {
            return Err("storage missing after reading it".to_string());
        };
        if *dtype != info.dtype || bytes.len() != declared {
            return Err(format!(
                "storage {} is used with two types or sizes",
                info.key
            ));
        }
        let elements = info
            .shape
            .iter()
            .try_fold(1usize, |total, &dim| total.checked_mul(dim))
            .ok_or("the tensor's element count overflows")?;
        if elements == 0 {
            // an empty tensor still has strides: the other dimensions' product must fit
            info.shape
                .iter()
                .try_fold(1usize, |total, &dim| total.checked_mul(dim.max(1)))
                .ok_or("the empty tensor's dimensions overflow")?;
            return Tensor::zeros(info.shape.as_slice(), info.dtype, &Device::Cpu)
                .map_err(|error| error.to_string());
        }
        if elements > info.storage_elements {
            return Err(format!(
                "shape {:?} has {elements} elements but its storage only {}",
                info.shape, info.storage_elements
            ));
        }
        // the last element the view touches must lie inside the storage
        info.shape
            .iter()
            .zip(&info.stride)
            .try_fold(info.offset, |end, (&dim, &stride)| {
                (dim - 1)
                    .checked_mul(stride)
                    .and_then(|step| end.checked_add(step))
            })
            .filter(|&last| last < info.storage_elements)
            .ok_or_else(|| {
                format!(
                    "size {:?}, stride {:?} and offset {} reach past the storage's {} elements",
                    info.shape, info.stride, info.offset, info.storage_elements
                )
            })?;
        let data = if is_contiguous(&info.shape, &info.stride) {
            let start = info.offset * element;
            bytes[start..start + elements * element].to_vec()
        } else {
            gather(bytes, element, info)
        };
        Tensor::from_raw_buffer(&data, info.dtype, &info.shape, &Device::Cpu)
            .map_err(|error| error.to_string())
    }
}

/// Row-major contiguous, ignoring the strides of dimensions of size 1.
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1;
    for (&dim, &stride) in shape.iter().zip(stride).rev() {
        if dim != 1 && stride != expected {
            return false;
        }
        expected *= dim;
    }
    true
}

/// Copies a strided view (already checked to lie inside `bytes`) into row-major order.
fn gather(bytes: &[u8], element: usize, info: &TensorInfo) -> Vec<u8> {
    let elements: usize = info.shape.iter().product();
    let mut out = Vec::with_capacity(elements * element);
    let mut index = vec![0usize; info.shape.len()];
    for _ in 0..elements {
        let position = info.offset
            + index
                .iter()
                .zip(&info.stride)
                .map(|(i, stride)| i * stride)
                .sum::<usize>();
        let start = position * element;
        out.extend_from_slice(&bytes[start..start + element]);
        for axis in (0..index.len()).rev() {
            index[axis] += 1;
            if index[axis] < info.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}
