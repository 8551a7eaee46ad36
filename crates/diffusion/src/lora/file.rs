//! Reading LoRA files as people have them, into one list of low-rank modules:
//! - kohya/sd-scripts: `lora_unet_*`, `lora_te1_*` (or `lora_te_*`), `lora_te2_*` with
//!   `.lora_down.weight`, `.lora_up.weight`, `.alpha`; linear and convolution (LoCon) layers;
//! - diffusers/peft: `unet.*`, `text_encoder.*`, `text_encoder_2.*` with `.lora_A.weight` /
//!   `.lora_B.weight` (or the older `.lora.down/.lora.up`, `.lora_linear_layer.down/.up`,
//!   `processor.to_q_lora` spellings), rank and alpha from the header's
//!   `lora_adapter_metadata` (peft's `LoraConfig`) when present.
//!
//! Names stay as the file spells them here; `names.rs` finds the model layer for each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::loading::original_keys::Component;
use crate::{Error, Result};

/// Which layout a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoraFormat {
    Kohya,
    Diffusers,
}

/// One low-rank update: `W' = W + scale · (alpha / rank) · up · down`.
#[derive(Debug, Clone)]
pub struct LoraModule {
    pub component: Component,
    /// The module's name as the file spells it, without component prefix and suffixes
    /// (kohya: `input_blocks_4_1_transformer_blocks_0_attn1_to_q`; diffusers:
    /// `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q`).
    pub name: String,
    /// [rank, in] or [rank, in, k, k]
    pub down: Tensor,
    /// [out, rank] or [out, rank, 1, 1]
    pub up: Tensor,
    /// `None`: alpha = rank (scale 1), kohya's and peft's default.
    pub alpha: Option<f64>,
    /// peft's `use_rslora`: alpha / √rank instead of alpha / rank.
    pub rank_stabilized: bool,
}

impl LoraModule {
    pub fn rank(&self) -> usize {
        self.down.dims().first().copied().unwrap_or(0)
    }

    /// The factor in front of `up · down`, before the user's scale.
    pub fn alpha_over_rank(&self) -> f64 {
        let rank = self.rank() as f64;
        let alpha = self.alpha.unwrap_or(rank);
        if self.rank_stabilized {
            alpha / rank.sqrt()
        } else {
            alpha / rank
        }
    }

    pub fn is_convolution(&self) -> bool {
        self.down.rank() == 4
    }
}

/// A LoRA file, read.
#[derive(Debug, Clone)]
pub struct LoraFile {
    pub path: PathBuf,
    pub format: LoraFormat,
    pub modules: Vec<LoraModule>,
    /// The safetensors header's `__metadata__`.
    pub metadata: BTreeMap<String, String>,
}

const KOHYA_PREFIXES: [(&str, Component); 4] = [
    ("lora_unet_", Component::Unet),
    ("lora_te1_", Component::TextEncoder),
    ("lora_te2_", Component::TextEncoder2),
    ("lora_te_", Component::TextEncoder),
];

const DIFFUSERS_PREFIXES: [(&str, Component); 3] = [
    ("unet.", Component::Unet),
    ("text_encoder.", Component::TextEncoder),
    ("text_encoder_2.", Component::TextEncoder2),
];

/// (down suffix, up suffix) pairs of the diffusers spellings.
const DIFFUSERS_SUFFIXES: [(&str, &str); 3] = [
    (".lora_A.weight", ".lora_B.weight"),
    (".lora.down.weight", ".lora.up.weight"),
    (
        ".lora_linear_layer.down.weight",
        ".lora_linear_layer.up.weight",
    ),
];

impl LoraFile {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    /// Reads a LoRA file already in memory; `path` names it in errors. Every declared
    /// offset and size is checked against `bytes` (by the safetensors crate) before a
    /// tensor is copied out.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad = |message: String| Error::BadModelFile {
            path: path.to_path_buf(),
            message,
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|error| bad(format!("not a safetensors LoRA file: {error}")))?;
        let metadata: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|error| bad(format!("unreadable tensors: {error}")))?;
        for tensor in tensors.values_mut() {
            *tensor = tensor.to_dtype(DType::F32)?;
        }
        let format = if tensors
            .keys()
            .any(|k| KOHYA_PREFIXES.iter().any(|(p, _)| k.starts_with(p)))
        {
            LoraFormat::Kohya
        } else if tensors
            .keys()
            .any(|k| DIFFUSERS_PREFIXES.iter().any(|(p, _)| k.starts_with(p)))
        {
            LoraFormat::Diffusers
        } else {
            let mut sample: Vec<&String> = tensors.keys().take(3).collect();
            sample.sort();
            return Err(bad(format!(
                "not a LoRA for SDXL: no `lora_unet_`/`lora_te1_`/`lora_te2_` (kohya) or `unet.`/`text_encoder.` \
                 (diffusers) keys (first keys: {sample:?})"
            )));
        };
        let modules = match format {
            LoraFormat::Kohya => kohya_modules(&mut tensors),
            LoraFormat::Diffusers => diffusers_modules(&mut tensors, &metadata),
        }
        .map_err(bad)?;
        if !tensors.is_empty() {
            let mut left: Vec<String> = tensors.into_keys().collect();
            left.sort();
            return Err(bad(format!(
                "{} tensors are not LoRA down/up/alpha weights this reader knows (LoHa, LoKr, DoRA and \
                 Tucker-decomposed LoCon are not supported): {}",
                left.len(),
                summarize(&left)
            )));
        }
        for module in &modules {
            check_values(module).map_err(bad)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            format,
            modules,
            metadata,
        })
    }
}

/// A module that would poison every output it touches is refused: rank 0, a non-finite or
/// zero alpha, or a NaN/infinite weight.
fn check_values(module: &LoraModule) -> std::result::Result<(), String> {
    let name = &module.name;
    if module.rank() == 0 {
        return Err(format!("`{name}` has rank 0"));
    }
    if let Some(alpha) = module
        .alpha
        .filter(|alpha| !alpha.is_finite() || *alpha == 0.0)
    {
        return Err(format!("`{name}` has alpha {alpha}"));
    }
    for (part, tensor) in [("down", &module.down), ("up", &module.up)] {
        let finite = tensor
            .abs()
            .and_then(|t| t.sum_all())
            .and_then(|t| t.to_scalar::<f32>())
            .is_ok_and(f32::is_finite);
        if !finite {
            return Err(format!(
                "`{name}`: the {part} weights hold NaN or infinite values"
            ));
        }
    }
    Ok(())
}

/// The first few names and how many more.
pub fn summarize(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(", … and {} more", names.len() - SHOWN));
    }
    text
}

fn scalar(tensor: &Tensor) -> std::result::Result<f64, String> {
    tensor
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .ok()
        .and_then(|values| values.first().copied())
        .map(f64::from)
        .ok_or_else(|| "an alpha tensor is empty".to_string())
}

fn check_pair(name: &str, down: &Tensor, up: &Tensor) -> std::result::Result<(), String> {
    let shapes_fit = match (down.dims(), up.dims()) {
        ([rank, _], [_, up_rank]) => rank == up_rank,
        ([rank, _, _, _], [_, up_rank, 1, 1]) => rank == up_rank,
        _ => false,
    };
    if shapes_fit {
        Ok(())
    } else {
        Err(format!(
            "`{name}`: down {:?} and up {:?} are not a low-rank pair",
            down.dims(),
            up.dims()
        ))
    }
}

fn kohya_modules(
    tensors: &mut std::collections::HashMap<String, Tensor>,
) -> std::result::Result<Vec<LoraModule>, String> {
    let mut downs: Vec<String> = tensors
        .keys()
        .filter(|k| k.ends_with(".lora_down.weight"))
        .cloned()
        .collect();
    downs.sort();
    let mut modules = Vec::with_capacity(downs.len());
    for down_key in downs {
        let full = down_key.trim_end_matches(".lora_down.weight").to_string();
        let Some((prefix, component)) = KOHYA_PREFIXES.iter().find(|(p, _)| full.starts_with(p))
        else {
            continue; // left in `tensors`, reported as unknown
        };
        let down = tensors.remove(&down_key).ok_or("internal: missing down")?;
        let up = tensors
            .remove(&format!("{full}.lora_up.weight"))
            .ok_or_else(|| format!("`{full}` has no lora_up"))?;
        let alpha = tensors
            .remove(&format!("{full}.alpha"))
            .map(|a| scalar(&a))
            .transpose()?;
        check_pair(&full, &down, &up)?;
        let name = full[prefix.len()..].to_string();
        modules.push(LoraModule {
            component: *component,
            name,
            down,
            up,
            alpha,
            rank_stabilized: false,
        });
    }
    Ok(modules)
}

/// peft's `LoraConfig` fields per component, from `lora_adapter_metadata`.
#[derive(Debug, Default)]
struct PeftConfig {
    lora_alpha: Option<f64>,
    alpha_pattern: BTreeMap<String, f64>,
    use_rslora: bool,
}

fn peft_configs(metadata: &BTreeMap<String, String>) -> BTreeMap<String, PeftConfig> {
    let mut configs: BTreeMap<String, PeftConfig> = BTreeMap::new();
    let Some(json) = metadata.get("lora_adapter_metadata") else {
        return configs;
    };
    let Ok(serde_json::Value::Object(entries)) = serde_json::from_str::<serde_json::Value>(json)
    else {
        return configs;
    };
    for (key, value) in entries {
        let Some((component, field)) = key.rsplit_once('.') else {
            continue;
        };
        let config = configs.entry(component.to_string()).or_default();
        match field {
            "lora_alpha" => config.lora_alpha = value.as_f64(),
            "use_rslora" => config.use_rslora = value.as_bool().unwrap_or(false),
            "alpha_pattern" => {
                if let Some(pattern) = value.as_object() {
                    config.alpha_pattern = pattern
                        .iter()
                        .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
                        .collect();
                }
            }
            _ => {}
        }
    }
    configs
}

/// diffusers' legacy attention-processor spellings → module names.
fn normalize_diffusers_name(name: &str) -> String {
    let mut name = name.to_string();
    for (old, new) in [
        (".processor.to_q_lora", ".to_q"),
        (".processor.to_k_lora", ".to_k"),
        (".processor.to_v_lora", ".to_v"),
        (".processor.to_out_lora", ".to_out.0"),
        (".to_q_lora", ".q_proj"),
        (".to_k_lora", ".k_proj"),
        (".to_v_lora", ".v_proj"),
        (".to_out_lora", ".out_proj"),
    ] {
        if let Some(stripped) = name.strip_suffix(old) {
            name = format!("{stripped}{new}");
        }
    }
    name
}

fn diffusers_modules(
    tensors: &mut std::collections::HashMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> std::result::Result<Vec<LoraModule>, String> {
    let configs = peft_configs(metadata);
    let mut keys: Vec<String> = tensors.keys().cloned().collect();
    keys.sort();
    let mut modules = Vec::new();
    for key in keys {
        let Some((down_suffix, up_suffix)) = DIFFUSERS_SUFFIXES
            .iter()
            .find(|(down, _)| key.ends_with(down))
        else {
            continue;
        };
        let full = &key[..key.len() - down_suffix.len()];
        let Some((prefix, component)) =
            DIFFUSERS_PREFIXES.iter().find(|(p, _)| full.starts_with(p))
        else {
            continue;
        };
        let down = tensors.remove(&key).ok_or("internal: missing down")?;
        let up = tensors
            .remove(&format!("{full}{up_suffix}"))
            .ok_or_else(|| format!("`{full}` has no up weight"))?;
        check_pair(full, &down, &up)?;
        let name = normalize_diffusers_name(&full[prefix.len()..]);
        let config = configs.get(prefix.trim_end_matches('.'));
        let alpha = match tensors.remove(&format!("{full}.alpha")) {
            Some(alpha) => Some(scalar(&alpha)?),
            None => config.and_then(|c| {
                // peft matches alpha_pattern keys as a suffix of the module name
                c.alpha_pattern
                    .iter()
                    .find(|(pattern, _)| {
                        name == **pattern || name.ends_with(&format!(".{pattern}"))
                    })
                    .map(|(_, alpha)| *alpha)
                    .or(c.lora_alpha)
            }),
        };
        let rank_stabilized = config.is_some_and(|c| c.use_rslora);
        modules.push(LoraModule {
            component: *component,
            name,
            down,
            up,
            alpha,
            rank_stabilized,
        });
    }
    Ok(modules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lying_or_truncated_files_are_errors() {
        let path = Path::new("lying.safetensors");
        let header = r#"{"lora_unet_a.lora_down.weight":{"dtype":"F32","shape":[1099511627776,4],"data_offsets":[0,17592186044416]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0; 64]);
        let huge_header = [&(1u64 << 60).to_le_bytes()[..], b"{}"].concat();
        for (what, bytes) in [
            ("a 16 TiB tensor in a small file", &bytes[..]),
            ("a header longer than the file", &huge_header[..]),
            ("a truncated header", &bytes[..20]),
            ("no header", &bytes[..3]),
        ] {
            let error = LoraFile::from_bytes(path, bytes).err();
            assert!(
                matches!(&error, Some(Error::BadModelFile { message, .. }) if message.contains("safetensors")),
                "{what}: {error:?}"
            );
        }
    }

    fn write(tensors: &[(&str, Tensor)]) -> std::path::PathBuf {
        let name = format!(
            "huatu-lora-values-{}-{}.safetensors",
            std::process::id(),
            tensors.len()
        );
        let path = std::env::temp_dir().join(name);
        let map: std::collections::HashMap<String, Tensor> = tensors
            .iter()
            .map(|(name, tensor)| (name.to_string(), tensor.clone()))
            .collect();
        candle_core::safetensors::save(&map, &path).unwrap();
        path
    }

    #[test]
    fn poisoned_modules_are_refused() {
        let device = Device::Cpu;
        let key = "lora_unet_down_blocks_1_attentions_0_proj_in";
        let down = Tensor::ones((2, 8), DType::F32, &device).unwrap();
        let up = Tensor::ones((8, 2), DType::F32, &device).unwrap();
        let nan = Tensor::new(&[f32::NAN], &device)
            .unwrap()
            .reshape(())
            .unwrap();
        let pair = |down: Tensor, up: Tensor| {
            vec![
                (format!("{key}.lora_down.weight"), down),
                (format!("{key}.lora_up.weight"), up),
            ]
        };
        let mut with_nan_alpha = pair(down.clone(), up.clone());
        with_nan_alpha.push((format!("{key}.alpha"), nan));
        let infinite = (down.clone() * f64::INFINITY).unwrap();
        let empty_down = Tensor::zeros((0, 8), DType::F32, &device).unwrap();
        let empty_up = Tensor::zeros((8, 0), DType::F32, &device).unwrap();
        let cases = [
            (with_nan_alpha, "alpha NaN"),
            (pair(infinite, up.clone()), "NaN or infinite"),
            (pair(empty_down, empty_up), "rank 0"),
        ];
        for (tensors, expected) in cases {
            let named: Vec<(&str, Tensor)> = tensors
                .iter()
                .map(|(n, t)| (n.as_str(), t.clone()))
                .collect();
            let path = write(&named);
            let error = LoraFile::read(&path)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            std::fs::remove_file(&path).ok();
            assert!(error.contains(expected), "{expected}: {error}");
        }
        let path = write(&[
            (&format!("{key}.lora_down.weight"), down),
            (&format!("{key}.lora_up.weight"), up),
        ]);
        let read = LoraFile::read(&path);
        std::fs::remove_file(&path).ok();
        assert!(read.is_ok(), "{:?}", read.err());
    }

    #[test]
    fn alpha_over_rank_defaults_to_one() {
        let down = Tensor::zeros((4, 8), DType::F32, &Device::Cpu).unwrap();
        let up = Tensor::zeros((8, 4), DType::F32, &Device::Cpu).unwrap();
        let mut module = LoraModule {
            component: Component::Unet,
            name: "x".into(),
            down,
            up,
            alpha: None,
            rank_stabilized: false,
        };
        assert_eq!(module.alpha_over_rank(), 1.0);
        module.alpha = Some(2.0);
        assert_eq!(module.alpha_over_rank(), 0.5);
        module.rank_stabilized = true;
        assert_eq!(module.alpha_over_rank(), 1.0);
    }

    #[test]
    fn legacy_processor_names_become_module_names() {
        assert_eq!(
            normalize_diffusers_name(
                "down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora"
            ),
            "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0"
        );
        assert_eq!(
            normalize_diffusers_name("text_model.encoder.layers.0.self_attn.to_q_lora"),
            "text_model.encoder.layers.0.self_attn.q_proj"
        );
    }
}
