//! Unit tests of the VAE tiling: blending against a line-by-line transcription of
//! diffusers' in-place `blend_v`/`blend_h`, and the tile geometry.

use super::*;
use candle_core::{DType, Device, IndexOp};

/// diffusers' blend_v on [b, c, h, w] written as its Python loop over plain vectors.
fn reference_blend_rows(a: &Tensor, b: &Tensor, blend_extent: usize) -> anyhow::Result<Tensor> {
    let a_height = a.dim(2)?;
    let extent = blend_extent.min(a_height).min(b.dim(2)?);
    let mut rows = Vec::new();
    for y in 0..b.dim(2)? {
        let row = b.i((.., .., y..y + 1, ..))?;
        if y < extent {
            let above = a.i((.., .., a_height - extent + y..a_height - extent + y + 1, ..))?;
            let weight = y as f64 / extent as f64;
            rows.push(((above * (1.0 - weight))? + (row * weight)?)?);
        } else {
            rows.push(row);
        }
    }
    Ok(Tensor::cat(&rows, 2)?)
}

#[test]
fn blending_matches_the_python_loop() -> anyhow::Result<()> {
    let device = Device::Cpu;
    let a = Tensor::randn(0f32, 1.0, (1, 2, 10, 6), &device)?;
    for (b_height, extent) in [(10, 4), (3, 4), (10, 0), (10, 12)] {
        let b = Tensor::randn(0f32, 1.0, (1, 2, b_height, 6), &device)?;
        let ours = blend_vertical(&a, &b, extent)?;
        let reference = reference_blend_rows(&a, &b, extent)?;
        let difference = (ours - reference)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(
            difference < 1e-6,
            "height {b_height}, extent {extent}: {difference}"
        );
    }
    // Horizontal blending is the vertical one on transposed tiles.
    let a = Tensor::randn(0f32, 1.0, (1, 2, 5, 9), &device)?;
    let b = Tensor::randn(0f32, 1.0, (1, 2, 5, 7), &device)?;
    let ours = blend_horizontal(&a, &b, 3)?;
    let reference =
        reference_blend_rows(&a.transpose(2, 3)?, &b.transpose(2, 3)?, 3)?.transpose(2, 3)?;
    let difference = (ours - reference)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    assert!(difference < 1e-6, "{difference}");
    Ok(())
}

#[test]
fn tile_layout_geometry() -> anyhow::Result<()> {
    // Decoding with tiny tiles: 4 latents per tile, stride 3, 8 pixels blended, 24 kept.
    let layout = TileLayout::new(4, 32, 0.25)?;
    assert_eq!(
        (layout.stride, layout.blend_extent, layout.row_limit),
        (3, 8, 24)
    );
    // An identity "decoder" that upsamples ×8 gives back the input upsampled wherever
    // overlapping tiles agree, which they do for a constant input.
    let xs = Tensor::ones((1, 1, 16, 20), DType::F32, &Device::Cpu)?;
    let out = layout.run(&xs, |tile| {
        let (_, _, height, width) = tile.dims4()?;
        tile.upsample_nearest2d(height * 8, width * 8)
    })?;
    assert_eq!(out.dims(), &[1, 1, 128, 160]);
    let deviation = (out - 1.0)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    assert!(deviation < 1e-6, "{deviation}");
    assert!(TileLayout::new(1, 8, 0.25).is_err());
    Ok(())
}
