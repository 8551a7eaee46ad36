//! SRVGGNetCompact, the small Real-ESRGAN generator of realesr-general-x4v3.pth and
//! realesr-animevideov3.pth, mirroring realesrgan/archs/srvgg_arch.py: `body` is a
//! `ModuleList` of convolutions at the even indices and activations (PReLU, with
//! per-channel weights) at the odd ones; the last convolution's channels are
//! pixel-shuffled up and the nearest-upsampled input is added.

use candle_core::{Module, Result, Tensor};
use candle_nn::{PReLU, VarBuilder};
use huatu_kernels::channel_leaky_relu;

use super::conv::Conv3x3;

/// The constructor arguments of `SRVGGNetCompact` with `act_type='prelu'`, the only
/// activation whose presence the weights reveal (ReLU and LeakyReLU have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SRVGGNetCompactConfig {
    pub num_in_ch: usize,
    pub num_out_ch: usize,
    pub num_feat: usize,
    pub num_conv: usize,
    pub upscale: usize,
}

impl SRVGGNetCompactConfig {
    /// realesr-general-x4v3.pth: `SRVGGNetCompact(3, 3, num_feat=64, num_conv=32, upscale=4, act_type='prelu')`.
    pub const GENERAL_X4V3: Self = Self {
        num_in_ch: 3,
        num_out_ch: 3,
        num_feat: 64,
        num_conv: 32,
        upscale: 4,
    };
}

#[derive(Debug, Clone)]
pub struct SRVGGNetCompact {
    config: SRVGGNetCompactConfig,
    convs: Vec<Conv3x3>,
    activations: Vec<PReLU>,
    span: tracing::Span,
}

impl SRVGGNetCompact {
    pub fn new(vb: VarBuilder, config: &SRVGGNetCompactConfig) -> Result<Self> {
        let body = vb.pp("body");
        let mut convs = Vec::with_capacity(config.num_conv + 2);
        let mut activations = Vec::with_capacity(config.num_conv + 1);
        convs.push(Conv3x3::new(config.num_in_ch, config.num_feat, body.pp(0))?);
        activations.push(candle_nn::prelu(Some(config.num_feat), body.pp(1))?);
        for index in 0..config.num_conv {
            let conv_index = 2 + 2 * index;
            convs.push(Conv3x3::new(
                config.num_feat,
                config.num_feat,
                body.pp(conv_index),
            )?);
            activations.push(candle_nn::prelu(
                Some(config.num_feat),
                body.pp(conv_index + 1),
            )?);
        }
        let last_index = 2 + 2 * config.num_conv;
        let out_channels = config.num_out_ch * config.upscale * config.upscale;
        convs.push(Conv3x3::new(
            config.num_feat,
            out_channels,
            body.pp(last_index),
        )?);
        Ok(Self {
            config: *config,
            convs,
            activations,
            span: tracing::trace_span!("srvgg_net_compact"),
        })
    }

    pub fn config(&self) -> &SRVGGNetCompactConfig {
        &self.config
    }
}

impl Module for SRVGGNetCompact {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let mut out = xs.clone();
        for (conv, activation) in self.convs.iter().zip(self.activations.iter()) {
            out = channel_leaky_relu(&conv.forward(&out)?, activation.weight())?;
        }
        if let Some(last) = self.convs.last() {
            out = last.forward(&out)?;
        }
        // [b, out·s², h, w] → [b, out, h·s, w·s]
        let out = candle_nn::ops::pixel_shuffle(&out, self.config.upscale)?;
        let (_, _, height, width) = xs.dims4()?;
        let base =
            xs.upsample_nearest2d(height * self.config.upscale, width * self.config.upscale)?;
        out + base
    }
}
