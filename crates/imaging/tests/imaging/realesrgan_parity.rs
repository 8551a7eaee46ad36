//! Real-ESRGAN parity: the tiny RRDBNet ×4, RRDBNet ×2 and SRVGGNetCompact ×4 that
//! scripts/fixtures/realesrgan.py builds with the published PyTorch architectures,
//! loaded from both their .pth (params_ema / params wrapping) and .safetensors files,
//! must reproduce PyTorch's raw outputs, whole and tiled.
//! mirrors realesrgan.utils.RealESRGANer.{pre_process, tile_process, post_process}
//! Tolerance: 1e-4 absolute (f32 convolutions summed in a different order).

use std::path::PathBuf;

use anyhow::Result;
use candle_core::{Device, Tensor};
use huatu_imaging::sr::{Architecture, TileOptions, Upscaler};
use huatu_imaging::ImagingError;

const TOLERANCE: f32 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/realesrgan")
}

fn reference(name: &str) -> Result<Tensor> {
    let mut tensors =
        candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu)?;
    tensors
        .remove(name)
        .ok_or_else(|| anyhow::anyhow!("reference.safetensors has no {name}"))
}

fn max_difference(a: &Tensor, b: &Tensor) -> Result<f32> {
    anyhow::ensure!(
        a.dims() == b.dims(),
        "shapes differ: {:?} vs {:?}",
        a.dims(),
        b.dims()
    );
    Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

/// The tile settings the fixture script used for each model.
fn fixture_tiles(name: &str) -> TileOptions {
    let tile_pad = if name == "rrdbnet_x2" { 4 } else { 3 };
    TileOptions {
        tile_size: 8,
        tile_pad,
    }
}

fn check_model(name: &str) -> Result<()> {
    let input = reference(&format!("{name}.input"))?;
    let whole = reference(&format!("{name}.output"))?;
    let tiled = reference(&format!("{name}.tiled_output"))?;
    let mut outputs = Vec::new();
    for extension in ["pth", "safetensors"] {
        let upscaler = Upscaler::load(&fixtures().join(format!("{name}.{extension}")))?;
        let untiled = upscaler.forward_tiled(
            &input,
            TileOptions {
                tile_size: 0,
                tile_pad: 0,
            },
        )?;
        let difference = max_difference(&untiled, &whole)?;
        assert!(
            difference < TOLERANCE,
            "{name}.{extension} whole: max difference {difference}"
        );
        let ours_tiled = upscaler.forward_tiled(&input, fixture_tiles(name))?;
        let difference = max_difference(&ours_tiled, &tiled)?;
        assert!(
            difference < TOLERANCE,
            "{name}.{extension} tiled: max difference {difference}"
        );
        outputs.push(untiled);
    }
    // both file formats hold the same weights
    assert_eq!(max_difference(&outputs[0], &outputs[1])?, 0.0);
    // the fixture's tiles are too small to be seamless, so the tiled test is not vacuous
    assert!(max_difference(&whole, &tiled)? > 1e-3);
    Ok(())
}

#[test]
fn rrdbnet_x4_matches_pytorch_whole_and_tiled() -> Result<()> {
    check_model("rrdbnet_x4")
}

#[test]
fn rrdbnet_x2_with_pixel_unshuffle_and_mod_padding_matches_pytorch() -> Result<()> {
    check_model("rrdbnet_x2")
}

#[test]
fn srvgg_compact_x4_matches_pytorch_whole_and_tiled() -> Result<()> {
    check_model("srvgg_x4")
}

#[test]
fn architectures_are_recognised_from_the_weights() -> Result<()> {
    let x4 = Upscaler::load(&fixtures().join("rrdbnet_x4.pth"))?;
    let Architecture::RRDBNet(config) = *x4.architecture() else {
        anyhow::bail!("expected RRDBNet, got {:?}", x4.architecture());
    };
    assert_eq!(
        (
            config.scale,
            config.num_feat,
            config.num_block,
            config.num_grow_ch
        ),
        (4, 4, 2, 2)
    );
    let x2 = Upscaler::load(&fixtures().join("rrdbnet_x2.safetensors"))?;
    assert_eq!(x2.net_scale(), 2);
    let compact = Upscaler::load(&fixtures().join("srvgg_x4.pth"))?;
    let Architecture::SRVGGNetCompact(config) = *compact.architecture() else {
        anyhow::bail!("expected SRVGGNetCompact, got {:?}", compact.architecture());
    };
    assert_eq!(
        (config.upscale, config.num_feat, config.num_conv),
        (4, 4, 2)
    );
    assert_eq!(
        compact.describe(),
        "SRVGGNetCompact ×4 (2 convolutions, 4 features)"
    );
    Ok(())
}

#[test]
fn tiles_with_enough_context_are_seamless() -> Result<()> {
    // With context wider than the receptive field (about 18 input pixels for the ×4
    // RRDBNet, twice that behind the ×2 model's pixel-unshuffle) tiling changes nothing.
    for (name, tile_pad) in [("rrdbnet_x4", 20), ("rrdbnet_x2", 40), ("srvgg_x4", 6)] {
        let input = reference(&format!("{name}.input"))?;
        let upscaler = Upscaler::load(&fixtures().join(format!("{name}.safetensors")))?;
        let whole = upscaler.forward_tiled(
            &input,
            TileOptions {
                tile_size: 0,
                tile_pad: 0,
            },
        )?;
        let tiled = upscaler.forward_tiled(
            &input,
            TileOptions {
                tile_size: 4,
                tile_pad,
            },
        )?;
        let difference = max_difference(&whole, &tiled)?;
        assert!(difference < TOLERANCE, "{name}: {difference}");
    }
    Ok(())
}

#[test]
fn image_level_upscale_clamps_and_resizes_to_the_wanted_scale() -> Result<()> {
    let upscaler = Upscaler::load(&fixtures().join("srvgg_x4.safetensors"))?;
    let image = image::Rgb32FImage::from_fn(10, 7, |x, y| {
        image::Rgb([x as f32 / 9.0, y as f32 / 6.0, 0.5])
    });
    let native = upscaler.upscale(&image, None, TileOptions::default())?;
    assert_eq!(native.dimensions(), (40, 28));
    assert!(native.as_raw().iter().all(|v| (0.0..=1.0).contains(v)));
    let x2 = upscaler.upscale(&image, Some(2.0), TileOptions::default())?;
    assert_eq!(x2.dimensions(), (20, 14));
    let x3 = upscaler.upscale(&image, Some(2.5), TileOptions::default())?;
    assert_eq!(x3.dimensions(), (25, 17));
    Ok(())
}

#[test]
fn bad_weight_files_are_clear_errors() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("huatu-sr-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let missing = Upscaler::load(&dir.join("absent.pth")).err();
    assert!(
        matches!(missing, Some(ImagingError::Io { .. })),
        "{missing:?}"
    );
    let garbage = dir.join("garbage.pth");
    std::fs::write(&garbage, b"not a zip file")?;
    let message = Upscaler::load(&garbage)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("garbage.pth"), "{message}");
    let other = dir.join("other.safetensors");
    let tensors = std::collections::HashMap::from([(
        "weight".to_string(),
        Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu)?,
    )]);
    candle_core::safetensors::save(&tensors, &other)?;
    let error = Upscaler::load(&other).err();
    assert!(
        matches!(error, Some(ImagingError::UnknownModel { .. })),
        "{error:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn enhance_chain_upscales_colour_and_alpha_together() -> Result<()> {
    let upscaler = Upscaler::load(&fixtures().join("rrdbnet_x2.pth"))?;
    let rgba = image::RgbaImage::from_fn(9, 6, |x, y| {
        image::Rgba([
            (x * 25) as u8,
            (y * 40) as u8,
            99,
            if x < 4 { 255 } else { 0 },
        ])
    });
    let steps = huatu_imaging::Step::parse_list("denoise,upscale:tile=4:tile_pad=2")?;
    let output = huatu_imaging::enhance(
        &image::DynamicImage::ImageRgba8(rgba),
        &steps,
        Some(&upscaler),
    )?;
    let output = output.to_rgba8();
    assert_eq!(output.dimensions(), (18, 12));
    // the alpha plane is resized with the colour: opaque on the left, clear on the right
    assert_eq!(output.get_pixel(1, 5).0[3], 255);
    assert_eq!(output.get_pixel(17, 5).0[3], 0);
    Ok(())
}
