//! Real-ESRGAN super-resolution on candle: the two published generator architectures
//! ([`rrdbnet`], [`srvgg`]), weight loading that recognises them ([`weights`]) and
//! `RealESRGANer`'s tiled inference ([`tiling`]). [`Upscaler`] is the image-level entry
//! point and follows `RealESRGANer.enhance` (realesrgan/utils.py): RGB in [0, 1],
//! network, clamp, then a Lanczos resize when the wanted scale differs from the
//! network's.

mod conv;
pub mod rrdbnet;
pub mod srvgg;
pub mod tiling;
pub mod weights;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use image::Rgb32FImage;

use crate::error::{ImagingError, Result};
use crate::resize::{resize_rgb_f32, ResizeFilter};
pub use rrdbnet::{RRDBNet, RRDBNetConfig};
pub use srvgg::{SRVGGNetCompact, SRVGGNetCompactConfig};
pub use tiling::{tiled_forward, TileOptions};
pub use weights::{detect_architecture, read_tensors, Architecture};

/// One of the two generator networks.
#[derive(Debug, Clone)]
pub enum SuperResolutionNet {
    RRDBNet(Box<RRDBNet>),
    SRVGGNetCompact(SRVGGNetCompact),
}

impl Module for SuperResolutionNet {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            SuperResolutionNet::RRDBNet(net) => net.forward(xs),
            SuperResolutionNet::SRVGGNetCompact(net) => net.forward(xs),
        }
    }
}

/// A loaded Real-ESRGAN model, ready to upscale images on the CPU in f32.
#[derive(Debug, Clone)]
pub struct Upscaler {
    net: SuperResolutionNet,
    architecture: Architecture,
    path: PathBuf,
    device: Device,
}

impl Upscaler {
    /// Loads a `.pth` or `.safetensors` Real-ESRGAN file for the CPU, recognising its
    /// architecture.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_on(path, &Device::Cpu)
    }

    /// As `load`, onto `device` (f32 everywhere, as Real-ESRGAN's own inference runs).
    pub fn load_on(path: &Path, device: &Device) -> Result<Self> {
        let tensors = read_tensors(path)?;
        Self::from_tensors(tensors, path, device)
    }

    /// Builds the model on `device` from tensors already read; `path` names them in errors.
    pub fn from_tensors(
        tensors: HashMap<String, Tensor>,
        path: &Path,
        device: &Device,
    ) -> Result<Self> {
        let architecture = detect_architecture(&tensors, path)?;
        let device = device.clone();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let load_error = |source| ImagingError::ModelLoad {
            path: path.to_path_buf(),
            source,
        };
        let net = match &architecture {
            Architecture::RRDBNet(config) => {
                SuperResolutionNet::RRDBNet(Box::new(RRDBNet::new(vb, config).map_err(load_error)?))
            }
            Architecture::SRVGGNetCompact(config) => SuperResolutionNet::SRVGGNetCompact(
                SRVGGNetCompact::new(vb, config).map_err(load_error)?,
            ),
        };
        tracing::info!(path = %path.display(), model = %Description(&architecture), "loaded Real-ESRGAN weights");
        Ok(Self {
            net,
            architecture,
            path: path.to_path_buf(),
            device,
        })
    }

    pub fn architecture(&self) -> &Architecture {
        &self.architecture
    }

    pub fn net_scale(&self) -> usize {
        self.architecture.scale()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A one-line description such as "RRDBNet ×4 (23 blocks, 64 features)".
    pub fn describe(&self) -> String {
        Description(&self.architecture).to_string()
    }

    /// The raw network output for an input tensor [1, 3, h, w], tiled as `tiles` says.
    pub fn forward_tiled(&self, input: &Tensor, tiles: TileOptions) -> candle_core::Result<Tensor> {
        tiled_forward(&self.net, input, self.net_scale(), tiles)
    }

    /// Upscales an RGB image by `out_scale` (1 to 8; the network's own scale when
    /// `None`). As `RealESRGANer.enhance`, other scales resize the network's output
    /// with Lanczos to `floor(side · out_scale)`.
    pub fn upscale(
        &self,
        image: &Rgb32FImage,
        out_scale: Option<f32>,
        tiles: TileOptions,
    ) -> Result<Rgb32FImage> {
        let (width, height) = image.dimensions();
        crate::io::ensure_not_empty("image to upscale", width, height)?;
        let inference_error = |source| ImagingError::Inference {
            width,
            height,
            source,
        };
        let _span =
            tracing::debug_span!("upscale", width, height, model = %self.describe()).entered();
        // [h, w, 3] interleaved → [1, 3, h, w]
        let input = Tensor::from_slice(
            image.as_raw(),
            (height as usize, width as usize, 3),
            &self.device,
        )
        .and_then(|xs| xs.permute((2, 0, 1))?.unsqueeze(0)?.contiguous())
        .map_err(inference_error)?;
        let output = self
            .forward_tiled(&input, tiles)
            .and_then(|xs| {
                xs.clamp(0f32, 1f32)?
                    .squeeze(0)?
                    .permute((1, 2, 0))?
                    .contiguous()
            })
            .and_then(|xs| xs.flatten_all()?.to_vec1::<f32>())
            .map_err(inference_error)?;
        let scale = self.net_scale() as u32;
        let upscaled =
            Rgb32FImage::from_raw(width * scale, height * scale, output).ok_or_else(|| {
                ImagingError::Invalid {
                    what: "super-resolution",
                    reason: "the network output does not hold three channels per pixel".to_string(),
                }
            })?;
        match out_scale {
            Some(wanted) if (wanted - scale as f32).abs() > f32::EPSILON => {
                let size = (
                    ((width as f32 * wanted).floor() as u32).max(1),
                    ((height as f32 * wanted).floor() as u32).max(1),
                );
                resize_rgb_f32(&upscaled, size, ResizeFilter::Lanczos3)
            }
            _ => Ok(upscaled),
        }
    }
}

struct Description<'a>(&'a Architecture);

impl fmt::Display for Description<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Architecture::RRDBNet(c) => write!(
                f,
                "RRDBNet ×{} ({} blocks, {} features, growth {})",
                c.scale, c.num_block, c.num_feat, c.num_grow_ch
            ),
            Architecture::SRVGGNetCompact(c) => write!(
                f,
                "SRVGGNetCompact ×{} ({} convolutions, {} features)",
                c.upscale, c.num_conv, c.num_feat
            ),
        }
    }
}
