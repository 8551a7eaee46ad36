//! diffusers' resnet building blocks: `ResnetBlock2D` (models/resnet.py) with the default
//! `time_embedding_norm="default"` and SiLU, `Downsample2D` (models/downsampling.py) and
//! `Upsample2D` (models/upsampling.py), both with their convolution. Shared by the UNet and
//! the VAE.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::layers::{Conv2d, GroupNorm};
use super::linear::{join, Linear, NamedLinears};

/// The `ResnetBlock2D` arguments SDXL's UNet and VAE use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResnetBlock2DConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Width of the time embedding; `None` means no `time_emb_proj` (the VAE).
    pub temb_channels: Option<usize>,
    /// Groups of `norm1`.
    pub groups: usize,
    /// Groups of `norm2`; `None` means `groups`.
    pub groups_out: Option<usize>,
    pub eps: f64,
    /// The sum of shortcut and residual is divided by this.
    pub output_scale_factor: f64,
}

impl ResnetBlock2DConfig {
    /// diffusers' defaults (32 groups, eps 1e-6, temb 512, scale 1) for the given widths.
    pub fn new(in_channels: usize, out_channels: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            temb_channels: Some(512),
            groups: 32,
            groups_out: None,
            eps: 1e-6,
            output_scale_factor: 1.0,
        }
    }
}

/// `ResnetBlock2D`: norm1 → SiLU → conv1 (+ projected time embedding) → norm2 → SiLU →
/// conv2, added to the input (through a 1×1 `conv_shortcut` when the widths differ).
#[derive(Debug, Clone)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
    span: tracing::Span,
}

impl ResnetBlock2D {
    pub fn new(vb: VarBuilder, config: &ResnetBlock2DConfig) -> Result<Self> {
        let ResnetBlock2DConfig {
            in_channels,
            out_channels,
            temb_channels,
            groups,
            eps,
            ..
        } = *config;
        let groups_out = config.groups_out.unwrap_or(groups);
        let time_emb_proj = match temb_channels {
            Some(temb_channels) => Some(Linear::new(
                temb_channels,
                out_channels,
                vb.pp("time_emb_proj"),
            )?),
            None => None,
        };
        let conv_shortcut = if in_channels != out_channels {
            Some(Conv2d::new(
                vb.pp("conv_shortcut"),
                in_channels,
                out_channels,
                1,
                1,
                0,
            )?)
        } else {
            None
        };
        Ok(Self {
            norm1: GroupNorm::new(vb.pp("norm1"), groups, in_channels, eps)?,
            conv1: Conv2d::new(vb.pp("conv1"), in_channels, out_channels, 3, 1, 1)?,
            time_emb_proj,
            norm2: GroupNorm::new(vb.pp("norm2"), groups_out, out_channels, eps)?,
            conv2: Conv2d::new(vb.pp("conv2"), out_channels, out_channels, 3, 1, 1)?,
            conv_shortcut,
            output_scale_factor: config.output_scale_factor,
            span: tracing::trace_span!("resnet_block_2d"),
        })
    }

    /// `time_emb_proj` under `prefix`, where the block has one.
    pub fn collect_linears<'a>(&'a mut self, prefix: &str, out: &mut NamedLinears<'a>) {
        if let Some(time_emb_proj) = &mut self.time_emb_proj {
            out.push((join(prefix, "time_emb_proj"), time_emb_proj));
        }
    }

    /// xs: [b, in, h, w]; temb: [b, temb_channels] → [b, out, h, w]. A block without
    /// `time_emb_proj` (the VAE's) ignores `temb`; diffusers never passes it one.
    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let _enter = self.span.enter();
        // The projected time embedding is added as a per-sample bias of conv1, and the
        // shortcut inside conv2's output pass (same sums as diffusers, no extra passes).
        let temb = match (&self.time_emb_proj, temb) {
            (Some(time_emb_proj), Some(temb)) => Some(time_emb_proj.forward(&temb.silu()?)?), // [b, out]
            _ => None,
        };
        let hidden = self
            .conv1
            .forward_add(&self.norm1.forward_silu(xs)?, temb.as_ref(), None)?;
        // Dropout is the identity at inference.
        let shortcut = match &self.conv_shortcut {
            Some(conv_shortcut) => conv_shortcut.forward(xs)?,
            None => xs.clone(),
        };
        let output =
            self.conv2
                .forward_add(&self.norm2.forward_silu(&hidden)?, None, Some(&shortcut))?;
        if self.output_scale_factor == 1.0 {
            Ok(output)
        } else {
            output / self.output_scale_factor
        }
    }
}

/// `Downsample2D(channels, use_conv=True, out_channels, padding)`: a 3×3 convolution with
/// stride 2. With `padding == 0` (the VAE encoder) the input is first padded by one zero
/// row at the bottom and one zero column at the right, as diffusers does.
#[derive(Debug, Clone)]
pub struct Downsample2D {
    conv: Conv2d,
    padding: usize,
    span: tracing::Span,
}

impl Downsample2D {
    pub fn new(
        vb: VarBuilder,
        channels: usize,
        out_channels: usize,
        padding: usize,
    ) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::new(vb.pp("conv"), channels, out_channels, 3, 2, padding)?,
            padding,
            span: tracing::trace_span!("downsample_2d"),
        })
    }

    /// [b, c, h, w] → [b, out, ⌈h/2⌉, ⌈w/2⌉] with padding 1, [b, out, ⌊h/2⌋, ⌊w/2⌋] with 0.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        if self.padding == 0 {
            // F.pad(x, (0, 1, 0, 1)): right of the width, below the height.
            let padded = xs.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?;
            self.conv.forward(&padded)
        } else {
            self.conv.forward(xs)
        }
    }
}

/// `Upsample2D(channels, use_conv=True, out_channels)`: nearest-neighbour ×2 (or to a given
/// size), then a 3×3 convolution.
#[derive(Debug, Clone)]
pub struct Upsample2D {
    conv: Conv2d,
    span: tracing::Span,
}

impl Upsample2D {
    pub fn new(vb: VarBuilder, channels: usize, out_channels: usize) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::new(vb.pp("conv"), channels, out_channels, 3, 1, 1)?,
            span: tracing::trace_span!("upsample_2d"),
        })
    }

    /// [b, c, h, w] → [b, out, 2h, 2w]
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_to_size(xs, None)
    }

    /// Like `forward`, but `output_size: Some((height, width))` interpolates to that size
    /// (diffusers' `output_size`, used by the UNet when the latent size is not a multiple
    /// of its overall downsampling factor). Nearest neighbour picks source index
    /// ⌊i · in / out⌋, as `F.interpolate(mode="nearest")`.
    pub fn forward_to_size(
        &self,
        xs: &Tensor,
        output_size: Option<(usize, usize)>,
    ) -> Result<Tensor> {
        let _enter = self.span.enter();
        let (_, _, height, width) = xs.dims4()?;
        let (out_height, out_width) = output_size.unwrap_or((2 * height, 2 * width));
        if (out_height, out_width) == (2 * height, 2 * width) {
            return self.conv.forward_upsample_2x(xs);
        }
        let upsampled = xs.upsample_nearest2d(out_height, out_width)?;
        self.conv.forward(&upsampled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn var_builder(map: &VarMap) -> VarBuilder<'_> {
        VarBuilder::from_varmap(map, DType::F32, &Device::Cpu)
    }

    #[test]
    fn resnet_block_shapes_and_keys() -> anyhow::Result<()> {
        let map = VarMap::new();
        let config = ResnetBlock2DConfig {
            temb_channels: Some(12),
            groups: 4,
            ..ResnetBlock2DConfig::new(8, 16)
        };
        let block = ResnetBlock2D::new(var_builder(&map).pp("block"), &config)?;
        let xs = Tensor::randn(0f32, 1.0, (2, 8, 5, 7), &Device::Cpu)?;
        let temb = Tensor::randn(0f32, 1.0, (2, 12), &Device::Cpu)?;
        assert_eq!(block.forward(&xs, Some(&temb))?.dims(), &[2, 16, 5, 7]);
        let mut names: Vec<String> = map
            .data()
            .lock()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .keys()
            .cloned()
            .collect();
        names.sort();
        let expected = [
            "block.conv1.bias",
            "block.conv1.weight",
            "block.conv2.bias",
            "block.conv2.weight",
            "block.conv_shortcut.bias",
            "block.conv_shortcut.weight",
            "block.norm1.bias",
            "block.norm1.weight",
            "block.norm2.bias",
            "block.norm2.weight",
            "block.time_emb_proj.bias",
            "block.time_emb_proj.weight",
        ];
        assert_eq!(names, expected);
        Ok(())
    }

    #[test]
    fn resnet_block_without_temb_has_no_projection_or_shortcut() -> anyhow::Result<()> {
        let map = VarMap::new();
        let config = ResnetBlock2DConfig {
            temb_channels: None,
            groups: 4,
            ..ResnetBlock2DConfig::new(8, 8)
        };
        let block = ResnetBlock2D::new(var_builder(&map), &config)?;
        let xs = Tensor::randn(0f32, 1.0, (1, 8, 4, 4), &Device::Cpu)?;
        assert_eq!(block.forward(&xs, None)?.dims(), &[1, 8, 4, 4]);
        let data = map.data().lock().map_err(|e| anyhow::anyhow!("{e}"))?;
        assert!(!data
            .keys()
            .any(|name| name.contains("time_emb_proj") || name.contains("conv_shortcut")));
        Ok(())
    }

    #[test]
    fn downsample_shapes() -> anyhow::Result<()> {
        let map = VarMap::new();
        let xs = Tensor::randn(0f32, 1.0, (1, 4, 9, 16), &Device::Cpu)?;
        let padded = Downsample2D::new(var_builder(&map).pp("a"), 4, 6, 1)?;
        assert_eq!(padded.forward(&xs)?.dims(), &[1, 6, 5, 8]);
        let asymmetric = Downsample2D::new(var_builder(&map).pp("b"), 4, 4, 0)?;
        assert_eq!(asymmetric.forward(&xs)?.dims(), &[1, 4, 4, 8]);
        Ok(())
    }

    #[test]
    fn asymmetric_padding_is_bottom_right() -> anyhow::Result<()> {
        // A 3×3 kernel that only reads its bottom-right tap sees the zero padding at the
        // last output position, and the input elsewhere.
        let device = Device::Cpu;
        let mut kernel = vec![0f32; 9];
        kernel[8] = 1.0;
        let tensors = std::collections::HashMap::from([
            (
                "conv.weight".to_string(),
                Tensor::from_vec(kernel, (1, 1, 3, 3), &device)?,
            ),
            (
                "conv.bias".to_string(),
                Tensor::zeros(1, DType::F32, &device)?,
            ),
        ]);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let downsample = Downsample2D::new(vb, 1, 1, 0)?;
        let xs = Tensor::arange(1f32, 17.0, &device)?.reshape((1, 1, 4, 4))?;
        let out = downsample.forward(&xs)?.flatten_all()?.to_vec1::<f32>()?;
        // Outputs read input (2i+2, 2j+2): (2,2)=11, (2,4)=pad, (4,2)=pad, (4,4)=pad.
        assert_eq!(out, vec![11.0, 0.0, 0.0, 0.0]);
        Ok(())
    }

    #[test]
    fn upsample_to_size_picks_torch_nearest_sources() -> anyhow::Result<()> {
        // An identity 3×3 kernel leaves only the interpolation; expected values are
        // F.interpolate(torch.arange(7.).view(1, 1, 1, 7), size=(1, 13), mode="nearest").
        let device = Device::Cpu;
        let mut kernel = vec![0f32; 9];
        kernel[4] = 1.0;
        let tensors = std::collections::HashMap::from([
            (
                "conv.weight".to_string(),
                Tensor::from_vec(kernel, (1, 1, 3, 3), &device)?,
            ),
            (
                "conv.bias".to_string(),
                Tensor::zeros(1, DType::F32, &device)?,
            ),
        ]);
        let upsample =
            Upsample2D::new(VarBuilder::from_tensors(tensors, DType::F32, &device), 1, 1)?;
        let xs = Tensor::arange(0f32, 7.0, &device)?.reshape((1, 1, 1, 7))?;
        let out = upsample
            .forward_to_size(&xs, Some((1, 13)))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(
            out,
            vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0, 6.0]
        );
        Ok(())
    }

    #[test]
    fn upsample_shapes() -> anyhow::Result<()> {
        let map = VarMap::new();
        let upsample = Upsample2D::new(var_builder(&map), 4, 4)?;
        let xs = Tensor::randn(0f32, 1.0, (1, 4, 3, 5), &Device::Cpu)?;
        assert_eq!(upsample.forward(&xs)?.dims(), &[1, 4, 6, 10]);
        assert_eq!(
            upsample.forward_to_size(&xs, Some((5, 9)))?.dims(),
            &[1, 4, 5, 9]
        );
        Ok(())
    }
}
