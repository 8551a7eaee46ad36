//! RRDBNet, the generator of ESRGAN and Real-ESRGAN (RealESRGAN_x4plus.pth,
//! RealESRGAN_x2plus.pth, RealESRGAN_x4plus_anime_6B.pth), mirroring
//! basicsr/archs/rrdbnet_arch.py layer for layer and key for key: `conv_first`,
//! `body.N.rdb{1,2,3}.conv{1..5}`, `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`,
//! `conv_last`. Scales 2 and 1 pixel-unshuffle the input first, as basicsr does.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use huatu_kernels::leaky_relu;

use super::conv::Conv3x3;

const NEGATIVE_SLOPE: f64 = 0.2;
/// basicsr scales each residual branch by 0.2 before adding it.
const RESIDUAL_SCALE: f64 = 0.2;

/// The constructor arguments of basicsr's `RRDBNet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RRDBNetConfig {
    pub num_in_ch: usize,
    pub num_out_ch: usize,
    pub scale: usize,
    pub num_feat: usize,
    pub num_block: usize,
    pub num_grow_ch: usize,
}

impl RRDBNetConfig {
    /// RealESRGAN_x4plus.pth: `RRDBNet(3, 3, scale=4, num_feat=64, num_block=23, num_grow_ch=32)`.
    pub const X4PLUS: Self = Self {
        num_in_ch: 3,
        num_out_ch: 3,
        scale: 4,
        num_feat: 64,
        num_block: 23,
        num_grow_ch: 32,
    };
}

/// basicsr `ResidualDenseBlock`: five densely connected convolutions.
#[derive(Debug, Clone)]
pub struct ResidualDenseBlock {
    conv1: Conv3x3,
    conv2: Conv3x3,
    conv3: Conv3x3,
    conv4: Conv3x3,
    conv5: Conv3x3,
    span: tracing::Span,
}

impl ResidualDenseBlock {
    pub fn new(vb: VarBuilder, num_feat: usize, num_grow_ch: usize) -> Result<Self> {
        Ok(Self {
            conv1: Conv3x3::new(num_feat, num_grow_ch, vb.pp("conv1"))?,
            conv2: Conv3x3::new(num_feat + num_grow_ch, num_grow_ch, vb.pp("conv2"))?,
            conv3: Conv3x3::new(num_feat + 2 * num_grow_ch, num_grow_ch, vb.pp("conv3"))?,
            conv4: Conv3x3::new(num_feat + 3 * num_grow_ch, num_grow_ch, vb.pp("conv4"))?,
            conv5: Conv3x3::new(num_feat + 4 * num_grow_ch, num_feat, vb.pp("conv5"))?,
            span: tracing::trace_span!("residual_dense_block"),
        })
    }
}

impl Module for ResidualDenseBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let x1 = leaky_relu(&self.conv1.forward(xs)?, NEGATIVE_SLOPE)?;
        let x2 = leaky_relu(
            &self.conv2.forward(&Tensor::cat(&[xs, &x1], 1)?)?,
            NEGATIVE_SLOPE,
        )?;
        let x3 = leaky_relu(
            &self.conv3.forward(&Tensor::cat(&[xs, &x1, &x2], 1)?)?,
            NEGATIVE_SLOPE,
        )?;
        let x4 = leaky_relu(
            &self.conv4.forward(&Tensor::cat(&[xs, &x1, &x2, &x3], 1)?)?,
            NEGATIVE_SLOPE,
        )?;
        let x5 = self
            .conv5
            .forward(&Tensor::cat(&[xs, &x1, &x2, &x3, &x4], 1)?)?;
        (x5 * RESIDUAL_SCALE)? + xs
    }
}

/// basicsr `RRDB`: three residual dense blocks inside one more residual connection.
#[derive(Debug, Clone)]
pub struct ResidualInResidualDenseBlock {
    rdb1: ResidualDenseBlock,
    rdb2: ResidualDenseBlock,
    rdb3: ResidualDenseBlock,
    span: tracing::Span,
}

impl ResidualInResidualDenseBlock {
    pub fn new(vb: VarBuilder, num_feat: usize, num_grow_ch: usize) -> Result<Self> {
        Ok(Self {
            rdb1: ResidualDenseBlock::new(vb.pp("rdb1"), num_feat, num_grow_ch)?,
            rdb2: ResidualDenseBlock::new(vb.pp("rdb2"), num_feat, num_grow_ch)?,
            rdb3: ResidualDenseBlock::new(vb.pp("rdb3"), num_feat, num_grow_ch)?,
            span: tracing::trace_span!("rrdb"),
        })
    }
}

impl Module for ResidualInResidualDenseBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let out = self.rdb1.forward(xs)?;
        let out = self.rdb2.forward(&out)?;
        let out = self.rdb3.forward(&out)?;
        (out * RESIDUAL_SCALE)? + xs
    }
}

/// basicsr `RRDBNet`.
#[derive(Debug, Clone)]
pub struct RRDBNet {
    config: RRDBNetConfig,
    conv_first: Conv3x3,
    body: Vec<ResidualInResidualDenseBlock>,
    conv_body: Conv3x3,
    conv_up1: Conv3x3,
    conv_up2: Conv3x3,
    conv_hr: Conv3x3,
    conv_last: Conv3x3,
    span: tracing::Span,
}

impl RRDBNet {
    pub fn new(vb: VarBuilder, config: &RRDBNetConfig) -> Result<Self> {
        let num_in_ch = match config.scale {
            2 => config.num_in_ch * 4,
            1 => config.num_in_ch * 16,
            _ => config.num_in_ch,
        };
        let num_feat = config.num_feat;
        let body = (0..config.num_block)
            .map(|index| {
                ResidualInResidualDenseBlock::new(
                    vb.pp("body").pp(index),
                    num_feat,
                    config.num_grow_ch,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: *config,
            conv_first: Conv3x3::new(num_in_ch, num_feat, vb.pp("conv_first"))?,
            body,
            conv_body: Conv3x3::new(num_feat, num_feat, vb.pp("conv_body"))?,
            conv_up1: Conv3x3::new(num_feat, num_feat, vb.pp("conv_up1"))?,
            conv_up2: Conv3x3::new(num_feat, num_feat, vb.pp("conv_up2"))?,
            conv_hr: Conv3x3::new(num_feat, num_feat, vb.pp("conv_hr"))?,
            conv_last: Conv3x3::new(num_feat, config.num_out_ch, vb.pp("conv_last"))?,
            span: tracing::trace_span!("rrdbnet"),
        })
    }

    pub fn config(&self) -> &RRDBNetConfig {
        &self.config
    }
}

impl Module for RRDBNet {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        // [b, 3, h, w] → [b, 3·s², h/s, w/s] for the ×2 and ×1 models
        let feat = match self.config.scale {
            2 => candle_nn::ops::pixel_unshuffle(xs, 2)?,
            1 => candle_nn::ops::pixel_unshuffle(xs, 4)?,
            _ => xs.clone(),
        };
        let feat = self.conv_first.forward(&feat)?;
        let mut body_feat = feat.clone();
        for block in &self.body {
            body_feat = block.forward(&body_feat)?;
        }
        let feat = self.conv_body.forward_plus(&body_feat, &feat)?;
        let feat = leaky_relu(&self.conv_up1.forward_upsampled(&feat)?, NEGATIVE_SLOPE)?;
        let feat = leaky_relu(&self.conv_up2.forward_upsampled(&feat)?, NEGATIVE_SLOPE)?;
        let hr = leaky_relu(&self.conv_hr.forward(&feat)?, NEGATIVE_SLOPE)?;
        // [b, num_out_ch, 4·h', 4·w']
        self.conv_last.forward(&hr)
    }
}
