//! Untrusted files: `.pth` checkpoints whose pickle or sizes lie, and tiny image files
//! that declare huge images, are refused with clear errors before anything large is
//! allocated; truncated files are errors, never panics.
//!
//! `data/small_p{2,4}.pth` were written by Python's pickle (protocols 2 and 4) with
//! stand-ins for PyTorch's classes, as `torch.save` lays them out: a `params` wrapper, a
//! float storage viewed twice (row-major and transposed), a half-precision parameter at
//! an offset, and a non-tensor entry.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use candle_core::DType;
use huatu_imaging::io::{decode_image, load_image, DecodeLimits};
use huatu_imaging::sr::weights::pth::read_state_dict;
use huatu_imaging::sr::weights::read_tensors;
use huatu_imaging::ImagingError;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("huatu-untrusted-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join(name))
}

/// The process's peak resident memory in KiB (Linux; 0 elsewhere).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0)
}

// ---- .pth -------------------------------------------------------------------------

#[test]
fn pytorch_layouts_read_with_views_offsets_and_both_protocols() -> Result<()> {
    for name in ["small_p2.pth", "small_p4.pth"] {
        let tensors = read_tensors(&data(name))?;
        assert_eq!(tensors.len(), 3, "{name}: {:?}", tensors.keys());
        let weight = tensors["body.0.weight"].to_vec2::<f32>()?;
        assert_eq!(weight, vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
        let transposed = tensors["body.0.weight_t"].to_vec2::<f32>()?;
        assert_eq!(
            transposed,
            vec![vec![1.0, 4.0], vec![2.0, 5.0], vec![3.0, 6.0]]
        );
        let half = &tensors["body.1.weight"];
        assert_eq!(half.dtype(), DType::F16);
        assert_eq!(
            half.to_dtype(DType::F32)?.to_vec1::<f32>()?,
            vec![2.0, 3.0, 4.0]
        );
    }
    Ok(())
}

/// A zip laid out as `torch.save` writes it (stored entries under `archive/`).
fn checkpoint(pickle: &[u8], storages: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", options)?;
    zip.write_all(pickle)?;
    zip.start_file("archive/byteorder", options)?;
    zip.write_all(b"little")?;
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), options)?;
        zip.write_all(bytes)?;
    }
    Ok(zip.finish()?.into_inner())
}

fn unicode(text: &str) -> Vec<u8> {
    let mut out = vec![b'X'];
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

fn int(value: u32) -> Vec<u8> {
    let mut out = vec![b'J'];
    out.extend_from_slice(&value.to_le_bytes());
    out
}

/// `{"w": _rebuild_tensor_v2(storage(key, numel), offset, size, stride, False, {})}` as
/// protocol 2 writes it; `arguments` replaces the argument tuple's body when given.
fn state_dict_pickle(
    numel: u64,
    offset: u32,
    size: &[u32],
    stride: &[u32],
    arguments: Option<&[u8]>,
) -> Vec<u8> {
    let mut p = b"\x80\x02}(".to_vec();
    p.extend(unicode("w"));
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    let mut args = b"(".to_vec();
    args.extend(unicode("storage"));
    args.extend_from_slice(b"ctorch\nFloatStorage\n");
    args.extend(unicode("0"));
    args.extend(unicode("cpu"));
    args.push(0x8a);
    args.push(8);
    args.extend_from_slice(&numel.to_le_bytes());
    args.extend_from_slice(b"tQ");
    args.extend(int(offset));
    args.push(b'(');
    for &dim in size {
        args.extend(int(dim));
    }
    args.push(b't');
    args.push(b'(');
    for &s in stride {
        args.extend(int(s));
    }
    args.extend_from_slice(b"t\x89}");
    p.extend_from_slice(arguments.unwrap_or(&args));
    p.extend_from_slice(b"tRu.");
    p
}

fn pth_error(bytes: &[u8]) -> String {
    match read_state_dict(Cursor::new(bytes), &["params_ema", "params"]) {
        Ok(tensors) => format!("accepted: {:?}", tensors.keys().collect::<Vec<_>>()),
        Err(message) => message,
    }
}

#[test]
fn a_crafted_checkpoint_reads_and_its_lies_are_refused() -> Result<()> {
    let six: Vec<u8> = (1..=6u8).flat_map(|v| f32::from(v).to_le_bytes()).collect();
    // the honest file reads
    let honest = checkpoint(
        &state_dict_pickle(6, 0, &[2, 3], &[3, 1], None),
        &[("0", &six)],
    )?;
    let tensors = read_state_dict(Cursor::new(&honest), &[]).map_err(anyhow::Error::msg)?;
    assert_eq!(tensors["w"].to_vec2::<f32>()?[1], vec![4.0, 5.0, 6.0]);

    let started = Instant::now();
    let before = peak_rss_kib();
    // a 1 KB file declaring a 4 TiB tensor: refused from the entry's real length
    let huge = checkpoint(
        &state_dict_pickle(1 << 40, 0, &[1 << 20, 1 << 20], &[1 << 20, 1], None),
        &[("0", &six)],
    )?;
    assert!(huge.len() < 2048);
    let message = pth_error(&huge);
    assert!(
        message.contains("holds 24 bytes but the checkpoint declares"),
        "{message}"
    );
    // a storage size whose byte count overflows
    let overflow = checkpoint(
        &state_dict_pickle(u64::MAX / 2, 0, &[2], &[1], None),
        &[("0", &six)],
    )?;
    assert!(
        pth_error(&overflow).contains("overflows"),
        "{}",
        pth_error(&overflow)
    );
    // a view past the storage's end
    let past = checkpoint(&state_dict_pickle(6, 3, &[4], &[1], None), &[("0", &six)])?;
    assert!(
        pth_error(&past).contains("reach past"),
        "{}",
        pth_error(&past)
    );
    // a broadcast view expanding one element into many
    let broadcast = checkpoint(
        &state_dict_pickle(6, 0, &[1 << 30], &[0], None),
        &[("0", &six)],
    )?;
    assert!(
        pth_error(&broadcast).contains("elements but its storage only"),
        "{}",
        pth_error(&broadcast)
    );
    // a short argument tuple (candle's reader panics on `remove`)
    let short = checkpoint(
        &state_dict_pickle(6, 0, &[6], &[1], Some(b"(K\x00t")),
        &[("0", &six)],
    )?;
    assert!(pth_error(&short).contains("needs"), "{}", pth_error(&short));
    // a missing storage entry
    let missing = checkpoint(&state_dict_pickle(6, 0, &[6], &[1], None), &[])?;
    assert!(
        pth_error(&missing).contains("archive/data/0"),
        "{}",
        pth_error(&missing)
    );
    // a string declaring 4 GiB
    let string = checkpoint(b"\x80\x02X\xff\xff\xff\xff", &[])?;
    assert!(
        pth_error(&string).contains("ends early"),
        "{}",
        pth_error(&string)
    );
    // a million nested tuples: no recursion anywhere, so no stack overflow
    let mut nested = b"\x80\x02N".to_vec();
    nested.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    nested.push(b'.');
    let deep = checkpoint(&nested, &[])?;
    assert!(
        pth_error(&deep).contains("no tensors"),
        "{}",
        pth_error(&deep)
    );
    // a memo bomb: each step doubles the object if BINGET copied
    let mut bomb = b"\x80\x02]q\x00".to_vec();
    for _ in 0..200 {
        bomb.extend_from_slice(b"h\x00h\x00\x86q\x00");
    }
    bomb.push(b'.');
    assert!(pth_error(&checkpoint(&bomb, &[])?).contains("no tensors"));
    // truncated archives
    for cut in [honest.len() / 3, honest.len() - 30, 10] {
        let message = pth_error(&honest[..cut]);
        assert!(!message.starts_with("accepted"), "cut at {cut}: {message}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 512 << 10, "peak memory grew by {grown} KiB");
    Ok(())
}

#[test]
fn weight_file_errors_name_the_file() -> Result<()> {
    let path = scratch("lying.pth")?;
    let six = [0u8; 24];
    std::fs::write(
        &path,
        checkpoint(
            &state_dict_pickle(1 << 40, 0, &[1 << 20], &[1], None),
            &[("0", &six)],
        )?,
    )?;
    let error = read_tensors(&path).err();
    assert!(
        matches!(&error, Some(ImagingError::WeightFile { path: p, .. }) if p == &path),
        "{error:?}"
    );
    let message = error.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("lying.pth") && message.contains("declares"),
        "{message}"
    );
    Ok(())
}

// ---- images -----------------------------------------------------------------------

fn png_chunk(kind: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(body);
    out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A 57-byte PNG whose header says 65535×65535 RGBA (16 GiB decoded).
fn huge_png() -> Vec<u8> {
    let mut ihdr = 65535u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&65535u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(png_chunk(b"IHDR", &ihdr));
    // a zlib stream of a few zero bytes: the rows that follow are missing
    out.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    ));
    out.extend(png_chunk(b"IEND", &[]));
    out
}

/// A JPEG whose frame header says 65535×65535, three components.
fn huge_jpeg() -> Vec<u8> {
    let mut out = vec![0xff, 0xd8];
    // quantization table 0, all ones
    out.extend_from_slice(&[0xff, 0xdb, 0x00, 0x43, 0x00]);
    out.extend(std::iter::repeat_n(1u8, 64));
    // baseline frame: precision 8, height, width, 3 components sampled 1×1 using table 0
    out.extend_from_slice(&[0xff, 0xc0, 0x00, 0x11, 0x08, 0xff, 0xff, 0xff, 0xff, 0x03]);
    for id in 1..=3u8 {
        out.extend_from_slice(&[id, 0x11, 0x00]);
    }
    // a DC/AC Huffman table pair with one code each
    for class in [0x00u8, 0x10] {
        out.extend_from_slice(&[0xff, 0xc4, 0x00, 0x14, class, 1]);
        out.extend(std::iter::repeat_n(0u8, 15));
        out.push(0);
    }
    // start of scan, then a few bytes of data and the end
    out.extend_from_slice(&[
        0xff, 0xda, 0x00, 0x0c, 0x03, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0,
    ]);
    out.extend_from_slice(&[0x00, 0x00, 0xff, 0xd9]);
    out
}

/// A WebP whose extended header (VP8X) says a 65535×65535 canvas.
fn huge_webp() -> Vec<u8> {
    let mut vp8x = vec![0u8; 4];
    for side in [65535u32, 65535] {
        vp8x.extend_from_slice(&(side - 1).to_le_bytes()[..3]);
    }
    let mut body = b"WEBP".to_vec();
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&(vp8x.len() as u32).to_le_bytes());
    body.extend_from_slice(&vp8x);
    // a lossless bitstream header of 1×1 after it
    let vp8l = [0x2f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
    body.extend_from_slice(b"VP8L");
    body.extend_from_slice(&(vp8l.len() as u32).to_le_bytes());
    body.extend_from_slice(&vp8l);
    body.push(0);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

#[test]
fn tiny_files_declaring_65535_squared_are_refused_fast_with_flat_memory() -> Result<()> {
    let before = peak_rss_kib();
    for (name, bytes) in [
        ("huge.png", huge_png()),
        ("huge.jpg", huge_jpeg()),
        ("huge.webp", huge_webp()),
    ] {
        assert!(bytes.len() < 256, "{name} is {} bytes", bytes.len());
        let started = Instant::now();
        let error = decode_image(&bytes, None, name, &DecodeLimits::DEFAULT).err();
        let message = error.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            matches!(
                error,
                Some(ImagingError::ImageTooLarge {
                    width: 65535,
                    height: 65535,
                    ..
                })
            ),
            "{name}: {error:?}"
        );
        assert!(
            message.contains("65535×65535") && message.contains("16384"),
            "{message}"
        );
        let path = scratch(name)?;
        std::fs::write(&path, &bytes)?;
        let error = load_image(&path).err();
        assert!(
            matches!(&error, Some(ImagingError::ImageTooLarge { what, .. }) if what.contains(name)),
            "{name}: {error:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{name}: {:?}",
            started.elapsed()
        );
    }
    // even a limit the header passes is enforced inside the decoder: 4096² is within the
    // side limit but not within a 1-megapixel budget
    let small = DecodeLimits {
        max_side: 65535,
        max_pixels: 1 << 20,
    };
    let error = decode_image(&huge_png(), None, "huge.png", &small).err();
    assert!(
        matches!(error, Some(ImagingError::ImageTooLarge { .. })),
        "{error:?}"
    );
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 64 << 10, "peak memory grew by {grown} KiB");
    Ok(())
}

fn encoded(format: image::ImageFormat) -> Result<Vec<u8>> {
    let image = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 99]));
    let mut bytes = Vec::new();
    match format {
        image::ImageFormat::WebP => image::codecs::webp::WebPEncoder::new_lossless(&mut bytes)
            .encode(image.as_raw(), 64, 48, image::ExtendedColorType::Rgb8)?,
        other => {
            image::DynamicImage::ImageRgb8(image).write_to(&mut Cursor::new(&mut bytes), other)?
        }
    }
    Ok(bytes)
}

#[test]
fn truncated_images_are_clear_errors() -> Result<()> {
    for format in [
        image::ImageFormat::Png,
        image::ImageFormat::Jpeg,
        image::ImageFormat::WebP,
    ] {
        let bytes = encoded(format)?;
        let whole = decode_image(&bytes, None, "whole", &DecodeLimits::DEFAULT)?;
        assert_eq!((whole.width(), whole.height()), (64, 48));
        for cut in [8, 30, bytes.len() / 2] {
            let error = decode_image(&bytes[..cut], None, "cut.img", &DecodeLimits::DEFAULT).err();
            let message = error.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                message.contains("cut.img"),
                "{format:?} cut at {cut}: {message:?}"
            );
        }
        let path = scratch(&format!("truncated.{}", format.extensions_str()[0]))?;
        std::fs::write(&path, &bytes[..bytes.len() / 2])?;
        let message = load_image(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("truncated."), "{format:?}: {message:?}");
    }
    Ok(())
}

#[test]
fn limits_below_the_default_apply_to_files_too() -> Result<()> {
    let path = scratch("wide.png")?;
    std::fs::write(&path, encoded(image::ImageFormat::Png)?)?;
    let narrow = DecodeLimits::with_max_side(32);
    let error = huatu_imaging::io::load_image_with(Path::new(&path), &narrow).err();
    assert!(
        matches!(
            error,
            Some(ImagingError::ImageTooLarge {
                width: 64,
                height: 48,
                max_side: 32,
                ..
            })
        ),
        "{error:?}"
    );
    assert!(huatu_imaging::io::load_image(&path).is_ok());
    Ok(())
}
