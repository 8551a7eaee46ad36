//! Where a command computes and in which precision: `--device auto|cpu|cuda[:N]` (or
//! `HUATU_DEVICE`) and `--dtype auto|f32|f16|bf16`, resolved the way diffusers users set
//! them up by hand: half precision on a GPU (bf16 where the GPU has it), f32 on the CPU.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};

use crate::error::{Error, Result};
use crate::loading::LoadOptions;

/// The environment variable read when no `--device` is given.
pub const DEVICE_ENV: &str = "HUATU_DEVICE";

/// A device or precision name that is none of the spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownChoice {
    #[error("unknown device `{0}` (expected auto, cpu, cuda or cuda:N)")]
    Device(String),
    #[error("unknown dtype `{0}` (expected auto, f32, f16 or bf16)")]
    Dtype(String),
}

/// A device as the user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA device 0 when this binary was built with CUDA and a GPU answers, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// A CUDA device by ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = UnknownChoice;

    fn from_str(text: &str) -> Result<Self, UnknownChoice> {
        let text = text.trim().to_ascii_lowercase();
        match text.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => match text
                .strip_prefix("cuda:")
                .and_then(|ordinal| ordinal.parse().ok())
            {
                Some(ordinal) => Ok(Self::Cuda(ordinal)),
                None => Err(UnknownChoice::Device(text)),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl DeviceChoice {
    /// The flag if given, else `HUATU_DEVICE` if set, else `auto`.
    pub fn from_flag_or_env(flag: Option<Self>) -> Result<Self> {
        if let Some(choice) = flag {
            return Ok(choice);
        }
        match std::env::var(DEVICE_ENV) {
            Ok(text) if !text.trim().is_empty() => text
                .parse()
                .map_err(|message| Error::Device(format!("{DEVICE_ENV}: {message}"))),
            _ => Ok(Self::Auto),
        }
    }

    /// Opens the device. `auto` never fails: without CUDA it is the CPU. A named CUDA
    /// device that cannot be opened is an error that says why (not built with CUDA, no
    /// such GPU, no driver).
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(device) = Device::new_cuda(0) {
                        return Ok(device);
                    }
                }
                Ok(Device::Cpu)
            }
            Self::Cuda(ordinal) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(Error::Device(format!(
                        "CUDA device {ordinal} was asked for, but this binary was built \
                         without CUDA (build with `--features cuda`, see README)"
                    )));
                }
                Device::new_cuda(ordinal).map_err(|error| {
                    Error::Device(format!("cannot open CUDA device {ordinal}: {error}"))
                })
            }
        }
    }
}

/// A precision as the user names it; `auto` depends on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtypeChoice {
    /// f32 on the CPU; on a GPU bf16 where it supports it, else f16 (diffusers' usual
    /// `torch_dtype` for SDXL).
    #[default]
    Auto,
    Fixed(DType),
}

impl FromStr for DtypeChoice {
    type Err = UnknownChoice;

    fn from_str(text: &str) -> Result<Self, UnknownChoice> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "f32" | "fp32" | "float32" => Ok(Self::Fixed(DType::F32)),
            "f16" | "fp16" | "float16" => Ok(Self::Fixed(DType::F16)),
            "bf16" | "bfloat16" => Ok(Self::Fixed(DType::BF16)),
            other => Err(UnknownChoice::Dtype(other.to_string())),
        }
    }
}

impl DtypeChoice {
    /// How the UNet and text encoders are loaded on `device`. On a GPU they compute in the
    /// chosen dtype. On the CPU f16 and bf16 mean half-precision *weights* (half the
    /// memory) computing in f32, since candle has no CPU bf16 matrix product; with bf16
    /// weights on a CPU with AVX-512 BF16 the linear layers multiply in bf16 with f32 sums
    /// (`huatu_kernels::fused_linear_bf16`).
    pub fn load_options(self, device: &Device) -> LoadOptions {
        match self {
            Self::Fixed(storage @ (DType::F16 | DType::BF16)) if device.is_cpu() => LoadOptions {
                dtype: DType::F32,
                storage_dtype: Some(storage),
                ..LoadOptions::default()
            },
            choice => LoadOptions {
                dtype: choice.resolve(device),
                ..LoadOptions::default()
            },
        }
    }

    /// The compute precision of the UNet and text encoders on `device`.
    pub fn resolve(self, device: &Device) -> DType {
        match self {
            Self::Fixed(dtype) => dtype,
            Self::Auto if device.is_cpu() => DType::F32,
            Self::Auto if device.supports_bf16() => DType::BF16,
            Self::Auto => DType::F16,
        }
    }
}

/// Refuses a precision the device cannot compute in, before anything is loaded: candle's
/// CPU backend has no bf16 matrix product, so bf16 on the CPU would fail at the first layer.
pub fn check_supported(dtype: DType, device: &Device) -> Result<()> {
    if device.is_cpu() && dtype == DType::BF16 {
        return Err(Error::Device(
            "bf16 does not compute on the CPU (candle has no bf16 matrix product there); \
             keep f32 compute with bf16 weights (LoadOptions::storage_dtype, what \
             the bf16 choice does on the CPU)"
                .into(),
        ));
    }
    Ok(())
}

/// How a device is written in logs and PNG settings: `cpu`, `cuda:0`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_spellings_parse() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceChoice::Cuda(3)));
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("tpu".parse::<DeviceChoice>().is_err());
        for choice in [DeviceChoice::Auto, DeviceChoice::Cpu, DeviceChoice::Cuda(2)] {
            assert_eq!(choice.to_string().parse(), Ok(choice));
        }
    }

    #[test]
    fn auto_is_the_cpu_in_f32_without_cuda() -> Result<()> {
        let device = DeviceChoice::Auto.open()?;
        if !candle_core::utils::cuda_is_available() {
            assert!(device.is_cpu());
            assert_eq!(DtypeChoice::Auto.resolve(&device), DType::F32);
        }
        assert_eq!(
            DtypeChoice::Fixed(DType::BF16).resolve(&device),
            DType::BF16
        );
        Ok(())
    }

    #[test]
    fn a_named_gpu_is_refused_clearly_by_a_cpu_build() {
        // A CUDA build may open GPU 1 or not (no such GPU); it never says it lacks CUDA.
        let result = DeviceChoice::Cuda(1).open();
        let message = result.as_ref().err().map(ToString::to_string);
        if candle_core::utils::cuda_is_available() {
            assert!(
                message.is_none_or(|message| !message.contains("built without CUDA")),
                "a CUDA build claimed to lack CUDA"
            );
        } else {
            let message = message.unwrap_or_else(|| panic!("a CPU build opened a CUDA device"));
            assert!(message.contains("built without CUDA"), "{message}");
        }
    }

    #[test]
    fn bf16_on_the_cpu_is_refused_before_loading() {
        let message = match check_supported(DType::BF16, &Device::Cpu) {
            Ok(()) => panic!("bf16 on the CPU was accepted"),
            Err(error) => error.to_string(),
        };
        assert!(message.contains("storage_dtype"), "{message}");
        assert!(check_supported(DType::F16, &Device::Cpu).is_ok());
        assert!(check_supported(DType::F32, &Device::Cpu).is_ok());
    }

    #[test]
    fn half_precision_on_the_cpu_stores_weights_and_computes_in_f32() {
        for half in [DType::F16, DType::BF16] {
            let options = DtypeChoice::Fixed(half).load_options(&Device::Cpu);
            assert_eq!((options.dtype, options.storage()), (DType::F32, half));
        }
        let options = DtypeChoice::Auto.load_options(&Device::Cpu);
        assert_eq!((options.dtype, options.storage()), (DType::F32, DType::F32));
    }

    #[test]
    fn dtype_spellings_parse() {
        assert_eq!("auto".parse(), Ok(DtypeChoice::Auto));
        assert_eq!("bf16".parse(), Ok(DtypeChoice::Fixed(DType::BF16)));
        assert_eq!("fp16".parse(), Ok(DtypeChoice::Fixed(DType::F16)));
        assert!("f64".parse::<DtypeChoice>().is_err());
    }
}
